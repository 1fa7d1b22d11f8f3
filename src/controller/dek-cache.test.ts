import { describe, expect, it } from 'vitest';
import type { Envelope } from '../api/types.ts';
import { DataKeyCache } from './dek-cache.ts';

const envelope = (encryptedKey: string): Envelope =>
  ({ id: 'e1', suite: 'A256GCM-HKDF-SHA512', commitment: 'c', recipients: [{ provider: 'age', encryptedKey }], data: {} }) as unknown as Envelope;
const key = (fill: number) => new Uint8Array(32).fill(fill);

describe('DataKeyCache', () => {
  it('keys entries by binding and wrapped keys: a copied envelope in another namespace never hits', () => {
    const e = envelope('wrapped');
    expect(DataKeyCache.keyOf({ scope: 'strict', namespace: 'a', name: 'db' }, e)).not.toBe(
      DataKeyCache.keyOf({ scope: 'strict', namespace: 'b', name: 'db' }, e),
    );
    expect(DataKeyCache.keyOf({ scope: 'strict', namespace: 'a', name: 'db' }, e)).not.toBe(
      DataKeyCache.keyOf({ scope: 'strict', namespace: 'a', name: 'db' }, envelope('other')),
    );
  });

  it('hands out copies (the caller zeroes its own), and expires entries after their time to live', () => {
    let now = 0;
    const cache = new DataKeyCache({ maxEntries: 2, ttlMs: 1000, now: () => now });
    const original = key(7);
    cache.set('a', original);
    original.fill(0); // the caller zeroes its own copy
    const copy = cache.get('a')!;
    expect(copy).toEqual(key(7));
    copy.fill(0);
    expect(cache.get('a')).toEqual(key(7));
    now = 1000;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('drops the least recently used entry beyond its size', () => {
    const cache = new DataKeyCache({ maxEntries: 2, ttlMs: 60_000, now: () => 0 });
    cache.set('a', key(1));
    cache.set('b', key(2));
    cache.get('a');
    cache.set('c', key(3));
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toEqual(key(1));
    expect(cache.get('c')).toEqual(key(3));
    cache.clear();
    expect(cache.size).toBe(0);
  });
});
