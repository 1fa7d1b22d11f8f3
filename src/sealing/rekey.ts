/**
 * Removing a recipient and re-keying (`envseal remove-recipient`, rekey by default): an
 * envelope that loses a recipient gets a fresh data key, so that its old data key (which
 * the removed recipient may have kept, or can unwrap from Git history) opens none of its
 * values any more, nor any value `envseal edit` later seals into it.
 */
import type { Envelope, EnvelopeSecret } from '../api/types.ts';
import { bindingOf } from '../api/validation.ts';
import { openEnvelope } from '../envelope/envelope.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError, type RecipientTarget } from '../providers/types.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';
import { removeRecipient } from './edit.ts';
import { unwrapDataKey } from './open.ts';
import { sealNewEnvelope } from './seal.ts';

export class RekeyError extends EnvsealError {
  readonly code: 'NoTarget' | 'Unavailable';
  constructor(code: RekeyError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RekeyError';
    this.code = code;
  }
  override get exitClass(): ExitClass {
    return this.code === 'Unavailable' ? 'provider' : 'refused';
  }
}

/** Re-key: `always` (fail unless every affected envelope is re-keyed), `never`, or `auto` (each one this run can open). */
export type RekeyMode = 'auto' | 'always' | 'never';

export interface RemoveRecipientsRequest {
  secret: EnvelopeSecret;
  targets: readonly RecipientTarget[];
  rekey: RekeyMode;
  providers: ProviderRegistry;
  random: RandomSource;
  /** The sealedAt of re-keyed envelopes (default: now). */
  now?: Date;
  signal?: AbortSignal;
}

export interface RemoveRecipientsResult {
  secret: EnvelopeSecret;
  /** Envelopes (by index) sealed again under a fresh data key. */
  rekeyed: number[];
  /** Envelopes that lost only the wrapping, and why they were not re-keyed (no values in it). */
  wrappingOnly: { index: number; keys: string[]; reason: string }[];
}

// Failures that mean "this run cannot open it"; others (an unreachable KMS, a tampered
// envelope) stop the command instead of silently leaving the old data key in place.
const CANNOT_OPEN: ReadonlyMap<string, string> = new Map([
  ['NoIdentity', 'no configured identity opens it'],
  ['AccessDenied', 'access denied'],
  ['KeyNotFound', 'its key was not found'],
  ['KeyUnavailable', 'its key is unavailable'],
]);

/**
 * Removes the targets from every envelope (never the last recipient of one), then
 * re-keys each envelope that lost one: every value opened (commitment and tags checked)
 * and sealed again, under a fresh data key and envelope id, for the remaining
 * recipients. The split into envelopes is kept, so the Git diff stays per envelope.
 * Envelopes that lost no recipient keep their exact bytes.
 */
export async function removeRecipients(request: RemoveRecipientsRequest): Promise<RemoveRecipientsResult> {
  const { secret, providers, random, signal } = request;
  let removed = secret;
  for (const target of request.targets) removed = await removeRecipient({ secret: removed, target, providers, signal });
  const affected = removed.spec.envelopes.flatMap((envelope, index) =>
    envelope.recipients.length === secret.spec.envelopes[index]!.recipients.length ? [] : [index],
  );
  const keysOf = (index: number) => Object.keys(secret.spec.envelopes[index]!.data);
  if (request.rekey === 'never') {
    return { secret: removed, rekeyed: [], wrappingOnly: affected.map((index) => ({ index, keys: keysOf(index), reason: '--no-rekey' })) };
  }

  const binding = bindingOf(secret);
  const envelopes: Envelope[] = [...removed.spec.envelopes];
  const rekeyed: number[] = [];
  const wrappingOnly: RemoveRecipientsResult['wrappingOnly'] = [];
  for (const index of affected) {
    const original = secret.spec.envelopes[index]!;
    const targets: RecipientTarget[] = [];
    for (const recipient of envelopes[index]!.recipients) {
      const target = (await providers.get(recipient.provider)).targetOf(recipient);
      if (target === '') {
        const reason = `a remaining ${recipient.provider} recipient records no public target to seal for`;
        if (request.rekey === 'always') throw new RekeyError('NoTarget', `cannot re-key envelope #${index}: ${reason}`);
        wrappingOnly.push({ index, keys: keysOf(index), reason });
        break;
      }
      targets.push({ provider: recipient.provider, target });
    }
    if (targets.length !== envelopes[index]!.recipients.length) continue;

    let dataKey: Uint8Array;
    try {
      // Any recipient opens it, the removed one too (the remover may hold it).
      ({ dataKey } = await unwrapDataKey({ envelope: original, index, binding, providers, signal }));
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      if (error.retryable) {
        throw new RekeyError('Unavailable', `${error.message}; nothing written: retry, or pass --no-rekey to remove only the wrapping`, { cause: error });
      }
      const reason = CANNOT_OPEN.get(error.code);
      if (request.rekey === 'always' || reason === undefined) throw error;
      wrappingOnly.push({ index, keys: keysOf(index), reason });
      continue;
    }
    let values: Record<string, Buffer> = {};
    try {
      values = openEnvelope({ dataKey, binding, envelope: original });
      envelopes[index] = await sealNewEnvelope({ values, binding, targets, providers, random, now: request.now, signal });
      rekeyed.push(index);
    } finally {
      dataKey.fill(0);
      for (const value of Object.values(values)) value.fill(0);
    }
  }
  return { secret: { ...removed, spec: { ...removed.spec, envelopes } }, rekeyed, wrappingOnly };
}
