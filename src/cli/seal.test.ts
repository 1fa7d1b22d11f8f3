import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { parseEnvelopeSecret } from '../api/validation.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
});
afterEach(() => ws.cleanup());

async function unsealed(file: string): Promise<Record<string, string>> {
  const result = await ws.cli(['unseal', '-f', file, '-o', 'json', '--identity', key.file]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const secret = JSON.parse(result.stdout) as { data: Record<string, string> };
  return Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

async function sealedFile(name: string): Promise<EnvelopeSecret> {
  return parseEnvelopeSecret(parse(await ws.read(name)), name);
}

describe('envseal seal', () => {
  it('seals a YAML Secret manifest from a file, data and stringData (stringData wins)', async () => {
    await ws.write(
      'secret.yaml',
      `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  labels: {app: db}
  annotations:
    team: storage
    kubectl.kubernetes.io/last-applied-configuration: '{"secret":"yes"}'
  uid: 0b7c1f36-0000-0000-0000-000000000000
  resourceVersion: "42"
  generation: 3
  creationTimestamp: "2024-01-01T00:00:00Z"
  managedFields: [{manager: kubectl}]
  ownerReferences: []
  finalizers: [x]
  selfLink: /api/v1/namespaces/prod/secrets/db
type: kubernetes.io/basic-auth
immutable: true
data:
  username: ${Buffer.from('admin').toString('base64')}
  password: ${Buffer.from('old').toString('base64')}
stringData:
  password: s3cret
status: {}
`,
    );
    const result = await ws.cli(['seal', '-f', 'secret.yaml', '-r', `age:${key.recipient}`, '-w', 'db.yaml']);
    expect(result.stderr).toMatch(/sealed 2 values/);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    const secret = await sealedFile('db.yaml');
    expect(secret.metadata).toEqual({ name: 'db', namespace: 'prod' });
    expect(secret.spec.scope).toBe('strict');
    expect(secret.spec.template).toEqual({
      type: 'kubernetes.io/basic-auth',
      immutable: true,
      metadata: { labels: { app: 'db' }, annotations: { team: 'storage' } },
    });
    expect(await ws.read('db.yaml')).not.toMatch(/last-applied|uid|resourceVersion|managedFields|creationTimestamp|finalizers|selfLink|status/);
    expect(await unsealed('db.yaml')).toEqual({ username: 'admin', password: 's3cret' });
  });

  it('seals a JSON manifest from stdin and writes JSON to stdout with -o json', async () => {
    const manifest = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'api', namespace: 'dev' }, stringData: { TOKEN: 'abc' } };
    const result = await ws.cli(['seal', '-r', `age:${key.recipient}`, '-o', 'json'], { stdin: JSON.stringify(manifest) });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const secret = parseEnvelopeSecret(JSON.parse(result.stdout));
    expect(secret.metadata).toEqual({ name: 'api', namespace: 'dev' });
    await ws.write('api.json', result.stdout);
    expect(await unsealed('api.json')).toEqual({ TOKEN: 'abc' });
  });

  it('reads stdin with -f -', async () => {
    const result = await ws.cli(['seal', '-f', '-', '-r', `age:${key.recipient}`], {
      stdin: 'kind: Secret\napiVersion: v1\nmetadata: {name: a, namespace: b}\nstringData: {K: v}\n',
    });
    expect(result.code).toBe(0);
    expect(parse(result.stdout)).toMatchObject({ kind: 'EnvelopeSecret', metadata: { name: 'a', namespace: 'b' } });
  });

  it('combines --from-literal, --from-file and --from-env-file, with labels, annotations and type', async () => {
    await ws.write('tls.key', Buffer.from([0, 1, 2, 255, 254]));
    await ws.write('ca.crt', 'CERT\n');
    await ws.write('app.env', '\uFEFF# comment\n\nDB_HOST=db.local\n  DB_PORT=5432\r\nQUOTED="kept as is"\nEMPTY=\nEQ=a=b\n');
    const result = await ws.cli([
      'seal',
      '--name',
      'app',
      '-n',
      'default',
      '--from-literal',
      'PASSWORD=p@ss word=',
      '--from-file',
      'tls.key',
      '--from-file',
      'ca=ca.crt',
      '--from-env-file',
      'app.env',
      '--label',
      'app.kubernetes.io/name=app',
      '--annotation',
      'note=hello world',
      '--type',
      'kubernetes.io/tls',
      '--immutable',
      '-r',
      `age:${key.recipient}`,
      '-w',
      'app.yaml',
    ]);
    expect(result.stderr).toMatch(/sealed 8 values/);
    expect(result.code).toBe(0);
    const secret = await sealedFile('app.yaml');
    expect(secret.spec.template).toEqual({
      type: 'kubernetes.io/tls',
      immutable: true,
      metadata: { labels: { 'app.kubernetes.io/name': 'app' }, annotations: { note: 'hello world' } },
    });
    const values = await unsealed('app.yaml');
    expect(values).toEqual({
      PASSWORD: 'p@ss word=',
      'tls.key': Buffer.from([0, 1, 2, 255, 254]).toString('utf8'),
      ca: 'CERT\n',
      DB_HOST: 'db.local',
      DB_PORT: '5432',
      QUOTED: '"kept as is"',
      EMPTY: '',
      EQ: 'a=b',
    });
    const raw = await ws.cli(['unseal', '-f', 'app.yaml', '--key', 'tls.key', '-i', key.file]);
    expect(raw.stdoutBytes.equals(Buffer.from([0, 1, 2, 255, 254]))).toBe(true);
  });

  it('flags override the manifest: --name, --namespace, --type, labels', async () => {
    await ws.write('s.yaml', 'apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b, labels: {x: "1"}}\ntype: Opaque\nstringData: {K: v}\n');
    const result = await ws.cli(['seal', '-f', 's.yaml', '--name', 'c', '-n', 'd', '--type', 'example.com/t', '--label', 'x=2', '-r', `age:${key.recipient}`]);
    expect(result.code).toBe(0);
    expect(parse(result.stdout)).toMatchObject({
      metadata: { name: 'c', namespace: 'd' },
      spec: { template: { type: 'example.com/t', metadata: { labels: { x: '2' } } } },
    });
  });

  it.each(['strict', 'namespace', 'cluster'] as const)('seals with --scope %s', async (scope) => {
    const args = ['seal', '--name', 'x', '--from-literal', 'K=v', '--scope', scope, '-r', `age:${key.recipient}`, '-w', 'x.yaml'];
    if (scope !== 'cluster') args.push('-n', 'ns');
    const result = await ws.cli(args);
    expect(result.code).toBe(0);
    const secret = await sealedFile('x.yaml');
    expect(secret.spec.scope).toBe(scope);
    expect(secret.metadata.namespace).toBe(scope === 'cluster' ? undefined : 'ns');
    expect(await unsealed('x.yaml')).toEqual({ K: 'v' });
  });

  it('seals for several recipients, any of which opens it', async () => {
    const other = await ageKey(ws, 'other.key');
    const result = await ws.cli([
      'seal',
      '--name',
      'x',
      '-n',
      'y',
      '--from-literal',
      'K=v',
      '-r',
      `age:${key.recipient}`,
      '-r',
      `age:${other.recipient}`,
      '-w',
      'x.yaml',
    ]);
    expect(result.code).toBe(0);
    expect((await sealedFile('x.yaml')).spec.envelopes[0]!.recipients).toHaveLength(2);
    const opened = await ws.cli(['unseal', '-f', 'x.yaml', '--key', 'K'], { env: { ENVSEAL_AGE_IDENTITY: ws.path('other.key') } });
    expect(opened.stdout).toBe('v');
  });

  it('-w replaces an existing file atomically, keeping its mode, and leaves no temporary file', async () => {
    await ws.write('out.yaml', 'old');
    const { chmod } = await import('node:fs/promises');
    await chmod(ws.path('out.yaml'), 0o640);
    const result = await ws.cli(['seal', '--name', 'x', '-n', 'y', '--from-literal', 'K=v', '-r', `age:${key.recipient}`, '-w', 'out.yaml']);
    expect(result.code).toBe(0);
    expect((await ws.snapshot('out.yaml'))!.mode).toBe(0o640);
    expect(await ws.entries()).toEqual(['age.key', 'out.yaml']);
  });

  it('output YAML never folds long base64 lines', async () => {
    const long = 'x'.repeat(5000);
    const result = await ws.cli(['seal', '--name', 'x', '-n', 'y', '--from-literal', `K=${long}`, '-r', `age:${key.recipient}`]);
    expect(result.code).toBe(0);
    const line = result.stdout.split('\n').find((l) => l.trimStart().startsWith('K: '));
    expect(line!.length).toBeGreaterThan(5000);
  });
});

describe('envseal seal --merge-into', () => {
  async function initial(): Promise<void> {
    const result = await ws.cli([
      'seal',
      '--name',
      'db',
      '-n',
      'prod',
      '--from-literal',
      'A=1',
      '--from-literal',
      'B=2',
      '--from-literal',
      'C=3',
      '-r',
      `age:${key.recipient}`,
      '-w',
      'db.yaml',
    ]);
    expect(result.code).toBe(0);
  }

  it('adds and replaces keys in a new envelope; untouched ciphertext stays byte-identical; FILE is rewritten in place', async () => {
    await initial();
    const before = await sealedFile('db.yaml');
    // No identity: merging needs only the recipients' public keys.
    const result = await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'B=two', '--from-literal', 'D=4']);
    expect(result.stderr).toMatch(/sealed 2 values into "db.yaml"/);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    const after = await sealedFile('db.yaml');
    expect(after.spec.envelopes).toHaveLength(2);
    const [kept, added] = after.spec.envelopes;
    expect(kept!.id).toBe(before.spec.envelopes[0]!.id);
    expect(kept!.recipients).toEqual(before.spec.envelopes[0]!.recipients);
    expect(kept!.data).toEqual({ A: before.spec.envelopes[0]!.data.A, C: before.spec.envelopes[0]!.data.C });
    expect(Object.keys(added!.data).sort()).toEqual(['B', 'D']);
    expect(added!.recipients.map((r) => r.recipient)).toEqual([key.recipient]);
    // The raw text lines of untouched values are unchanged, so a Git diff shows only B and D.
    const beforeText = await ws.read('db.yaml');
    for (const k of ['A', 'C']) expect(beforeText).toContain(`${k}: ${before.spec.envelopes[0]!.data[k]}`);
    expect(await unsealed('db.yaml')).toEqual({ A: '1', B: 'two', C: '3', D: '4' });
  });

  it('writes to -w instead when given, leaving the merged file as it was', async () => {
    await initial();
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'E=5', '-w', 'db2.yaml']);
    expect(result.code).toBe(0);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
    expect(await unsealed('db2.yaml')).toEqual({ A: '1', B: '2', C: '3', E: '5' });
  });

  it("keeps the file's JSON format and honours --recipient for the new envelope", async () => {
    const result = await ws.cli(['seal', '--name', 'db', '-n', 'prod', '--from-literal', 'A=1', '-r', `age:${key.recipient}`, '-o', 'json', '-w', 'db.json']);
    expect(result.code).toBe(0);
    const other = await ageKey(ws, 'other.key');
    const merged = await ws.cli(['seal', '--merge-into', 'db.json', '--from-literal', 'B=2', '-r', `age:${other.recipient}`]);
    expect(merged.code).toBe(0);
    const text = await ws.read('db.json');
    expect(text.startsWith('{')).toBe(true);
    const secret = parseEnvelopeSecret(JSON.parse(text));
    expect(secret.spec.envelopes[1]!.recipients.map((r) => r.recipient)).toEqual([other.recipient]);
  });

  it('updates template labels from the flags', async () => {
    await initial();
    const result = await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'E=5', '--label', 'tier=db']);
    expect(result.code).toBe(0);
    expect((await sealedFile('db.yaml')).spec.template).toEqual({ metadata: { labels: { tier: 'db' } } });
  });

  it("refuses a different name, namespace or scope than the manifest's", async () => {
    await initial();
    const snapshot = await ws.snapshot('db.yaml');
    for (const extra of [
      ['--name', 'other'],
      ['-n', 'dev'],
      ['--scope', 'cluster'],
    ]) {
      const result = await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'E=5', ...extra]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/differs|names/);
    }
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });
});
