// The "Bad input" list: each a clear error, a non-zero exit code, and no output
// file written or modified.
import { createHash } from 'node:crypto';
import { utimes } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { PROVIDER_NAMES } from '../providers/registry.ts';
import { ageKey, type AgeKey, type FileSnapshot, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let sealed: EnvelopeSecret;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  expect((await ws.cli(['seal', '--name', 'db', '-n', 'prod', '--from-literal', `A=${VALUE}`, '-r', `age:${key.recipient}`, '-w', 'db.yaml'])).code).toBe(0);
  sealed = parse(await ws.read('db.yaml')) as EnvelopeSecret;
  await ws.write('out.yaml', 'ORIGINAL\n');
  // An old mtime, so that any rewrite would show even within the same millisecond.
  for (const name of ['db.yaml', 'out.yaml']) await utimes(ws.path(name), new Date('2020-01-01'), new Date('2020-01-01'));
});
afterEach(() => ws.cleanup());

/** Content hash, mtime and mode: comparing megabyte buffers element by element is slow. */
function digest(snapshot: FileSnapshot | undefined) {
  return snapshot && { sha256: createHash('sha256').update(snapshot.bytes).digest('hex'), mtimeMs: snapshot.mtimeMs, mode: snapshot.mode };
}

function tampered(change: (s: EnvelopeSecret) => void): string {
  const copy = structuredClone(sealed);
  change(copy);
  return stringify(copy);
}

const VALUE = 'Sup3r-S3cret-Value';
const SECRET_HEAD = 'apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\n';
const big = (n: number) => Buffer.alloc(n, 0x61);

interface Case {
  name: string;
  files?: () => Record<string, string | Buffer>;
  argv: () => string[];
  code: number;
  message: RegExp;
}

const seal = (...rest: string[]) => ['seal', ...rest, '-w', 'out.yaml'];
const sealTo = () => `age:${key.recipient}`;

const cases: Case[] = [
  // Malformed YAML or JSON
  {
    name: 'malformed YAML',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData: {A: [unclosed\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /"?in\.yaml"?: malformed YAML at line \d+, column \d+/,
  },
  {
    name: 'YAML with a tab indent',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData:\n\tA: x\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /malformed YAML at line 5/,
  },
  {
    name: 'malformed JSON',
    files: () => ({ 'in.json': '{"kind": "Secret", "stringData": {"A": "x",}}' }),
    argv: () => seal('-f', 'in.json', '-r', sealTo()),
    code: 3,
    message: /in\.json: malformed JSON at line 1, column \d+/,
  },
  {
    name: 'several YAML documents',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData: {A: x}\n---\n${SECRET_HEAD}` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /holds 2 YAML documents; envseal reads exactly one/,
  },
  {
    name: 'an empty manifest',
    files: () => ({ 'in.yaml': '# nothing\n' }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /empty input/,
  },
  {
    name: 'a manifest that is not a Secret',
    files: () => ({ 'in.yaml': 'apiVersion: v1\nkind: ConfigMap\ndata: {A: x}\n' }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /kind must be Secret/,
  },
  {
    name: 'an EnvelopeSecret given to seal',
    files: () => ({ 'in.yaml': stringify(sealed) }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /already an EnvelopeSecret; .*--merge-into/,
  },
  {
    name: 'a malformed EnvelopeSecret to unseal',
    files: () => ({ 'bad.yaml': 'spec: {envelopes: [}\n' }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /bad\.yaml: malformed YAML/,
  },
  {
    name: 'not UTF-8',
    files: () => ({ 'in.yaml': Buffer.from([0x6b, 0x3a, 0x20, 0xff, 0xfe]) }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /not UTF-8 text/,
  },

  // Invalid key names
  {
    name: 'an invalid key name in stringData',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData: {"bad key": x, "..": y}\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /invalid key names:\n {2}key "bad key": must consist of[\s\S]*key "\.\.": must not be/,
  },
  {
    name: 'an invalid key name from --from-literal',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'a/b=x', '-r', sealTo()),
    code: 3,
    message: /key "a\/b": must consist of/,
  },
  {
    name: 'an invalid key name in an env file',
    files: () => ({ 'x.env': 'GOOD=1\nBAD KEY=2\n' }),
    argv: () => seal('--name', 'x', '-n', 'y', '--from-env-file', 'x.env', '-r', sealTo()),
    code: 3,
    message: /x\.env" line 2: invalid key name/,
  },
  {
    name: 'an invalid namespace',
    argv: () => seal('--name', 'x', '-n', 'Prod_1', '--from-literal', 'A=x', '-r', sealTo()),
    code: 3,
    message: /namespace "Prod_1" must be lowercase/,
  },
  {
    name: 'an invalid name',
    argv: () => seal('--name', 'X!', '-n', 'y', '--from-literal', 'A=x', '-r', sealTo()),
    code: 3,
    message: /name "X!" must be lowercase/,
  },

  // More than 1 MiB
  {
    name: 'more than 1 MiB in total',
    files: () => ({ a: big(600 * 1024), b: big(600 * 1024) }),
    argv: () => seal('--name', 'x', '-n', 'y', '--from-file', 'a', '--from-file', 'b', '-r', sealTo()),
    code: 3,
    message: /the values total 1228800 bytes; a Secret holds at most 1048576/,
  },
  {
    name: 'one file over 1 MiB',
    files: () => ({ a: big(1024 * 1024 + 1) }),
    argv: () => seal('--name', 'x', '-n', 'y', '--from-file', 'a', '-r', sealTo()),
    code: 3,
    message: /"a" is 1048577 bytes; at most 1048576 are accepted/,
  },
  {
    name: 'more than 1 MiB after a merge',
    files: () => ({ a: big(1024 * 1024 - 2) }),
    argv: () => ['seal', '--merge-into', 'db.yaml', '--from-file', 'a'],
    code: 3,
    message: /would hold 1048592 bytes/,
  },

  // Unknown provider or suite
  {
    name: 'an unknown provider in --recipient',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '-r', 'gcp-kms:projects/p/keys/k'),
    code: 3,
    message: new RegExp(`unknown key provider "gcp-kms" \\(known: ${PROVIDER_NAMES.join(', ')}\\)`),
  },
  {
    name: 'an unknown provider in the manifest',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.recipients[0]!.provider = 'vault')) }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /recipients\[0\]\.provider: unknown provider "vault"/,
  },
  {
    name: 'an unknown suite',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.suite = 'A128-CBC')) }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /unknown suite "A128-CBC"/,
  },
  {
    name: 'an unknown suite when merging',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.suite = 'A128-CBC')) }),
    argv: () => ['seal', '--merge-into', 'bad.yaml', '--from-literal', 'B=x', '-w', 'out.yaml'],
    code: 3,
    message: /unknown suite/,
  },
  {
    name: 'an unknown suite when adding a recipient',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.suite = 'A128-CBC')) }),
    argv: () => ['add-recipient', '-f', 'bad.yaml', '-w', 'out.yaml', '-r', `age:${key.recipient}`, '-i', key.file],
    code: 3,
    message: /unknown suite/,
  },

  // Truncated or non-base64 fields
  {
    name: 'non-base64 data in a Secret',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}data: {A: "not base64!"}\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /data\["A"\] is not standard padded base64/,
  },
  {
    name: 'unpadded base64 data in a Secret',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}data: {A: "YWJj ZA"}\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /data\["A"\] is not standard padded base64/,
  },
  {
    name: 'URL-safe base64 data in a Secret',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}data: {A: "-_8="}\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /data\["A"\] is not standard padded base64/,
  },
  {
    name: 'a truncated sealed value',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.data.A = s.spec.envelopes[0]!.data.A!.slice(0, 16))) }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /data\["A"\]: is shorter than a nonce and a tag/,
  },
  {
    name: 'a truncated envelope id',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.id = s.spec.envelopes[0]!.id.slice(0, 20))) }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /\.id: must decode to 32 bytes/,
  },
  {
    name: 'a non-base64 encryptedKey',
    files: () => ({ 'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.recipients[0]!.encryptedKey = '***')) }),
    argv: () => ['edit', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /encryptedKey: is not standard padded base64/,
  },
  {
    name: 'a truncated encryptedKey',
    files: () => ({
      'bad.yaml': tampered((s) => (s.spec.envelopes[0]!.recipients[0]!.encryptedKey = s.spec.envelopes[0]!.recipients[0]!.encryptedKey.slice(0, 40))),
    }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /recipients\[0\]\.encryptedKey: is truncated/,
  },

  // Duplicate keys
  {
    name: 'a key from two sources',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData: {A: x}\n` }),
    argv: () => seal('-f', 'in.yaml', '--from-literal', 'A=y', '-r', sealTo()),
    code: 3,
    message: /key "A" is given twice \(by "in\.yaml" and by --from-literal\)/,
  },
  {
    name: 'a key given twice by --from-literal',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=1', '--from-literal', 'A=2', '-r', sealTo()),
    code: 3,
    message: /key "A" is given twice/,
  },
  {
    name: 'a duplicate key in YAML',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData:\n  A: x\n  A: y\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /malformed YAML at line 6, column 3 \(duplicate key\)/,
  },
  {
    name: 'a duplicate key in JSON',
    files: () => ({ 'in.json': '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"a","namespace":"b"},"stringData":{"A":"x","A":"y"}}' }),
    argv: () => seal('-f', 'in.json', '-r', sealTo()),
    code: 3,
    message: /malformed JSON at line 1, column \d+ \(duplicate key\)/,
  },
  {
    name: 'a duplicate key in an env file',
    files: () => ({ 'x.env': 'A=1\nA=2\n' }),
    argv: () => seal('--name', 'x', '-n', 'y', '--from-env-file', 'x.env', '-r', sealTo()),
    code: 3,
    message: /line 2: key "A" appears twice/,
  },
  {
    name: 'a duplicate key across envelopes',
    files: () => ({ 'bad.yaml': tampered((s) => s.spec.envelopes.push(structuredClone(s.spec.envelopes[0]!))) }),
    argv: () => ['unseal', '-f', 'bad.yaml', '-i', key.file],
    code: 3,
    message: /key "A" is also in spec\.envelopes\[0\]/,
  },

  // Recipients that do not parse
  {
    name: 'a recipient without a provider',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '-r', key.recipient),
    code: 3,
    message: /must be PROVIDER:TARGET/,
  },
  {
    name: 'a recipient with an empty target',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '-r', 'age:'),
    code: 3,
    message: /must be PROVIDER:TARGET/,
  },
  {
    name: 'an age recipient that is not one',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '-r', 'age:age1nope'),
    code: 3,
    message: /"age1nope" is not an age recipient/,
  },
  {
    name: 'a bad recipient to add',
    argv: () => ['add-recipient', '-f', 'db.yaml', '-w', 'out.yaml', '-r', 'age:ssh-ed25519 AAAA', '-i', key.file],
    code: 3,
    message: /is not an age recipient/,
  },

  // Missing or broken identity
  {
    name: 'a missing identity file',
    argv: () => ['unseal', '-f', 'db.yaml', '-i', 'nope.key'],
    code: 4,
    message: /age identity file "nope\.key" \(from --identity\) does not exist/,
  },
  {
    name: 'a missing identity file from the environment',
    argv: () => ['edit', 'db.yaml'],
    code: 4,
    message: /age identity file ".*gone\.key" \(from ENVSEAL_AGE_IDENTITY\) does not exist/,
  },
  {
    name: 'no identity at all',
    argv: () => ['unseal', '-f', 'db.yaml', '--key', 'A'],
    code: 4,
    message: /no configured provider can unwrap|no age identity is configured/,
  },
  {
    name: 'an identity file that holds no identity',
    files: () => ({ 'bad.key': '# just a comment\n' }),
    argv: () => ['unseal', '-f', 'db.yaml', '-i', 'bad.key'],
    code: 4,
    message: /holds no age identity/,
  },
  {
    name: 'an identity file with a mangled identity',
    files: () => ({ 'bad.key': 'AGE-SECRET-KEY-1MANGLEDxx\n' }),
    argv: () => ['unseal', '-f', 'db.yaml', '-i', 'bad.key'],
    code: 4,
    message: /"bad\.key" line 1 is not an age identity/,
  },

  // Usage
  { name: 'no namespace', argv: () => seal('--name', 'x', '--from-literal', 'A=x', '-r', sealTo()), code: 2, message: /no namespace: pass -n NAMESPACE/ },
  { name: 'no name', argv: () => seal('-n', 'x', '--from-literal', 'A=x', '-r', sealTo()), code: 2, message: /no name: pass --name/ },
  { name: 'no recipient', argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x'), code: 2, message: /no recipient/ },
  {
    name: 'a literal without =',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A', '-r', sealTo()),
    code: 2,
    message: /--from-literal #1 must be KEY=VALUE/,
  },
  {
    name: 'an unknown scope',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '--scope', 'global', '-r', sealTo()),
    code: 2,
    message: /--scope must be strict, namespace, cluster or namespaces/,
  },
  {
    name: 'an unknown output format',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '-o', 'toml', '-r', sealTo()),
    code: 2,
    message: /must be yaml or json/,
  },
  {
    name: 'a stray argument',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=two', 'words', '-r', sealTo()),
    code: 2,
    message: /takes no positional arguments/,
  },
  { name: 'an unknown option', argv: () => seal('--nmae=x'), code: 2, message: /unknown option --nmae;/ },
  {
    name: '--kubeconfig without --controller-namespace',
    argv: () => seal('--name', 'x', '-n', 'y', '--from-literal', 'A=x', '--kubeconfig', 'k', '-r', sealTo()),
    code: 2,
    message: /--kubeconfig is only used with --controller-namespace/,
  },
  {
    name: 'a missing input file',
    argv: () => seal('-f', 'missing.yaml', '-r', sealTo()),
    code: 3,
    message: /cannot read "missing\.yaml": no such file or directory/,
  },
  {
    name: 'an invalid label in the manifest',
    files: () => ({ 'in.yaml': 'apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b, labels: {"-x": y}}\nstringData: {A: x}\n' }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /label key "-x": name part must consist/,
  },
  {
    name: 'a misspelt field',
    files: () => ({ 'in.yaml': 'apiVersion: v1\nkind: Secret\nmetdata: {name: x}\nstringData: {A: x}\n' }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /an unknown field \(did you mean metadata\?\) in a Secret/,
  },
  {
    name: 'a value YAML read as a key',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData:\n  A: x\n  ${VALUE}:\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /stringData: entry #2 has a key but no value/,
  },
  {
    name: 'a non-string stringData value',
    files: () => ({ 'in.yaml': `${SECRET_HEAD}stringData: {PORT: 5432}\n` }),
    argv: () => seal('-f', 'in.yaml', '-r', sealTo()),
    code: 3,
    message: /stringData\["PORT"\] must be a string \(quote numbers/,
  },
];

describe('bad input: a clear error, exit code not 0, no file written or modified', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    for (const [name, content] of Object.entries(c.files?.() ?? {})) await ws.write(name, content);
    const entries = await ws.entries();
    const before = new Map<string, unknown>();
    for (const name of entries) before.set(name, digest(await ws.snapshot(name)));

    const result = await ws.cli(c.argv(), {
      env: c.name.includes('from the environment') ? { ENVSEAL_AGE_IDENTITY: ws.path('gone.key'), EDITOR: 'true' } : {},
      spawnEditor: async () => 0,
    });
    expect(result.stderr).toMatch(c.message);
    expect(result.stderr).toMatch(/^envseal: error: /m);
    expect(result.code).toBe(c.code);
    expect(result.stdout).toBe('');
    expect(await ws.entries()).toEqual(entries);
    for (const name of entries) expect(digest(await ws.snapshot(name)), name).toEqual(before.get(name));
    // Never a value, a private key or a wrapped key in an error.
    expect(result.stderr).not.toContain(VALUE);
    expect(result.stderr).not.toMatch(/AGE-SECRET-KEY-1[0-9A-Z]{10}|aaaaaaaa/);
  });
});
