import { IV_LENGTH, MESSAGE_ID_LENGTH } from './suites.ts';

export const REGULAR_FRAME_AAD = 'AWSKMSEncryptionClient Frame';
export const FINAL_FRAME_AAD = 'AWSKMSEncryptionClient Final Frame';
/** The first 4 bytes of the final frame, in place of a sequence number. */
export const SEQUENCE_NUMBER_END = 0xffffffff;

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
