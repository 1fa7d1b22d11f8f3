// A canary value goes through every command and every failing path we can provoke: it
// must never show in stderr or an error message, and in stdout only where the user asked
// for plaintext (unseal).
import { readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import type { EditorRequest } from './io.ts';
import { ageKey, type AgeKey, type CliResult, type Workspace, workspace } from './test-fixtures.ts';

const CANARY = 'CANARY7c1e5a9dQ';
const CANARY_B64 = Buffer.from(CANARY).toString('base64');
// The canary's base64 inside a longer value starts at any of three alignments.
const CANARY_FORMS = [
  CANARY,
  CANARY_B64,
  Buffer.from(`x${CANARY}`).toString('base64').slice(4, 20),
  Buffer.from(`xx${CANARY}`).toString('base64').slice(4, 20),
  Buffer.from(CANARY).toString('hex'),
];

let ws: Workspace;
let key: AgeKey;
let other: AgeKey;

beforeAll(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  other = await ageKey(ws, 'other.key');
  await ws.write('value.txt', `file ${CANARY}\n`);
  await ws.write('app.env', `ENV_VALUE=${CANARY}\n`);
  await ws.write(
    'secret.yaml',
    `apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\nstringData: {S: "${CANARY}"}\ndata: {D: ${Buffer.from(`d ${CANARY}`).toString('base64')}}\n`,
  );
});
afterAll(() => ws.cleanup());

function expectNoCanary(result: CliResult, where: 'stderr' | 'both' = 'both'): void {
  for (const form of CANARY_FORMS) {
    expect(result.stderr).not.toContain(form);
    if (where === 'both') expect(result.stdout).not.toContain(form);
  }
}

async function cli(argv: string[], options: Parameters<Workspace['cli']>[1] = {}): Promise<CliResult> {
  const result = await ws.cli(argv, options);
  // The same run with the debug cause chain must not leak either.
  const debug = await ws.cli(argv, { ...options, env: { ...options.env, ENVSEAL_DEBUG: '1' } });
  for (const form of CANARY_FORMS) expect(debug.stderr).not.toContain(form);
  return result;
}

function editorWriting(content: (text: string) => string, status = 0) {
  return async (request: EditorRequest) => {
    await writeFile(request.file, content(await readFile(request.file, 'utf8')));
    return status;
  };
}

describe('the canary never leaks', () => {
  it('through seal, verify, add/remove-recipient and edit; unseal shows it only on stdout', async () => {
    const sealed = await cli([
      'seal',
      '-f',
      'secret.yaml',
      '--from-literal',
      `L=${CANARY}`,
      '--from-file',
      'F=value.txt',
      '--from-env-file',
      'app.env',
      '-r',
      `age:${key.recipient}`,
      '-w',
      'db.yaml',
    ]);
    expect(sealed.code).toBe(0);
    expectNoCanary(sealed);
    for (const form of CANARY_FORMS) expect(await ws.read('db.yaml')).not.toContain(form);

    const merged = await cli(['seal', '--merge-into', 'db.yaml', '--from-literal', `M=${CANARY}`, '-w', 'db.yaml']);
    expect(merged.code).toBe(0);
    expectNoCanary(merged);

    for (const argv of [
      ['verify', '-f', 'db.yaml'],
      ['verify', '-f', 'db.yaml', '--decrypt', '-i', key.file],
    ]) {
      const result = await cli(argv);
      expect(result.code).toBe(0);
      expectNoCanary(result);
    }
    const added = await cli(['add-recipient', '-f', 'db.yaml', '-w', 'two.yaml', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(added.code).toBe(0);
    expectNoCanary(added);
    const removed = await cli(['remove-recipient', '-f', 'two.yaml', '-r', `age:${other.recipient}`]);
    expect(removed.code).toBe(0);
    expectNoCanary(removed);

    const unsealed = await cli(['unseal', '-f', 'db.yaml', '-i', key.file]);
    expect(unsealed.code).toBe(0);
    expectNoCanary(unsealed, 'stderr');
    expect(unsealed.stdout).toContain(CANARY_B64);
    const one = await cli(['unseal', '-f', 'db.yaml', '-i', key.file, '--key', 'L']);
    expect(one.stdout).toBe(CANARY);
    expectNoCanary(one, 'stderr');

    const edited = await cli(['edit', 'db.yaml', '-i', key.file], { spawnEditor: editorWriting((t) => t.replace(`L: ${CANARY}`, `L: new ${CANARY}`)) });
    expect(edited.code).toBe(0);
    expectNoCanary(edited);
  });

  describe('on failing paths', () => {
    let sealed: EnvelopeSecret;
    beforeAll(async () => {
      expect(
        (
          await ws.cli([
            'seal',
            '--name',
            'db',
            '-n',
            'prod',
            '--from-literal',
            `A=${CANARY}`,
            '--from-literal',
            'B=x',
            '-r',
            `age:${key.recipient}`,
            '-w',
            'fail.yaml',
          ])
        ).code,
      ).toBe(0);
      sealed = parse(await ws.read('fail.yaml')) as EnvelopeSecret;
    });

    const head = 'apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\n';
    const sealCases: [string, string][] = [
      ['malformed YAML after the value', `${head}stringData: {A: ${CANARY}, B: [\n`],
      ['malformed YAML inside the value', `${head}stringData:\n  A: "${CANARY}\\q"\n`],
      ['an unresolved alias', `${head}stringData: {A: *${CANARY}}\n`],
      ['a value read as a key (flow map)', `${head}stringData: {A: x, ${CANARY}}\n`],
      ['a value read as a key (block map)', `${head}stringData:\n  A: x\n  ${CANARY}:\n`],
      ['a value read as a key in data', `${head}data: {A: eA==, ${CANARY}}\n`],
      ['a value read as a label', `apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod, labels: {${CANARY}}}\n`],
      ['malformed JSON near the value', `{"kind": "Secret", "stringData": {"A": "${CANARY}" "B"}}`],
      ['malformed JSON that is the value', `{"kind": "Secret", "stringData": {"A": ${CANARY}}}`],
      ['an invalid key name next to the value', `${head}stringData: {"bad key": "${CANARY}"}\n`],
      ['non-base64 data that is the value', `${head}data: {A: "${CANARY}"}\n`],
      ['a non-string value', `${head}stringData: {A: [${CANARY}]}\n`],
      ['a non-string nested map', `${head}stringData: {A: {${CANARY}: 1}}\n`],
      ['several documents', `${head}stringData: {A: ${CANARY}}\n---\n${head}`],
      ['a duplicate key', `${head}stringData: {A: ${CANARY}, A: ${CANARY}}\n`],
      ['an unknown field', `${head}${CANARY}: 1\n`],
      ['a label that is the value', `apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod, labels: {a: [${CANARY}]}}\n`],
    ];
    it.each(sealCases)('seal: %s', async (_name, text) => {
      await ws.write('in.yaml', text);
      const result = await cli(['seal', '-f', 'in.yaml', '-r', `age:${key.recipient}`]);
      expect(result.code).not.toBe(0);
      expectNoCanary(result);
    });

    it.each([
      ['a literal without =', ['--from-literal', CANARY]],
      ['a stray argument', ['--from-literal', 'A=x', CANARY]],
      ['an unknown option with the value', [`--bogus=${CANARY}`]],
      ['a short option cluster', [`-X${CANARY}`]],
      ['an over-long value', ['--from-literal', `A=${CANARY.repeat(80_000)}`]],
      ['an env line without =', ['--from-env-file', 'bad.env']],
      ['an env line with a bad key', ['--from-env-file', 'bad2.env']],
      ['a label value', ['--from-literal', 'A=x', '--label', `a=${CANARY}!`]],
    ])('seal flags: %s', async (_name, extra) => {
      await ws.write('bad.env', `OK=1\n${CANARY}\n`);
      await ws.write('bad2.env', `${CANARY} x=${CANARY}\n`);
      const result = await cli(['seal', '--name', 'db', '-n', 'prod', '-r', `age:${key.recipient}`, ...extra]);
      expect(result.code).not.toBe(0);
      expectNoCanary(result);
    });

    const flip = (text: string) => {
      const bytes = Buffer.from(text, 'base64');
      bytes[13] = bytes[13]! ^ 0x80;
      return bytes.toString('base64');
    };
    it.each([
      ['a tampered value', (s: EnvelopeSecret) => (s.spec.envelopes[0]!.data.A = flip(s.spec.envelopes[0]!.data.A!))],
      ['swapped values', (s: EnvelopeSecret) => (s.spec.envelopes[0]!.data.B = s.spec.envelopes[0]!.data.A!)],
      ['a moved name', (s: EnvelopeSecret) => (s.metadata.name = 'other')],
      ['a tampered commitment', (s: EnvelopeSecret) => (s.spec.envelopes[0]!.commitment = flip(s.spec.envelopes[0]!.commitment))],
    ])('unseal, verify --decrypt, edit: %s', async (_name, change) => {
      const copy = structuredClone(sealed);
      change(copy);
      await ws.write('tampered.yaml', stringify(copy));
      for (const argv of [
        ['unseal', '-f', 'tampered.yaml', '-i', key.file],
        ['unseal', '-f', 'tampered.yaml', '-i', key.file, '--key', 'B'],
        ['verify', '-f', 'tampered.yaml', '--decrypt', '-i', key.file],
        ['edit', 'tampered.yaml', '-i', key.file],
      ]) {
        const result = await cli(argv, { spawnEditor: editorWriting((t) => t) });
        // B alone opens when only A was tampered with: that is right, and B is not the canary.
        if (!(argv.includes('B') && result.code === 0)) expect(result.code, argv.join(' ')).not.toBe(0);
        expectNoCanary(result);
      }
    });

    it('unseal with the wrong identity, a mangled identity, or none', async () => {
      await ws.write('mangled.key', `AGE-SECRET-KEY-1${CANARY}\n`);
      for (const [argv, env] of [
        [['unseal', '-f', 'fail.yaml', '-i', other.file], {}],
        [['unseal', '-f', 'fail.yaml', '-i', 'mangled.key'], {}],
        [['unseal', '-f', 'fail.yaml'], { ENVSEAL_AGE_IDENTITY: `AGE-SECRET-KEY-1${CANARY}` }],
        [['unseal', '-f', 'fail.yaml'], {}],
      ] as const) {
        const result = await cli([...argv], { env });
        expect(result.code).toBe(4);
        expectNoCanary(result);
      }
    });

    it.each([
      ['invalid YAML', (t: string) => t.replace(`A: ${CANARY}`, `A: [${CANARY}`), 0],
      ['an invalid key name', (t: string) => t.replace(`A: ${CANARY}`, `"bad key": ${CANARY}`), 0],
      ['non-base64 data', (t: string) => `${t}data: {Z: ${CANARY}}\n`, 0],
      ['a non-string value', (t: string) => t.replace(`A: ${CANARY}`, `A: {${CANARY}: [1]}`), 0],
      ['an unexpected field', (t: string) => `${t}${CANARY}: x\n`, 0],
      ['a value read as a key', (t: string) => t.replace(`A: ${CANARY}`, `A: x\n  ${CANARY}:`), 0],
      ['a failing editor', (t: string) => t.replace(`A: ${CANARY}`, `A: x${CANARY}`), 1],
      ['every value removed', () => 'stringData: {}\n', 0],
    ])('edit: %s', async (_name, change, status) => {
      const before = await ws.read('fail.yaml');
      const result = await cli(['edit', 'fail.yaml', '-i', key.file], { spawnEditor: editorWriting(change, status) });
      expect(result.code).not.toBe(0);
      expectNoCanary(result);
      expect(await ws.read('fail.yaml')).toBe(before);
    });

    it('edit, interactive: the error shown in the reopened file is the only place the value appears', async () => {
      let calls = 0;
      const result = await cli(['edit', 'fail.yaml', '-i', key.file], {
        stdinIsTTY: true,
        spawnEditor: editorWriting((t) => (calls++ % 2 === 0 ? t.replace(`A: ${CANARY}`, `A: [${CANARY}`) : t)),
      });
      expect(result.code).toBe(5);
      expectNoCanary(result);
    });
  });
});
