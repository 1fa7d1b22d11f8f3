// The aws-kms provider against two independent KMS implementations: local-kms (Go)
// and moto's server (Python), each started on a free 127.0.0.1 port by
// test/harness/kms-emulators.ts. One suite, run on both; a test that only one
// emulator can run says why (see docs/kms-emulators.md for the full table).
import { randomBytes, randomUUID } from 'node:crypto';
import { inspect } from 'node:util';

import { DisableKeyCommand, EnableKeyCommand, KMSClient, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Recipient } from '../../src/api/types.ts';
import { kmsEncryptionContext } from '../../src/envelope/context.ts';
import { type AwsKmsProvider, createAwsKmsProvider, type KmsCallError } from '../../src/providers/aws-kms/index.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { KMS_EMULATORS, type KmsEmulator, type KmsEmulatorName } from '../harness/kms-emulators.ts';
import { awsKmsOptions, providerFailure } from '../harness/provider-setup.ts';

// A behaviour one emulator does not implement is tested on the other only: it is not
// registered (rather than reported as skipped) where it cannot apply. docs/kms-emulators.md
// lists what each emulator lacks.
const noTest = (_name: string, _fn: () => Promise<void>): void => {};
const noSuite = (_name: string, _fn: () => void): void => {};

interface Capabilities {
  /** Refuses crypto on disabled / pending-deletion keys (moto 5.2.5 does not check the key state). */
  enforcesKeyState: boolean;
  /** Keeps keys per region (local-kms serves exactly one region, KMS_REGION, whatever the request says). */
  multiRegion: boolean;
}

const CAPABILITIES: Record<KmsEmulatorName, Capabilities> = {
  'local-kms': { enforcesKeyState: true, multiRegion: false },
  moto: { enforcesKeyState: false, multiRegion: true },
};

const STRICT = kmsEncryptionContext({ scope: 'strict', namespace: 'prod', name: 'db' });
const OTHER_NAME = kmsEncryptionContext({ scope: 'strict', namespace: 'prod', name: 'api' });
const OTHER_NAMESPACE = kmsEncryptionContext({ scope: 'strict', namespace: 'staging', name: 'db' });
const NAMESPACE_SCOPE = kmsEncryptionContext({ scope: 'namespace', namespace: 'prod', name: 'db' });
const CLUSTER_SCOPE = kmsEncryptionContext({ scope: 'cluster', namespace: 'prod', name: 'db' });
// Scope namespaces: one wrapping per listed namespace, each under the context naming it.
const LISTED = { scope: 'namespaces', name: 'db', namespaces: ['team-a', 'team-b'] } as const;
const FOR_TEAM_A = kmsEncryptionContext({ ...LISTED, namespace: 'team-a', namespaces: [...LISTED.namespaces] });
const FOR_TEAM_B = kmsEncryptionContext({ ...LISTED, namespace: 'team-b', namespaces: [...LISTED.namespaces] });

function aliasName(): string {
  return `alias/envseal-test/${randomUUID().slice(0, 8)}`;
}

function flipLastByte(encryptedKey: string): string {
  const bytes = Buffer.from(encryptedKey, 'base64');
  bytes[bytes.length - 1]! ^= 0x01;
  return bytes.toString('base64');
}

describe.each(KMS_EMULATORS)('aws-kms provider against $name', ({ name, start }) => {
  const caps = CAPABILITIES[name];
  let emulator: KmsEmulator;
  let kms: AwsKmsProvider;
  let admin: KMSClient;
  let keyA: { keyArn: string; alias: string; aliasArn: string };
  let keyB: { keyArn: string; alias: string; aliasArn: string };

  function provider(overrides: { region?: string; maxAttempts?: number; requestTimeoutMs?: number; endpoint?: string } = {}): AwsKmsProvider {
    return createAwsKmsProvider(awsKmsOptions(emulator, { maxAttempts: 2, ...overrides }));
  }

  function unknownKeyArn(): string {
    return `arn:aws:kms:${emulator.region}:${emulator.accountId}:key/${randomUUID()}`;
  }

  beforeAll(async () => {
    emulator = await start();
    kms = provider();
    admin = new KMSClient({ region: emulator.region, endpoint: emulator.endpoint, credentials: emulator.credentials, maxAttempts: 1 });
    keyA = await kms.createKey({ alias: aliasName(), description: 'envseal test key A' });
    keyB = await kms.createKey({ alias: aliasName(), description: 'envseal test key B' });
  });

  afterAll(async () => {
    kms?.close();
    admin?.destroy();
    await emulator?.stop();
  });

  describe('createKey', () => {
    it('creates a CMK and its alias, and returns full ARNs', async () => {
      const alias = aliasName();
      const created = await kms.createKey({ alias });
      expect(created.alias).toBe(alias);
      expect(created.keyArn).toMatch(new RegExp(`^arn:aws:kms:${emulator.region}:${emulator.accountId}:key/[0-9a-f-]{36}$`));
      expect(created.aliasArn).toBe(`arn:aws:kms:${emulator.region}:${emulator.accountId}:${alias}`);
      // The alias now names the key.
      const { recipient } = await kms.generateDataKey({ target: alias, encryptionContext: STRICT });
      expect(recipient.keyId).toBe(created.keyArn);
    });

    it('accepts an alias ARN (which names the region)', async () => {
      const alias = aliasName();
      const created = await kms.createKey({ alias: `arn:aws:kms:${emulator.region}:${emulator.accountId}:${alias}` });
      expect(created.alias).toBe(alias);
    });

    it('refuses an alias that exists, and schedules the orphan key for deletion', async () => {
      const error = await providerFailure(kms.createKey({ alias: keyA.alias }));
      expect(error.serviceCode).toBe('AlreadyExistsException');
      expect(error.message).toContain('CreateAlias');
      expect(error.message).toMatch(/the new key arn:aws:kms:\S+ was scheduled for deletion/);
    });

    it('refuses targets that are not aliases, and the reserved alias/aws/ prefix', async () => {
      expect((await providerFailure(kms.createKey({ alias: keyA.keyArn }))).code).toBe('InvalidRecipient');
      expect((await providerFailure(kms.createKey({ alias: 'alias/aws/s3' }))).code).toBe('InvalidRecipient');
      expect((await providerFailure(kms.createKey({ alias: 'envseal' }))).code).toBe('InvalidRecipient');
    });
  });

  describe('data keys', () => {
    it('GenerateDataKey then unwrap returns the same 32 bytes', async () => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      expect(dataKey).toBeInstanceOf(Uint8Array);
      expect(dataKey.byteLength).toBe(32);
      expect(recipient).toEqual({ provider: 'aws-kms', keyId: keyA.keyArn, encryptedKey: expect.any(String) });
      const unwrapped = await kms.unwrap({ recipient, encryptionContext: STRICT });
      expect(Buffer.from(unwrapped).equals(Buffer.from(dataKey))).toBe(true);
      // Two data keys are different.
      const second = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      expect(Buffer.from(second.dataKey).equals(Buffer.from(dataKey))).toBe(false);
    });

    it.each([
      ['namespace', NAMESPACE_SCOPE],
      ['cluster', CLUSTER_SCOPE],
    ])('round-trips with %s scope context', async (_scope, context) => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: context });
      expect(Buffer.from(await kms.unwrap({ recipient, encryptionContext: context })).equals(Buffer.from(dataKey))).toBe(true);
    });

    it('wrap (Encrypt) of a given data key, then unwrap', async () => {
      const dataKey = randomBytes(32);
      const recipient = await kms.wrap({ target: keyB.keyArn, dataKey: new Uint8Array(dataKey), encryptionContext: STRICT });
      expect(recipient.provider).toBe('aws-kms');
      expect(recipient.keyId).toBe(keyB.keyArn);
      const unwrapped = await kms.unwrap({ recipient, encryptionContext: STRICT });
      expect(Buffer.from(unwrapped).equals(dataKey)).toBe(true);
    });

    it('wrap refuses a data key that is not 32 bytes, without calling the KMS', async () => {
      const error = await providerFailure(kms.wrap({ target: keyA.keyArn, dataKey: new Uint8Array(16), encryptionContext: STRICT }));
      expect(error.code).toBe('Internal');
    });

    it.each([
      ['alias name', () => keyA.alias],
      ['alias ARN', () => keyA.aliasArn],
      ['bare key id', () => keyA.keyArn.slice(keyA.keyArn.indexOf(':key/') + 5)],
    ])('resolves a target given as %s to the full key ARN in the recipient', async (_form, target) => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: target(), encryptionContext: STRICT });
      expect(recipient.keyId).toBe(keyA.keyArn);
      const wrapped = await kms.wrap({ target: target(), dataKey, encryptionContext: STRICT });
      expect(wrapped.keyId).toBe(keyA.keyArn);
      expect(Buffer.from(await kms.unwrap({ recipient: wrapped, encryptionContext: STRICT })).equals(Buffer.from(dataKey))).toBe(true);
    });

    it('takes the region from the key ARN, not from options.region', async () => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const elsewhere = provider({ region: 'ap-northeast-3' });
      try {
        expect(Buffer.from(await elsewhere.unwrap({ recipient, encryptionContext: STRICT })).equals(Buffer.from(dataKey))).toBe(true);
      } finally {
        elsewhere.close();
      }
    });

    (caps.multiRegion ? it : noTest)('uses options.region for a bare alias (moto only: local-kms has one region)', async () => {
      const elsewhere = provider({ region: 'ap-northeast-3' });
      try {
        const error = await providerFailure(elsewhere.generateDataKey({ target: keyA.alias, encryptionContext: STRICT }));
        expect(error.code).toBe('KeyNotFound');
      } finally {
        elsewhere.close();
      }
    });
  });

  describe('encryption context', () => {
    it.each([
      ['another name', OTHER_NAME],
      ['another namespace', OTHER_NAMESPACE],
      ['another scope', NAMESPACE_SCOPE],
      ['no context', {}],
    ])('unwrap with %s fails with InvalidCiphertext', async (_what, context) => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(kms.unwrap({ recipient, encryptionContext: context }));
      expect(error.code).toBe('InvalidCiphertext');
      expect(error.serviceCode).toBe('InvalidCiphertextException');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('sealed for another namespace/name/scope (encryption context), or it is corrupt');
      expect(error.message).toContain(keyA.keyArn);
    });

    it("scope namespaces: the KMS opens team-a's wrapping only under team-a's context, not team-b's or another list's", async () => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: FOR_TEAM_A });
      expect(Buffer.from(await kms.unwrap({ recipient, encryptionContext: FOR_TEAM_A })).equals(Buffer.from(dataKey))).toBe(true);
      const otherNamespace = await providerFailure(kms.unwrap({ recipient, encryptionContext: FOR_TEAM_B }));
      expect(otherNamespace.code).toBe('InvalidCiphertext');
      expect(otherNamespace.serviceCode).toBe('InvalidCiphertextException');
      const otherList = await providerFailure(kms.unwrap({ recipient, encryptionContext: { ...FOR_TEAM_A, 'envseal.dev/namespaces': 'team-a,team-c' } }));
      expect(otherList.code).toBe('InvalidCiphertext');
    });

    it('a wrapped key is bound to its context too', async () => {
      const recipient = await kms.wrap({ target: keyA.keyArn, dataKey: new Uint8Array(randomBytes(32)), encryptionContext: STRICT });
      expect((await providerFailure(kms.unwrap({ recipient, encryptionContext: OTHER_NAMESPACE }))).code).toBe('InvalidCiphertext');
    });
  });

  describe('corrupt input', () => {
    it('a flipped bit in the blob fails with InvalidCiphertext', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(
        kms.unwrap({ recipient: { ...recipient, encryptedKey: flipLastByte(recipient.encryptedKey) }, encryptionContext: STRICT }),
      );
      expect(error.code).toBe('InvalidCiphertext');
    });

    it('a truncated or foreign blob fails with a typed, terminal error', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const truncated = Buffer.from(recipient.encryptedKey, 'base64').subarray(0, 20).toString('base64');
      for (const encryptedKey of [truncated, randomBytes(120).toString('base64')]) {
        const error = await providerFailure(kms.unwrap({ recipient: { ...recipient, encryptedKey }, encryptionContext: STRICT }));
        // InvalidCiphertext on both emulators; a blob that no longer names a key may
        // also be refused as AccessDenied by a KMS.
        expect(['InvalidCiphertext', 'AccessDenied']).toContain(error.code);
        expect(error.retryable).toBe(false);
      }
    });

    it('a blob that is not standard base64 fails before the KMS', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(
        kms.unwrap({ recipient: { ...recipient, encryptedKey: `${recipient.encryptedKey.replace(/=+$/, '')}%` }, encryptionContext: STRICT }),
      );
      expect(error.code).toBe('InvalidCiphertext');
    });

    it("a blob sealed under key A does not unwrap as key B's recipient", async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(kms.unwrap({ recipient: { ...recipient, keyId: keyB.keyArn }, encryptionContext: STRICT }));
      // Real KMS: IncorrectKeyException (AccessDenied). moto: AccessDeniedException.
      // local-kms decrypts with the given key, so its AES-GCM check fails: InvalidCiphertext.
      expect(error.code).toBe(name === 'local-kms' ? 'InvalidCiphertext' : 'AccessDenied');
    });
  });

  describe('rewrap (ReEncrypt)', () => {
    it('re-encrypts for a second key; unwrap via the second key gives the same data key', async () => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const second = await kms.rewrap({ from: recipient, target: keyB.alias, encryptionContext: STRICT });
      expect(second.provider).toBe('aws-kms');
      expect(second.keyId).toBe(keyB.keyArn);
      expect(second.encryptedKey).not.toBe(recipient.encryptedKey);
      const viaB = await kms.unwrap({ recipient: second, encryptionContext: STRICT });
      expect(Buffer.from(viaB).equals(Buffer.from(dataKey))).toBe(true);
      // The new recipient is bound to the same context.
      expect((await providerFailure(kms.unwrap({ recipient: second, encryptionContext: OTHER_NAME }))).code).toBe('InvalidCiphertext');
    });

    it('fails with InvalidCiphertext when the context does not match the source', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(kms.rewrap({ from: recipient, target: keyB.keyArn, encryptionContext: OTHER_NAMESPACE }));
      expect(error.code).toBe('InvalidCiphertext');
      expect(error.message).toContain('ReEncrypt');
    });

    it('fails with KeyNotFound for an unknown destination', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      expect((await providerFailure(kms.rewrap({ from: recipient, target: unknownKeyArn(), encryptionContext: STRICT }))).code).toBe('KeyNotFound');
    });

    (caps.multiRegion ? it : noTest)(
      'across regions: Decrypt in the source region, Encrypt in the destination (moto only: local-kms has one region)',
      async () => {
        const otherRegion = 'us-west-2';
        const remote = provider({ region: otherRegion });
        try {
          const keyC = await remote.createKey({ alias: aliasName() });
          expect(keyC.keyArn).toContain(`:kms:${otherRegion}:`);
          const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
          // A plain ReEncrypt would fail: the KMS in one region cannot use the other's key.
          const moved = await kms.rewrap({ from: recipient, target: keyC.keyArn, encryptionContext: STRICT });
          expect(moved.keyId).toBe(keyC.keyArn);
          expect(Buffer.from(await kms.unwrap({ recipient: moved, encryptionContext: STRICT })).equals(Buffer.from(dataKey))).toBe(true);
        } finally {
          remote.close();
        }
      },
    );
  });

  (caps.enforcesKeyState ? describe : noSuite)('key state', () => {
    // moto 5.2.5 records DisableKey / ScheduleKeyDeletion but still encrypts and
    // decrypts with such keys, so these run on local-kms only.
    (caps.enforcesKeyState ? it : noTest)('a disabled key -> KeyUnavailable (local-kms only)', async () => {
      const key = await kms.createKey({ alias: aliasName() });
      const { recipient } = await kms.generateDataKey({ target: key.keyArn, encryptionContext: STRICT });
      await admin.send(new DisableKeyCommand({ KeyId: key.keyArn }));
      try {
        const generate = await providerFailure(kms.generateDataKey({ target: key.keyArn, encryptionContext: STRICT }));
        expect(generate.code).toBe('KeyUnavailable');
        expect(generate.serviceCode).toBe('DisabledException');
        expect(generate.message).toContain('disabled');
        const wrap = await providerFailure(kms.wrap({ target: key.alias, dataKey: new Uint8Array(32), encryptionContext: STRICT }));
        expect(wrap.code).toBe('KeyUnavailable');
        const unwrap = await providerFailure(kms.unwrap({ recipient, encryptionContext: STRICT }));
        expect(unwrap.code).toBe('KeyUnavailable');
        expect(unwrap.serviceCode).toBe('DisabledException');
        const rewrap = await providerFailure(kms.rewrap({ from: recipient, target: keyA.keyArn, encryptionContext: STRICT }));
        expect(rewrap.code).toBe('KeyUnavailable');
      } finally {
        await admin.send(new EnableKeyCommand({ KeyId: key.keyArn }));
      }
      // Enabled again, it works again.
      expect((await kms.unwrap({ recipient, encryptionContext: STRICT })).byteLength).toBe(32);
    });

    (caps.enforcesKeyState ? it : noTest)('a key pending deletion -> KeyUnavailable (local-kms only)', async () => {
      const key = await kms.createKey({ alias: aliasName() });
      await admin.send(new ScheduleKeyDeletionCommand({ KeyId: key.keyArn, PendingWindowInDays: 7 }));
      const error = await providerFailure(kms.generateDataKey({ target: key.keyArn, encryptionContext: STRICT }));
      expect(error.code).toBe('KeyUnavailable');
      expect(error.serviceCode).toBe('KMSInvalidStateException');
    });
  });

  describe('unknown keys', () => {
    it('an unknown key ARN -> KeyNotFound', async () => {
      const arn = unknownKeyArn();
      const generate = await providerFailure(kms.generateDataKey({ target: arn, encryptionContext: STRICT }));
      expect(generate.code).toBe('KeyNotFound');
      expect(generate.serviceCode).toBe('NotFoundException');
      expect(generate.message).toContain(arn);
      expect((await providerFailure(kms.wrap({ target: arn, dataKey: new Uint8Array(32), encryptionContext: STRICT }))).code).toBe('KeyNotFound');
    });

    it('an unknown alias -> KeyNotFound', async () => {
      const error = await providerFailure(kms.generateDataKey({ target: aliasName(), encryptionContext: STRICT }));
      expect(error.code).toBe('KeyNotFound');
    });

    it('unwrap for an unknown key fails with a typed error', async () => {
      const { recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const error = await providerFailure(kms.unwrap({ recipient: { ...recipient, keyId: unknownKeyArn() }, encryptionContext: STRICT }));
      expect(error.code).toBe('KeyNotFound');
      expect(error.serviceCode).toBe('NotFoundException');
    });
  });

  describe('targets', () => {
    it('parseTarget refuses what is not a key or alias, before any call', async () => {
      for (const target of ['', 'my-key', 'alias/', 'arn:aws:iam::111122223333:role/x', 'arn:aws:kms:eu-west-1:111122223333:key/nope']) {
        expect(() => kms.parseTarget(target)).toThrow(ProviderError);
        expect((await providerFailure(kms.generateDataKey({ target, encryptionContext: STRICT }))).code).toBe('InvalidRecipient');
        expect((await providerFailure(kms.wrap({ target, dataKey: new Uint8Array(32), encryptionContext: STRICT }))).code).toBe('InvalidRecipient');
      }
    });
  });

  describe('availability and cancellation', () => {
    it('a stopped emulator -> Unavailable, quickly', async () => {
      const own = await start();
      const client = createAwsKmsProvider({ region: own.region, endpoint: own.endpoint, credentials: own.credentials, maxAttempts: 2 });
      try {
        const key = await client.createKey({ alias: aliasName() });
        const { recipient } = await client.generateDataKey({ target: key.keyArn, encryptionContext: STRICT });
        await own.stop();
        const started = Date.now();
        const error = await providerFailure(client.unwrap({ recipient, encryptionContext: STRICT }));
        expect(error.code).toBe('Unavailable');
        expect(error.retryable).toBe(true);
        expect(error.serviceCode).toBe('ECONNREFUSED');
        expect(error.message).toContain(own.endpoint);
        expect((error.cause as KmsCallError).attempts ?? 2).toBe(2);
        expect(Date.now() - started).toBeLessThan(5_000);
      } finally {
        client.close();
        await own.stop();
      }
    });

    it('a hung emulator -> Unavailable after the request timeout', async () => {
      const own = await start();
      const setup = createAwsKmsProvider({ region: own.region, endpoint: own.endpoint, credentials: own.credentials, maxAttempts: 2 });
      const client = createAwsKmsProvider({ region: own.region, endpoint: own.endpoint, credentials: own.credentials, maxAttempts: 1, requestTimeoutMs: 300 });
      try {
        // The first requests can be slow (moto imports its KMS backend on first use).
        const key = await setup.createKey({ alias: aliasName() });
        await setup.generateDataKey({ target: key.keyArn, encryptionContext: STRICT });
        process.kill(own.pid, 'SIGSTOP');
        const started = Date.now();
        const error = await providerFailure(client.generateDataKey({ target: key.keyArn, encryptionContext: STRICT }));
        expect(error.code).toBe('Unavailable');
        expect(error.retryable).toBe(true);
        expect(error.message).toContain('did not answer in time');
        expect(Date.now() - started).toBeLessThan(3_000);
      } finally {
        process.kill(own.pid, 'SIGCONT');
        setup.close();
        client.close();
        await own.stop();
      }
    });

    it('an abort in flight rejects with the signal reason', async () => {
      const own = await start();
      const client = createAwsKmsProvider({ region: own.region, endpoint: own.endpoint, credentials: own.credentials, maxAttempts: 2 });
      try {
        const key = await client.createKey({ alias: aliasName() });
        const { recipient } = await client.generateDataKey({ target: key.keyArn, encryptionContext: STRICT });
        // Frozen, the emulator accepts the connection but never answers: the call is in flight.
        process.kill(own.pid, 'SIGSTOP');
        const controller = new AbortController();
        const reason = new Error('shutting down');
        const started = Date.now();
        const pending = client.unwrap({ recipient, encryptionContext: STRICT, signal: controller.signal });
        setTimeout(() => controller.abort(reason), 200);
        await expect(pending).rejects.toBe(reason);
        expect(Date.now() - started).toBeLessThan(3_000);
      } finally {
        process.kill(own.pid, 'SIGCONT');
        client.close();
        await own.stop();
      }
    });

    it('an already aborted signal rejects without calling the KMS', async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT, signal: controller.signal })).rejects.toMatchObject({
        name: 'AbortError',
      });
      await expect(kms.wrap({ target: keyA.keyArn, dataKey: new Uint8Array(32), encryptionContext: STRICT, signal: controller.signal })).rejects.toMatchObject({
        name: 'AbortError',
      });
      await expect(kms.createKey({ alias: aliasName(), signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    });
  });

  describe('canary: no data key in errors', () => {
    it('messages, stacks and serialized errors of failing calls never hold the data key or the blob', async () => {
      const { dataKey, recipient } = await kms.generateDataKey({ target: keyA.keyArn, encryptionContext: STRICT });
      const dek = Buffer.from(dataKey);
      const blob = Buffer.from(recipient.encryptedKey, 'base64');
      const forbidden = [
        dek.toString('base64'),
        dek.toString('base64url'),
        dek.toString('hex'),
        dek.toString('hex').toUpperCase(),
        recipient.encryptedKey,
        blob.toString('hex'),
        // Any 12-byte window of the key, in base64 (16 characters), catches partial leaks.
        dek.subarray(0, 12).toString('base64'),
        dek.subarray(12, 24).toString('base64'),
        dek.subarray(20, 32).toString('base64'),
      ];
      const fresh = (): Uint8Array => new Uint8Array(dek);
      const errors: unknown[] = [];
      const collect = async (promise: Promise<unknown>): Promise<void> => {
        try {
          await promise;
          errors.push(new Error('unexpectedly succeeded'));
        } catch (error) {
          errors.push(error);
        }
      };
      const corrupt: Recipient = { ...recipient, encryptedKey: flipLastByte(recipient.encryptedKey) };
      await collect(kms.wrap({ target: unknownKeyArn(), dataKey: fresh(), encryptionContext: STRICT }));
      await collect(kms.wrap({ target: aliasName(), dataKey: fresh(), encryptionContext: STRICT }));
      await collect(kms.wrap({ target: 'not a target', dataKey: fresh(), encryptionContext: STRICT }));
      await collect(kms.wrap({ target: keyA.keyArn, dataKey: fresh().subarray(0, 31), encryptionContext: STRICT }));
      await collect(kms.unwrap({ recipient, encryptionContext: OTHER_NAME }));
      await collect(kms.unwrap({ recipient: corrupt, encryptionContext: STRICT }));
      await collect(kms.unwrap({ recipient: { ...recipient, keyId: keyB.keyArn }, encryptionContext: STRICT }));
      await collect(kms.rewrap({ from: recipient, target: keyB.keyArn, encryptionContext: OTHER_NAMESPACE }));
      await collect(kms.rewrap({ from: corrupt, target: keyB.keyArn, encryptionContext: STRICT }));
      const stopped = provider({ endpoint: 'http://127.0.0.1:9', maxAttempts: 1 });
      await collect(stopped.wrap({ target: keyA.keyArn, dataKey: fresh(), encryptionContext: STRICT }));
      await collect(stopped.unwrap({ recipient, encryptionContext: STRICT }));
      stopped.close();
      if (caps.enforcesKeyState) {
        const key = await kms.createKey({ alias: aliasName() });
        await admin.send(new DisableKeyCommand({ KeyId: key.keyArn }));
        await collect(kms.wrap({ target: key.keyArn, dataKey: fresh(), encryptionContext: STRICT }));
      }

      expect(errors.length).toBeGreaterThanOrEqual(11);
      for (const error of errors) {
        expect(error).toBeInstanceOf(ProviderError);
        const e = error as ProviderError;
        const texts = [
          e.message,
          String(e),
          e.stack ?? '',
          JSON.stringify(e),
          JSON.stringify({
            ...e,
            message: e.message,
            cause: e.cause === undefined ? undefined : { ...(e.cause as object), message: (e.cause as Error).message, stack: (e.cause as Error).stack },
          }),
          inspect(e, { depth: 10, showHidden: true }),
        ];
        for (const text of texts) {
          for (const form of forbidden) expect(text, `${e.code}: ${e.message}`).not.toContain(form);
        }
      }
    });
  });
});
