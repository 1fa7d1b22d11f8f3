import { mkdir } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseEnvelopeSecret } from '../api/validation.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  await mkdir(ws.path('secrets'));
  for (const [name, password] of [
    ['db', 'hunter2'],
    ['api', 's3cret'],
  ]) {
    await ws.write(
      `secrets/${name}.yaml`,
      `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${name}\n  namespace: prod\n  labels: {app: ${name}}\nstringData:\n  PASSWORD: ${password}\n`,
    );
  }
});
afterEach(() => ws.cleanup());

describe('envseal seal --output-dir (several Secrets in one run)', () => {
  it('seals each -f FILE into DIR/<its name>, each for its own name and namespace', async () => {
    const result = await ws.cli([
      'seal',
      '-f',
      'secrets/db.yaml',
      '-f',
      'secrets/api.yaml',
      '-r',
      `age:${key.recipient}`,
      '--output-dir',
      'sealed',
      '--label',
      'team=x',
    ]);
    expect(result.stderr).toBe('sealed 2 Secrets for 1 recipient into "sealed"\n');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    for (const [name, password] of [
      ['db', 'hunter2'],
      ['api', 's3cret'],
    ]) {
      const sealed = parseEnvelopeSecret(parse(await ws.read(`sealed/${name}.yaml`)), name);
      expect(sealed.metadata).toEqual({ name, namespace: 'prod' });
      expect(sealed.spec.template?.metadata?.labels).toEqual({ app: name, team: 'x' });
      const opened = await ws.cli(['unseal', '-f', `sealed/${name}.yaml`, '--key', 'PASSWORD', '--identity', key.file]);
      expect(opened.stdout).toBe(password);
    }
  });

  it('writes JSON with -o json, and works with a single -f', async () => {
    const result = await ws.cli(['seal', '-f', 'secrets/db.yaml', '-r', `age:${key.recipient}`, '--output-dir', 'out', '-o', 'json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(await ws.read('out/db.yaml')).kind).toBe('EnvelopeSecret');
  });

  it('refuses combinations that name one Secret, and writes nothing', async () => {
    const base = ['seal', '-f', 'secrets/db.yaml', '-f', 'secrets/api.yaml', '-r', `age:${key.recipient}`];
    const cases: [string[], RegExp][] = [
      [base, /several -f FILE need --output-dir DIR/],
      [[...base, '--output-dir', 'o', '--from-literal', 'K=v'], /--from-literal names one Secret's values/],
      [[...base, '--output-dir', 'o', '--name', 'x'], /--name names one Secret's values/],
      [[...base, '--output-dir', 'o', '-w', 'x.yaml'], /-w and --output-dir cannot be combined/],
      [['seal', '-f', 'secrets/db.yaml', '-f', '-', '-r', `age:${key.recipient}`, '--output-dir', 'o'], /stdin/],
      [['seal', '-r', `age:${key.recipient}`, '--output-dir', 'o'], /needs one or more -f FILE/],
      [['seal', '-f', 'secrets/db.yaml', '-r', `age:${key.recipient}`, '--output-dir', 'secrets'], /would overwrite it/],
    ];
    for (const [argv, message] of cases) {
      const result = await ws.cli(argv);
      expect(result.code, argv.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    await ws.write('other.yaml', 'apiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: prod}\nstringData: {K: v}\n');
    await mkdir(ws.path('more'));
    await ws.write('more/db.yaml', 'apiVersion: v1\nkind: Secret\nmetadata: {name: db2, namespace: prod}\nstringData: {K: v}\n');
    const clash = await ws.cli(['seal', '-f', 'secrets/db.yaml', '-f', 'more/db.yaml', '-r', `age:${key.recipient}`, '--output-dir', 'o']);
    expect(clash.code).toBe(2);
    expect(clash.stderr).toMatch(/would both be written to "db.yaml"/);
    expect(await ws.entries()).toEqual(['age.key', 'more', 'other.yaml', 'secrets']);
  });

  it('writes nothing when one of the inputs is invalid', async () => {
    await ws.write('secrets/bad.yaml', 'apiVersion: v1\nkind: Secret\nmetadata: {name: bad}\nstringData: {K: v}\n');
    const result = await ws.cli(['seal', '-f', 'secrets/db.yaml', '-f', 'secrets/bad.yaml', '-r', `age:${key.recipient}`, '--output-dir', 'sealed']);
    expect(result.code).not.toBe(0);
    expect(await ws.entries()).toEqual(['age.key', 'secrets']);
  });
});
