import { Reason, readyConditionOf } from './conditions.ts';
import { ANNOTATION_SPEC_HASH } from './desired.ts';
import type { EnvelopeSecretRecord, SecretObject } from './records.ts';

// What the reconciler concludes from a cached record and the live Secret alone, before any read.

/** The Secret is the one envseal last wrote for this spec: nobody changed it since. */
export function secretInSync(record: EnvelopeSecretRecord, live: SecretObject): boolean {
  const owner = live.metadata?.ownerReferences?.find((o) => o.controller);
  return (
    live.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === record.specHash &&
    owner?.uid === record.metadata.uid &&
    record.status?.secretResourceVersion === live.metadata?.resourceVersion
  );
}

export function observedCurrent(record: EnvelopeSecretRecord): boolean {
  return record.status?.observedGeneration === record.metadata.generation;
}

/**
 * envseal had written the Secret for the current spec (Ready for this generation), and
 * the Secret was changed or deleted since by someone else.
 */
export function syncedThisSpec(record: EnvelopeSecretRecord, live: SecretObject | undefined): boolean {
  const ready = readyConditionOf(record.status);
  if (!observedCurrent(record) || record.status?.secretResourceVersion === undefined) return false;
  if (ready?.status !== 'True' && ready?.reason !== Reason.Conflict && ready?.reason !== Reason.RestartRefused) return false;
  return live === undefined || live.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === record.specHash;
}

// Failures that only a new spec can cure: the object is not retried, even after a
// restart, until its generation changes. Failures that depend on the outside world
// (KMS permissions, keys) are retried at every resync.
const PERMANENT_REASONS: ReadonlySet<string> = new Set([
  Reason.ContextMismatch,
  Reason.CommitmentMismatch,
  Reason.DecryptFailed,
  Reason.InvalidSpec,
  Reason.PolicyViolation,
  Reason.SecretRejected,
  Reason.TemplateFailed,
]);
export const OUTSIDE_WORLD: ReadonlySet<string> = new Set([Reason.KMSAccessDenied, Reason.KMSKeyUnavailable, Reason.KMSKeyNotFound]);

export function failedForGood(record: EnvelopeSecretRecord): boolean {
  const ready = readyConditionOf(record.status);
  return ready?.status === 'False' && PERMANENT_REASONS.has(ready.reason) && observedCurrent(record);
}
