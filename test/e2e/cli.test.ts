// The built CLI (bin/envseal.js -> dist/cli/main.js), spawned with the project's Node 24
// as a user would run it: the README quickstart flow, exit codes, file modes, stdin,
// the real editor hook, and the kubectl plugin shim.
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { type CliResult, ensureBuilt, KUBECTL_ENVSEAL, ROOT, runCli } from './cli-support.ts';

let dir: string;

function envseal(args: string[], options: { input?: string; env?: Record<string, string>; bin?: string } = {}): Promise<CliResult> {
  return runCli(args, { cwd: dir, ...options, env: { TMPDIR: path.join(dir, 'tmp'), ...options.env } });
}

beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-cli-e2e-'));
  await mkdir(path.join(dir, 'tmp'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('envseal CLI (built)', () => {
  let recipient: string;

  it('quickstart: keys create -> seal -> verify -> unseal', async () => {
    const created = await envseal(['keys', 'create', '-o', 'age.key']);
    expect(created.stderr).toMatch(/wrote a new x25519 age identity to "age.key" \(mode 0600\)/);
    expect(created.code).toBe(0);
    recipient = created.stdout.trim();
    expect(recipient).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
    expect((await stat(path.join(dir, 'age.key'))).mode & 0o777).toBe(0o600);
    expect(await readFile(path.join(dir, 'age.key'), 'utf8')).toContain(`# public key: ${recipient}`);

    const again = await envseal(['keys', 'create', '-o', 'age.key']);
    expect(again.code).toBe(5);
    expect(again.stderr).toBe('envseal: error: refusing to overwrite "age.key": it already exists\n');

    const sealed = await envseal([
      'seal',
      '--name',
      'db',
      '-n',
      'prod',
      '--from-literal',
      'PASSWORD=hunter2',
      '--from-literal',
      'USER=app',
      '--recipient',
      `age:${recipient}`,
      '-w',
      'db.envelope.yaml',
    ]);
    expect(sealed).toMatchObject({ code: 0, stdout: '' });
    const text = await readFile(path.join(dir, 'db.envelope.yaml'), 'utf8');
    expect(text).not.toContain('hunter2');
    expect(parse(text)).toMatchObject({
      apiVersion: 'envseal.dev/v1alpha1',
      kind: 'EnvelopeSecret',
      metadata: { name: 'db', namespace: 'prod' },
      spec: { scope: 'strict' },
    });

    const verified = await envseal(['verify', '-f', 'db.envelope.yaml']);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/valid EnvelopeSecret "prod\/db"/);
    const decrypted = await envseal(['verify', '-f', 'db.envelope.yaml', '--decrypt', '--identity', 'age.key']);
    expect(decrypted.code).toBe(0);
    expect(decrypted.stdout).toMatch(/all 2 values open/);

    const unsealed = await envseal(['unseal', '-f', 'db.envelope.yaml', '--identity', 'age.key']);
    expect(unsealed).toMatchObject({ code: 0, stderr: '' });
    expect(parse(unsealed.stdout)).toEqual({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'db', namespace: 'prod' },
      type: 'Opaque',
      data: { PASSWORD: Buffer.from('hunter2').toString('base64'), USER: Buffer.from('app').toString('base64') },
    });
    const one = await envseal(['unseal', '-f', 'db.envelope.yaml', '--key', 'PASSWORD'], { env: { ENVSEAL_AGE_IDENTITY: path.join(dir, 'age.key') } });
    expect(one).toEqual({ code: 0, stdout: 'hunter2', stderr: '' });
  });

  it('seals a manifest piped on stdin and merges into the file in place', async () => {
    const manifest = 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: prod\nstringData:\n  TOKEN: abc\n';
    const sealed = await envseal(['seal', '-r', `age:${recipient}`, '-o', 'json'], { input: manifest });
    expect(sealed.code).toBe(0);
    await writeFile(path.join(dir, 'api.json'), sealed.stdout);
    const merged = await envseal(['seal', '--merge-into', 'api.json', '--from-literal', 'EXTRA=1']);
    expect(merged.code).toBe(0);
    const secret = JSON.parse(await readFile(path.join(dir, 'api.json'), 'utf8'));
    expect(secret.spec.envelopes).toHaveLength(2);
    expect(secret.spec.envelopes[0].data.TOKEN).toBe(JSON.parse(sealed.stdout).spec.envelopes[0].data.TOKEN);
  });

  it('edit runs $EDITOR through the shell and removes its temporary file', async () => {
    const script = path.join(dir, 'editor.sh');
    await writeFile(script, '#!/bin/sh\nsed -i "s/hunter2/correct-horse/" "$1"\n');
    await chmod(script, 0o755);
    const edited = await envseal(['edit', 'db.envelope.yaml', '-i', 'age.key'], { env: { EDITOR: script } });
    expect(edited.stderr).toMatch(/re-sealed "db.envelope.yaml"/);
    expect(edited.code).toBe(0);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    const value = await envseal(['unseal', '-f', 'db.envelope.yaml', '--key', 'PASSWORD', '-i', 'age.key']);
    expect(value.stdout).toBe('correct-horse');

    const failing = await envseal(['edit', 'db.envelope.yaml', '-i', 'age.key'], { env: { EDITOR: 'false' } });
    expect(failing.code).toBe(5);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
  });

  it('reports bad input with the documented exit codes and writes nothing', async () => {
    const malformed = await envseal(['seal', '-r', `age:${recipient}`, '-w', 'never.yaml'], { input: 'kind: Secret\nstringData: {A: [x\n' });
    expect(malformed.code).toBe(3);
    expect(malformed.stderr).toMatch(/^envseal: error: stdin: malformed YAML at line \d+, column \d+/);
    expect(existsSync(path.join(dir, 'never.yaml'))).toBe(false);

    const secret = parse(await readFile(path.join(dir, 'db.envelope.yaml'), 'utf8'));
    secret.spec.envelopes[0].suite = 'NOPE';
    await writeFile(path.join(dir, 'bad-suite.yaml'), stringify(secret));
    expect((await envseal(['verify', '-f', 'bad-suite.yaml'])).code).toBe(14);

    const tampered = parse(await readFile(path.join(dir, 'db.envelope.yaml'), 'utf8'));
    const value = Buffer.from(tampered.spec.envelopes[0].data.PASSWORD, 'base64');
    value[12] = value[12]! ^ 1;
    tampered.spec.envelopes[0].data.PASSWORD = value.toString('base64');
    await writeFile(path.join(dir, 'tampered.yaml'), stringify(tampered));
    const check = await envseal(['verify', '-f', 'tampered.yaml', '--decrypt', '-i', 'age.key']);
    expect(check.code).toBe(16);
    expect(check.stderr).not.toContain('correct-horse');

    expect((await envseal(['unseal', '-f', 'db.envelope.yaml', '-i', 'missing.key'])).code).toBe(4);
    expect((await envseal(['remove-recipient', '-f', 'db.envelope.yaml', '--in-place', '-r', `age:${recipient}`])).code).toBe(5);
    expect((await envseal(['seal', '--bogus'])).code).toBe(2);
    expect((await envseal([])).code).toBe(2);
  });

  it('works as a kubectl plugin and prints its version', async () => {
    const help = await envseal(['--help'], { bin: KUBECTL_ENVSEAL });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: kubectl envseal COMMAND/);
    const version = await envseal(['--version']);
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
    expect(version.stdout).toBe(`envseal ${pkg.version}\n`);
  });
});
