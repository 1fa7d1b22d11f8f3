// The CRD refuses malformed EnvelopeSecrets at `kubectl apply` time, with a message that
// names the problem.
import { beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { seededRandom } from '../../src/envelope/random.ts';
import { generateAgeIdentity } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../../src/sealing/seal.ts';
import { uniqueName } from '../harness/cluster.ts';
import { adminClient, createNamespace, installCrd, kubectl, kubectlApply } from '../harness/kube.ts';

const ns = uniqueName('crd');
let valid: EnvelopeSecret;

type Mutable = { metadata: { name: string; namespace?: string }; spec: Record<string, unknown> & { envelopes: Record<string, unknown>[] } };
function variant(name: string, change: (doc: Mutable) => void): unknown {
  const doc = structuredClone(valid) as unknown as Mutable;
  doc.metadata.name = name;
  change(doc);
  return doc;
}

beforeAll(async () => {
  await installCrd();
  await createNamespace(adminClient(), ns);
  const { recipient } = await generateAgeIdentity();
  valid = await sealEnvelopeSecret({
    values: { A: Buffer.from('a'), B: Buffer.from('b') },
    binding: { scope: 'strict', namespace: ns, name: 'valid' },
    targets: [{ provider: 'age', target: recipient }],
    providers: new ProviderRegistry({}),
    random: seededRandom('crd'),
  });
});

describe('the EnvelopeSecret CRD', () => {
  it('accepts a sealed manifest and defaults the scope', async () => {
    const noScope = variant('defaulted', (d) => delete d.spec.scope);
    expect((await kubectlApply(valid)).code).toBe(0);
    expect((await kubectlApply(noScope)).code).toBe(0);
    const scope = await kubectl(['get', 'esec', '-n', ns, 'defaulted', '-o', 'jsonpath={.spec.scope}']);
    expect(scope.stdout).toBe('strict');
  });

  it.each([
    ['an unknown scope', (d: Mutable) => (d.spec.scope = 'global'), /spec.scope: Unsupported value: "global"/],
    ['no envelopes', (d: Mutable) => (d.spec.envelopes = []), /spec.envelopes: Invalid value: 0: spec.envelopes in body should have at least 1 items/],
    ['empty recipients', (d: Mutable) => (d.spec.envelopes[0]!.recipients = []), /recipients in body should have at least 1 items/],
    ['an unknown provider', (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.provider = 'vault'), /provider: Unsupported value: "vault"/],
    ['an aws-kms recipient without a key ARN', (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.provider = 'aws-kms'), /an aws-kms recipient needs keyId, the full key ARN/],
    ['an unknown suite', (d: Mutable) => (d.spec.envelopes[0]!.suite = 'A128CBC-HS256'), /suite: Unsupported value: "A128CBC-HS256"/],
    ['an invalid data key name', (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>)['bad key!'] = (d.spec.envelopes[0]!.data as Record<string, string>).A!), /data key names must be valid Secret keys/],
    ['a data key named ..x', (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>)['..x'] = (d.spec.envelopes[0]!.data as Record<string, string>).A!), /data key names must be valid Secret keys/],
    ['a data key in two envelopes', (d: Mutable) => d.spec.envelopes.push(structuredClone(d.spec.envelopes[0]!)), /data key names must be unique across envelopes/],
    ['a value that is not base64', (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>).A = 'this is not base64 at all, clearly; it has spaces and punctuation!'), /data.A in body should match/],
    ['URL-safe base64 in the id', (d: Mutable) => (d.spec.envelopes[0]!.id = String(d.spec.envelopes[0]!.id).replace(/.$/, '').replace(/.$/, '_=')), /id in body should match/],
    ['a truncated commitment', (d: Mutable) => (d.spec.envelopes[0]!.commitment = 'AAAA'), /commitment in body should match/],
    ['a truncated value', (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>).A = 'AAAA'), /data.A in body should be at least 40 chars long/],
    ['a non-base64 encryptedKey', (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.encryptedKey = 'a-b-c-d'), /encryptedKey in body should match/],
    ['a restart of an unsupported kind', (d: Mutable) => (d.spec.restartWorkloads = [{ kind: 'CronJob', name: 'x' }]), /kind: Unsupported value: "CronJob"/],
  ])('refuses %s', async (what, change, message) => {
    const name = `bad-${what.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`.slice(0, 60).replace(/-$/, '');
    const result = await kubectlApply(variant(name, change));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
    const got = await kubectl(['get', 'envelopesecret', '-n', ns, name]);
    expect(got.code).not.toBe(0);
  });

  it('has printer columns, a short name and a status subresource', async () => {
    const table = await kubectl(['get', 'esec', '-n', ns]);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+READY\s+REASON\s+AGE/);
    const wide = await kubectl(['get', 'esec', '-n', ns, '-o', 'wide']);
    expect(wide.stdout.split('\n')[0]).toMatch(/SCOPE/);
    // A spec update cannot write status; the status subresource can.
    const patched = await kubectl(['patch', 'esec', '-n', ns, 'valid', '--subresource=status', '--type=merge', '-p', '{"status":{"observedGeneration":1}}']);
    expect(patched.code).toBe(0);
  });
});
