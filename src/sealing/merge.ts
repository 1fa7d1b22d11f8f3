/**
 * The three-way merge of EnvelopeSecret manifests behind `envseal merge-driver`: per data
 * key, without any key material. A value is bound to its envelope (the AAD names the
 * envelope id), so a value moves only together with its envelope's id, commitment and
 * recipients: the result is assembled from the envelopes that hold the chosen values.
 */
import { isDeepStrictEqual } from 'node:util';
import { quoteName } from '../api/names.ts';
import type { Envelope, EnvelopeSecret, Recipient } from '../api/types.ts';
import { bindingOf } from '../api/validation.ts';
import { kmsEncryptionContext } from '../envelope/context.ts';
import { providerDefinition } from '../providers/registry.ts';
import { abbreviate } from '../util/message.ts';
import { mergeFields } from './merge-fields.ts';

export interface MergeConflict {
  /** A data key, a field (metadata, scope, template...), a recipient, or an envelope. */
  kind: 'key' | 'field' | 'recipient' | 'envelope';
  /** The data key, field path or recipient: names only, never a value. */
  name: string;
  message: string;
}

export interface ThreeWayMergeRequest {
  /** The common ancestor; undefined when the file is new on both sides. */
  base: EnvelopeSecret | undefined;
  ours: EnvelopeSecret;
  theirs: EnvelopeSecret;
}

export interface ThreeWayMergeResult {
  /** The merge; for each conflict, ours' side of it. */
  merged: EnvelopeSecret;
  conflicts: MergeConflict[];
  /** Not conflicts, but worth telling (e.g. a recipient added on one side cannot open values the other side sealed). */
  notes: string[];
}

type Side = 'ours' | 'theirs';

interface Located {
  envelope: Envelope;
  sealed: string;
}

function valuesOf(secret: EnvelopeSecret | undefined): Map<string, Located> {
  const values = new Map<string, Located>();
  for (const envelope of secret?.spec.envelopes ?? []) {
    for (const [key, sealed] of Object.entries(envelope.data)) values.set(key, { envelope, sealed });
  }
  return values;
}

function sameValue(a: Located | undefined, b: Located | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.envelope.id === b.envelope.id && a.sealed === b.sealed;
}

/** Who a recipient is (its provider and public target), not its wrapping. */
function recipientId(recipient: Recipient): string {
  let target = '';
  try {
    target = providerDefinition(recipient.provider).targetOf(recipient);
  } catch {
    // An unknown provider: the manifests were validated, so this does not happen.
  }
  return target === '' ? `${recipient.provider}\n#${recipient.encryptedKey}` : `${recipient.provider}\n${target}`;
}

function describeRecipientId(id: string): string {
  const [provider = '', target = ''] = id.split('\n');
  return target.startsWith('#') ? `a ${provider} recipient` : quoteName(`${provider}:${abbreviate(target)}`);
}

function recipientIds(secret: EnvelopeSecret | undefined): Set<string> {
  return new Set((secret?.spec.envelopes ?? []).flatMap((e) => e.recipients.map(recipientId)));
}

/**
 * The three-way merge of one envelope's recipients, as sets: a recipient added on either
 * side is kept, one removed on either side is dropped. Both sides' lists wrap the same
 * data key (same envelope id and commitment; every reader checks the commitment after
 * unwrapping), so a union is safe. A side without the envelope counts as unchanged.
 */
function mergeRecipients(base: Recipient[] | undefined, ours: Recipient[] | undefined, theirs: Recipient[] | undefined): Recipient[] {
  const o = ours ?? base;
  const t = theirs ?? base;
  if (o === undefined) return t ?? [];
  if (t === undefined) return o;
  const byId = (list: Recipient[] | undefined) => new Map((list ?? []).map((r) => [recipientId(r), r]));
  const b = byId(base);
  const th = byId(t);
  const oursIds = new Set(o.map(recipientId));
  const merged: Recipient[] = [];
  for (const r of o) {
    const id = recipientId(r);
    const other = th.get(id);
    // Both have it: ours' wrapping, unless only theirs rewrapped it.
    if (other !== undefined) merged.push(isDeepStrictEqual(r, b.get(id)) ? other : r);
    else if (!b.has(id)) merged.push(r);
  }
  for (const r of t) {
    const id = recipientId(r);
    if (!oursIds.has(id) && !b.has(id)) merged.push(r);
  }
  return merged;
}

function namesOf(keys: readonly string[]): string {
  const shown = keys.slice(0, 10).map(quoteName);
  return keys.length > 10 ? `${shown.join(', ')} and ${keys.length - 10} more` : shown.join(', ');
}

/** Merges two descendants of `base`. Pure: no key is needed and none is used. */
export function mergeEnvelopeSecrets(request: ThreeWayMergeRequest): ThreeWayMergeResult {
  const { base, ours, theirs } = request;
  const conflicts: MergeConflict[] = [];
  const notes: string[] = [];
  const sides: Record<Side, EnvelopeSecret> = { ours, theirs };

  // Everything but the envelopes, field by field.
  const strip = (secret: EnvelopeSecret | undefined) => {
    if (secret === undefined) return undefined;
    const { envelopes: _envelopes, ...spec } = secret.spec;
    return { ...secret, spec };
  };
  const fieldConflicts: string[] = [];
  const fields = mergeFields(strip(base), strip(ours), strip(theirs), '', fieldConflicts) as Omit<EnvelopeSecret, 'spec'> & {
    spec: Omit<EnvelopeSecret['spec'], 'envelopes'>;
  };
  for (const path of fieldConflicts) conflicts.push({ kind: 'field', name: path, message: `${path} was changed differently on both sides` });

  // The result's binding: a value sealed for another one would not open.
  const bindingKey = (secret: EnvelopeSecret) => JSON.stringify(kmsEncryptionContext(bindingOf(secret)));
  const resultBinding = bindingKey({ ...fields, spec: { ...fields.spec, envelopes: [] } } as EnvelopeSecret);

  // Each data key, three ways.
  const b = valuesOf(base);
  const values: Record<Side, Map<string, Located>> = { ours: valuesOf(ours), theirs: valuesOf(theirs) };
  const keys = [...new Set([...values.ours.keys(), ...values.theirs.keys(), ...b.keys()])];
  const chosen = new Map<string, Located>();
  for (const key of keys) {
    const ancestor = b.get(key);
    const mine = values.ours.get(key);
    const other = values.theirs.get(key);
    let pick: Located | undefined;
    if (sameValue(mine, other) || sameValue(ancestor, other)) pick = mine;
    else if (sameValue(ancestor, mine)) pick = other;
    else {
      const how =
        ancestor === undefined
          ? 'was added on both sides with different values'
          : mine === undefined || other === undefined
            ? 'was removed on one side and changed on the other'
            : 'was changed differently on both sides';
      conflicts.push({ kind: 'key', name: key, message: `data key ${quoteName(key)} ${how}` });
      pick = mine;
    }
    if (pick === undefined) continue;
    const from = (['ours', 'theirs'] as const).filter((side) => sameValue(values[side].get(key), pick));
    if (!from.some((side) => bindingKey(sides[side]) === resultBinding)) {
      conflicts.push({
        kind: 'key',
        name: key,
        message: `data key ${quoteName(key)} was sealed on ${from.join(' and ')} for another name, namespace or scope than the merged manifest's`,
      });
    }
    chosen.set(key, pick);
  }

  // The envelopes holding the chosen values: ours' order, then theirs' new ones.
  const envelopeOf = (secret: EnvelopeSecret | undefined, id: string) => secret?.spec.envelopes.find((e) => e.id === id);
  const order = [...ours.spec.envelopes, ...theirs.spec.envelopes].map((e) => e.id).filter((id, i, all) => all.indexOf(id) === i);
  const envelopes: Envelope[] = [];
  for (const id of order) {
    const o = envelopeOf(ours, id);
    const t = envelopeOf(theirs, id);
    const dataKeys = [...Object.keys(o?.data ?? {}), ...Object.keys(t?.data ?? {})].filter(
      (key, i, all) => all.indexOf(key) === i && chosen.get(key)?.envelope.id === id,
    );
    if (dataKeys.length === 0) continue;
    const first = (o ?? t)!;
    if (o !== undefined && t !== undefined && (o.suite !== t.suite || o.commitment !== t.commitment)) {
      conflicts.push({
        kind: 'envelope',
        name: id,
        message: `the envelope holding ${namesOf(dataKeys)} has the same id but another commitment on each side (a forged or broken manifest)`,
      });
    }
    let recipients = mergeRecipients(envelopeOf(base, id)?.recipients, o?.recipients, t?.recipients);
    if (recipients.length === 0) {
      conflicts.push({ kind: 'envelope', name: id, message: `the merge leaves the envelope holding ${namesOf(dataKeys)} with no recipient` });
      recipients = first.recipients;
    }
    const data = Object.fromEntries(dataKeys.map((key) => [key, chosen.get(key)!.sealed]));
    // sealedAt is the data key's (informative, docs/format.md): it goes with the envelope.
    const sealedAt = o?.sealedAt ?? t?.sealedAt;
    envelopes.push({ id, suite: first.suite, commitment: first.commitment, ...(sealedAt === undefined ? {} : { sealedAt }), recipients, data });
  }

  // A recipient one side removed everywhere must not come back through the other side.
  const baseIds = recipientIds(base);
  for (const side of ['ours', 'theirs'] as const) {
    const other: Side = side === 'ours' ? 'theirs' : 'ours';
    const sideIds = recipientIds(sides[side]);
    for (const id of baseIds) {
      if (sideIds.has(id)) continue;
      const holding = envelopes.filter((e) => e.recipients.some((r) => recipientId(r) === id)).flatMap((e) => Object.keys(e.data));
      if (holding.length === 0) continue;
      conflicts.push({
        kind: 'recipient',
        name: describeRecipientId(id),
        message: `recipient ${describeRecipientId(id)} was removed on ${side}, but ${other} sealed ${namesOf(holding)} for it`,
      });
    }
    // One added to every envelope of a side cannot open what the other side sealed without it.
    for (const id of sideIds) {
      if (baseIds.has(id) || !sides[side].spec.envelopes.every((e) => e.recipients.some((r) => recipientId(r) === id))) continue;
      const missing = envelopes.filter((e) => !e.recipients.some((r) => recipientId(r) === id)).flatMap((e) => Object.keys(e.data));
      if (missing.length > 0) {
        notes.push(
          `recipient ${describeRecipientId(id)}, added on ${side}, cannot open ${namesOf(missing)} (sealed on ${other} without it): run envseal add-recipient`,
        );
      }
    }
  }

  if (envelopes.length === 0) {
    conflicts.push({ kind: 'key', name: '(all)', message: 'the merge leaves no value: every data key was removed' });
    envelopes.push(...ours.spec.envelopes);
  }

  // The spec in ours' field order, envelopes where ours has them.
  const spec: Record<string, unknown> = {};
  for (const key of Object.keys(ours.spec)) {
    if (key === 'envelopes') spec.envelopes = envelopes;
    else if (Object.hasOwn(fields.spec, key)) spec[key] = (fields.spec as Record<string, unknown>)[key];
  }
  for (const [key, value] of Object.entries(fields.spec)) if (!Object.hasOwn(spec, key)) spec[key] = value;
  spec.envelopes = envelopes;
  return { merged: { ...fields, spec } as unknown as EnvelopeSecret, conflicts, notes };
}
