import { recipientsFor } from '../api/namespaces-scope.ts';
import { bindingOf } from '../api/validation.ts';
import type { Envelope, EnvelopeSecret, Recipient } from '../api/types.ts';
import { type Binding, kmsEncryptionContext, listedNamespaces } from '../envelope/context.ts';
import { checkCommitment, openEnvelope } from '../envelope/envelope.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { unwrapAny } from '../providers/keyring.ts';
import type { KeyProvider } from '../providers/types.ts';

export interface UnwrapRequest {
  envelope: Envelope;
  /** Position of the envelope, for messages. */
  index: number;
  binding: Binding;
  providers: ProviderRegistry;
  signal?: AbortSignal;
  /**
   * Called before each provider call; throwing stops the unwrap with that error (the
   * controller's per-namespace budget of provider calls).
   */
  beforeAttempt?: (recipient: Recipient) => void;
}

export interface UnwrappedDataKey {
  /** 32 bytes; zero it when done. */
  dataKey: Uint8Array;
  recipient: Recipient;
  provider: KeyProvider;
}

/**
 * Unwraps an envelope's data key through the keyring (the first recipient a configured
 * provider can open), then checks the key commitment: a recipient that opens to another
 * key is terminal at once (a forged or broken object).
 */
export async function unwrapDataKey(request: UnwrapRequest): Promise<UnwrappedDataKey> {
  const { envelope, index } = request;
  // Scope namespaces: only the wrappings for the reader's namespace (and context-free ones).
  const recipients = recipientsFor(envelope.recipients, request.binding);
  if (recipients.length === 0) {
    throw new EnvelopeError('ContextMismatch', `envelope #${index}: no recipient is wrapped for namespace ${JSON.stringify(request.binding.namespace)}`);
  }
  return unwrapAny({
    recipients,
    providers: request.providers,
    encryptionContext: kmsEncryptionContext(request.binding),
    what: `envelope #${index}`,
    ...(request.signal ? { signal: request.signal } : {}),
    ...(request.beforeAttempt ? { beforeAttempt: request.beforeAttempt } : {}),
    accept: (dataKey, recipient, provider) => {
      try {
        checkCommitment(dataKey, envelope);
      } catch (error) {
        if (error instanceof EnvelopeError && error.code === 'CommitmentMismatch') {
          throw new EnvelopeError(
            'CommitmentMismatch',
            `envelope #${index}: ${provider.describe(recipient)} wraps a data key that does not match the envelope's commitment`,
            { field: 'commitment', cause: error },
          );
        }
        throw error;
      }
    },
  });
}

export interface OpenRequest {
  secret: EnvelopeSecret;
  /** Unwraps the data keys; not needed when `dataKeyFor` supplies them. */
  providers?: ProviderRegistry;
  /** Defaults to the binding of the secret's own metadata. */
  binding?: Binding;
  /** Open only these keys. */
  keys?: readonly string[];
  /**
   * Where an envelope's data key comes from (the controller's cache); by default its
   * recipients are unwrapped. The caller's copy is zeroed after use.
   */
  dataKeyFor?: (envelope: Envelope, index: number) => Promise<Uint8Array>;
  /** When values fail to authenticate, name them (and tell a moved manifest from altered values). */
  reportKeys?: boolean;
  signal?: AbortSignal;
}

/** Opens every value of a (validated) EnvelopeSecret. No partial result on failure. */
export async function openEnvelopeSecret(request: OpenRequest): Promise<Record<string, Buffer>> {
  const binding = request.binding ?? bindingOf(request.secret);
  // A copy in a namespace the list does not name is refused before any key is unwrapped.
  if (binding.scope === 'namespaces') listedNamespaces(binding);
  const { providers } = request;
  const dataKeyFor =
    request.dataKeyFor ??
    (async (envelope: Envelope, index: number) => {
      if (providers === undefined) throw new TypeError('openEnvelopeSecret needs providers or dataKeyFor');
      return (await unwrapDataKey({ envelope, index, binding, providers, signal: request.signal })).dataKey;
    });
  const result: Record<string, Buffer> = {};
  try {
    for (const [index, envelope] of request.secret.spec.envelopes.entries()) {
      const keys = request.keys?.filter((k) => Object.hasOwn(envelope.data, k));
      if (keys !== undefined && keys.length === 0) continue;
      const dataKey = await dataKeyFor(envelope, index);
      try {
        const opened = request.reportKeys
          ? openEnvelopeReportingKeys(dataKey, binding, envelope, index, keys)
          : openEnvelope({ dataKey, binding, envelope, ...(keys ? { keys } : {}) });
        Object.assign(result, opened);
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

/**
 * Opens the values one by one; when some fail to authenticate, says whether all failed
 * (the manifest was sealed for another namespace, name or scope) or which ones (altered,
 * or moved from another key).
 */
function openEnvelopeReportingKeys(dataKey: Uint8Array, binding: Binding, envelope: Envelope, index: number, only?: readonly string[]): Record<string, Buffer> {
  const opened: Record<string, Buffer> = {};
  const failed: string[] = [];
  const keys = only ?? Object.keys(envelope.data);
  for (const key of keys) {
    try {
      Object.assign(opened, openEnvelope({ dataKey, binding, envelope, keys: [key] }));
    } catch (error) {
      if (!(error instanceof EnvelopeError) || error.code !== 'ValueAuthenticationFailed') {
        for (const value of Object.values(opened)) value.fill(0);
        throw error;
      }
      failed.push(key);
    }
  }
  if (failed.length === 0) return opened;
  for (const value of Object.values(opened)) value.fill(0);
  if (failed.length === keys.length) {
    throw new EnvelopeError(
      'ContextMismatch',
      `envelope #${index}: no value authenticates for ${describeBinding(binding)}: the manifest was sealed for another namespace, name or scope, or every value was altered`,
    );
  }
  throw new EnvelopeError(
    'ValueAuthenticationFailed',
    `envelope #${index}: ${namedKeys(failed)} did not authenticate: they were altered or moved from another key`,
  );
}

/** At most ten key names (a key name may be 253 characters): messages stay short. */
function namedKeys(keys: readonly string[]): string {
  const shown = keys.slice(0, 10).map((k) => JSON.stringify(k));
  const more = keys.length > shown.length ? ` and ${keys.length - shown.length} more` : '';
  return `${keys.length === 1 ? 'value' : 'values'} ${shown.join(', ')}${more}`;
}

function describeBinding(binding: Binding): string {
  if (binding.scope === 'cluster') return 'cluster scope';
  if (binding.scope === 'namespaces') return `${binding.namespace}/${binding.name} (scope namespaces)`;
  if (binding.scope === 'namespace') return `namespace ${binding.namespace} (scope namespace)`;
  return `${binding.namespace}/${binding.name} (scope strict)`;
}
