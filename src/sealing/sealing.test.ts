import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseEnvelopeSecret, validateEnvelopeSecret } from '../api/validation.ts';
import type { EnvelopeSecret } from '../api/types.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import { seededRandom } from '../envelope/random.ts';
import { generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError } from '../providers/types.ts';
import { addRecipient, EditError, mergeValues, removeRecipient, resealValues } from './edit.ts';
import { openEnvelopeSecret } from './open.ts';
import { sealEnvelopeSecret } from './seal.ts';
import { parseRecipientTarget } from '../providers/registry.ts';

const alice = await generateAgeIdentity();
const bob = await generateAgeIdentity();
const both = new ProviderRegistry({ age: { identities: [alice.identity, bob.identity] } });
const aliceOnly = new ProviderRegistry({ age: { identities: [alice.identity] } });
const sealerOnly = new ProviderRegistry({});
const binding = { scope: 'strict' as const, namespace: 'prod', name: 'db' };
const text = (values: Record<string, Buffer>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.toString('utf8')]));
const bytes = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));

async function sealFor(values: Record<string, string>, recipients = [alice.recipient], seed = 'seal') {
  return sealEnvelopeSecret({
    values: bytes(values),
    binding,
    targets: recipients.map((r) => ({ provider: 'age', target: r })),
    providers: sealerOnly,
    random: seededRandom(seed),
    template: { type: 'Opaque' },
  });
}

describe('sealing EnvelopeSecrets', () => {
  it('seals with public recipients only and opens with any one identity', async () => {
    const secret = await sealFor({ A: 'alpha', B: 'beta' }, [alice.recipient, bob.recipient]);
    expect(validateEnvelopeSecret(secret)).toEqual([]);
    expect(secret.metadata).toEqual({ name: 'db', namespace: 'prod' });
    expect(secret.spec.envelopes[0]!.recipients).toHaveLength(2);
    expect(text(await openEnvelopeSecret({ secret, providers: aliceOnly }))).toEqual({ A: 'alpha', B: 'beta' });
    expect(text(await openEnvelopeSecret({ secret, providers: new ProviderRegistry({ age: { identities: [bob.identity] } }) }))).toEqual({
      A: 'alpha',
      B: 'beta',
    });
  });

  it('round-trips any values (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.stringMatching(/^[A-Za-z0-9_]{1,12}$/).filter((k) => k !== '__proto__'),
          fc.string(),
          { minKeys: 1, maxKeys: 5 },
        ),
        async (values) => {
          const secret = await sealFor(values);
          expect(text(await openEnvelopeSecret({ secret, providers: aliceOnly }))).toEqual(values);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('refuses a manifest moved to another namespace or name', async () => {
    const secret = await sealFor({ A: 'alpha' });
    for (const metadata of [
      { name: 'db', namespace: 'staging' },
      { name: 'other', namespace: 'prod' },
    ]) {
      const moved = { ...secret, metadata };
      await expect(openEnvelopeSecret({ secret: moved, providers: aliceOnly })).rejects.toMatchObject({ code: 'ValueAuthenticationFailed' });
    }
  });

  it('refuses an envelope whose recipients wrap different data keys', async () => {
    const honest = await sealFor({ A: 'alpha' }, [alice.recipient]);
    const forged = await sealFor({ A: 'alpha' }, [bob.recipient], 'other');
    const envelope = honest.spec.envelopes[0]!;
    // Bob's recipient now wraps another key: Bob would read other plaintext if unchecked.
    const mixed: EnvelopeSecret = {
      ...honest,
      spec: { ...honest.spec, envelopes: [{ ...envelope, recipients: [forged.spec.envelopes[0]!.recipients[0]!, ...envelope.recipients] }] },
    };
    const error = await openEnvelopeSecret({ secret: mixed, providers: both }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(EnvelopeError);
    expect((error as EnvelopeError).code).toBe('CommitmentMismatch');
    expect((error as Error).message).toContain('envelope #0');
  });

  it('says which provider is missing when no recipient can be unwrapped', async () => {
    const secret = await sealFor({ A: 'alpha' });
    const error = await openEnvelopeSecret({ secret, providers: sealerOnly }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe('NoIdentity');
  });

  it('merges values without Decrypt, keeping untouched ciphertext byte for byte', async () => {
    const secret = await sealFor({ A: 'alpha', B: 'beta' });
    const merged = await mergeValues({ secret, values: bytes({ B: 'beta-2', C: 'gamma' }), providers: sealerOnly, random: seededRandom('merge') });
    expect(merged.spec.envelopes).toHaveLength(2);
    expect(merged.spec.envelopes[0]!.data).toEqual({ A: secret.spec.envelopes[0]!.data.A });
    expect(merged.spec.envelopes[1]!.recipients.map((r) => r.recipient)).toEqual([alice.recipient]);
    expect(validateEnvelopeSecret(merged)).toEqual([]);
    expect(text(await openEnvelopeSecret({ secret: merged, providers: aliceOnly }))).toEqual({ A: 'alpha', B: 'beta-2', C: 'gamma' });
  });

  it('drops an envelope whose keys were all replaced', async () => {
    const secret = await sealFor({ A: 'alpha' });
    const merged = await mergeValues({ secret, values: bytes({ A: 'new' }), providers: sealerOnly, random: seededRandom('m') });
    expect(merged.spec.envelopes).toHaveLength(1);
    expect(text(await openEnvelopeSecret({ secret: merged, providers: aliceOnly }))).toEqual({ A: 'new' });
  });

  it('reseals an edit: unchanged values keep their ciphertext, changed ones do not', async () => {
    const secret = await sealFor({ A: 'alpha', B: 'beta', C: 'gamma' });
    const edited = await resealValues({ secret, values: bytes({ A: 'alpha', B: 'BETA', D: 'delta' }), providers: aliceOnly, random: seededRandom('edit') });
    const before = secret.spec.envelopes[0]!;
    const after = edited.spec.envelopes[0]!;
    expect(after.data.A).toBe(before.data.A);
    expect(after.data.B).not.toBe(before.data.B);
    expect(after.data).not.toHaveProperty('C');
    expect(after.recipients).toEqual(before.recipients);
    expect(text(await openEnvelopeSecret({ secret: edited, providers: aliceOnly }))).toEqual({ A: 'alpha', B: 'BETA', D: 'delta' });
  });

  it('adds a recipient to every envelope and removes one, but never the last', async () => {
    const secret = await mergeValues({ secret: await sealFor({ A: 'alpha' }), values: bytes({ B: 'beta' }), providers: sealerOnly, random: seededRandom('x') });
    const withBob = await addRecipient({ secret, target: { provider: 'age', target: bob.recipient }, providers: aliceOnly });
    expect(withBob.spec.envelopes.every((e) => e.recipients.length === 2)).toBe(true);
    const bobOnly = new ProviderRegistry({ age: { identities: [bob.identity] } });
    expect(text(await openEnvelopeSecret({ secret: withBob, providers: bobOnly }))).toEqual({ A: 'alpha', B: 'beta' });
    expect(await addRecipient({ secret: withBob, target: { provider: 'age', target: bob.recipient }, providers: aliceOnly })).toEqual(withBob);

    const withoutAlice = await removeRecipient({ secret: withBob, target: { provider: 'age', target: alice.recipient }, providers: sealerOnly });
    await expect(openEnvelopeSecret({ secret: withoutAlice, providers: aliceOnly })).rejects.toMatchObject({ code: 'NoIdentity' });
    await expect(removeRecipient({ secret: withoutAlice, target: { provider: 'age', target: bob.recipient }, providers: sealerOnly })).rejects.toBeInstanceOf(
      EditError,
    );
    await expect(removeRecipient({ secret: withoutAlice, target: { provider: 'age', target: alice.recipient }, providers: sealerOnly })).rejects.toMatchObject({
      code: 'RecipientNotFound',
    });
  });

  it('parses recipient targets and refuses malformed ones', () => {
    expect(parseRecipientTarget('aws-kms:arn:aws:kms:eu-west-1:111122223333:key/abc')).toEqual({
      provider: 'aws-kms',
      target: 'arn:aws:kms:eu-west-1:111122223333:key/abc',
    });
    for (const bad of ['age1xyz', ':x', 'age:']) expect(() => parseRecipientTarget(bad)).toThrow(/PROVIDER:TARGET/);
  });

  it('validates sealed output and reports every structural problem', async () => {
    const secret = await sealFor({ A: 'alpha' });
    expect(parseEnvelopeSecret(secret)).toBe(secret);
    const broken = structuredClone(secret) as unknown as {
      spec: { scope: string; envelopes: { suite: string; data: Record<string, string>; recipients: { provider: string }[] }[] };
    };
    broken.spec.scope = 'global';
    broken.spec.envelopes[0]!.suite = 'ROT13';
    broken.spec.envelopes[0]!.data['bad key'] = 'AAAA';
    broken.spec.envelopes[0]!.recipients[0]!.provider = 'vault';
    const checks = validateEnvelopeSecret(broken)
      .map((i) => i.check)
      .sort();
    expect(checks).toEqual(['provider', 'size', 'structure', 'structure', 'suite']);
  });
});
