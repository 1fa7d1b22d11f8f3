import { createHash, randomBytes } from 'node:crypto';

/** Returns `length` random bytes. Injected so that sealing is deterministic in tests. */
export type RandomSource = (length: number) => Uint8Array;

export const systemRandom: RandomSource = (length) => randomBytes(length);

/**
 * A deterministic byte stream for tests and test vectors: SHA-512(seed || counter)
 * blocks. Never use it to seal real secrets.
 */
export function seededRandom(seed: string | Uint8Array): RandomSource {
  const seedBytes = typeof seed === 'string' ? Buffer.from(seed, 'utf8') : Buffer.from(seed);
  let counter = 0n;
  let pool = Buffer.alloc(0);
  return (length) => {
    while (pool.length < length) {
      const block = Buffer.alloc(8);
      block.writeBigUInt64BE(counter++);
      pool = Buffer.concat([pool, createHash('sha512').update(seedBytes).update(block).digest()]);
    }
    const out = Uint8Array.from(pool.subarray(0, length));
    pool = pool.subarray(length);
    return out;
  };
}
