import { bindingOf } from '../api/validation.ts';
import type { Envelope, EnvelopeSecret, Recipient } from '../api/types.ts';
import { type Binding, kmsEncryptionContext } from '../envelope/context.ts';
import { checkCommitment, openEnvelope } from '../envelope/envelope.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { type KeyProvider, ProviderError } from '../providers/types.ts';

export interface UnwrapRequest {
  envelope: Envelope;
  /** Position of the envelope, for messages. */
  index: number;
  binding: Binding;
  providers: ProviderRegistry;
  signal?: AbortSignal;
}

export interface UnwrappedDataKey {
  /** 32 bytes; zero it when done. */
  dataKey: Uint8Array;
  recipient: Recipient;
  provider: KeyProvider;
}

/**
 * Unwraps an envelope's data key through the first recipient a configured provider can
 * open, then checks the key commitment. A commitment mismatch is terminal at once; when
 * no recipient opens, the error prefers a retryable cause (so callers retry throttling)
 * and lists every recipient's failure.
 */
export async function unwrapDataKey(request: UnwrapRequest): Promise<UnwrappedDataKey> {
  const { envelope, index, binding, providers, signal } = request;
  const encryptionContext = kmsEncryptionContext(binding);
  const failures: ProviderError[] = [];
  let usable = 0;
  for (const recipient of envelope.recipients) {
    let provider: KeyProvider;
    try {
      provider = await providers.get(recipient.provider);
    } catch (error) {
      failures.push(asProviderError(error, recipient.provider));
      continue;
    }
    if (!provider.canUnwrap(recipient)) continue;
    usable++;
    let dataKey: Uint8Array;
    try {
      dataKey = await provider.unwrap({ recipient, encryptionContext, signal });
    } catch (error) {
      signal?.throwIfAborted();
      failures.push(asProviderError(error, recipient.provider));
      continue;
    }
    try {
      checkCommitment(dataKey, envelope);
    } catch (error) {
      dataKey.fill(0);
      if (error instanceof EnvelopeError && error.code === 'CommitmentMismatch') {
        throw new EnvelopeError('CommitmentMismatch', `envelope #${index}: ${provider.describe(recipient)} wraps a data key that does not match the envelope's commitment`, { field: 'commitment', cause: error });
      }
      throw error;
    }
    return { dataKey, recipient, provider };
  }
  if (usable === 0 && failures.length === 0) {
    const names = envelope.recipients.map((r) => r.provider).join(', ');
    throw new ProviderError('NoIdentity', `envelope #${index}: no configured provider can unwrap any of its recipients (${names}); configure an age identity or KMS access`, { provider: names });
  }
  const chosen = failures.find((f) => f.retryable) ?? failures[0]!;
  const detail = failures.map((f) => f.message).join('; ');
  throw new ProviderError(chosen.code, `envelope #${index}: ${detail}`, {
    provider: chosen.provider,
    ...(chosen.serviceCode ? { serviceCode: chosen.serviceCode } : {}),
    cause: failures.length === 1 ? chosen : new AggregateError(failures, 'every recipient failed'),
  });
}

function asProviderError(error: unknown, provider: string): ProviderError {
  if (error instanceof ProviderError) return error;
  return new ProviderError('Internal', `${provider}: ${error instanceof Error ? error.name : 'unexpected error'}`, { provider, cause: error });
}

export interface OpenRequest {
  secret: EnvelopeSecret;
  providers: ProviderRegistry;
  /** Defaults to the binding of the secret's own metadata. */
  binding?: Binding;
  /** Open only these keys. */
  keys?: readonly string[];
  signal?: AbortSignal;
}

/** Opens every value of a (validated) EnvelopeSecret. No partial result on failure. */
export async function openEnvelopeSecret(request: OpenRequest): Promise<Record<string, Buffer>> {
  const binding = request.binding ?? bindingOf(request.secret);
  const result: Record<string, Buffer> = {};
  try {
    for (const [index, envelope] of request.secret.spec.envelopes.entries()) {
      const keys = request.keys?.filter((k) => Object.hasOwn(envelope.data, k));
      if (keys !== undefined && keys.length === 0) continue;
      const { dataKey } = await unwrapDataKey({ envelope, index, binding, providers: request.providers, signal: request.signal });
      try {
        Object.assign(result, openEnvelope({ dataKey, binding, envelope, ...(keys ? { keys } : {}) }));
      } finally {
        dataKey.fill(0);
      }
    }
    return result;
  } catch (error) {
    for (const value of Object.values(result)) value.fill(0);
    throw error;
  }
}
