import { isSealedAt } from '../api/validation.ts';
import { PROVIDERS } from '../providers/registry.ts';
import type { ProviderDefinition, Recipient } from '../providers/types.ts';

/**
 * What a record keeps for the key metrics, as fields of the record itself: small numbers,
 * flags and a shared list of labels (about 50 bytes an object), never a value or a wrapped key.
 */
export interface KeyFacts {
  /** Whole minutes since the epoch of the oldest valid sealedAt (a small integer, not a boxed number); undefined when none has one. */
  oldestSealedAtMinute?: number;
  /** Whether some envelope has no (valid) sealedAt: its data key's age is unknown. */
  unknownAge: boolean;
  /** The keys it depends on, as `describe` names them (interned; at most MAX_KEYS_PER_OBJECT). */
  keys: readonly string[];
  /** It depends on more keys than it keeps, or on keys too long to be a label: counted under `other`. */
  otherKeys: boolean;
}

/** Keys kept per object: an object may name 64 recipients; sane ones name one to three keys. */
export const MAX_KEYS_PER_OBJECT = 16;
/** A label longer than this is no real key's name (key ARNs are about 90 characters): counted under `other`. */
export const MAX_KEY_LABEL_LENGTH = 160;
/** Distinct key labels exported by default; the rest are summed under `other`. */
export const DEFAULT_MAX_KEY_LABELS = 100;
export const OTHER_KEY = 'other';

/**
 * One copy of each key label, and of each list of labels, for all records: 100,000 objects
 * sealed for the same keys share one frozen list, not 100,000 copies of its strings parsed
 * from 100,000 watch events. `retain` drops what no record uses any more.
 */
export class KeyLabels {
  #labels = new Map<string, string>();
  #lists = new Map<string, readonly string[]>();

  intern(label: string): string {
    const known = this.#labels.get(label);
    if (known !== undefined) return known;
    this.#labels.set(label, label);
    return label;
  }

  /** The shared copy of a list of labels (in this order). */
  internList(labels: readonly string[]): readonly string[] {
    const id = labels.join('\n');
    const known = this.#lists.get(id);
    if (known !== undefined) return known;
    const list = Object.freeze(labels.map((label) => this.intern(label)));
    this.#lists.set(id, list);
    return list;
  }

  retain(records: Iterable<Partial<KeyFacts>>): void {
    const labels = new Map<string, string>();
    const lists = new Map<string, readonly string[]>();
    for (const record of records) {
      const keys = record.keys;
      if (keys === undefined) continue;
      lists.set(keys.join('\n'), keys);
      for (const key of keys) labels.set(key, key);
    }
    this.#labels = labels;
    this.#lists = lists;
  }

  get size(): number {
    return this.#labels.size;
  }
}

/** The key facts of an EnvelopeSecret as the API server gave it (unvalidated: every field is checked for its type). */
export function keyFactsOf(spec: unknown, labels?: KeyLabels, definitions: readonly ProviderDefinition[] = PROVIDERS): KeyFacts {
  const envelopes = (spec as { envelopes?: unknown } | undefined)?.envelopes;
  let oldest: number | undefined;
  let unknownAge = false;
  let otherKeys = false;
  const keys = new Set<string>();
  for (const envelope of Array.isArray(envelopes) ? (envelopes as { sealedAt?: unknown; recipients?: unknown }[]) : []) {
    if (isSealedAt(envelope?.sealedAt)) {
      const time = Date.parse(envelope.sealedAt);
      if (oldest === undefined || time < oldest) oldest = time;
    } else unknownAge = true;
    for (const recipient of Array.isArray(envelope?.recipients) ? (envelope.recipients as Recipient[]) : []) {
      const definition = definitions.find((d) => d.name === recipient?.provider);
      const label = definition ? definition.describe(recipient) : undefined;
      if (label === undefined || label.length > MAX_KEY_LABEL_LENGTH) otherKeys = true;
      else if (keys.has(label)) continue;
      else if (keys.size >= MAX_KEYS_PER_OBJECT) otherKeys = true;
      else keys.add(label);
    }
  }
  return {
    ...(oldest === undefined ? {} : { oldestSealedAtMinute: Math.floor(oldest / 60_000) }),
    unknownAge,
    keys: labels ? labels.internList([...keys]) : [...keys],
    otherKeys,
  };
}

/** Age thresholds of envseal_envelopesecrets_data_key_older_than (days): a fixed, small set of label values. */
export const AGE_THRESHOLDS_DAYS = [30, 90, 180, 365] as const;

export interface KeySummary {
  /** Age in seconds of the oldest known data key; 0 when none is known. */
  oldestSeconds: number;
  /** EnvelopeSecrets with a data key of unknown age. */
  unknownAge: number;
  /** EnvelopeSecrets whose oldest data key is older than each threshold (days). */
  olderThan: Map<number, number>;
  /** EnvelopeSecrets per key label: at most `maxKeys` labels, the rest under `other`. */
  byKey: Map<string, number>;
}

/**
 * The key metrics over every record, at time `now`. Which keys get a label of their own is
 * decided by how many EnvelopeSecrets use each (ties by name): a tenant who invents keys
 * (made-up ARNs, fresh age recipients) adds at most to `other`, and pushes a real key out
 * only by using each invented key in more objects than the real key has.
 */
export function summarizeKeys(records: Iterable<Partial<KeyFacts>>, now: number, maxKeys = DEFAULT_MAX_KEY_LABELS): KeySummary {
  let oldest: number | undefined;
  let unknownAge = 0;
  const olderThan = new Map<number, number>(AGE_THRESHOLDS_DAYS.map((days) => [days, 0]));
  const counts = new Map<string, number>();
  const facts: KeyFacts[] = [];
  for (const f of records) {
    if (f.keys === undefined) continue;
    facts.push(f as KeyFacts);
    if (f.unknownAge) unknownAge++;
    if (f.oldestSealedAtMinute !== undefined) {
      const sealedAt = f.oldestSealedAtMinute * 60_000;
      if (oldest === undefined || sealedAt < oldest) oldest = sealedAt;
      const ageDays = (now - sealedAt) / 86_400_000;
      for (const days of AGE_THRESHOLDS_DAYS) if (ageDays > days) olderThan.set(days, olderThan.get(days)! + 1);
    }
    for (const key of f.keys) counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const shown = new Set(
    [...counts]
      .sort(([a, m], [b, n]) => n - m || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, maxKeys)
      .map(([key]) => key),
  );
  const byKey = new Map<string, number>();
  let other = 0;
  for (const key of shown) byKey.set(key, counts.get(key)!);
  // `other`: objects (counted once) that use a key without a label of its own.
  for (const f of facts) if (f.otherKeys || f.keys.some((key) => !shown.has(key))) other++;
  if (other > 0) byKey.set(OTHER_KEY, other);
  return { oldestSeconds: oldest === undefined ? 0 : Math.max(0, Math.floor((now - oldest) / 1000)), unknownAge, olderThan, byKey };
}
