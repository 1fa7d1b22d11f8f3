import { createHmac, timingSafeEqual } from 'node:crypto';
import { COMMIT_KEY_LENGTH, DATA_KEY_LENGTH, MESSAGE_ID_LENGTH, type Suite } from './suites.ts';

export interface MessageKeys {
  /** The AES-256-GCM key of the header tag and the frames; the caller zeroes it when done. */
  encryptionKey: Buffer;
  /** Stored in the header as the suite data. */
  commitKey: Buffer;
}

/**
 * HKDF-SHA512 as the committing suites specify it: one extract step (salt = message id,
 * input = data key), then two expands: info = suite id (2 bytes) || "DERIVEKEY" for the
 * encryption key, info = "COMMITKEY" for the commitment key, 32 bytes each. One
 * SHA-512 block covers 32 bytes, so each expand is T(1) = HMAC(PRK, info || 0x01).
 */
export function deriveMessageKeys(dataKey: Uint8Array, messageId: Uint8Array, suite: Suite): MessageKeys {
  if (dataKey.byteLength !== DATA_KEY_LENGTH) throw new RangeError(`data key must be ${DATA_KEY_LENGTH} bytes`);
  if (messageId.byteLength !== MESSAGE_ID_LENGTH) throw new RangeError(`message id must be ${MESSAGE_ID_LENGTH} bytes`);
  const prk = createHmac('sha512', messageId).update(dataKey).digest();
  try {
    const suiteId = Buffer.alloc(2);
    suiteId.writeUInt16BE(suite.id);
    const t1 = createHmac('sha512', prk).update(suiteId).update('DERIVEKEY', 'utf8').update(Buffer.of(1)).digest();
    const c1 = createHmac('sha512', prk).update('COMMITKEY', 'utf8').update(Buffer.of(1)).digest();
    const keys = { encryptionKey: Buffer.from(t1.subarray(0, 32)), commitKey: Buffer.from(c1.subarray(0, COMMIT_KEY_LENGTH)) };
    t1.fill(0);
    c1.fill(0);
    return keys;
  } finally {
    prk.fill(0);
  }
}

/** Constant-time comparison of the derived and the stored commitment key. */
export function commitKeysEqual(derived: Uint8Array, stored: Uint8Array): boolean {
  return derived.byteLength === stored.byteLength && timingSafeEqual(derived, stored);
}
