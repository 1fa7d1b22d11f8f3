/**
 * The keyring: what every user of key providers does with a data key, written once for
 * manifests, files and the controller. Its model is the AWS Encryption SDK's keyring:
 * on encrypt, the first target whose provider has a key service generates the data key
 * and the others wrap it (one "generator" and "children"); on decrypt, the wrapped keys
 * are tried one by one until one unwraps.
 */
import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../envelope/kdf.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from './registry.ts';
import { type KeyProvider, ProviderError, type Recipient, type RecipientTarget } from './types.ts';

export interface GenerateRequest {
  targets: readonly RecipientTarget[];
  providers: ProviderRegistry;
  encryptionContext: Record<string, string>;
  random: RandomSource;
  signal?: AbortSignal;
}

export interface WrappedDataKey {
  /** 32 bytes; the caller zeroes it when done. */
  dataKey: Uint8Array;
  /** One per target, in the targets' order. */
  recipients: Recipient[];
}

/**
 * A new data key wrapped for every target. The first target whose provider has a key
 * service generates it (KMS GenerateDataKey: the key is born in the KMS); with none, it
 * comes from `random`. Every target is checked before any call is made.
 */
export async function generateDataKey(request: GenerateRequest): Promise<WrappedDataKey> {
  const { targets, providers, encryptionContext, signal } = request;
  if (targets.length === 0) throw new ProviderError('InvalidRecipient', 'at least one recipient is needed', { provider: 'none' });
  const resolved = await Promise.all(targets.map(async (t) => ({ target: t.target, provider: await providers.get(t.provider) })));
  for (const t of resolved) t.provider.parseTarget(t.target);
  const op = { encryptionContext, signal };

  const recipients: (Recipient | undefined)[] = new Array(resolved.length);
  let dataKey: Uint8Array | undefined;
  try {
    const generatorIndex = resolved.findIndex((t) => t.provider.generateDataKey !== undefined);
    if (generatorIndex >= 0) {
      const generator = resolved[generatorIndex]!;
      const generated = await generator.provider.generateDataKey!({ ...op, target: generator.target });
      dataKey = generated.dataKey;
      recipients[generatorIndex] = generated.recipient;
    } else {
      dataKey = Uint8Array.from(request.random(DATA_KEY_BYTES));
    }
    if (dataKey.byteLength !== DATA_KEY_BYTES)
      throw new ProviderError('Internal', `a data key must be ${DATA_KEY_BYTES} bytes`, {
        provider: generatorIndex >= 0 ? resolved[generatorIndex]!.provider.name : 'random',
      });
    const key = dataKey;
    await Promise.all(
      resolved.map(async (t, i) => {
        if (recipients[i] === undefined) recipients[i] = await t.provider.wrap({ ...op, target: t.target, dataKey: key });
      }),
    );
    return { dataKey: key, recipients: recipients as Recipient[] };
  } catch (error) {
    dataKey?.fill(0);
    throw error;
  }
}

export interface UnwrapAnyRequest {
  recipients: readonly Recipient[];
  providers: ProviderRegistry;
  encryptionContext: Record<string, string>;
  signal?: AbortSignal;
  /** Names the wrapped key in messages, e.g. "envelope #0". */
  what: string;
  /** Called before each provider call; throwing stops the unwrap with that error (the controller's budget). */
  beforeAttempt?: (recipient: Recipient) => void;
  /**
   * Checks an unwrapped key before it is returned (the envelope's key commitment): an
   * error thrown here ends the unwrap at once, since a recipient that opens to another
   * key means a forged or broken object, not a recipient to skip.
   */
  accept?: (dataKey: Uint8Array, recipient: Recipient, provider: KeyProvider) => void;
}

export interface UnwrappedKey {
  /** 32 bytes; the caller zeroes it when done. */
  dataKey: Uint8Array;
  recipient: Recipient;
  provider: KeyProvider;
}

/**
 * The data key, from the first recipient a configured provider can open, trying them in
 * the order given (the order the sealer wrote: with KMS recipients first, the common
 * case costs one call). Recipients of unknown providers and ones the configuration
 * cannot open (no identity, no access configured) are passed over without a call.
 *
 * When none opens, one ProviderError reports every recipient tried, with the code of
 * the failure that matters most: a retryable one (throttling, an unreachable KMS: worth
 * a retry), else the first recipient's, else NoIdentity when nothing could be tried.
 */
export async function unwrapAny(request: UnwrapAnyRequest): Promise<UnwrappedKey> {
  const { providers, encryptionContext, signal, what } = request;
  const failures: ProviderError[] = [];
  let tried = 0;
  for (const recipient of request.recipients) {
    signal?.throwIfAborted();
    let provider: KeyProvider;
    try {
      provider = await providers.get(recipient.provider);
    } catch (error) {
      failures.push(asProviderError(error, recipient.provider));
      continue;
    }
    if (!provider.canUnwrap(recipient)) continue;
    tried++;
    request.beforeAttempt?.(recipient);
    let dataKey: Uint8Array;
    try {
      dataKey = await provider.unwrap({ recipient, encryptionContext, signal });
      if (dataKey.byteLength !== DATA_KEY_BYTES) {
        dataKey.fill(0);
        throw new ProviderError('InvalidCiphertext', `${provider.describe(recipient)}: the unwrapped data key has the wrong length`, {
          provider: provider.name,
        });
      }
    } catch (error) {
      signal?.throwIfAborted();
      failures.push(asProviderError(error, recipient.provider));
      continue;
    }
    try {
      request.accept?.(dataKey, recipient, provider);
    } catch (error) {
      dataKey.fill(0);
      throw error;
    }
    return { dataKey, recipient, provider };
  }
  if (tried === 0 && failures.length === 0) {
    const names = [...new Set(request.recipients.map((r) => r.provider))].join(', ');
    throw new ProviderError(
      'NoIdentity',
      `${what}: no configured provider can unwrap any of its recipients (${names}); configure an age identity or KMS access`,
      { provider: names },
    );
  }
  const chosen = failures.find((f) => f.retryable) ?? failures[0]!;
  // Several failures: a short summary first (provider and code of each), so that the
  // providers are named even where the message is cut (1 KiB in statuses and Events).
  const summary = failures.length > 1 ? `every recipient failed (${[...new Set(failures.map((f) => `${f.provider} ${f.code}`))].join(', ')}): ` : '';
  throw new ProviderError(chosen.code, `${what}: ${summary}${failures.map((f) => f.message).join('; ')}`, {
    provider: chosen.provider,
    ...(chosen.serviceCode ? { serviceCode: chosen.serviceCode } : {}),
    ...(chosen.contextBound ? { contextBound: true } : {}),
    cause: failures.length === 1 ? chosen : new AggregateError(failures, 'every recipient failed'),
  });
}

function asProviderError(error: unknown, provider: string): ProviderError {
  if (error instanceof ProviderError) return error;
  return new ProviderError('Internal', `${provider}: ${error instanceof Error ? error.name : 'unexpected error'}`, { provider, cause: error });
}
