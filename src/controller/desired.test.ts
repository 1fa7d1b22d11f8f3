import { describe, expect, it } from 'vitest';
import { needsReplace, secretForCache, type SecretManifest } from './desired.ts';

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

describe('secretForCache', () => {
  it('keeps no values of a mutable Secret, and everything else', () => {
    const live = secret();
    const cached = secretForCache(live);
    expect(cached).not.toHaveProperty('data');
    expect(JSON.stringify(cached)).not.toContain(base64('CANARY-cache-1'));
    expect(cached.metadata).toEqual(live.metadata);
    expect(cached.type).toBe('Opaque');
    // The object the API returned is not changed (the reconciler still reads it).
    expect(live.data.PASSWORD).toBe(base64('CANARY-cache-1'));
  });

  it('keeps the values of an immutable Secret (a change of them needs a replace)', () => {
    const cached = secretForCache(secret({ immutable: true }));
    expect(cached.data).toEqual({ PASSWORD: base64('CANARY-cache-1') });
    expect(needsReplace(cached, desired({ PASSWORD: base64('new') }, true))).toBe(true);
    expect(needsReplace(cached, desired({ PASSWORD: base64('CANARY-cache-1') }, true))).toBe(false);
  });

  it('leaves needsReplace with what it needs for a mutable Secret: its type', () => {
    expect(needsReplace(secretForCache(secret()), desired({ PASSWORD: base64('new') }))).toBe(false);
    expect(needsReplace(secretForCache(secret({ type: 'kubernetes.io/basic-auth' })), desired({ PASSWORD: base64('new') }))).toBe(true);
  });
});
