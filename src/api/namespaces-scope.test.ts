import { describe, expect, it } from 'vitest';
import { recipientsFor } from './namespaces-scope.ts';
import { validateEnvelopeSecret } from './validation.ts';

const id = Buffer.alloc(32, 1).toString('base64');
const blob = Buffer.alloc(64, 2).toString('base64');
const arn = 'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000';
const kms = (namespace?: string) => ({ provider: 'aws-kms', keyId: arn, encryptedKey: blob, ...(namespace === undefined ? {} : { namespace }) });

function manifest(spec: Record<string, unknown>, recipients: unknown[], namespace = 'team-a') {
  return {
    apiVersion: 'envseal.dev/v1alpha1',
    kind: 'EnvelopeSecret',
    metadata: { name: 'db', namespace },
    spec: { envelopes: [{ id, suite: 'A256GCM-HKDF-SHA512-COMMIT', commitment: id, recipients, data: { K: Buffer.alloc(40).toString('base64') } }], ...spec },
  };
}
const problems = (doc: unknown) => validateEnvelopeSecret(doc).map((i) => `${i.path}: ${i.message}`);

describe('scope namespaces, offline', () => {
  it('accepts one KMS wrapping per listed namespace', () => {
    expect(problems(manifest({ scope: 'namespaces', namespaces: ['team-a', 'team-b'] }, [kms('team-a'), kms('team-b')]))).toEqual([]);
  });

  it('refuses a missing, unsorted, duplicated or oversized list, and a list with another scope', () => {
    expect(problems(manifest({ scope: 'namespaces' }, [kms('team-a')]))).toEqual([
      expect.stringMatching(/^spec.namespaces: is required with scope namespaces/),
    ]);
    expect(problems(manifest({ scope: 'namespaces', namespaces: ['team-b', 'team-a'] }, [kms('team-a'), kms('team-b')]))).toEqual([
      'spec.namespaces: entry #1 is not after entry #0: the list must be sorted, without duplicates',
    ]);
    expect(problems(manifest({ scope: 'namespaces', namespaces: ['team-a', 'team-a'] }, [kms('team-a')]))).toHaveLength(1);
    const many = Array.from({ length: 33 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    expect(problems(manifest({ scope: 'namespaces', namespaces: many }, [kms('n00')], 'n00'))).toEqual(['spec.namespaces: names 33 namespaces; at most 32']);
    expect(problems(manifest({ scope: 'strict', namespaces: ['team-a'] }, [kms()]))).toEqual(['spec.namespaces: is only allowed with scope namespaces']);
  });

  it('requires every KMS key to wrap exactly once for each listed namespace, and no namespace on context-free or other-scope recipients', () => {
    const scope = { scope: 'namespaces', namespaces: ['team-a', 'team-b'] };
    expect(problems(manifest(scope, [kms('team-a')]))).toEqual([expect.stringMatching(/has no wrapping for namespace "team-b"/)]);
    expect(problems(manifest(scope, [kms()]))).toEqual([expect.stringMatching(/recipients\[0\].namespace: is required on a aws-kms recipient/)]);
    expect(problems(manifest(scope, [kms('team-a'), kms('team-b'), kms('team-b')]))).toEqual([expect.stringMatching(/wraps for namespace "team-b" twice/)]);
    expect(problems(manifest(scope, [kms('team-a'), kms('team-b'), kms('team-c')]))).toEqual([expect.stringMatching(/"team-c" is not in spec.namespaces/)]);
    expect(problems(manifest({}, [kms('team-a')]))).toEqual(['spec.envelopes[0].recipients[0].namespace: is only allowed with scope namespaces']);
  });

  it('allows 64 wrappings in an envelope, but at most 16 that one namespace may try', () => {
    const names = Array.from({ length: 32 }, (_, i) => `n${String(i).padStart(2, '0')}`);
    const twoKeys = names.flatMap((ns) => [kms(ns), { ...kms(ns), keyId: `${arn}1` }]);
    expect(problems(manifest({ scope: 'namespaces', namespaces: names }, twoKeys, 'n00'))).toEqual([]);
    expect(problems(manifest({ scope: 'namespaces', namespaces: names }, [...twoKeys, kms('n00')], 'n00'))).toContainEqual(
      'spec.envelopes[0].recipients: has 65 recipients; at most 64 per envelope',
    );
    const keys = Array.from({ length: 17 }, (_, k) => ({ ...kms('a'), keyId: `${arn}${k}` }));
    expect(problems(manifest({ scope: 'namespaces', namespaces: ['a'] }, keys, 'a'))).toContainEqual(
      'spec.envelopes[0].recipients: a reader in one namespace may try 17 recipients; at most 16 per envelope',
    );
  });

  it("gives a reader its own namespace's wrappings and the context-free ones", () => {
    const age = { provider: 'age', recipient: 'age1x', encryptedKey: blob };
    const recipients = [kms('team-a'), kms('team-b'), age];
    const binding = { scope: 'namespaces' as const, namespace: 'team-b', name: 'db', namespaces: ['team-a', 'team-b'] };
    expect(recipientsFor(recipients, binding)).toEqual([kms('team-b'), age]);
    expect(recipientsFor(recipients, { ...binding, scope: 'strict' })).toEqual(recipients);
  });
});
