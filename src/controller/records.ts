import type { EnvelopeSecret, EnvelopeSecretStatus } from '../api/types.ts';
import type { KubeObject } from '../kube/client.ts';
import { specHash } from './desired.ts';
import { type KeyFacts, type KeyLabels, keyFactsOf } from './key-metrics.ts';

export type EnvelopeSecretObject = EnvelopeSecret & KubeObject;
export type SecretObject = KubeObject & { type?: string; immutable?: boolean; data?: Record<string, string> };

/**
 * What the controller keeps of an EnvelopeSecret between reconciles: identity, status and
 * the hash of its spec, never the sealed values. A tenant may post objects of a megabyte
 * each; the cache costs the same few hundred bytes for each, and the full object is read
 * from the API server only when the Secret must be (re)written.
 */
export interface EnvelopeSecretRecord extends KubeObject, KeyFacts {
  metadata: { name: string; namespace?: string; uid?: string; generation?: number; resourceVersion?: string; deletionTimestamp?: string };
  status?: EnvelopeSecretStatus;
  /** specHash() of the spec and binding the record was made from. */
  specHash: string;
  /** About how many bytes of sealed data the object holds (values and wrapped keys): what reconciling it costs. */
  sealedBytes: number;
  // KeyFacts: data-key age and the keys it depends on, for the metrics (src/controller/key-metrics.ts).
}

/** `labels`: the shared copies of key labels (the controller's); without it each record has its own. */
export function envelopeSecretRecord(object: EnvelopeSecretObject, labels?: KeyLabels): EnvelopeSecretRecord {
  const m = object.metadata;
  return {
    metadata: {
      name: m.name,
      ...(m.namespace === undefined ? {} : { namespace: m.namespace }),
      ...(m.uid === undefined ? {} : { uid: m.uid }),
      ...(m.generation === undefined ? {} : { generation: m.generation }),
      ...(m.resourceVersion === undefined ? {} : { resourceVersion: m.resourceVersion }),
      ...(typeof m.deletionTimestamp === 'string' ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    ...(object.status === undefined ? {} : { status: object.status }),
    specHash: specHash(object),
    sealedBytes: sealedBytesOf(object),
    ...keyFactsOf(object.spec, labels),
  };
}

function sealedBytesOf(object: EnvelopeSecretObject): number {
  let bytes = 0;
  const envelopes = Array.isArray(object.spec?.envelopes) ? object.spec.envelopes : [];
  for (const envelope of envelopes) {
    for (const value of Object.values(envelope?.data ?? {})) if (typeof value === 'string') bytes += value.length;
    for (const recipient of Array.isArray(envelope?.recipients) ? envelope.recipients : [])
      if (typeof recipient?.encryptedKey === 'string') bytes += recipient.encryptedKey.length;
  }
  return bytes;
}

/** Sealed data per unit of weight in the work queue: an object of 1.5 MB weighs 6, a small one 1. */
const BYTES_PER_WEIGHT = 256 * 1024;

/** How much an object weighs in its namespace's share of the workers. */
export function reconcileWeight(record: EnvelopeSecretRecord | undefined): number {
  return record === undefined ? 1 : 1 + Math.floor(record.sealedBytes / BYTES_PER_WEIGHT);
}

/**
 * What the controller keeps of a managed Secret: metadata, type and immutability, never
 * the values (not even of immutable Secrets: the replace decision reads the live Secret).
 * Drift is found through resourceVersions, so the process does not hold the plaintext of
 * every Secret it manages, and its memory does not grow with their size.
 */
export function secretRecord<T extends SecretObject & { stringData?: unknown }>(secret: T): SecretObject {
  const { data: _data, stringData: _stringData, ...kept } = secret;
  return kept;
}
