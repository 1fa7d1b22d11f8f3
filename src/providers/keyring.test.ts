import { describe, expect, it } from 'vitest';
import { generateDataKey, unwrapAny } from './keyring.ts';
import { capMessage } from '../util/message.ts';
import { ProviderRegistry } from './registry.ts';
import { type KeyProvider, ProviderError, type ProviderErrorCode, type Recipient } from './types.ts';

const CONTEXT = { 'envseal.dev/scope': 'strict', 'envseal.dev/namespace': 'ns', 'envseal.dev/name': 'db' };

/**
 * A provider that "wraps" by recording the key under a handle, as a real one would make
 * ciphertext only it can open; `service` ones generate keys like a KMS; `fail` makes
 * unwrap throw that code.
 */
function provider(
  name: string,
  options: { service?: boolean; fail?: ProviderErrorCode; message?: string; configured?: boolean; calls?: string[] } = {},
): KeyProvider {
  const stored = new Map<string, Uint8Array>();
  let next = 0;
  const wrapped = (target: string, dataKey: Uint8Array): Recipient => {
    const handle = `${name}-${next++}`;
    stored.set(handle, Uint8Array.from(dataKey));
    return { provider: name, keyId: target, encryptedKey: Buffer.from(handle).toString('base64') };
  };
  return {
    name,
    parseTarget: (target) => {
      if (target === 'bad') throw new ProviderError('InvalidRecipient', `${name}: bad target`, { provider: name });
    },
    ...(options.service
      ? {
          async generateDataKey(request) {
            options.calls?.push(`${name}:generate`);
            const dataKey = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
            return { dataKey, recipient: wrapped(request.target, dataKey) };
          },
        }
      : {}),
    async wrap(request) {
      options.calls?.push(`${name}:wrap`);
      return wrapped(request.target, request.dataKey);
    },
    async unwrap(request) {
      options.calls?.push(`${name}:unwrap`);
      if (options.fail) throw new ProviderError(options.fail, options.message ?? `${name} failed (${options.fail})`, { provider: name });
      const key = stored.get(Buffer.from(request.recipient.encryptedKey, 'base64').toString());
      if (!key) throw new ProviderError('InvalidCiphertext', `${name}: not mine`, { provider: name });
      return Uint8Array.from(key);
    },
    canUnwrap: () => options.configured !== false,
    describe: (r) => `${name} ${r.keyId ?? ''}`,
    targetOf: (r) => r.keyId ?? '',
  };
}

const random = (n: number) => new Uint8Array(n).fill(7);

describe('generateDataKey', () => {
  it('lets the first target with a key service generate, and wraps the same key for the others', async () => {
    const calls: string[] = [];
    const providers = ProviderRegistry.of([provider('local', { calls }), provider('kms', { service: true, calls })]);
    const { dataKey, recipients } = await generateDataKey({
      targets: [
        { provider: 'local', target: 'a' },
        { provider: 'kms', target: 'k' },
      ],
      providers,
      encryptionContext: CONTEXT,
      random,
    });
    expect(calls).toEqual(['kms:generate', 'local:wrap']);
    expect(recipients.map((r) => r.provider)).toEqual(['local', 'kms']);
    expect(dataKey[0]).toBe(1);
    for (const recipient of recipients) {
      const opened = await unwrapAny({ recipients: [recipient], providers, encryptionContext: CONTEXT, what: 'test' });
      expect(opened.dataKey).toEqual(dataKey);
    }
  });

  it('takes the key from the random source when no target has a key service', async () => {
    const providers = ProviderRegistry.of([provider('local')]);
    const { dataKey } = await generateDataKey({ targets: [{ provider: 'local', target: 'a' }], providers, encryptionContext: CONTEXT, random });
    expect(dataKey).toEqual(new Uint8Array(32).fill(7));
  });

  it('checks every target before any call, and refuses no target at all', async () => {
    const calls: string[] = [];
    const providers = ProviderRegistry.of([provider('kms', { service: true, calls })]);
    await expect(
      generateDataKey({
        targets: [
          { provider: 'kms', target: 'k' },
          { provider: 'kms', target: 'bad' },
        ],
        providers,
        encryptionContext: CONTEXT,
        random,
      }),
    ).rejects.toThrow(/bad target/);
    expect(calls).toEqual([]);
    await expect(generateDataKey({ targets: [], providers, encryptionContext: CONTEXT, random })).rejects.toThrow(/at least one recipient/);
  });
});

describe('unwrapAny', () => {
  const sealed = async (providers: ProviderRegistry, names: string[]) =>
    (await generateDataKey({ targets: names.map((provider) => ({ provider, target: provider })), providers, encryptionContext: CONTEXT, random })).recipients;

  it('tries recipients in order, passing over ones the configuration cannot open without a call', async () => {
    const calls: string[] = [];
    const providers = ProviderRegistry.of([provider('off', { configured: false, calls }), provider('on', { calls })]);
    const recipients = await sealed(providers, ['off', 'on']);
    calls.length = 0;
    const { recipient } = await unwrapAny({ recipients, providers, encryptionContext: CONTEXT, what: 'envelope #0' });
    expect(recipient.provider).toBe('on');
    expect(calls).toEqual(['on:unwrap']);
  });

  it('reports every failure, with the retryable code when there is one', async () => {
    const providers = ProviderRegistry.of([provider('denied', { fail: 'AccessDenied' }), provider('slow', { fail: 'Throttled' })]);
    const recipients = await sealed(providers, ['denied', 'slow']);
    const error = (await unwrapAny({ recipients, providers, encryptionContext: CONTEXT, what: 'envelope #3' }).catch((e: unknown) => e)) as ProviderError;
    expect(error).toBeInstanceOf(ProviderError);
    expect(error.code).toBe('Throttled');
    expect(error.message).toBe(
      'envelope #3: every recipient failed (denied AccessDenied, slow Throttled): denied failed (AccessDenied); slow failed (Throttled)',
    );
  });

  it('names every provider that failed within the first bytes, even when the messages are long', async () => {
    const long = (name: string) => provider(name, { fail: 'Unavailable', message: `${name} could not be reached: ${'x'.repeat(600)}` });
    const providers = ProviderRegistry.of([long('first'), long('second'), long('third')]);
    const recipients = await sealed(providers, ['first', 'second', 'third']);
    const error = (await unwrapAny({ recipients, providers, encryptionContext: CONTEXT, what: 'envelope #0' }).catch((e: unknown) => e)) as ProviderError;
    expect(error.message).toMatch(
      /^envelope #0: every recipient failed \(first Unavailable, second Unavailable, third Unavailable\): first could not be reached/,
    );
    // What a status condition or an Event keeps of it.
    const kept = capMessage(error.message);
    for (const name of ['first', 'second', 'third']) expect(kept).toContain(`${name} Unavailable`);
  });

  it('says NoIdentity when nothing could be tried, and UnknownProvider for an unknown one', async () => {
    const providers = ProviderRegistry.of([provider('off', { configured: false })]);
    const recipients = await sealed(providers, ['off']);
    await expect(unwrapAny({ recipients, providers, encryptionContext: CONTEXT, what: 'x' })).rejects.toMatchObject({ code: 'NoIdentity' });
    await expect(
      unwrapAny({ recipients: [{ provider: 'gcp-kms', encryptedKey: 'AAAA' }], providers, encryptionContext: CONTEXT, what: 'x' }),
    ).rejects.toMatchObject({ code: 'UnknownProvider' });
  });

  it('stops before a call when beforeAttempt throws, and zeroes a key that accept refuses', async () => {
    const calls: string[] = [];
    const providers = ProviderRegistry.of([provider('p', { calls })]);
    const recipients = await sealed(providers, ['p']);
    calls.length = 0;
    await expect(
      unwrapAny({
        recipients,
        providers,
        encryptionContext: CONTEXT,
        what: 'x',
        beforeAttempt: () => {
          throw new Error('budget');
        },
      }),
    ).rejects.toThrow('budget');
    expect(calls).toEqual([]);
    let seen: Uint8Array | undefined;
    await expect(
      unwrapAny({
        recipients,
        providers,
        encryptionContext: CONTEXT,
        what: 'x',
        accept: (key) => {
          seen = key;
          throw new Error('commitment');
        },
      }),
    ).rejects.toThrow('commitment');
    expect(seen).toEqual(new Uint8Array(32));
  });
});
