import { createCipheriv } from 'node:crypto';
import type { RandomSource } from '../envelope/random.ts';
import { FileFormatError } from './errors.ts';
import { BodyAad, frameIv, SEQUENCE_NUMBER_END } from './frames.ts';
import { type EncryptedDataKey, serializeHeaderBody } from './header.ts';
import { deriveMessageKeys } from './kdf.ts';
import { generateSigningKey, MessageSigner, type SigningKey } from './signature.ts';
import {
  DEFAULT_FRAME_LENGTH,
  IV_LENGTH,
  MAX_FRAME_COUNT,
  MAX_FRAME_LENGTH,
  MESSAGE_ID_LENGTH,
  PUBLIC_KEY_CONTEXT_KEY,
  RESERVED_CONTEXT_PREFIX,
  type Suite,
  TAG_LENGTH,
} from './suites.ts';

/** What a message needs before its data key exists: made first, because KMS sees the whole context. */
export interface MessagePreparation {
  suite: Suite;
  messageId: Buffer;
  /** The caller's context plus, for the signed suite, aws-crypto-public-key: the KMS encryption context too. */
  encryptionContext: Record<string, string>;
  signingKey?: SigningKey;
}

/** Checks a caller's encryption context: no key with the reserved aws-crypto- prefix, no empty key. */
export function checkUserContext(context: Readonly<Record<string, string>>): void {
  for (const key of Object.keys(context)) {
    if (key === '') throw new FileFormatError('InvalidContext', 'an encryption context key is empty');
    if (key.startsWith(RESERVED_CONTEXT_PREFIX)) {
      throw new FileFormatError('ReservedContextKey', `encryption context keys starting with ${RESERVED_CONTEXT_PREFIX} are reserved (got ${JSON.stringify(key.slice(0, 60))})`);
    }
  }
}

/** Draws the message id (and the signing key of the signed suite) from `random`. */
export function prepareMessage(options: { suite: Suite; encryptionContext: Readonly<Record<string, string>>; random: RandomSource }): MessagePreparation {
  checkUserContext(options.encryptionContext);
  const messageId = Buffer.from(options.random(MESSAGE_ID_LENGTH));
  if (messageId.length !== MESSAGE_ID_LENGTH) throw new FileFormatError('InvalidArgument', 'the random source returned a short message id');
  const encryptionContext = { ...options.encryptionContext };
  if (!options.suite.signed) return { suite: options.suite, messageId, encryptionContext };
  const signingKey = generateSigningKey(options.random);
  encryptionContext[PUBLIC_KEY_CONTEXT_KEY] = signingKey.publicKeyBase64;
  return { suite: options.suite, messageId, encryptionContext, signingKey };
}

export interface EncryptorOptions extends MessagePreparation {
  /** 32 bytes; the encryptor keeps only the derived key (zero the data key yourself). */
  dataKey: Uint8Array;
  encryptedDataKeys: EncryptedDataKey[];
  /** Default 64 KiB. */
  frameLength?: number;
}

const FRAME_HEADER_LENGTH = 4 + IV_LENGTH;
const FINAL_FRAME_HEADER_LENGTH = 4 + 4 + IV_LENGTH + 4;

/**
 * Encrypts one message, synchronously and incrementally: header(), then push() for
 * each chunk of plaintext (it returns the regular frames that are complete), then
 * end() for the final frame and, for the signed suite, the footer. It holds at most
 * one frame of plaintext (as references to the pushed chunks) at a time. The output
 * buffers are new; input chunks are not modified.
 */
export class MessageEncryptor {
  readonly suite: Suite;
  readonly frameLength: number;
  readonly #key: Buffer;
  readonly #aad: BodyAad;
  readonly #signer: MessageSigner | undefined;
  readonly #header: Buffer;
  #headerTaken = false;
  #pending: Buffer[] = [];
  #pendingLength = 0;
  #sequenceNumber = 1;
  #ended = false;
  #plaintextLength = 0;

  constructor(options: EncryptorOptions) {
    const frameLength = options.frameLength ?? DEFAULT_FRAME_LENGTH;
    if (!Number.isInteger(frameLength) || frameLength < 1 || frameLength > MAX_FRAME_LENGTH) {
      throw new FileFormatError('InvalidArgument', `the frame length must be a whole number from 1 to ${MAX_FRAME_LENGTH}`);
    }
    if (options.suite.signed !== (options.signingKey !== undefined)) {
      throw new FileFormatError('InvalidArgument', options.suite.signed ? 'the signed suite needs a signing key' : 'an unsigned suite takes no signing key');
    }
    if (options.suite.signed && options.encryptionContext[PUBLIC_KEY_CONTEXT_KEY] !== options.signingKey?.publicKeyBase64) {
      throw new FileFormatError('InvalidArgument', `the encryption context must hold the signing key's ${PUBLIC_KEY_CONTEXT_KEY}`);
    }
    if (!options.suite.signed && Object.hasOwn(options.encryptionContext, PUBLIC_KEY_CONTEXT_KEY)) {
      throw new FileFormatError('InvalidArgument', `an unsigned message's encryption context must not hold ${PUBLIC_KEY_CONTEXT_KEY}`);
    }
    this.suite = options.suite;
    this.frameLength = frameLength;
    const { encryptionKey, commitKey } = deriveMessageKeys(options.dataKey, options.messageId, options.suite);
    this.#key = encryptionKey;
    this.#aad = new BodyAad(options.messageId);
    const body = serializeHeaderBody({
      suite: options.suite,
      messageId: options.messageId,
      encryptionContext: options.encryptionContext,
      encryptedDataKeys: options.encryptedDataKeys,
      frameLength,
      commitKey,
    });
    // Header tag: AES-GCM of nothing, IV all zero, AAD = the header body.
    const cipher = createCipheriv('aes-256-gcm', this.#key, Buffer.alloc(IV_LENGTH), { authTagLength: TAG_LENGTH });
    cipher.setAAD(body);
    cipher.final();
    this.#header = Buffer.concat([body, cipher.getAuthTag()]);
    this.#signer = options.signingKey ? new MessageSigner(options.signingKey) : undefined;
  }

  /** The serialized header (body and tag); call once, first. */
  header(): Buffer {
    if (this.#headerTaken) throw new FileFormatError('InvalidArgument', 'header() was already called');
    this.#headerTaken = true;
    this.#signer?.update(this.#header);
    return this.#header;
  }

  /** Plaintext bytes taken so far. */
  get plaintextLength(): number {
    return this.#plaintextLength;
  }

  /** Takes a chunk of plaintext; returns the serialized regular frames it completes (maybe none). */
  push(chunk: Uint8Array): Buffer[] {
    this.#checkOpen();
    if (chunk.byteLength === 0) return [];
    this.#plaintextLength += chunk.byteLength;
    this.#pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#pendingLength += chunk.byteLength;
    const out: Buffer[] = [];
    // Strictly more than a frame: a frame is regular only when more plaintext follows it.
    while (this.#pendingLength > this.frameLength) this.#frame(false, this.frameLength, out);
    // Keep no view of the caller's buffer past this call: it may be reused for the next read.
    if (this.#pendingLength > 0 && this.#pending.some((piece) => piece.buffer === chunk.buffer)) {
      this.#pending = [Buffer.concat(this.#pending, this.#pendingLength)];
    }
    return out;
  }

  /** The final frame (0 to frameLength bytes) and, for the signed suite, the footer. */
  end(): Buffer[] {
    this.#checkOpen();
    const out: Buffer[] = [];
    this.#frame(true, this.#pendingLength, out);
    this.#ended = true;
    if (this.#signer) {
      const signature = this.#signer.sign();
      const footer = Buffer.allocUnsafe(2 + signature.length);
      footer.writeUInt16BE(signature.length, 0);
      signature.copy(footer, 2);
      out.push(footer);
    }
    this.#key.fill(0);
    return out;
  }

  /** Zeroes the key (after an error); the encryptor cannot be used afterwards. */
  destroy(): void {
    this.#ended = true;
    this.#pending = [];
    this.#key.fill(0);
  }

  #checkOpen(): void {
    if (!this.#headerTaken) throw new FileFormatError('InvalidArgument', 'call header() first');
    if (this.#ended) throw new FileFormatError('InvalidArgument', 'the message has ended');
  }

  #frame(final: boolean, length: number, out: Buffer[]): void {
    const sequenceNumber = this.#sequenceNumber;
    if (sequenceNumber > MAX_FRAME_COUNT || (!final && sequenceNumber >= MAX_FRAME_COUNT)) {
      throw new FileFormatError('TooManyFrames', `a message holds at most ${MAX_FRAME_COUNT} frames: use a larger frame length`);
    }
    this.#sequenceNumber++;
    const iv = frameIv(sequenceNumber);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(this.#aad.of(final, sequenceNumber, length));
    let head: Buffer;
    if (final) {
      head = Buffer.allocUnsafe(FINAL_FRAME_HEADER_LENGTH);
      head.writeUInt32BE(SEQUENCE_NUMBER_END, 0);
      head.writeUInt32BE(sequenceNumber, 4);
      iv.copy(head, 8);
      head.writeUInt32BE(length, 8 + IV_LENGTH);
    } else {
      head = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
      head.writeUInt32BE(sequenceNumber, 0);
      iv.copy(head, 4);
    }
    out.push(head);
    this.#signer?.update(head);
    let remaining = length;
    while (remaining > 0) {
      const piece = this.#pending[0]!;
      let part: Buffer;
      if (piece.length <= remaining) {
        part = piece;
        this.#pending.shift();
      } else {
        part = piece.subarray(0, remaining);
        this.#pending[0] = piece.subarray(remaining);
      }
      remaining -= part.length;
      this.#pendingLength -= part.length;
      const encrypted = cipher.update(part);
      if (encrypted.length > 0) {
        out.push(encrypted);
        this.#signer?.update(encrypted);
      }
    }
    const rest = cipher.final();
    if (rest.length > 0) {
      out.push(rest);
      this.#signer?.update(rest);
    }
    const tag = cipher.getAuthTag();
    out.push(tag);
    this.#signer?.update(tag);
  }
}

/** Encrypts a whole buffer at once (tests, small inputs). */
export function encryptBuffer(plaintext: Uint8Array, options: EncryptorOptions): Buffer {
  const encryptor = new MessageEncryptor(options);
  return Buffer.concat([encryptor.header(), ...encryptor.push(plaintext), ...encryptor.end()]);
}
