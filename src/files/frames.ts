import { createCipheriv, createDecipheriv, type KeyObject } from 'node:crypto';
import { FileFormatError } from './errors.ts';
import { IV_LENGTH, MESSAGE_ID_LENGTH, TAG_LENGTH } from './suites.ts';

export const REGULAR_FRAME_AAD = 'AWSKMSEncryptionClient Frame';
export const FINAL_FRAME_AAD = 'AWSKMSEncryptionClient Final Frame';
/** The first 4 bytes of the final frame, in place of a sequence number. */
export const SEQUENCE_NUMBER_END = 0xffffffff;
/** A regular frame: UInt32 sequence number, IV; then the ciphertext and the tag. */
export const FRAME_HEADER_LENGTH = 4 + IV_LENGTH;
/** The final frame: 0xFFFFFFFF, UInt32 sequence number, IV, UInt32 content length; then ciphertext and tag. */
export const FINAL_FRAME_HEADER_LENGTH = 4 + 4 + IV_LENGTH + 4;

/** A frame's IV: its sequence number, big-endian, left-padded with zeros to 12 bytes. */
export function frameIv(sequenceNumber: number): Buffer {
  const iv = Buffer.alloc(IV_LENGTH);
  iv.writeUInt32BE(sequenceNumber, IV_LENGTH - 4);
  return iv;
}

/** Builds body AADs: message id || "AWSKMSEncryptionClient [Final ]Frame" || UInt32 sequence number || UInt64 content length. */
export class BodyAad {
  readonly #regular: Buffer;
  readonly #final: Buffer;

  constructor(messageId: Uint8Array) {
    if (messageId.byteLength !== MESSAGE_ID_LENGTH) throw new RangeError('message id must be 32 bytes');
    this.#regular = Buffer.concat([messageId, Buffer.from(REGULAR_FRAME_AAD, 'utf8')]);
    this.#final = Buffer.concat([messageId, Buffer.from(FINAL_FRAME_AAD, 'utf8')]);
  }

  of(final: boolean, sequenceNumber: number, contentLength: number): Buffer {
    const prefix = final ? this.#final : this.#regular;
    const aad = Buffer.allocUnsafe(prefix.length + 12);
    prefix.copy(aad, 0);
    aad.writeUInt32BE(sequenceNumber, prefix.length);
    aad.writeBigUInt64BE(BigInt(contentLength), prefix.length + 4);
    return aad;
  }
}

/** Serialized bytes of `regular` regular frames of `frameLength` and, when `finalLength` is given, a final frame of that many bytes. */
export function framesLength(frameLength: number, regular: number, finalLength?: number): number {
  return regular * (FRAME_HEADER_LENGTH + frameLength + TAG_LENGTH) + (finalLength === undefined ? 0 : FINAL_FRAME_HEADER_LENGTH + finalLength + TAG_LENGTH);
}

/** How `length` plaintext bytes split into frames: the final frame, when there is one, holds 0 to frameLength bytes (0 only for an empty message). */
export function splitFrames(length: number, frameLength: number, final: boolean): { regular: number; finalLength: number | undefined } {
  if (!final) {
    if (length % frameLength !== 0) throw new RangeError('a batch without the final frame holds whole frames');
    return { regular: length / frameLength, finalLength: undefined };
  }
  const regular = length === 0 ? 0 : Math.ceil(length / frameLength) - 1;
  return { regular, finalLength: length - regular * frameLength };
}

/** A frame of a message body as the decryptor found it: offsets into the bytes it was scanned from. */
export interface ScannedFrame {
  sequenceNumber: number;
  final: boolean;
  /** Offset of the ciphertext; the tag follows it. */
  contentOffset: number;
  contentLength: number;
}

/**
 * AES-256-GCM of one message's frames, with the derived key as a KeyObject (its key
 * schedule is set up once, not per frame: half the cost of a 64 KiB frame otherwise)
 * and the IV and AAD written into two scratch buffers (createCipheriv and setAAD copy
 * them). Serialized frames go into a caller's buffer, so a batch of frames is one
 * contiguous write and one signature update. Has no other state: the main thread and
 * the workers of workers.ts run the same code on the same bytes.
 */
export class FrameCipher {
  readonly messageId: Buffer;
  readonly #key: KeyObject;
  readonly #iv = Buffer.alloc(IV_LENGTH);
  readonly #regularAad: Buffer;
  readonly #finalAad: Buffer;

  constructor(key: KeyObject, messageId: Uint8Array) {
    if (messageId.byteLength !== MESSAGE_ID_LENGTH) throw new RangeError('message id must be 32 bytes');
    this.#key = key;
    this.messageId = Buffer.from(messageId);
    this.#regularAad = Buffer.concat([messageId, Buffer.from(REGULAR_FRAME_AAD, 'utf8'), Buffer.alloc(12)]);
    this.#finalAad = Buffer.concat([messageId, Buffer.from(FINAL_FRAME_AAD, 'utf8'), Buffer.alloc(12)]);
  }

  get key(): KeyObject {
    return this.#key;
  }

  #setup(final: boolean, sequenceNumber: number, contentLength: number): Buffer {
    this.#iv.writeUInt32BE(sequenceNumber, IV_LENGTH - 4);
    const aad = final ? this.#finalAad : this.#regularAad;
    aad.writeUInt32BE(sequenceNumber, aad.length - 12);
    aad.writeUInt32BE(Math.floor(contentLength / 2 ** 32), aad.length - 8);
    aad.writeUInt32BE(contentLength >>> 0, aad.length - 4);
    return aad;
  }

  /**
   * Encrypts `plaintext` as consecutive frames from `sequenceNumber` (see splitFrames;
   * the last one is the final frame when `final`) and serializes them into `out` at
   * `offset`. Returns the offset after the last frame.
   */
  encryptFrames(plaintext: Uint8Array, frameLength: number, sequenceNumber: number, final: boolean, out: Buffer, offset: number): number {
    const { regular, finalLength } = splitFrames(plaintext.byteLength, frameLength, final);
    let position = offset;
    let input = 0;
    for (let i = 0; i < regular; i++) {
      position = this.#encryptFrame(plaintext.subarray(input, input + frameLength), false, sequenceNumber + i, out, position);
      input += frameLength;
    }
    if (finalLength !== undefined) position = this.#encryptFrame(plaintext.subarray(input), true, sequenceNumber + regular, out, position);
    return position;
  }

  #encryptFrame(plaintext: Uint8Array, final: boolean, sequenceNumber: number, out: Buffer, offset: number): number {
    const aad = this.#setup(final, sequenceNumber, plaintext.byteLength);
    let position = offset;
    if (final) {
      out.writeUInt32BE(SEQUENCE_NUMBER_END, position);
      out.writeUInt32BE(sequenceNumber, position + 4);
      this.#iv.copy(out, position + 8);
      out.writeUInt32BE(plaintext.byteLength, position + 8 + IV_LENGTH);
      position += FINAL_FRAME_HEADER_LENGTH;
    } else {
      out.writeUInt32BE(sequenceNumber, position);
      this.#iv.copy(out, position + 4);
      position += FRAME_HEADER_LENGTH;
    }
    const cipher = createCipheriv('aes-256-gcm', this.#key, this.#iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    if (plaintext.byteLength > 0) position += cipher.update(plaintext).copy(out, position);
    position += cipher.final().copy(out, position);
    position += cipher.getAuthTag().copy(out, position);
    return position;
  }

  /**
   * Decrypts scanned frames of `bytes` into `out` at `offset`, in order; returns the
   * offset after the plaintext. Throws FrameAuthenticationFailed, after zeroing what it
   * wrote to `out`, as soon as a tag does not verify: `out` then holds no plaintext.
   */
  decryptFrames(bytes: Uint8Array, frames: readonly ScannedFrame[], out: Buffer, offset: number): number {
    let position = offset;
    const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const frame of frames) {
      const aad = this.#setup(frame.final, frame.sequenceNumber, frame.contentLength);
      const decipher = createDecipheriv('aes-256-gcm', this.#key, this.#iv, { authTagLength: TAG_LENGTH });
      decipher.setAAD(aad);
      const end = frame.contentOffset + frame.contentLength;
      decipher.setAuthTag(source.subarray(end, end + TAG_LENGTH));
      let part: Buffer | undefined;
      try {
        if (frame.contentLength > 0) {
          part = decipher.update(source.subarray(frame.contentOffset, end));
          position += part.copy(out, position);
        }
        position += decipher.final().copy(out, position);
      } catch (cause) {
        part?.fill(0);
        out.fill(0, offset, position);
        throw new FileFormatError(
          'FrameAuthenticationFailed',
          `frame ${frame.sequenceNumber} does not authenticate: it was altered, or moved from another message`,
          {
            cause: new Error(cause instanceof Error ? cause.message.slice(0, 80) : 'crypto error'),
          },
        );
      }
    }
    return position;
  }
}
