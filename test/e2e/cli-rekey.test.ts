// envseal remove-recipient re-keys, with the built CLI: age identities, and aws-kms
// against local-kms. The re-keyed envelope's wrapped key differs, and the old data key
// (what the removed recipient can still unwrap from Git history) opens no new value.
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { bindingOf } from '../../src/api/validation.ts';
import { openEnvelope } from '../../src/envelope/envelope.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { unwrapDataKey } from '../../src/sealing/open.ts';
import { type KmsEmulator, startLocalKms } from '../harness/kms-emulators.ts';
import { awsKmsEnv, awsKmsOptions } from '../harness/provider-setup.ts';
import { type CliResult, ensureBuilt, runCli } from './cli-support.ts';

const CANARY = 'CANARY-rekey-e2e-5a3e';
let dir: string;

beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-rekey-'));
  await mkdir(path.join(dir, 'tmp'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function manifest(name: string): Promise<EnvelopeSecret> {
  return parse(await readFile(path.join(dir, name), 'utf8')) as EnvelopeSecret;
}

/** The old data key opens nothing of the re-keyed envelope; the new one does. */
async function expectRekeyed(before: EnvelopeSecret, after: EnvelopeSecret, oldKeyOpener: ProviderRegistry, newKeyOpener: ProviderRegistry): Promise<void> {
  const binding = bindingOf(after);
  const old = await unwrapDataKey({ envelope: before.spec.envelopes[0]!, index: 0, binding, providers: oldKeyOpener });
  expect(() => openEnvelope({ dataKey: old.dataKey, binding, envelope: after.spec.envelopes[0]! })).toThrow(/commitment/);
  expect(() =>
    openEnvelope({ dataKey: old.dataKey, binding, envelope: { ...after.spec.envelopes[0]!, commitment: before.spec.envelopes[0]!.commitment } }),
  ).toThrow();
  const fresh = await unwrapDataKey({ envelope: after.spec.envelopes[0]!, index: 0, binding, providers: newKeyOpener });
  expect(openEnvelope({ dataKey: fresh.dataKey, binding, envelope: after.spec.envelopes[0]! }).PASSWORD!.toString()).toBe(CANARY);
}

describe('envseal remove-recipient re-keys (built CLI)', () => {
  it('age: removes the recipient and re-seals under a fresh data key in one atomic write', async () => {
    const envseal = (args: string[]) => runCli(args, { cwd: dir, env: { TMPDIR: path.join(dir, 'tmp') } });
    const ops = (await envseal(['keys', 'create', '-o', 'ops.key'])).stdout.trim();
    const leaver = (await envseal(['keys', 'create', '-o', 'leaver.key'])).stdout.trim();
    const sealed = await envseal([
      'seal',
      '--name',
      'db',
      '-n',
      'prod',
      '--from-literal',
      `PASSWORD=${CANARY}`,
      '-r',
      `age:${ops}`,
      '-r',
      `age:${leaver}`,
      '-w',
      'age.yaml',
    ]);
    expect(sealed.code).toBe(0);
    const before = await manifest('age.yaml');

    const removed = await envseal(['remove-recipient', '-f', 'age.yaml', '--in-place', '-r', `age:${leaver}`, '-i', 'ops.key']);
    expect(removed.stderr).toMatch(/^removed "age:.*" from "age.yaml" and re-keyed 1 envelope\n$/);
    expect(removed.code).toBe(0);
    const after = await manifest('age.yaml');
    expect(after.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([ops]);
    expect(after.spec.envelopes[0]!.recipients[0]!.encryptedKey).not.toBe(before.spec.envelopes[0]!.recipients[0]!.encryptedKey);
    expect(after.spec.envelopes[0]!.data.PASSWORD).not.toBe(before.spec.envelopes[0]!.data.PASSWORD);
    const leaverKey = (await readFile(path.join(dir, 'leaver.key'), 'utf8')).match(/AGE-SECRET-KEY-\S+/)![0];
    const opsKey = (await readFile(path.join(dir, 'ops.key'), 'utf8')).match(/AGE-SECRET-KEY-\S+/)![0];
    await expectRekeyed(before, after, new ProviderRegistry({ age: { identities: [leaverKey] } }), new ProviderRegistry({ age: { identities: [opsKey] } }));
    expect((await envseal(['verify', '-f', 'age.yaml', '--decrypt', '-i', 'leaver.key'])).code).toBe(4);
    expect((await envseal(['unseal', '-f', 'age.yaml', '--key', 'PASSWORD', '-i', 'ops.key'])).stdout).toBe(CANARY);
  });

  describe('aws-kms against local-kms', () => {
    let emulator: KmsEmulator;
    const envseal = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
      runCli(args, { cwd: dir, env: { TMPDIR: path.join(dir, 'tmp'), ...awsKmsEnv(emulator), ...env } });
    const kms = () => ProviderRegistry.of([createAwsKmsProvider(awsKmsOptions(emulator, { maxAttempts: 2 }))]);

    beforeAll(async () => {
      emulator = await startLocalKms();
    });
    afterAll(async () => {
      await emulator?.stop();
    });

    it('re-keys with GenerateDataKey: the wrapped key differs and the old data key opens nothing new', async () => {
      const keys: string[] = [];
      for (const _ of [1, 2]) {
        const created = await envseal(['keys', 'create', '--provider', 'aws-kms', '--alias', `alias/envseal-rekey/${randomUUID().slice(0, 8)}`]);
        expect(created.code, created.stderr).toBe(0);
        keys.push(created.stdout.trim());
      }
      const [stays, leaves] = keys as [string, string];
      const sealed = await envseal([
        'seal',
        '--name',
        'db',
        '-n',
        'prod',
        '--from-literal',
        `PASSWORD=${CANARY}`,
        '-r',
        `aws-kms:${stays}`,
        '-r',
        `aws-kms:${leaves}`,
        '-w',
        'kms.yaml',
      ]);
      expect(sealed.code).toBe(0);
      const before = await manifest('kms.yaml');

      // No credentials: it cannot open the envelope, removes only the wrapping and says so.
      const blind = await envseal(['remove-recipient', '-f', 'kms.yaml', '-w', 'blind.yaml', '-r', `aws-kms:${leaves}`], {
        AWS_ACCESS_KEY_ID: '',
        AWS_SECRET_ACCESS_KEY: '',
      });
      expect(blind.code, blind.stderr).toBe(0);
      expect(blind.stderr).toMatch(/^warning: envelope #0 \("PASSWORD"\) was not re-keyed \(access denied\): only the wrapping was removed/m);
      expect((await manifest('blind.yaml')).spec.envelopes[0]!.recipients).toEqual([before.spec.envelopes[0]!.recipients[0]]);
      // An unreachable KMS is not "cannot open": nothing is written.
      const down = await envseal(['remove-recipient', '-f', 'kms.yaml', '-w', 'down.yaml', '-r', `aws-kms:${leaves}`], {
        AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:9',
        AWS_MAX_ATTEMPTS: '1',
      });
      expect(down.code).toBe(4);
      expect(down.stderr).toMatch(/could not be reached \(ECONNREFUSED\); nothing written: retry, or pass --no-rekey/);
      await expect(readFile(path.join(dir, 'down.yaml'))).rejects.toThrow(/ENOENT/);

      const removed = await envseal(['remove-recipient', '-f', 'kms.yaml', '--in-place', '-r', `aws-kms:${leaves}`]);
      expect(removed.stderr).toMatch(/re-keyed 1 envelope/);
      expect(removed.code).toBe(0);
      const after = await manifest('kms.yaml');
      expect(after.spec.envelopes[0]!.recipients.map((r) => r.keyId)).toEqual([stays]);
      expect(after.spec.envelopes[0]!.recipients[0]!.encryptedKey).not.toBe(before.spec.envelopes[0]!.recipients[0]!.encryptedKey);
      expect(after.spec.envelopes[0]!.id).not.toBe(before.spec.envelopes[0]!.id);
      // The leaver's key still unwraps the old data key from history; it opens nothing of the new envelope.
      const leaverOnly = {
        ...before,
        spec: { ...before.spec, envelopes: [{ ...before.spec.envelopes[0]!, recipients: [before.spec.envelopes[0]!.recipients[1]!] }] },
      };
      await expectRekeyed(leaverOnly, after, kms(), kms());
      expect((await envseal(['unseal', '-f', 'kms.yaml', '--key', 'PASSWORD'])).stdout).toBe(CANARY);
    });
  });
});
