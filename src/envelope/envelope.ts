import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import { decodeBase64, encodeBase64 } from './base64.ts';
import { type Binding, valueAad } from './context.ts';
import { EnvelopeError } from './errors.ts';
import { DATA_KEY_LENGTH, ENVELOPE_ID_LENGTH, deriveKeys } from './kdf.ts';
import type { RandomSource } from './random.ts';
import { clip } from '../util/message.ts';

export const FORMAT_VERSION = '1';
export const SUITE = 'A256GCM-HKDF-SHA512-COMMIT';
export const SUPPORTED_SUITES: readonly string[] = [SUITE];

const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
export const COMMITMENT_LENGTH = 32;
/** nonce (12) and tag (16) around each sealed value. */
export const VALUE_OVERHEAD_BYTES = NONCE_LENGTH + TAG_LENGTH;

/** The cryptographic part of one envelope: what the recipients' wrapped keys protect. */
export interface EnvelopeBody {
  /** base64 of 32 random bytes */
  id: string;
  suite: string;
  /** base64 of the 32-byte key commitment */
  commitment: string;
  /** data key name -> base64(nonce || ciphertext || tag) */
  data: Record<string, string>;
}

/** A fresh envelope id (base64 of 32 random bytes). */
export function newEnvelopeId(random: RandomSource): string {
  return encodeBase64(random(ENVELOPE_ID_LENGTH));
}

export interface SealEnvelopeInput {
  dataKey: Uint8Array;
  binding: Binding;
  values: Record<string, Uint8Array>;
  random: RandomSource;
  /** Defaults to a fresh id from `random`. */
  envelopeId?: string;
}

/** Encrypts every value under a new envelope (or the given id) and computes the commitment. */
export function sealEnvelope(input: SealEnvelopeInput): EnvelopeBody {
  const id = input.envelopeId ?? newEnvelopeId(input.random);
  const keys = derive(input.dataKey, id);
  try {
    const data: Record<string, string> = {};
    for (const [key, plaintext] of Object.entries(input.values)) {
      checkKeyName(key);
      data[key] = encryptValue({ valueKey: keys.valueKey, envelopeId: id, binding: input.binding, key, plaintext, random: input.random });
    }
    return { id, suite: SUITE, commitment: encodeBase64(keys.commitment), data };
  } finally {
    keys.valueKey.fill(0);
  }
}

export interface SealValueInput {
  dataKey: Uint8Array;
  binding: Binding;
  /** The envelope the value joins; its commitment must match the data key. */
  envelope: Pick<EnvelopeBody, 'id' | 'suite' | 'commitment'>;
  key: string;
  plaintext: Uint8Array;
  random: RandomSource;
}

/** Encrypts one value into an existing envelope, for a holder of its data key. */
export function sealValue(input: SealValueInput): string {
  checkSuite(input.envelope.suite);
  const keys = derive(input.dataKey, input.envelope.id);
  try {
    verifyCommitment(keys.commitment, input.envelope.commitment);
    return encryptValue({
      valueKey: keys.valueKey,
      envelopeId: input.envelope.id,
      binding: input.binding,
      key: input.key,
      plaintext: input.plaintext,
      random: input.random,
    });
  } finally {
    keys.valueKey.fill(0);
  }
}

export interface OpenEnvelopeInput {
  dataKey: Uint8Array;
  binding: Binding;
  envelope: EnvelopeBody;
  /** Open only these keys (default: all). */
  keys?: readonly string[];
}

/**
 * Checks the key commitment in constant time, then opens every value. Any failure is an
 * EnvelopeError; no partial result is returned.
 */
export function openEnvelope(input: OpenEnvelopeInput): Record<string, Buffer> {
  const { envelope } = input;
  checkSuite(envelope.suite);
  const keys = derive(input.dataKey, envelope.id);
  const opened: Record<string, Buffer> = {};
  try {
    verifyCommitment(keys.commitment, envelope.commitment);
    const wanted = input.keys ?? Object.keys(envelope.data);
    for (const key of wanted) {
      checkKeyName(key);
      const sealed = Object.hasOwn(envelope.data, key) ? envelope.data[key] : undefined;
      if (sealed === undefined) {
        throw new EnvelopeError('InvalidEnvelope', `envelope has no value for key "${key}"`, { field: key });
      }
      opened[key] = decryptValue({ valueKey: keys.valueKey, envelopeId: envelope.id, binding: input.binding, key, sealed });
    }
    return opened;
  } catch (error) {
    for (const value of Object.values(opened)) value.fill(0);
    throw error;
  } finally {
    keys.valueKey.fill(0);
  }
}

/** Throws CommitmentMismatch unless `dataKey` is the key the envelope was sealed with. */
export function checkCommitment(dataKey: Uint8Array, envelope: Pick<EnvelopeBody, 'id' | 'suite' | 'commitment'>): void {
  checkSuite(envelope.suite);
  const keys = derive(dataKey, envelope.id);
  keys.valueKey.fill(0);
  verifyCommitment(keys.commitment, envelope.commitment);
}

/** `__proto__` cannot be a plain key of a JavaScript object: refused, never silently dropped. */
function checkKeyName(key: string): void {
  if (key === '__proto__') throw new EnvelopeError('InvalidEnvelope', 'the key name "__proto__" is not supported', { field: key });
}

export function checkSuite(suite: string): void {
  if (!SUPPORTED_SUITES.includes(suite)) {
    throw new EnvelopeError('UnknownSuite', `unknown suite "${truncateForMessage(suite)}" (this version knows ${SUPPORTED_SUITES.join(', ')})`, {
      field: 'suite',
    });
  }
}

function derive(dataKey: Uint8Array, envelopeId: string) {
  if (dataKey.length !== DATA_KEY_LENGTH) {
    throw new EnvelopeError('InvalidDataKey', `data key must be ${DATA_KEY_LENGTH} bytes`);
  }
  const id = decodeBase64(envelopeId, 'envelope id');
  if (id.length !== ENVELOPE_ID_LENGTH) {
    throw new EnvelopeError('InvalidEnvelope', `envelope id must be ${ENVELOPE_ID_LENGTH} bytes`, { field: 'id' });
  }
  return deriveKeys(dataKey, id);
}

function verifyCommitment(computed: Buffer, stored: string): void {
  const expected = decodeBase64(stored, 'envelope commitment');
  if (expected.length !== COMMITMENT_LENGTH) {
    throw new EnvelopeError('InvalidEnvelope', `commitment must be ${COMMITMENT_LENGTH} bytes`, { field: 'commitment' });
  }
  if (!timingSafeEqual(computed, expected)) {
    throw new EnvelopeError('CommitmentMismatch', 'the unwrapped data key does not match the envelope commitment: a recipient wraps a different data key', {
      field: 'commitment',
    });
  }
}

interface ValueCryptoInput {
  valueKey: Buffer;
  envelopeId: string;
  binding: Binding;
  key: string;
}

function aadFor(input: ValueCryptoInput): Buffer {
  return valueAad({ binding: input.binding, formatVersion: FORMAT_VERSION, suite: SUITE, envelopeId: input.envelopeId, key: input.key });
}

function encryptValue(input: ValueCryptoInput & { plaintext: Uint8Array; random: RandomSource }): string {
  const nonce = input.random(NONCE_LENGTH);
  if (nonce.length !== NONCE_LENGTH) throw new EnvelopeError('InvalidEnvelope', 'random source returned a short nonce');
  const cipher = createCipheriv('aes-256-gcm', input.valueKey, nonce, { authTagLength: TAG_LENGTH });
  cipher.setAAD(aadFor(input));
  const body = Buffer.concat([cipher.update(input.plaintext), cipher.final()]);
  return encodeBase64(Buffer.concat([nonce, body, cipher.getAuthTag()]));
}

function decryptValue(input: ValueCryptoInput & { sealed: string }): Buffer {
  const field = `value "${input.key}"`;
  const bytes = decodeBase64(input.sealed, field);
  if (bytes.length < NONCE_LENGTH + TAG_LENGTH) {
    throw new EnvelopeError('InvalidEnvelope', `${field} is shorter than a nonce and a tag`, { field: input.key });
  }
  const nonce = bytes.subarray(0, NONCE_LENGTH);
  const tag = bytes.subarray(bytes.length - TAG_LENGTH);
  const decipher = createDecipheriv('aes-256-gcm', input.valueKey, nonce, { authTagLength: TAG_LENGTH });
  decipher.setAAD(aadFor(input));
  decipher.setAuthTag(tag);
  const plaintext = decipher.update(bytes.subarray(NONCE_LENGTH, bytes.length - TAG_LENGTH));
  try {
    return Buffer.concat([plaintext, decipher.final()]);
  } catch (cause) {
    plaintext.fill(0);
    throw new EnvelopeError(
      'ValueAuthenticationFailed',
      `${field} did not authenticate: it was altered, moved from another key or envelope, or sealed for another namespace, name or scope`,
      { field: input.key, cause },
    );
  }
}

function truncateForMessage(text: string): string {
  return clip(text, 64);
}
