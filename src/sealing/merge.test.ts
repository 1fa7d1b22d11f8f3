// The three-way merge of envseal merge-driver, on manifests made by the real operations
// of two branches (seal --merge-into, edit, add-recipient, remove-recipient): what merges
// opens (real age identities) to exactly both branches' changes; what conflicts is named.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../api/types.ts';
import { bindingOf, validateEnvelopeSecret } from '../api/validation.ts';
import { seededRandom } from '../envelope/random.ts';
import { generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { addRecipient, mergeValues, removeRecipient, resealValues } from './edit.ts';
import { mergeEnvelopeSecrets } from './merge.ts';
import { openEnvelopeSecret, unwrapDataKey } from './open.ts';
import { removeRecipients } from './rekey.ts';
import { sealEnvelopeSecret } from './seal.ts';

const people = await Promise.all([generateAgeIdentity(), generateAgeIdentity(), generateAgeIdentity()]);
const everyone = new ProviderRegistry({ age: { identities: people.map((p) => p.identity) } });
const target = (i: number) => ({ provider: 'age', target: people[i]!.recipient });
const binding = { scope: 'strict' as const, namespace: 'prod', name: 'db' };
const bytes = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));
const text = (values: Record<string, Buffer>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.toString('utf8')]));
let seed = 0;
const random = () => seededRandom(`merge-test-${seed++}`);

async function sealed(values: Record<string, string>, recipients = [0]): Promise<EnvelopeSecret> {
  return sealEnvelopeSecret({
    values: bytes(values),
    binding,
    targets: recipients.map(target),
    providers: everyone,
    random: random(),
    template: { type: 'Opaque' },
  });
}
const merge = (secret: EnvelopeSecret, values: Record<string, string>) => mergeValues({ secret, values: bytes(values), providers: everyone, random: random() });
const edit = (secret: EnvelopeSecret, values: Record<string, string>) => resealValues({ secret, values: bytes(values), providers: everyone, random: random() });
const opened = async (secret: EnvelopeSecret) => text(await openEnvelopeSecret({ secret, providers: everyone }));

/** Every recipient of every envelope opens it alone (commitment checked). */
async function everyRecipientOpens(secret: EnvelopeSecret): Promise<void> {
  for (const [index, envelope] of secret.spec.envelopes.entries()) {
    for (const recipient of envelope.recipients) {
      const { dataKey } = await unwrapDataKey({ envelope: { ...envelope, recipients: [recipient] }, index, binding: bindingOf(secret), providers: everyone });
      dataKey.fill(0);
    }
  }
}

describe('mergeEnvelopeSecrets', () => {
  it('merges values added and changed on different branches, without any key', async () => {
    const base = await merge(await sealed({ A: 'a0', B: 'b0' }), { C: 'c0' });
    const ours = await merge(base, { D: 'd1', A: 'a1' });
    const theirs = await edit(base, { A: 'a0', B: 'b2', C: 'c0', E: 'e2' });
    const { merged, conflicts, notes } = mergeEnvelopeSecrets({ base, ours, theirs });
    expect(conflicts).toEqual([]);
    expect(notes).toEqual([]);
    expect(validateEnvelopeSecret(merged)).toEqual([]);
    expect(await opened(merged)).toEqual({ A: 'a1', B: 'b2', C: 'c0', D: 'd1', E: 'e2' });
    // Untouched values keep their exact ciphertext.
    expect(merged.spec.envelopes.find((e) => e.data.C !== undefined)!.data.C).toBe(base.spec.envelopes[1]!.data.C);
  });

  it('names a key changed differently on both sides, and keeps ours for it', async () => {
    const base = await sealed({ A: 'a0', B: 'b0' });
    const ours = await merge(base, { A: 'ours' });
    const theirs = await edit(base, { A: 'theirs', B: 'b2' });
    const { merged, conflicts } = mergeEnvelopeSecrets({ base, ours, theirs });
    expect(conflicts).toEqual([{ kind: 'key', name: 'A', message: 'data key "A" was changed differently on both sides' }]);
    expect(validateEnvelopeSecret(merged)).toEqual([]);
    expect(await opened(merged)).toEqual({ A: 'ours', B: 'b2' });
    expect(JSON.stringify(conflicts)).not.toMatch(/ours|theirs"|b2/);

    const removed = await edit(base, { B: 'b0' });
    expect(mergeEnvelopeSecrets({ base, ours, theirs: removed }).conflicts[0]!.message).toBe('data key "A" was removed on one side and changed on the other');
    // The same change on both sides (a cherry-pick) is not a conflict.
    expect(mergeEnvelopeSecrets({ base, ours, theirs: ours }).conflicts).toEqual([]);
  });

  it('unions the recipients added on each side to the same envelope; each one opens it', async () => {
    const base = await sealed({ A: 'a0' });
    const ours = await addRecipient({ secret: base, target: target(1), providers: everyone });
    const theirs = await addRecipient({ secret: await merge(base, { B: 'b' }), target: target(2), providers: everyone });
    const { merged, conflicts, notes } = mergeEnvelopeSecrets({ base, ours, theirs });
    expect(conflicts).toEqual([]);
    expect(merged.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([people[0]!.recipient, people[1]!.recipient, people[2]!.recipient]);
    await everyRecipientOpens(merged);
    // B was sealed on theirs before ours added person 1.
    expect(notes).toEqual([expect.stringMatching(/^recipient "age:age1.*", added on ours, cannot open "B" \(sealed on theirs without it\)/)]);
  });

  it('a recipient removed (and re-keyed) on one side does not come back through the other', async () => {
    const base = await sealed({ A: 'a0', B: 'b0' }, [0, 1]);
    const ours = (await removeRecipients({ secret: base, targets: [target(1)], rekey: 'always', providers: everyone, random: random() })).secret;
    // Theirs adds C, sealed for everyone its manifest names: person 1 too.
    const theirs = await merge(base, { C: 'c2' });
    const { merged, conflicts } = mergeEnvelopeSecrets({ base, ours, theirs });
    expect(conflicts.map((c) => c.kind)).toEqual(['recipient']);
    expect(conflicts[0]!.message).toMatch(/^recipient "age:age1.*" was removed on ours, but theirs sealed "C" for it$/);
    expect(await opened(merged)).toEqual({ A: 'a0', B: 'b0', C: 'c2' });
    // Re-keying changed every value of the envelope: B changed in place on theirs (under
    // the old data key, which person 1 holds) conflicts, and ours' re-keyed B is kept.
    const inPlace = mergeEnvelopeSecrets({ base, ours, theirs: await edit(base, { A: 'a0', B: 'b2' }) });
    expect(inPlace.conflicts.map((c) => `${c.kind} ${c.name}`)).toEqual(['key B']);
    expect(await opened(inPlace.merged)).toEqual({ A: 'a0', B: 'b0' });
    expect(inPlace.merged.spec.envelopes.map((e) => e.id)).toEqual(ours.spec.envelopes.map((e) => e.id));

    // Without the other side sealing anything new for it: a clean merge.
    const quiet = mergeEnvelopeSecrets({ base, ours, theirs: await addRecipient({ secret: base, target: target(2), providers: everyone }) });
    expect(quiet.conflicts).toEqual([]);
    expect(quiet.merged.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([people[0]!.recipient]);
    const plain = (await removeRecipient({ secret: base, target: target(1), providers: everyone })) as EnvelopeSecret;
    expect(mergeEnvelopeSecrets({ base, ours: plain, theirs: base }).merged.spec.envelopes[0]!.recipients).toHaveLength(1);
  });

  it('merges metadata and template field by field; a binding change takes its side, both is a conflict', async () => {
    const base = await sealed({ A: 'a0' });
    const label = (secret: EnvelopeSecret, labels: Record<string, string>): EnvelopeSecret => ({
      ...secret,
      spec: { ...secret.spec, template: { ...secret.spec.template, metadata: { labels } } },
    });
    const ours = label(base, { team: 'a', 'app.kubernetes.io/name': 'db' });
    const theirs = {
      ...label(base, { team: 'b' }),
      spec: { ...label(base, { team: 'b' }).spec, template: { type: 'kubernetes.io/basic-auth', metadata: { labels: { team: 'b' } } } },
    };
    const { merged, conflicts } = mergeEnvelopeSecrets({ base, ours, theirs });
    expect(conflicts).toEqual([
      { kind: 'field', name: 'spec.template.metadata.labels.team', message: 'spec.template.metadata.labels.team was changed differently on both sides' },
    ]);
    expect(merged.spec.template).toEqual({ type: 'kubernetes.io/basic-auth', metadata: { labels: { team: 'a', 'app.kubernetes.io/name': 'db' } } });

    // A rename re-seals every value (the AAD binds the name): theirs' new value, sealed for the old name, conflicts.
    const renamed = await sealEnvelopeSecret({
      values: bytes({ A: 'a0' }),
      binding: { ...binding, name: 'db2' },
      targets: [target(0)],
      providers: everyone,
      random: random(),
      template: { type: 'Opaque' },
    });
    const added = await merge(base, { B: 'b' });
    const result = mergeEnvelopeSecrets({ base, ours: renamed, theirs: added });
    expect(result.merged.metadata.name).toBe('db2');
    expect(result.conflicts).toEqual([
      { kind: 'key', name: 'B', message: 'data key "B" was sealed on theirs for another name, namespace or scope than the merged manifest\'s' },
    ]);
    const both = mergeEnvelopeSecrets({ base, ours: renamed, theirs: { ...added, metadata: { ...added.metadata, name: 'db3' } } });
    expect(both.conflicts.map((c) => c.name)).toContain('metadata.name');
  });

  it('merges a file added on both sides (no ancestor)', async () => {
    const ours = await sealed({ A: 'a' });
    const theirs = await sealed({ B: 'b' });
    const { merged, conflicts } = mergeEnvelopeSecrets({ base: undefined, ours, theirs });
    expect(conflicts).toEqual([]);
    expect(await opened(merged)).toEqual({ A: 'a', B: 'b' });
    expect(mergeEnvelopeSecrets({ base: undefined, ours, theirs: await sealed({ A: 'other' }) }).conflicts[0]!.message).toBe(
      'data key "A" was added on both sides with different values',
    );
  });
});

// --- The property: two branches of random edits.

type Op =
  | { kind: 'merge'; key: string }
  | { kind: 'edit'; key: string }
  | { kind: 'delete'; key: string }
  | { kind: 'recipient'; person: number }
  | { kind: 'label'; name: string; remove: boolean };

const KEYS = ['A', 'B', 'C', 'D'];
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('merge' as const), key: fc.constantFrom(...KEYS) }),
  fc.record({ kind: fc.constant('edit' as const), key: fc.constantFrom(...KEYS) }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...KEYS) }),
  fc.record({ kind: fc.constant('recipient' as const), person: fc.constantFrom(1, 2) }),
  fc.record({ kind: fc.constant('label' as const), name: fc.constantFrom('x', 'y'), remove: fc.boolean() }),
);

interface Branch {
  secret: EnvelopeSecret;
  values: Record<string, string>;
  labels: Record<string, string>;
  /** Keys given a new value on this branch. */
  set: Set<string>;
}

async function apply(branch: Branch, op: Op, value: string): Promise<Branch> {
  const values = { ...branch.values };
  const labels = { ...branch.labels };
  let secret = branch.secret;
  const set = new Set(branch.set);
  if (op.kind === 'merge') {
    values[op.key] = value;
    set.add(op.key);
    secret = await merge(secret, { [op.key]: value });
  } else if (op.kind === 'edit') {
    values[op.key] = value;
    set.add(op.key);
    secret = await edit(secret, values);
  } else if (op.kind === 'delete') {
    if (!(op.key in values) || Object.keys(values).length === 1) return branch;
    delete values[op.key];
    secret = await edit(secret, values);
  } else if (op.kind === 'recipient') {
    secret = await addRecipient({ secret, target: target(op.person), providers: everyone });
  } else {
    if (op.remove) delete labels[op.name];
    else labels[op.name] = value;
    secret = { ...secret, spec: { ...secret.spec, template: { type: 'Opaque', metadata: { labels } } } };
  }
  return { secret, values, labels, set };
}

const changed = (base: Branch, side: Branch, key: string) => (key in side.values ? side.set.has(key) : key in base.values);

describe('mergeEnvelopeSecrets (property)', () => {
  it('merged == both edit sets applied when they touch different keys; a conflict iff a key changed on both differently', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.constantFrom(...KEYS), fc.constant(''), { minKeys: 1 }),
        fc.array(opArb, { maxLength: 5 }),
        fc.array(opArb, { maxLength: 5 }),
        fc.boolean(),
        async (initial, ourOps, theirOps, split) => {
          const names = Object.keys(initial);
          let baseSecret = await sealed(Object.fromEntries(names.map((k) => [k, `${k}-base`])));
          if (split && names.length > 1) baseSecret = await merge(baseSecret, { [names[0]!]: `${names[0]}-base` });
          const base: Branch = { secret: baseSecret, values: Object.fromEntries(names.map((k) => [k, `${k}-base`])), labels: {}, set: new Set() };
          let ours = base;
          for (const [i, op] of ourOps.entries()) ours = await apply(ours, op, `ours-${i}`);
          let theirs = base;
          for (const [i, op] of theirOps.entries()) theirs = await apply(theirs, op, `theirs-${i}`);

          const { merged, conflicts } = mergeEnvelopeSecrets({ base: base.secret, ours: ours.secret, theirs: theirs.secret });
          expect(validateEnvelopeSecret(merged)).toEqual([]);

          const expected: Record<string, string> = { ...base.values };
          const conflicting: string[] = [];
          for (const key of KEYS) {
            const mine = changed(base, ours, key);
            const other = changed(base, theirs, key);
            const bothRemoved = !(key in ours.values) && !(key in theirs.values);
            if (mine && other && !bothRemoved) conflicting.push(key);
            const source = mine ? ours : other ? theirs : base;
            if (key in source.values) expected[key] = source.values[key]!;
            else delete expected[key];
          }
          const labelConflicts = ['x', 'y'].filter(
            (name) => ours.labels[name] !== base.labels[name] && theirs.labels[name] !== base.labels[name] && ours.labels[name] !== theirs.labels[name],
          );
          const keyConflicts = conflicts.filter((c) => c.kind === 'key').map((c) => c.name);
          // Conflicting keys keep ours (`expected` takes ours first).
          if (Object.keys(expected).length === 0) expect(keyConflicts).toContain('(all)');
          else {
            expect(keyConflicts.sort()).toEqual(conflicting.sort());
            expect(await opened(merged)).toEqual(expected);
          }
          // In any order: the labels' order on each side is the order they were set in.
          const fieldConflicts = conflicts.filter((c) => c.kind === 'field').map((c) => c.name);
          expect(fieldConflicts.sort()).toEqual(labelConflicts.map((n) => `spec.template.metadata.labels.${n}`).sort());
          expect(conflicts.filter((c) => c.kind !== 'key' && c.kind !== 'field')).toEqual([]);
          await everyRecipientOpens(merged);
        },
      ),
      { numRuns: 100 },
    );
  }, 120_000);
});
