import { describe, expect, it } from 'vitest';
import { needsReplace, type SecretManifest, specHash } from './desired.ts';
import { envelopeSecretRecord, secretRecord } from './records.ts';

const base64 = (text: string) => Buffer.from(text).toString('base64');

function secret(options: { immutable?: boolean; type?: string } = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'db', namespace: 'prod', resourceVersion: '42', annotations: { 'envseal.dev/spec-hash': 'sha256:x' } },
    type: options.type ?? 'Opaque',
    ...(options.immutable === undefined ? {} : { immutable: options.immutable }),
    data: { PASSWORD: base64('CANARY-cache-1') },
  };
}

const desired = (data: Record<string, string>, immutable = false): SecretManifest =>
  ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'prod' }, type: 'Opaque', immutable, data }) as unknown as SecretManifest;

describe('secretRecord', () => {
  it('keeps no values of a mutable Secret, and everything else', () => {
    const live = secret();
    const cached = secretRecord(live);
    expect(cached).not.toHaveProperty('data');
    expect(JSON.stringify(cached)).not.toContain(base64('CANARY-cache-1'));
    expect(cached.metadata).toEqual(live.metadata);
    expect(cached.type).toBe('Opaque');
    // The object the API returned is not changed (the reconciler still reads it).
    expect(live.data.PASSWORD).toBe(base64('CANARY-cache-1'));
  });

  it('keeps no values of an immutable Secret either (the replace decision reads the live Secret)', () => {
    const cached = secretRecord(secret({ immutable: true }));
    expect(cached).not.toHaveProperty('data');
    expect(cached.immutable).toBe(true);
    // On the live Secret, with its data, the decision is right.
    expect(needsReplace(secret({ immutable: true }), desired({ PASSWORD: base64('new') }, true))).toBe(true);
    expect(needsReplace(secret({ immutable: true }), desired({ PASSWORD: base64('CANARY-cache-1') }, true))).toBe(false);
  });

  it('leaves needsReplace with what it needs for a mutable Secret: its type', () => {
    expect(needsReplace(secretRecord(secret()), desired({ PASSWORD: base64('new') }))).toBe(false);
    expect(needsReplace(secretRecord(secret({ type: 'kubernetes.io/basic-auth' })), desired({ PASSWORD: base64('new') }))).toBe(true);
  });
});

describe('envelopeSecretRecord', () => {
  const big = {
    apiVersion: 'envseal.dev/v1alpha1' as const,
    kind: 'EnvelopeSecret' as const,
    metadata: { name: 'db', namespace: 'prod', uid: 'u1', generation: 3, resourceVersion: '9', annotations: { note: 'x'.repeat(100_000) }, labels: { a: 'b' } },
    spec: {
      envelopes: [
        { id: 'i', suite: 's', commitment: 'c', recipients: [{ provider: 'age', encryptedKey: 'k'.repeat(60_000) }], data: { A: 'v'.repeat(1_000_000) } },
      ],
    },
    status: { observedGeneration: 3, secretResourceVersion: '7', conditions: [] },
  };

  it('keeps identity, status and the spec hash, and nothing of the sealed spec or large metadata', () => {
    const record = envelopeSecretRecord(big);
    expect(record.metadata).toEqual({ name: 'db', namespace: 'prod', uid: 'u1', generation: 3, resourceVersion: '9' });
    expect(record.status).toEqual(big.status);
    expect(record.specHash).toBe(specHash(big));
    expect(JSON.stringify(record).length).toBeLessThan(400);
  });
});
