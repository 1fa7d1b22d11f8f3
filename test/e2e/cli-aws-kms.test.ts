// The built CLI with aws-kms recipients, against both KMS emulators (local-kms and moto):
// keys create -> seal -> verify --decrypt -> unseal -> add/remove-recipient (ReEncrypt)
// -> edit, plus the errors a KMS can give. Provider settings reach the CLI both ways:
// flags (--kms-endpoint, --region) and environment (AWS_ENDPOINT_URL_KMS, AWS_REGION).
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { KMS_EMULATORS, type KmsEmulator } from '../harness/kms-emulators.ts';
import { awsKmsEnv } from '../harness/provider-setup.ts';
import { type CliResult, ensureBuilt, runCli } from './cli-support.ts';

const CANARY = 'CANARY-kms-3f9a1c';

describe.each(KMS_EMULATORS)('envseal CLI with aws-kms against $name', ({ start }) => {
  let emulator: KmsEmulator;
  let dir: string;
  let keyArn: string;
  let alias: string;

  /** The CLI with the emulator's settings in the environment (the default) or as flags. */
  function envseal(args: string[], options: { via?: 'env' | 'flags'; env?: Record<string, string>; input?: string } = {}): Promise<CliResult> {
    const via = options.via ?? 'env';
    const env = { TMPDIR: path.join(dir, 'tmp'), ...awsKmsEnv(emulator, { endpoint: via === 'env' }), ...options.env };
    const flags = via === 'flags' ? ['--kms-endpoint', emulator.endpoint, '--region', emulator.region] : [];
    return runCli([...args, ...flags], { cwd: dir, env, ...(options.input !== undefined ? { input: options.input } : {}) });
  }

  async function createKey(via: 'env' | 'flags' = 'env'): Promise<{ arn: string; alias: string }> {
    const name = `alias/envseal-cli/${randomUUID().slice(0, 8)}`;
    const result = await envseal(['keys', 'create', '--provider', 'aws-kms', '--alias', name], { via });
    expect(result.stderr).toMatch(new RegExp(`created ${name}`));
    expect(result.code).toBe(0);
    const arn = result.stdout.trim();
    expect(arn).toMatch(new RegExp(`^arn:aws:kms:${emulator.region}:${emulator.accountId}:key/[0-9a-f-]{36}$`));
    return { arn, alias: name };
  }

  beforeAll(async () => {
    ensureBuilt();
    emulator = await start();
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-cli-kms-'));
    await mkdir(path.join(dir, 'tmp'));
  });
  afterAll(async () => {
    await emulator?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keys create, then seal for the alias, verify --decrypt and unseal', async () => {
    ({ arn: keyArn, alias } = await createKey('flags'));
    const sealed = await envseal(['seal', '--name', 'db', '-n', 'prod', '--from-literal', `PASSWORD=${CANARY}`, '-r', `aws-kms:${alias}`, '-w', 'db.yaml']);
    expect(sealed.stderr).toMatch(/sealed 1 value/);
    expect(sealed.code).toBe(0);
    const secret = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    expect(secret.spec.envelopes[0].recipients).toEqual([{ provider: 'aws-kms', keyId: keyArn, encryptedKey: expect.any(String) }]);

    const verified = await envseal(['verify', '-f', 'db.yaml', '--decrypt'], { via: 'flags' });
    expect(verified.code).toBe(0);
    expect(verified.stdout).toMatch(/all 1 value open/);
    const value = await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD']);
    expect(value).toEqual({ code: 0, stdout: CANARY, stderr: '' });
  });

  it('merges without Decrypt, then adds a second key by ReEncrypt and removes the first', async () => {
    const merged = await envseal(['seal', '--merge-into', 'db.yaml', '--from-literal', 'USER=app']);
    expect(merged.code).toBe(0);
    const second = await createKey();
    const added = await envseal(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `aws-kms:${second.arn}`]);
    expect(added.stderr).toMatch(/added/);
    expect(added.code).toBe(0);
    const secret = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    for (const envelope of secret.spec.envelopes) expect(envelope.recipients.map((r: { keyId: string }) => r.keyId)).toEqual([keyArn, second.arn]);

    // Named by its alias: the KMS resolves it to the key ARN the manifest records.
    const removed = await envseal(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `aws-kms:${alias}`]);
    expect(removed.code, removed.stderr).toBe(0);
    const remaining = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    for (const envelope of remaining.spec.envelopes) expect(envelope.recipients.map((r: { keyId: string }) => r.keyId)).toEqual([second.arn]);
    const last = await envseal(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `aws-kms:${second.arn}`]);
    expect(last.code).toBe(5);
    const value = await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'], { via: 'flags' });
    expect(value.stdout).toBe(CANARY);
  });

  it('seals for aws-kms and age together; each opens it alone', async () => {
    const key = await envseal(['keys', 'create', '-o', 'age.key']);
    expect(key.code).toBe(0);
    const sealed = await envseal([
      'seal',
      '--name',
      'mixed',
      '-n',
      'prod',
      '--from-literal',
      'K=v',
      '-r',
      `aws-kms:${alias}`,
      '-r',
      `age:${key.stdout.trim()}`,
      '-w',
      'mixed.yaml',
    ]);
    expect(sealed.code).toBe(0);
    expect((await envseal(['unseal', '-f', 'mixed.yaml', '--key', 'K'])).stdout).toBe('v');
    // Without KMS access (a closed port, one attempt), the age identity still opens it.
    const ageOnly = await envseal(['unseal', '-f', 'mixed.yaml', '--key', 'K', '-i', 'age.key'], {
      env: { AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1' },
    });
    expect(ageOnly.stdout).toBe('v');
  });

  it('edit re-seals through the KMS', async () => {
    const script = path.join(dir, 'editor.sh');
    await writeFile(script, '#!/bin/sh\nsed -i "s/USER: app/USER: admin/" "$1"\n');
    await chmod(script, 0o755);
    const edited = await envseal(['edit', 'db.yaml'], { env: { EDITOR: script } });
    expect(edited.stderr).toMatch(/re-sealed/);
    expect(edited.code).toBe(0);
    expect(await readdir(path.join(dir, 'tmp'))).toEqual([]);
    expect((await envseal(['unseal', '-f', 'db.yaml', '--key', 'USER'])).stdout).toBe('admin');
  });

  it('a manifest moved to another namespace does not open (KMS context mismatch): exit 3, verify 16', async () => {
    const secret = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    secret.metadata.namespace = 'staging';
    await writeFile(path.join(dir, 'moved.yaml'), stringify(secret));
    const unsealed = await envseal(['unseal', '-f', 'moved.yaml']);
    expect(unsealed.code).toBe(3);
    expect(unsealed.stderr).not.toContain(CANARY);
    const verified = await envseal(['verify', '-f', 'moved.yaml', '--decrypt']);
    expect(verified.code).toBe(16);
  });

  it('KMS errors: unknown alias, unreachable endpoint -> exit 4; invalid alias -> 3', async () => {
    const unknown = await envseal([
      'seal',
      '--name',
      'x',
      '-n',
      'y',
      '--from-literal',
      'K=v',
      '-r',
      'aws-kms:alias/envseal-cli/does-not-exist',
      '-w',
      'never.yaml',
    ]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/^envseal: error: .*alias\/envseal-cli\/does-not-exist/m);
    const unreachable = await envseal(['unseal', '-f', 'db.yaml'], { env: { AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:9' } });
    expect(unreachable.code).toBe(4);
    expect(unreachable.stderr).not.toContain(CANARY);
    const invalid = await envseal(['keys', 'create', '--provider', 'aws-kms', '--alias', 'alias/aws/reserved']);
    expect(invalid.code).toBe(3);
    expect(existsSync(path.join(dir, 'never.yaml'))).toBe(false);
  });
});
