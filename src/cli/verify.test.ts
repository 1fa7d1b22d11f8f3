import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let sealed: EnvelopeSecret;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  expect(
    (
      await ws.cli([
        'seal',
        '--name',
        'db',
        '-n',
        'prod',
        '--from-literal',
        'A=alpha',
        '--from-literal',
        'B=beta',
        '-r',
        `age:${key.recipient}`,
        '-w',
        'db.yaml',
      ])
    ).code,
  ).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'C=gamma'])).code).toBe(0);
  sealed = parse(await ws.read('db.yaml')) as EnvelopeSecret;
});
afterEach(() => ws.cleanup());

function tampered(change: (s: EnvelopeSecret) => void): string {
  const copy = structuredClone(sealed);
  change(copy);
  return stringify(copy);
}

/** Flips one bit of a base64 field's decoded bytes, keeping it valid base64 of the same length. */
function flipBit(text: string, byte = 14): string {
  const bytes = Buffer.from(text, 'base64');
  bytes[byte] = bytes[byte]! ^ 1;
  return bytes.toString('base64');
}

describe('envseal verify', () => {
  it('passes a valid manifest offline and with --decrypt', async () => {
    const offline = await ws.cli(['verify', '-f', 'db.yaml']);
    expect(offline).toMatchObject({ code: 0, stderr: '' });
    expect(offline.stdout).toMatch(/valid EnvelopeSecret "prod\/db" \(scope strict, 2 envelopes, 3 keys\)/);
    const decrypt = await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', key.file]);
    expect(decrypt).toMatchObject({ code: 0, stderr: '' });
    expect(decrypt.stdout).toMatch(/all 3 values open/);
    expect(decrypt.stdout).not.toMatch(/alpha|beta|gamma/);
  });

  it('reads stdin', async () => {
    const result = await ws.cli(['verify'], { stdin: await ws.read('db.yaml') });
    expect(result.code).toBe(0);
  });

  const cases: [string, number, (s: EnvelopeSecret) => void, RegExp][] = [
    ['structure (kind)', 10, (s) => ((s as { kind: string }).kind = 'Secret'), /kind: must be EnvelopeSecret \[structure\]/],
    ['structure (missing namespace)', 10, (s) => delete s.metadata.namespace, /metadata\.namespace: is required for scope strict/],
    ['structure (invalid key name)', 10, (s) => (s.spec.envelopes[0]!.data['bad key'] = s.spec.envelopes[0]!.data.A!), /invalid key name/],
    ['base64', 11, (s) => (s.spec.envelopes[0]!.data.A = `_${s.spec.envelopes[0]!.data.A!.slice(1)}`), /is not standard padded base64 \[base64\]/],
    ['base64 (url-safe alphabet)', 11, (s) => (s.spec.envelopes[0]!.recipients[0]!.encryptedKey = '-_-_'), /encryptedKey: is not standard padded base64/],
    ['size (truncated value)', 12, (s) => (s.spec.envelopes[0]!.data.A = 'AAAAAAAA'), /shorter than a nonce and a tag/],
    ['size (short id)', 12, (s) => (s.spec.envelopes[0]!.id = 'AAAA'), /id: must decode to 32 bytes \[size\]/],
    ['duplicate-key', 13, (s) => (s.spec.envelopes[1]!.data.A = s.spec.envelopes[1]!.data.C!), /key "A" is also in spec\.envelopes\[0\] \[duplicate-key\]/],
    ['suite', 14, (s) => (s.spec.envelopes[0]!.suite = 'A128CBC-NOPE'), /unknown suite "A128CBC-NOPE" .*\[suite\]/],
    ['provider', 15, (s) => (s.spec.envelopes[0]!.recipients[0]!.provider = 'gcp-kms'), /unknown provider "gcp-kms" \[provider\]/],
  ];

  it.each(cases)('fails the %s check with exit %i', async (_name, code, change, message) => {
    await ws.write('bad.yaml', tampered(change));
    const result = await ws.cli(['verify', '-f', 'bad.yaml']);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(code);
    expect(result.stdout).toBe('');
  });

  it('returns the lowest code when several checks fail and lists them all', async () => {
    await ws.write(
      'bad.yaml',
      tampered((s) => {
        s.spec.envelopes[0]!.suite = 'X';
        s.spec.envelopes[0]!.data.A = 'AAAAAAAA';
      }),
    );
    const result = await ws.cli(['verify', '-f', 'bad.yaml']);
    expect(result.code).toBe(12);
    expect(result.stderr).toMatch(/\[size\][\s\S]*\[suite\]|\[suite\][\s\S]*\[size\]/);
  });

  it('fails the structure check (10) for malformed YAML', async () => {
    await ws.write('bad.yaml', 'apiVersion: [unclosed\n');
    const result = await ws.cli(['verify', '-f', 'bad.yaml']);
    expect(result.code).toBe(10);
    expect(result.stderr).toMatch(/malformed YAML at line \d+, column \d+/);
  });

  it.each([
    [
      'a flipped bit in a value',
      (s: EnvelopeSecret) => (s.spec.envelopes[0]!.data.A = flipBit(s.spec.envelopes[0]!.data.A!)),
      /value "A" did not authenticate/,
    ],
    [
      'values swapped between keys',
      (s: EnvelopeSecret) => {
        const d = s.spec.envelopes[0]!.data;
        [d.A, d.B] = [d.B!, d.A!];
      },
      /did not authenticate/,
    ],
    [
      'a different commitment',
      (s: EnvelopeSecret) => (s.spec.envelopes[0]!.commitment = flipBit(s.spec.envelopes[0]!.commitment, 0)),
      /does not match the envelope's commitment/,
    ],
    ['a moved namespace', (s: EnvelopeSecret) => (s.metadata.namespace = 'dev'), /did not authenticate/],
    [
      'a corrupted wrapped key',
      (s: EnvelopeSecret) => (s.spec.envelopes[0]!.recipients[0]!.encryptedKey = flipBit(s.spec.envelopes[0]!.recipients[0]!.encryptedKey, 200)),
      /malformed or was altered/,
    ],
  ])('--decrypt fails with 16 for %s', async (_name, change, message) => {
    await ws.write('bad.yaml', tampered(change));
    expect((await ws.cli(['verify', '-f', 'bad.yaml'])).code).toBe(0);
    const result = await ws.cli(['verify', '-f', 'bad.yaml', '--decrypt', '-i', key.file]);
    expect(result.stderr).toMatch(message);
    expect(result.code).toBe(16);
    expect(result.stderr).not.toMatch(/alpha|beta|gamma/);
  });

  it('--decrypt without a usable identity is a key provider error (4)', async () => {
    const none = await ws.cli(['verify', '-f', 'db.yaml', '--decrypt']);
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/no configured provider can unwrap|no age identity/);
    const other = await ageKey(ws, 'other.key');
    const wrong = await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', other.file]);
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toMatch(/none of the configured age identities/);
  });

  it('has its exit codes in --help', async () => {
    const result = await ws.cli(['verify', '--help']);
    expect(result.code).toBe(0);
    for (const code of [10, 11, 12, 13, 14, 15, 16]) expect(result.stdout).toContain(`  ${code}  `);
  });
});
