import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
});
afterEach(() => ws.cleanup());

describe('envseal unseal', () => {
  it('round-trips a Secret manifest: metadata, template and every value', async () => {
    const manifest = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'tls', namespace: 'web', labels: { app: 'web' }, annotations: { owner: 'me' } },
      type: 'kubernetes.io/tls',
      immutable: false,
      data: { 'tls.key': Buffer.from([0, 255, 1]).toString('base64') },
      stringData: { 'tls.crt': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' },
    };
    expect((await ws.cli(['seal', '-r', `age:${key.recipient}`, '-w', 'tls.yaml'], { stdin: JSON.stringify(manifest) })).code).toBe(0);
    const result = await ws.cli(['unseal', '-f', 'tls.yaml', '-i', key.file]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(parse(result.stdout)).toEqual({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'tls', namespace: 'web', labels: { app: 'web' }, annotations: { owner: 'me' } },
      type: 'kubernetes.io/tls',
      immutable: false,
      data: { 'tls.key': manifest.data['tls.key'], 'tls.crt': Buffer.from(manifest.stringData['tls.crt']).toString('base64') },
    });
    const json = await ws.cli(['unseal', '-f', 'tls.yaml', '-i', key.file, '-o', 'json']);
    expect(JSON.parse(json.stdout)).toEqual(parse(result.stdout));
  });

  it('prints the exact bytes of one value with --key', async () => {
    await ws.write('blob', Buffer.from([0, 1, 2, 10, 13, 255]));
    expect(
      (await ws.cli(['seal', '--name', 'b', '-n', 'n', '--from-file', 'blob', '--from-literal', 'X=y', '-r', `age:${key.recipient}`, '-w', 'b.yaml'])).code,
    ).toBe(0);
    const result = await ws.cli(['unseal', '-f', 'b.yaml', '--key', 'blob', '-i', key.file]);
    expect(result.code).toBe(0);
    expect(result.stdoutBytes).toEqual(Buffer.from([0, 1, 2, 10, 13, 255]));
  });

  it('reads stdin and the identity from ENVSEAL_AGE_IDENTITY', async () => {
    const sealed = await ws.cli(['seal', '--name', 'a', '--scope', 'cluster', '--from-literal', 'K=v', '-r', `age:${key.recipient}`]);
    expect(sealed.code).toBe(0);
    const result = await ws.cli(['unseal', '--key', 'K'], { stdin: sealed.stdout, env: { ENVSEAL_AGE_IDENTITY: key.file } });
    expect(result).toMatchObject({ code: 0, stdout: 'v' });
    const whole = await ws.cli(['unseal'], { stdin: sealed.stdout, env: { ENVSEAL_AGE_IDENTITY: key.file } });
    expect(parse(whole.stdout).metadata).toEqual({ name: 'a' });
  });

  it('names the keys when --key is not one (exit 3)', async () => {
    expect((await ws.cli(['seal', '--name', 'a', '-n', 'b', '--from-literal', 'K=v', '-r', `age:${key.recipient}`, '-w', 'a.yaml'])).code).toBe(0);
    const result = await ws.cli(['unseal', '-f', 'a.yaml', '--key', 'NOPE', '-i', key.file]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/"NOPE" is not a key of this EnvelopeSecret \(keys: "K"\)/);
    expect(result.stdout).toBe('');
  });

  it('refuses to wait on a terminal for input (exit 2)', async () => {
    const result = await ws.cli(['unseal'], { stdinIsTTY: true });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/no input: pass -f FILE/);
  });
});
