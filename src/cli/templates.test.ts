// envseal unseal and envseal edit with spec.template.data.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import type { EditorRequest } from './io.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

const CANARY = 'CANARY-cli-templates';
const CONFIG = 'password: {{ .DB_PASSWORD | json }}\nuser: {{ .USER }}\n';

let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  await mkdir(ws.path('tmp'));
  const sealed = await ws.cli([
    'seal',
    '--name',
    'db',
    '-n',
    'prod',
    '--from-literal',
    `DB_PASSWORD=${CANARY}`,
    '--from-literal',
    'USER=app',
    '-r',
    `age:${key.recipient}`,
  ]);
  expect(sealed.code).toBe(0);
  const manifest = parse(sealed.stdout) as EnvelopeSecret;
  manifest.spec.template = { data: { 'config.yaml': CONFIG } };
  await ws.write('db.yaml', stringify(manifest));
});
afterEach(() => ws.cleanup());

async function manifest(): Promise<EnvelopeSecret> {
  return parse(await readFile(ws.path('db.yaml'), 'utf8')) as EnvelopeSecret;
}

describe('envseal unseal with templates', () => {
  it('prints the Secret as the controller writes it: sealed keys and rendered templates', async () => {
    const result = await ws.cli(['unseal', '-f', 'db.yaml', '-i', key.file]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const data = (parse(result.stdout) as { data: Record<string, string> }).data;
    expect(Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]))).toEqual({
      DB_PASSWORD: CANARY,
      USER: 'app',
      'config.yaml': `password: "${CANARY}"\nuser: app\n`,
    });
  });

  it('prints one rendered template with --key', async () => {
    const result = await ws.cli(['unseal', '-f', 'db.yaml', '--key', 'config.yaml', '-i', key.file]);
    expect(result).toMatchObject({ code: 0, stdout: `password: "${CANARY}"\nuser: app\n` });
  });

  it('refuses a manifest whose template reads a key that is not sealed (exit 3), naming it', async () => {
    const doc = await manifest();
    doc.spec.template = { data: { 'config.yaml': 'x: {{ .NOPE }}' } };
    await ws.write('bad.yaml', stringify(doc));
    const result = await ws.cli(['unseal', '-f', 'bad.yaml', '-i', key.file]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('template "config.yaml" line 1 column 7: references key "NOPE", which is not sealed in this EnvelopeSecret');
  });

  it('fails naming the template when a value cannot go through its function, printing no value', async () => {
    const doc = await manifest();
    doc.spec.template = { data: { 'tls.crt': '{{ .DB_PASSWORD | b64dec }}' } };
    await ws.write('bad.yaml', stringify(doc));
    const result = await ws.cli(['unseal', '-f', 'bad.yaml', '-i', key.file]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('template "tls.crt" line 1 column 19: the value piped to b64dec is not standard padded base64');
    expect(result.stdout + result.stderr).not.toContain(CANARY);
  });
});

describe('envseal verify with templates', () => {
  it('checks them offline, and renders them with --decrypt', async () => {
    expect((await ws.cli(['verify', '-f', 'db.yaml'])).code).toBe(0);
    const decrypt = await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', key.file]);
    expect(decrypt).toMatchObject({ code: 0 });
    expect(decrypt.stdout).toMatch(/all 2 values open, 1 template render\n$/);
    const doc = await manifest();
    doc.spec.template = { data: { x: '{{ .DB_PASSWORD | b64dec }}' } };
    await ws.write('bad.yaml', stringify(doc));
    expect((await ws.cli(['verify', '-f', 'bad.yaml'])).code).toBe(0);
    const failed = await ws.cli(['verify', '-f', 'bad.yaml', '--decrypt', '-i', key.file]);
    expect(failed.code).toBe(16);
    expect(failed.stderr).toContain('template check failed: template "x" line 1 column 19: the value piped to b64dec is not standard padded base64');
    expect(failed.stderr).not.toContain(CANARY);
    doc.spec.template = { data: { x: '{{ .NOPE }}' } };
    await ws.write('bad.yaml', stringify(doc));
    const offline = await ws.cli(['verify', '-f', 'bad.yaml']);
    expect(offline.code).toBe(10);
    expect(offline.stderr).toContain('references key "NOPE", which is not sealed in this EnvelopeSecret [structure]');
  });
});

describe('envseal edit with templates', () => {
  const run = (change: (doc: Record<string, Record<string, string>>) => void, seen: string[] = []) =>
    ws.cli(['edit', 'db.yaml', '-i', key.file], {
      env: { TMPDIR: ws.path('tmp'), EDITOR: 'fake-editor' },
      spawnEditor: async (request: EditorRequest) => {
        const text = await readFile(request.file, 'utf8');
        seen.push(text);
        const doc = parse(text) as Record<string, Record<string, string>>;
        change(doc);
        await writeFile(request.file, stringify(doc));
        return 0;
      },
    });

  it('shows the templates beside the values, and saves an edited template without re-sealing any value', async () => {
    const before = await manifest();
    const seen: string[] = [];
    const result = await run((doc) => {
      doc.templates!['config.yaml'] = 'pw={{ .DB_PASSWORD }}';
    }, seen);
    expect(result.code).toBe(0);
    expect(parse(seen[0]!).templates).toEqual({ 'config.yaml': CONFIG });
    expect(seen[0]).toMatch(/^# templates is spec.template.data, not encrypted/m);
    const after = await manifest();
    expect(after.spec.template?.data).toEqual({ 'config.yaml': 'pw={{ .DB_PASSWORD }}' });
    expect(after.spec.envelopes).toEqual(before.spec.envelopes);
    expect((await ws.cli(['unseal', '-f', 'db.yaml', '--key', 'config.yaml', '-i', key.file])).stdout).toBe(`pw=${CANARY}`);
  });

  it('adds a template and a value together', async () => {
    const result = await run((doc) => {
      doc.stringData!.HOST = 'db.internal';
      doc.templates!.url = 'postgres://{{ .USER }}@{{ .HOST }}';
    });
    expect(result.code).toBe(0);
    expect((await ws.cli(['unseal', '-f', 'db.yaml', '--key', 'url', '-i', key.file])).stdout).toBe('postgres://app@db.internal');
  });

  it.each([
    [
      'a template reading a removed value',
      (doc: Record<string, Record<string, string>>) => delete doc.stringData!.USER,
      /references key "USER", which is not sealed/,
    ],
    [
      'a key both a value and a template',
      (doc: Record<string, Record<string, string>>) => (doc.templates!.USER = 'x'),
      /key "USER" is both a value and a template/,
    ],
    [
      'a template that does not parse',
      (doc: Record<string, Record<string, string>>) => (doc.templates!.x = '{{ .USER'),
      /template "x" line 1 column 9: unclosed action/,
    ],
    [
      'a value a function cannot take',
      (doc: Record<string, Record<string, string>>) => (doc.templates!.x = '{{ .DB_PASSWORD | b64dec }}'),
      /template "x" line 1 column 19: the value piped to b64dec is not standard padded base64/,
    ],
  ])('refuses %s (exit 3), leaving the file untouched and naming no value', async (_what, change, message) => {
    const before = await readFile(ws.path('db.yaml'));
    const result = await run(change);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toContain(CANARY);
    expect(await readFile(ws.path('db.yaml'))).toEqual(before);
  });
});
