import { bindsContext } from '../api/namespaces-scope.ts';
import { bindingOf } from '../api/validation.ts';
import { quoteName } from '../api/names.ts';
import type { Envelope, EnvelopeSecret, Recipient } from '../api/types.ts';
import { kmsEncryptionContext } from '../envelope/context.ts';
import { openEnvelope, sealValue } from '../envelope/envelope.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError } from '../providers/types.ts';
import { openEnvelopeSecret, unwrapDataKey } from './open.ts';
import { sealNewEnvelope } from './seal.ts';
import type { RecipientTarget } from '../providers/types.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';

export class EditError extends EnvsealError {
  readonly code: 'LastRecipient' | 'RecipientNotFound' | 'NothingToSeal' | 'NoRecipients' | 'RecipientsDiffer';
  constructor(code: EditError['code'], message: string) {
    super(message);
    this.name = 'EditError';
    this.code = code;
  }

  override get exitClass(): ExitClass {
    switch (this.code) {
      case 'LastRecipient':
      case 'NothingToSeal':
        return 'refused';
      case 'NoRecipients':
      case 'RecipientsDiffer':
        return 'usage';
      case 'RecipientNotFound':
        return 'invalidInput';
      default:
        return 'unexpected';
    }
  }
}

/** The distinct targets of every recipient of these envelopes, in order of first use. */
export async function recipientTargetsOf(envelopes: readonly Envelope[], providers: ProviderRegistry): Promise<RecipientTarget[]> {
  const seen = new Map<string, RecipientTarget>();
  for (const envelope of envelopes) {
    for (const recipient of envelope.recipients) {
      const target = (await providers.get(recipient.provider)).targetOf(recipient);
      if (target !== '') seen.set(`${recipient.provider}:${target}`, { provider: recipient.provider, target });
    }
  }
  return [...seen.values()];
}

export interface MergeRequest {
  secret: EnvelopeSecret;
  values: Record<string, Uint8Array>;
  /** Default: every target the manifest already seals for. */
  targets?: readonly RecipientTarget[];
  providers: ProviderRegistry;
  random: RandomSource;
  /** The new envelope's sealedAt (default: now). */
  now?: Date;
  signal?: AbortSignal;
}

/**
 * Adds or replaces keys without Decrypt permission: the values go into one new envelope,
 * replaced keys leave their old envelopes, and every untouched value keeps its exact
 * ciphertext.
 */
export async function mergeValues(request: MergeRequest): Promise<EnvelopeSecret> {
  const { secret } = request;
  if (Object.keys(request.values).length === 0) throw new EditError('NothingToSeal', 'no values to merge');
  const targets = request.targets && request.targets.length > 0 ? request.targets : await recipientTargetsOf(secret.spec.envelopes, request.providers);
  if (targets.length === 0) throw new EditError('NoRecipients', 'the manifest names no recipient to seal for; pass --recipient');
  const added = await sealNewEnvelope({
    values: request.values,
    binding: bindingOf(secret),
    targets,
    providers: request.providers,
    random: request.random,
    now: request.now,
    signal: request.signal,
  });
  const kept = secret.spec.envelopes
    .map((envelope) => ({ ...envelope, data: Object.fromEntries(Object.entries(envelope.data).filter(([key]) => !Object.hasOwn(request.values, key))) }))
    .filter((envelope) => Object.keys(envelope.data).length > 0);
  return { ...secret, spec: { ...secret.spec, envelopes: [...kept, added] } };
}

export interface ResealRequest {
  secret: EnvelopeSecret;
  /** The complete desired data: unchanged values keep their ciphertext. */
  values: Record<string, Uint8Array>;
  providers: ProviderRegistry;
  random: RandomSource;
  signal?: AbortSignal;
}

/**
 * For a holder of Decrypt (`envseal edit`): changed values are re-encrypted in their own
 * envelope, new keys join the last envelope, removed keys are dropped, unchanged values
 * keep their exact ciphertext.
 */
export async function resealValues(request: ResealRequest): Promise<EnvelopeSecret> {
  const { secret, providers, random, signal } = request;
  const binding = bindingOf(secret);
  const remaining = new Map(Object.entries(request.values));
  const envelopes: Envelope[] = [];
  const lastIndex = secret.spec.envelopes.length - 1;
  for (const [index, envelope] of secret.spec.envelopes.entries()) {
    const { dataKey } = await unwrapDataKey({ envelope, index, binding, providers, signal });
    try {
      const current = openEnvelope({ dataKey, binding, envelope });
      const data: Record<string, string> = {};
      for (const [key, sealed] of Object.entries(envelope.data)) {
        const wanted = remaining.get(key);
        remaining.delete(key);
        if (wanted === undefined) continue;
        data[key] = Buffer.compare(current[key]!, wanted) === 0 ? sealed : sealValue({ dataKey, binding, envelope, key, plaintext: wanted, random });
      }
      if (index === lastIndex) {
        for (const [key, plaintext] of remaining) data[key] = sealValue({ dataKey, binding, envelope, key, plaintext, random });
        remaining.clear();
      }
      for (const value of Object.values(current)) value.fill(0);
      if (Object.keys(data).length > 0) envelopes.push({ ...envelope, data });
    } finally {
      dataKey.fill(0);
    }
  }
  if (envelopes.length === 0) throw new EditError('NothingToSeal', 'the edit leaves no values; delete the EnvelopeSecret instead');
  return { ...secret, spec: { ...secret.spec, envelopes } };
}

export interface AddRecipientRequest {
  secret: EnvelopeSecret;
  target: RecipientTarget;
  providers: ProviderRegistry;
  signal?: AbortSignal;
}

/**
 * Wraps every envelope's data key for one more recipient: through the provider's rewrap
 * (KMS ReEncrypt, the key never leaves the KMS) when an existing recipient is of the same
 * provider, else by unwrapping (commitment checked) and wrapping.
 */
export async function addRecipient(request: AddRecipientRequest): Promise<EnvelopeSecret> {
  const { secret, target, providers, signal } = request;
  const provider = await providers.get(target.provider);
  provider.parseTarget(target.target);
  const binding = bindingOf(secret);
  // Scope namespaces: a key service that binds the context wraps once per listed namespace.
  const namespaces: (string | undefined)[] = binding.scope === 'namespaces' && bindsContext(target.provider) ? [...(binding.namespaces ?? [])] : [undefined];
  const envelopes: Envelope[] = [];
  for (const [index, envelope] of secret.spec.envelopes.entries()) {
    if (envelope.recipients.some((r) => r.provider === target.provider && provider.targetOf(r) === target.target)) {
      envelopes.push(envelope);
      continue;
    }
    const added: Recipient[] = [];
    let dataKey: Uint8Array | undefined;
    try {
      for (const namespace of namespaces) {
        const encryptionContext = kmsEncryptionContext(namespace === undefined ? binding : { ...binding, namespace });
        let recipient: Recipient | undefined;
        const sameProvider = envelope.recipients.find((r) => r.provider === target.provider && provider.canUnwrap(r) && r.namespace === namespace);
        if (provider.rewrap && sameProvider) {
          try {
            recipient = await provider.rewrap({ from: sameProvider, target: target.target, encryptionContext, signal });
          } catch (error) {
            // e.g. the two keys are in different regions: fall back to unwrap + wrap.
            if (!(error instanceof ProviderError) || error.code === 'AccessDenied' || error.retryable) throw error;
          }
        }
        if (recipient === undefined) {
          dataKey ??= (await unwrapDataKey({ envelope, index, binding, providers, signal })).dataKey;
          recipient = await provider.wrap({ target: target.target, dataKey, encryptionContext, signal });
        }
        added.push(namespace === undefined ? recipient : { ...recipient, namespace });
      }
    } finally {
      dataKey?.fill(0);
    }
    envelopes.push({ ...envelope, recipients: [...envelope.recipients, ...added] });
  }
  return { ...secret, spec: { ...secret.spec, envelopes } };
}

export interface RemoveRecipientRequest {
  secret: EnvelopeSecret;
  target: RecipientTarget;
  providers: ProviderRegistry;
  signal?: AbortSignal;
}

/** Removes a recipient from every envelope; refuses to leave an envelope with none. */
export async function removeRecipient(request: RemoveRecipientRequest): Promise<EnvelopeSecret> {
  const { secret, target } = request;
  const provider = await request.providers.get(target.provider);
  const naming = (wanted: string) => (r: Recipient) => r.provider === target.provider && provider.targetOf(r) === wanted;
  // The manifest records key ARNs: an alias (or key id) is resolved by the KMS, only
  // when it is not itself what the manifest records.
  const recorded = secret.spec.envelopes.some((e) => e.recipients.some(naming(target.target)));
  const matches = naming(recorded || provider.canonicalTarget === undefined ? target.target : await provider.canonicalTarget(target.target, request.signal));
  let removed = 0;
  const envelopes = secret.spec.envelopes.map((envelope, index) => {
    const recipients = envelope.recipients.filter((r) => !matches(r));
    if (recipients.length === envelope.recipients.length) return envelope;
    if (recipients.length === 0) {
      throw new EditError(
        'LastRecipient',
        `refusing to remove ${quoteName(`${target.provider}:${target.target}`)}: it is the last recipient of envelope #${index}, whose values could then never be opened`,
      );
    }
    removed += envelope.recipients.length - recipients.length;
    return { ...envelope, recipients };
  });
  if (removed === 0) throw new EditError('RecipientNotFound', `no envelope has recipient ${quoteName(`${target.provider}:${target.target}`)}`);
  return { ...secret, spec: { ...secret.spec, envelopes } };
}

export interface CompactRequest {
  secret: EnvelopeSecret;
  /** Who can open the result; default: the recipients every envelope shares, when they all have the same. */
  targets?: readonly RecipientTarget[];
  providers: ProviderRegistry;
  random: RandomSource;
  /** The new envelope's sealedAt (default: now). */
  now?: Date;
  signal?: AbortSignal;
}

/**
 * For a holder of Decrypt: every value, opened, is sealed again into one new envelope
 * under a fresh data key (`envseal compact`). Merges without Decrypt (`seal --merge-into`)
 * add an envelope each; this folds them back into one. Without explicit targets, the
 * envelopes must all be sealed for the same recipients: taking their union would let a
 * recipient of one envelope read the values of the others.
 */
export async function compactEnvelopes(request: CompactRequest): Promise<EnvelopeSecret> {
  const { secret, providers, random, signal } = request;
  let targets = request.targets;
  if (targets === undefined || targets.length === 0) {
    const perEnvelope = await Promise.all(secret.spec.envelopes.map((envelope) => recipientTargetsOf([envelope], providers)));
    const names = perEnvelope.map((list) =>
      list
        .map((t) => `${t.provider}:${t.target}`)
        .sort()
        .join('\n'),
    );
    const differs = names.findIndex((n) => n !== names[0]);
    if (differs > 0) {
      throw new EditError(
        'RecipientsDiffer',
        `envelopes #0 and #${differs} are sealed for different recipients: pass --recipient to say who can open the compacted envelope (compacting must not widen who can read a value)`,
      );
    }
    targets = perEnvelope[0] ?? [];
    if (targets.length === 0) throw new EditError('NoRecipients', 'the manifest names no recipient to seal for; pass --recipient');
  }
  const values = await openEnvelopeSecret({ secret, providers, signal });
  try {
    const envelope = await sealNewEnvelope({ values, binding: bindingOf(secret), targets, providers, random, now: request.now, signal });
    return { ...secret, spec: { ...secret.spec, envelopes: [envelope] } };
  } finally {
    for (const value of Object.values(values)) value.fill(0);
  }
}
