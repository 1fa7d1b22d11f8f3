import { describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../api/types.ts';
import { validateEnvelopeSecret } from '../api/validation.ts';
import { seededRandom } from '../envelope/random.ts';
import { generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { mergeValues } from './edit.ts';
import { openEnvelopeSecret } from './open.ts';
import { RekeyError, removeRecipients } from './rekey.ts';
import { sealEnvelopeSecret } from './seal.ts';

const [a, b, c] = await Promise.all([generateAgeIdentity(), generateAgeIdentity(), generateAgeIdentity()]);
const all = new ProviderRegistry({ age: { identities: [a!.identity, b!.identity, c!.identity] } });
const target = (p: { recipient: string }) => ({ provider: 'age', target: p.recipient });
const text = (values: Record<string, Buffer>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, v.toString('utf8')]));

async function twoEnvelopes(): Promise<EnvelopeSecret> {
  const first = await sealEnvelopeSecret({
    values: { A: Buffer.from('a') },
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    targets: [target(a!), target(b!), target(c!)],
    providers: all,
    random: seededRandom('rekey-1'),
  });
  return mergeValues({ secret: first, values: { B: Buffer.from('b') }, targets: [target(a!)], providers: all, random: seededRandom('rekey-2') });
}

describe('removeRecipients', () => {
  it('removes several recipients and re-keys each envelope that lost one, once; the others keep their bytes', async () => {
    const secret = await twoEnvelopes();
    const result = await removeRecipients({ secret, targets: [target(b!), target(c!)], rekey: 'always', providers: all, random: seededRandom('rekey-3') });
    expect(result.rekeyed).toEqual([0]);
    expect(result.wrappingOnly).toEqual([]);
    expect(result.secret.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([a!.recipient]);
    expect(result.secret.spec.envelopes[0]!.id).not.toBe(secret.spec.envelopes[0]!.id);
    expect(result.secret.spec.envelopes[1]).toEqual(secret.spec.envelopes[1]);
    expect(validateEnvelopeSecret(result.secret)).toEqual([]);
    expect(text(await openEnvelopeSecret({ secret: result.secret, providers: all }))).toEqual({ A: 'a', B: 'b' });
  });

  it('cannot re-key for a remaining recipient that records no target: auto removes the wrapping only, always refuses', async () => {
    const secret = await twoEnvelopes();
    const { recipient: _recipient, ...anonymous } = secret.spec.envelopes[0]!.recipients[2]!;
    const envelopes = [{ ...secret.spec.envelopes[0]!, recipients: [secret.spec.envelopes[0]!.recipients[1]!, anonymous] }, secret.spec.envelopes[1]!];
    const odd: EnvelopeSecret = { ...secret, spec: { ...secret.spec, envelopes } };
    const request = { secret: odd, targets: [target(b!)], providers: all, random: seededRandom('rekey-4') };
    const auto = await removeRecipients({ ...request, rekey: 'auto' });
    expect(auto.wrappingOnly).toEqual([{ index: 0, keys: ['A'], reason: 'a remaining age recipient records no public target to seal for' }]);
    expect(auto.secret.spec.envelopes[0]!.recipients).toEqual([anonymous]);
    const always = removeRecipients({ ...request, rekey: 'always' });
    await expect(always).rejects.toThrow(RekeyError);
    await expect(always).rejects.toMatchObject({ code: 'NoTarget', exitClass: 'refused' });
  });
});
