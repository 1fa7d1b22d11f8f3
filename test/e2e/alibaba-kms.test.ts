// The alibaba-kms provider, through the official SDK, against our Alibaba Cloud KMS
// emulator (test/harness/alibaba-kms-emulator.ts) over HTTP on 127.0.0.1. No emulator of
// the service exists elsewhere: this is tested against ours, not against Alibaba Cloud
// (docs/kms-emulators.md says what the emulator checks and what it does not).
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { kmsEncryptionContext } from '../../src/envelope/context.ts';
import {
  type AlibabaKmsProvider,
  type AlibabaKmsProviderOptions,
  alibabaKmsProvider as alibabaKms,
  createAlibabaKmsProvider,
} from '../../src/providers/alibaba-kms/index.ts';
import { ProviderError, type Recipient } from '../../src/providers/types.ts';
import { rpcSignature } from '../harness/alibaba-kms-emulator.ts';
import { type AlibabaKms, startAlibabaKms } from '../harness/alibaba-kms.ts';
import { uniqueName } from '../harness/cluster.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, kubectl, kubectlOk } from '../harness/kube.ts';
import { alibabaKmsOptions, providerFailure, startAlibabaKmsForRrsa } from '../harness/provider-setup.ts';

const STRICT = kmsEncryptionContext({ scope: 'strict', namespace: 'prod', name: 'db' });
const OTHER_NAME = kmsEncryptionContext({ scope: 'strict', namespace: 'prod', name: 'api' });
const OTHER_NAMESPACE = kmsEncryptionContext({ scope: 'strict', namespace: 'staging', name: 'db' });
const NAMESPACE_SCOPE = kmsEncryptionContext({ scope: 'namespace', namespace: 'prod', name: 'db' });
// Scope namespaces: one wrapping per listed namespace, each under the context naming it.
const FOR_TEAM_A = kmsEncryptionContext({ scope: 'namespaces', namespace: 'team-a', name: 'db', namespaces: ['team-a', 'team-b'] });
const FOR_TEAM_B = kmsEncryptionContext({ scope: 'namespaces', namespace: 'team-b', name: 'db', namespaces: ['team-a', 'team-b'] });

function flipByte(encryptedKey: string, from: 'start' | 'end'): string {
  const bytes = Buffer.from(encryptedKey, 'base64');
  bytes[from === 'end' ? bytes.length - 1 : 80]! ^= 0x01;
  return bytes.toString('base64');
}

function alias(): string {
  return `alias/envseal-test/${randomUUID().slice(0, 8)}`;
}

describe('Alibaba Cloud KMS emulator (the checks the provider is tested against)', () => {
  let kms: AlibabaKms;
  beforeAll(async () => {
    kms = await startAlibabaKms();
  });
  afterAll(async () => {
    await kms?.stop();
  });

  function signed(params: Record<string, string>, secret = kms.accessKeySecret): Record<string, string> {
    const all: Record<string, string> = {
      Action: 'DescribeKey',
      Version: '2016-01-20',
      Format: 'JSON',
      AccessKeyId: kms.accessKeyId,
      SignatureMethod: 'HMAC-SHA1',
      SignatureVersion: '1.0',
      SignatureNonce: randomUUID(),
      Timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...params,
    };
    return { ...all, Signature: rpcSignature(all, 'POST', secret) };
  }

  async function post(params: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${kms.endpoint}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  it("signs as Alibaba Cloud's documented RPC signature example does", () => {
    // The worked example of Alibaba Cloud's RPC signature documentation (ECS DescribeRegions).
    const params = {
      AccessKeyId: 'testid',
      Action: 'DescribeRegions',
      Format: 'XML',
      SignatureMethod: 'HMAC-SHA1',
      SignatureNonce: '3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf',
      SignatureVersion: '1.0',
      Timestamp: '2016-02-23T12:46:24Z',
      Version: '2014-05-26',
    };
    expect(rpcSignature(params, 'GET', 'testsecret')).toBe('OLeaidS1JvxuMvnyHOwuJ+uX5qY=');
  });

  it('answers a correctly signed call, and refuses a wrong secret, an unknown AccessKey, a reused nonce and an old time stamp with the documented codes', async () => {
    const keyId = await kms.createKey();
    const ok = await post(signed({ KeyId: keyId }));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ KeyMetadata: { KeyId: keyId, KeyState: 'Enabled' } });

    const wrongSecret = await post(signed({ KeyId: keyId }, 'not-the-secret'));
    expect(wrongSecret.status).toBe(400);
    expect(Object.keys(wrongSecret.body).sort()).toEqual(['Code', 'HostId', 'Message', 'Recommend', 'RequestId']);
    expect(wrongSecret.body.Code).toBe('SignatureDoesNotMatch');

    const unknown = await post(signed({ KeyId: keyId, AccessKeyId: 'LTAIunknown' }));
    expect([unknown.status, unknown.body.Code]).toEqual([404, 'InvalidAccessKeyId.NotFound']);

    const once = signed({ KeyId: keyId });
    expect((await post(once)).status).toBe(200);
    const replay = await post(once);
    expect([replay.status, replay.body.Code]).toEqual([400, 'SignatureNonceUsed']);

    const old = await post(signed({ KeyId: keyId, Timestamp: new Date(Date.now() - 20 * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z') }));
    expect([old.status, old.body.Code]).toEqual([400, 'InvalidTimeStamp.Expired']);

    const tampered = signed({ KeyId: keyId });
    const other = await kms.createKey();
    const moved = await post({ ...tampered, KeyId: other });
    expect(moved.body.Code).toBe('SignatureDoesNotMatch');
  });

  it('binds the context: another context, a flattened context and a tampered blob are refused; the blob does not hold the plaintext', async () => {
    const keyId = await kms.createKey();
    const context = JSON.stringify({ namespace: 'prod', name: 'db' });
    const generated = await post(signed({ Action: 'GenerateDataKey', KeyId: keyId, NumberOfBytes: '32', EncryptionContext: context }));
    expect(generated.status).toBe(200);
    const plaintext = generated.body.Plaintext as string;
    const blob = generated.body.CiphertextBlob as string;
    const blobBytes = Buffer.from(blob, 'base64');
    expect(blobBytes.includes(Buffer.from(plaintext, 'base64'))).toBe(false);
    expect(blobBytes.includes(Buffer.from(plaintext, 'utf8'))).toBe(false);

    const reordered = await post(signed({ Action: 'Decrypt', CiphertextBlob: blob, EncryptionContext: JSON.stringify({ name: 'db', namespace: 'prod' }) }));
    expect(reordered.body).toMatchObject({ Plaintext: plaintext, KeyId: keyId });
    const otherContext = await post(
      signed({ Action: 'Decrypt', CiphertextBlob: blob, EncryptionContext: JSON.stringify({ namespace: 'staging', name: 'db' }) }),
    );
    expect([otherContext.status, otherContext.body.Code]).toEqual([400, 'InvalidParameter']);
    const none = await post(signed({ Action: 'Decrypt', CiphertextBlob: blob }));
    expect(none.body.Code).toBe('InvalidParameter');
    const flattened = await post(signed({ Action: 'Decrypt', CiphertextBlob: blob, 'EncryptionContext.namespace': 'prod', 'EncryptionContext.name': 'db' }));
    expect(flattened.body.Code).toBe('InvalidParameter');
    const tampered = await post(signed({ Action: 'Decrypt', CiphertextBlob: flipByte(blob, 'end'), EncryptionContext: context }));
    expect(tampered.body.Code).toBe('InvalidParameter');
  });

  it('applies the documented key states: Rejected.Disabled, Rejected.PendingDeletion, Rejected.StateModifiedFailed', async () => {
    const keyId = await kms.createKey();
    await kms.api('DisableKey', { KeyId: keyId });
    const disabled = await post(signed({ Action: 'Encrypt', KeyId: keyId, Plaintext: 'aGVsbG8=' }));
    expect([disabled.status, disabled.body.Code]).toEqual([409, 'Rejected.Disabled']);
    await kms.api('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: '7' });
    const pending = await post(signed({ Action: 'Encrypt', KeyId: keyId, Plaintext: 'aGVsbG8=' }));
    expect([pending.status, pending.body.Code]).toEqual([409, 'Rejected.PendingDeletion']);
    const enable = await post(signed({ Action: 'EnableKey', KeyId: keyId }));
    expect([enable.status, enable.body.Code]).toEqual([409, 'Rejected.StateModifiedFailed']);
    const missing = await post(signed({ Action: 'Encrypt', KeyId: randomUUID(), Plaintext: 'aGVsbG8=' }));
    expect([missing.status, missing.body.Code]).toEqual([404, 'Forbidden.KeyNotFound']);
  });
});

describe('alibaba-kms provider against the emulator', () => {
  let kms: AlibabaKms;
  let provider: AlibabaKmsProvider;
  let keyA: { arn: string; alias: string; id: string };
  let keyB: { arn: string; alias: string; id: string };

  function options(overrides: Partial<AlibabaKmsProviderOptions> = {}): AlibabaKmsProviderOptions {
    return alibabaKmsOptions(kms, { maxAttempts: 2, ...overrides });
  }

  async function newKey(): Promise<{ arn: string; alias: string; id: string }> {
    const name = alias();
    const created = await alibabaKms.createKey!({ options: options(), name });
    expect(created.target).toBe(name);
    return { arn: created.keyId, alias: name, id: created.keyId.split('/').at(-1)! };
  }

  beforeAll(async () => {
    kms = await startAlibabaKms();
    provider = await createAlibabaKmsProvider(options());
    keyA = await newKey();
    keyB = await newKey();
  });
  afterAll(async () => {
    await kms?.stop();
  });

  describe('both directions', () => {
    it('GenerateDataKey then Decrypt returns the same 32-byte key; the recipient names the key ARN', async () => {
      const { dataKey, recipient } = await provider.generateDataKey({ target: keyA.alias, encryptionContext: STRICT });
      expect(dataKey.byteLength).toBe(32);
      expect(recipient).toMatchObject({ provider: 'alibaba-kms', keyId: keyA.arn });
      expect(recipient.keyId).toMatch(new RegExp(`^acs:kms:${kms.region}:\\d+:key/`));
      expect(Buffer.from(recipient.encryptedKey, 'base64').includes(Buffer.from(dataKey))).toBe(false);
      const opened = await provider.unwrap({ recipient, encryptionContext: STRICT });
      expect(Buffer.from(opened).equals(Buffer.from(dataKey))).toBe(true);
    });

    it('Encrypt (wrap for another recipient) then Decrypt, by key id, alias and ARN', async () => {
      const dataKey = randomBytes(32);
      for (const target of [keyB.id, keyB.alias, keyB.arn, `acs:kms:${kms.region}:${keyB.arn.split(':')[3]}:${keyB.alias}`]) {
        const recipient = await provider.wrap({ target, dataKey: Uint8Array.from(dataKey), encryptionContext: NAMESPACE_SCOPE });
        expect(recipient.keyId).toBe(keyB.arn);
        expect(Buffer.from(await provider.unwrap({ recipient, encryptionContext: NAMESPACE_SCOPE })).equals(dataKey)).toBe(true);
      }
    });

    it('names the key by ARN for comparisons (canonicalTarget), from an alias or a key id', async () => {
      expect(await provider.canonicalTarget(keyA.alias)).toBe(keyA.arn);
      expect(await provider.canonicalTarget(keyA.id)).toBe(keyA.arn);
      expect(provider.targetOf({ provider: 'alibaba-kms', keyId: keyA.arn, encryptedKey: 'AAAA' })).toBe(keyA.arn);
    });

    it('a second provider (the controller: no region configured) opens it from the ARN alone', async () => {
      const { dataKey, recipient } = await provider.generateDataKey({ target: keyA.alias, encryptionContext: STRICT });
      const controller = await createAlibabaKmsProvider(options({ region: undefined }));
      expect(controller.canUnwrap(recipient)).toBe(true);
      expect(Buffer.from(await controller.unwrap({ recipient, encryptionContext: STRICT })).equals(Buffer.from(dataKey))).toBe(true);
    });
  });

  describe('tampering and the context', () => {
    let recipient: Recipient;
    beforeAll(async () => {
      recipient = (await provider.generateDataKey({ target: keyA.arn, encryptionContext: STRICT })).recipient;
    });

    it.each([
      ['another name', OTHER_NAME],
      ['another namespace', OTHER_NAMESPACE],
      ['another scope', NAMESPACE_SCOPE],
    ])('moved to %s: refused by the KMS as InvalidCiphertext bound to the context', async (_what, context) => {
      const error = await providerFailure(provider.unwrap({ recipient, encryptionContext: context }));
      expect(error.code).toBe('InvalidCiphertext');
      expect(error.contextBound).toBe(true);
      expect(error.message).toContain(keyA.arn);
      expect(error.message).toMatch(/another namespace\/name\/scope/);
    });

    it("scope namespaces: team-a's wrapping opens under team-a's context and is refused under team-b's", async () => {
      const generated = await provider.generateDataKey({ target: keyA.arn, encryptionContext: FOR_TEAM_A });
      expect(Buffer.from(await provider.unwrap({ recipient: generated.recipient, encryptionContext: FOR_TEAM_A })).equals(Buffer.from(generated.dataKey))).toBe(
        true,
      );
      const error = await providerFailure(provider.unwrap({ recipient: generated.recipient, encryptionContext: FOR_TEAM_B }));
      expect(error.code).toBe('InvalidCiphertext');
      expect(error.contextBound).toBe(true);
    });

    it('a flipped byte in the blob is InvalidCiphertext', async () => {
      const error = await providerFailure(
        provider.unwrap({ recipient: { ...recipient, encryptedKey: flipByte(recipient.encryptedKey, 'end') }, encryptionContext: STRICT }),
      );
      expect(error.code).toBe('InvalidCiphertext');
    });

    it("another key's blob under this recipient's keyId is refused, not opened", async () => {
      const other = (await provider.generateDataKey({ target: keyB.arn, encryptionContext: STRICT })).recipient;
      const error = await providerFailure(provider.unwrap({ recipient: { ...recipient, encryptedKey: other.encryptedKey }, encryptionContext: STRICT }));
      expect(error.code).toBe('InvalidCiphertext');
      expect(error.message).toMatch(/another KMS key/);
    });
  });

  describe('key states and missing keys', () => {
    it('a disabled key is KeyUnavailable for every operation, and works again once enabled', async () => {
      const key = await newKey();
      const { recipient } = await provider.generateDataKey({ target: key.arn, encryptionContext: STRICT });
      await kms.api('DisableKey', { KeyId: key.id });
      for (const call of [
        provider.unwrap({ recipient, encryptionContext: STRICT }),
        provider.wrap({ target: key.arn, dataKey: new Uint8Array(32), encryptionContext: STRICT }),
        provider.generateDataKey({ target: key.arn, encryptionContext: STRICT }),
      ]) {
        const error = await providerFailure(call);
        expect(error.code).toBe('KeyUnavailable');
        expect(error.serviceCode).toBe('Rejected.Disabled');
        expect(error.message).toMatch(/the KMS key is disabled/);
        expect(error.message).toMatch(/HTTP 409/);
      }
      await kms.api('EnableKey', { KeyId: key.id });
      expect((await provider.unwrap({ recipient, encryptionContext: STRICT })).byteLength).toBe(32);
    });

    it('a key pending deletion is KeyUnavailable (pending deletion)', async () => {
      const key = await newKey();
      const { recipient } = await provider.generateDataKey({ target: key.arn, encryptionContext: STRICT });
      await kms.api('ScheduleKeyDeletion', { KeyId: key.id, PendingWindowInDays: '7' });
      const error = await providerFailure(provider.unwrap({ recipient, encryptionContext: STRICT }));
      expect([error.code, error.serviceCode]).toEqual(['KeyUnavailable', 'Rejected.PendingDeletion']);
      expect(error.message).toMatch(/pending deletion/);
    });

    it('an unknown key or alias is KeyNotFound', async () => {
      for (const target of [randomUUID(), alias()]) {
        const error = await providerFailure(provider.wrap({ target, dataKey: new Uint8Array(32), encryptionContext: STRICT }));
        expect([error.code, error.serviceCode]).toEqual(['KeyNotFound', 'Forbidden.KeyNotFound']);
      }
    });
  });

  describe('credentials', () => {
    it('a wrong AccessKey secret is AccessDenied (the signature), an unknown AccessKey id too', async () => {
      const { recipient } = await provider.generateDataKey({ target: keyA.arn, encryptionContext: STRICT });
      const wrong = await createAlibabaKmsProvider(
        options({ credentials: { kind: 'access-key', accessKeyId: kms.accessKeyId, accessKeySecret: `${CANARY_MARKER}wrong-secret` } }),
      );
      const denied = await providerFailure(wrong.unwrap({ recipient, encryptionContext: STRICT }));
      expect([denied.code, denied.serviceCode]).toEqual(['AccessDenied', 'SignatureDoesNotMatch']);
      expect(denied.message).toMatch(/AccessKey secret/);
      expect(inspect(denied, { depth: 10, showHidden: true })).not.toContain(CANARY_MARKER);
      const unknown = await createAlibabaKmsProvider(
        options({ credentials: { kind: 'access-key', accessKeyId: 'LTAIunknown0000', accessKeySecret: kms.accessKeySecret } }),
      );
      const notFound = await providerFailure(unknown.unwrap({ recipient, encryptionContext: STRICT }));
      expect([notFound.code, notFound.serviceCode]).toEqual(['AccessDenied', 'InvalidAccessKeyId.NotFound']);
    });

    it('the CLI form: AccessKey and endpoint from the environment, region from the flag', async () => {
      const resolved = await alibabaKms.settings!.resolve({
        values: { 'alibaba-kms-region': kms.region },
        env: { ALIBABA_CLOUD_ACCESS_KEY_ID: kms.accessKeyId, ALIBABA_CLOUD_ACCESS_KEY_SECRET: kms.accessKeySecret, ALIBABA_CLOUD_KMS_ENDPOINT: kms.endpoint },
        role: 'cli',
        unwrap: true,
        readFile: () => Promise.reject(new Error('no files')),
        warn: () => {},
      });
      const fromEnv = await alibabaKms.create(resolved);
      const dataKey = randomBytes(32);
      const recipient = await fromEnv.wrap({ target: keyA.alias, dataKey: Uint8Array.from(dataKey), encryptionContext: STRICT });
      expect(Buffer.from(await fromEnv.unwrap({ recipient, encryptionContext: STRICT })).equals(dataKey)).toBe(true);
    });
  });

  describe('retries, time limits and cancelling', () => {
    it('throttling is retried with backoff and then succeeds', async () => {
      const patient = await createAlibabaKmsProvider(options({ maxAttempts: 4 }));
      const { recipient } = await patient.generateDataKey({ target: keyA.arn, encryptionContext: STRICT });
      const before = (await kms.calls())['Decrypt Throttling.User'] ?? 0;
      await kms.faults({ throttle: 2 });
      expect((await patient.unwrap({ recipient, encryptionContext: STRICT })).byteLength).toBe(32);
      expect((await kms.calls())['Decrypt Throttling.User']).toBe(before + 2);
    });

    it('throttling beyond the attempts is Throttled; a 503 is Unavailable; both retryable', async () => {
      const { recipient } = await provider.generateDataKey({ target: keyA.arn, encryptionContext: STRICT });
      await kms.faults({ throttle: 2 });
      const throttled = await providerFailure(provider.unwrap({ recipient, encryptionContext: STRICT }));
      expect([throttled.code, throttled.serviceCode, throttled.retryable]).toEqual(['Throttled', 'Throttling.User', true]);
      await kms.faults({ unavailable: 2 });
      const down = await providerFailure(provider.unwrap({ recipient, encryptionContext: STRICT }));
      expect([down.code, down.serviceCode, down.retryable]).toEqual(['Unavailable', 'ServiceUnavailableTemporary', true]);
      await kms.faults({});
    });

    it('an endpoint that accepts but never answers is Unavailable within the time limit', async () => {
      const silent: Server = createServer(() => {});
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const port = (silent.address() as { port: number }).port;
        const slow = await createAlibabaKmsProvider(options({ endpoint: `http://127.0.0.1:${port}`, requestTimeoutMs: 300, maxAttempts: 2 }));
        const started = Date.now();
        const error = await providerFailure(
          slow.unwrap({
            recipient: { provider: 'alibaba-kms', keyId: keyA.arn, encryptedKey: randomBytes(100).toString('base64') },
            encryptionContext: STRICT,
          }),
        );
        expect(error.code).toBe('Unavailable');
        expect(error.message).toMatch(/did not answer in time/);
        expect(Date.now() - started).toBeLessThan(10_000);
      } finally {
        silent.close();
      }
    });

    it('an aborted signal rejects with its reason', async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(provider.generateDataKey({ target: keyA.arn, encryptionContext: STRICT, signal: controller.signal })).rejects.toMatchObject({
        name: 'AbortError',
      });
      await expect(
        provider.unwrap({
          recipient: { provider: 'alibaba-kms', keyId: keyA.arn, encryptedKey: randomBytes(100).toString('base64') },
          encryptionContext: STRICT,
          signal: controller.signal,
        }),
      ).rejects.toMatchObject({ name: 'AbortError' });
    });
  });

  describe('keys create', () => {
    it('creates a key with its alias, usable at once', async () => {
      const name = `envseal-${randomUUID().slice(0, 8)}`;
      const created = await alibabaKms.createKey!({ options: options(), name, description: 'e2e' });
      expect(created.target).toBe(`alias/${name}`);
      expect(created.keyId).toMatch(/^acs:kms:cn-hangzhou:\d+:key\//);
      expect(created.summary).toContain(`alias/${name}`);
      expect(await provider.canonicalTarget(created.target)).toBe(created.keyId);
    });

    it('an alias that exists already fails, and the new key is scheduled for deletion', async () => {
      const error = await providerFailure(alibabaKms.createKey!({ options: options(), name: keyA.alias }));
      expect(error.serviceCode).toBe('Forbidden.AliasExists');
      expect(error.message).toMatch(/scheduled for deletion in 7 days/);
      const orphan = /(acs:kms:[^ ]+:key\/[0-9a-f-]{36})/.exec(error.message)![1]!;
      const described = await kms.api<{ KeyMetadata: { KeyState: string } }>('DescribeKey', { KeyId: orphan.split('/').at(-1)! });
      expect(described.KeyMetadata.KeyState).toBe('PendingDeletion');
      // The alias still names the first key.
      expect(await provider.canonicalTarget(keyA.alias)).toBe(keyA.arn);
    });
  });

  describe('canary: no data key, blob or secret in errors', () => {
    it('messages, stacks and serialized errors of failing calls hold none of them', async () => {
      const { dataKey, recipient } = await provider.generateDataKey({ target: keyA.arn, encryptionContext: STRICT });
      const dek = Buffer.from(dataKey);
      const forbidden = [
        dek.toString('base64'),
        dek.toString('hex'),
        recipient.encryptedKey,
        Buffer.from(recipient.encryptedKey, 'base64').toString('hex'),
        dek.subarray(0, 12).toString('base64'),
        dek.subarray(20, 32).toString('base64'),
        kms.accessKeySecret,
        CANARY_MARKER,
      ];
      const errors: unknown[] = [];
      const collect = async (promise: Promise<unknown>) => {
        try {
          await promise;
          errors.push(new Error('unexpectedly succeeded'));
        } catch (error) {
          errors.push(error);
        }
      };
      const wrong = await createAlibabaKmsProvider(
        options({ credentials: { kind: 'access-key', accessKeyId: kms.accessKeyId, accessKeySecret: `${CANARY_MARKER}secret` } }),
      );
      const stopped = await createAlibabaKmsProvider(options({ endpoint: 'http://127.0.0.1:9', maxAttempts: 1 }));
      const disabled = await newKey();
      await kms.api('DisableKey', { KeyId: disabled.id });
      await collect(provider.unwrap({ recipient, encryptionContext: OTHER_NAMESPACE }));
      await collect(provider.unwrap({ recipient: { ...recipient, encryptedKey: flipByte(recipient.encryptedKey, 'end') }, encryptionContext: STRICT }));
      await collect(provider.unwrap({ recipient: { ...recipient, encryptedKey: flipByte(recipient.encryptedKey, 'start') }, encryptionContext: STRICT }));
      await collect(provider.wrap({ target: disabled.arn, dataKey: Uint8Array.from(dek), encryptionContext: STRICT }));
      await collect(provider.wrap({ target: randomUUID(), dataKey: Uint8Array.from(dek), encryptionContext: STRICT }));
      await collect(provider.wrap({ target: 'not a target', dataKey: Uint8Array.from(dek), encryptionContext: STRICT }));
      await collect(provider.wrap({ target: keyA.arn, dataKey: Uint8Array.from(dek).subarray(0, 31), encryptionContext: STRICT }));
      await collect(wrong.unwrap({ recipient, encryptionContext: STRICT }));
      await collect(wrong.wrap({ target: keyA.arn, dataKey: Uint8Array.from(dek), encryptionContext: STRICT }));
      await collect(stopped.unwrap({ recipient, encryptionContext: STRICT }));
      expect(errors).toHaveLength(10);
      for (const error of errors) {
        expect(error).toBeInstanceOf(ProviderError);
        const e = error as ProviderError;
        const texts = [e.message, String(e), e.stack ?? '', JSON.stringify(e), inspect(e, { depth: 10, showHidden: true })];
        for (const text of texts) {
          for (const form of forbidden) expect(text, `${e.code}: ${e.message}`).not.toContain(form);
        }
      }
    });
  });
});

/** A loopback port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('alibaba-kms with RRSA: a ServiceAccount token of the real API server exchanged with STS AssumeRoleWithOIDC', () => {
  const namespace = uniqueName('alibaba-rrsa');
  const roleArn = 'acs:ram::1234567890123456:role/envseal-controller';
  let kms: AlibabaKms;
  let dir: string;
  let recipient: Recipient;
  let dataKey: Buffer;

  async function tokenFile(serviceAccount: string, audience = 'sts.aliyuncs.com'): Promise<string> {
    const file = path.join(dir, `${serviceAccount}-${randomUUID().slice(0, 6)}`);
    await writeFile(file, await kubectlOk(['create', 'token', serviceAccount, '-n', namespace, `--audience=${audience}`, '--duration=1h']), { mode: 0o600 });
    return file;
  }

  /** The controller's way: everything from the environment ACK's webhook sets. */
  async function rrsaProvider(oidcTokenFile: string, stsEndpoint = kms.sts!.endpoint) {
    const options = await alibabaKms.settings!.resolve({
      values: {},
      env: {
        ALIBABA_CLOUD_ROLE_ARN: roleArn,
        ALIBABA_CLOUD_OIDC_PROVIDER_ARN: kms.sts!.oidcProviderArn,
        ALIBABA_CLOUD_OIDC_TOKEN_FILE: oidcTokenFile,
        ALIBABA_CLOUD_STS_ENDPOINT: stsEndpoint,
        ALIBABA_CLOUD_KMS_ENDPOINT: kms.endpoint,
      },
      role: 'controller',
      unwrap: true,
      readFile: () => Promise.reject(new Error('no files')),
      warn: () => {},
    });
    return alibabaKms.create({ ...(options as object), maxAttempts: 1 });
  }

  beforeAll(async () => {
    await createNamespace(adminClient(), namespace);
    for (const name of ['envseal-controller', 'intruder']) await kubectlOk(['create', 'serviceaccount', name, '-n', namespace]);
    // The emulated STS's self-signed certificate is trusted in this process until kms.stop().
    kms = await startAlibabaKmsForRrsa({ roleArn, namespace, serviceAccount: 'envseal-controller' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-rrsa-'));
    const sealer = await createAlibabaKmsProvider(alibabaKmsOptions(kms));
    const keyId = await kms.createKey();
    const generated = await sealer.generateDataKey({ target: keyId, encryptionContext: STRICT });
    recipient = generated.recipient;
    dataKey = Buffer.from(generated.dataKey);
  });
  afterAll(async () => {
    await kms?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await kubectl(['delete', 'namespace', namespace, '--wait=false']);
  });

  it("the role's ServiceAccount unwraps with temporary credentials from STS (SecurityToken checked by the KMS)", async () => {
    const provider = await rrsaProvider(await tokenFile('envseal-controller'));
    expect(provider.canUnwrap(recipient)).toBe(true);
    expect(Buffer.from(await provider.unwrap({ recipient, encryptionContext: STRICT })).equals(dataKey)).toBe(true);
    expect(await kms.calls()).toMatchObject({ 'AssumeRoleWithOIDC Success': 1, 'Decrypt Success': 1 });
  });

  it('another ServiceAccount of the same cluster is refused by STS: AccessDenied naming RRSA and the role', async () => {
    const provider = await rrsaProvider(await tokenFile('intruder'));
    const error = await providerFailure(provider.unwrap({ recipient, encryptionContext: STRICT }));
    expect([error.code, error.serviceCode]).toEqual(['AccessDenied', 'AuthenticationFail.NoPermission']);
    expect(error.message).toContain(`RRSA: STS refused AssumeRoleWithOIDC for role ${roleArn}`);
  });

  it('a token for another audience, and a missing token file, are AccessDenied', async () => {
    const wrongAudience = await rrsaProvider(await tokenFile('envseal-controller', 'https://kubernetes.default.svc'));
    expect((await providerFailure(wrongAudience.unwrap({ recipient, encryptionContext: STRICT }))).serviceCode).toBe('AuthenticationFail.OIDCToken.Invalid');
    const missing = await rrsaProvider(path.join(dir, 'no-such-token'));
    const error = await providerFailure(missing.unwrap({ recipient, encryptionContext: STRICT }));
    expect([error.code, error.serviceCode]).toEqual(['AccessDenied', 'ENOENT']);
    expect(error.message).toMatch(/cannot read the OIDC token file/);
  });

  it('an STS endpoint that does not answer is Unavailable (retried), not AccessDenied, and the KMS is not called', async () => {
    const before = await kms.calls();
    const provider = await rrsaProvider(await tokenFile('envseal-controller'), `127.0.0.1:${await closedPort()}`);
    const error = await providerFailure(provider.unwrap({ recipient, encryptionContext: STRICT }));
    expect([error.code, error.serviceCode, error.retryable]).toEqual(['Unavailable', 'ECONNREFUSED', true]);
    expect(error.message).toContain('RRSA: the STS endpoint could not be reached');
    expect(await kms.calls()).toEqual(before);
  });
});
