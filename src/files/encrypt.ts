import { createCipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { RandomSource } from '../envelope/random.ts';
import { FileFormatError } from './errors.ts';
import { FrameCipher, framesLength, splitFrames } from './frames.ts';
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
      throw new FileFormatError(
        'ReservedContextKey',
        `encryption context keys starting with ${RESERVED_CONTEXT_PREFIX} are reserved (got ${JSON.stringify(key.slice(0, 60))})`,
      );
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

/**
 * Encrypts one message, synchronously and incrementally: header(), then push() for
 * each chunk of plaintext (it returns the regular frames that are complete), then
 * end() for the final frame and, for the signed suite, the footer. It holds at most
 * one frame of plaintext (as references to the pushed chunks) at a time. The output
 * buffers are new; input chunks are not modified.
 *
 * The pumps of io.ts use the lower level instead: claimFrames() numbers a batch of
 * frames, frameCipher encrypts it (here or on a worker thread), authenticate() feeds
 * the serialized frames to the signature in order, and end() with nothing pending
 * writes the footer.
 */
export class MessageEncryptor {
  readonly suite: Suite;
  readonly frameLength: number;
  readonly #frames: FrameCipher;
  readonly #signer: MessageSigner | undefined;
  readonly #header: Buffer;
  #headerTaken = false;
  #pending: Buffer[] = [];
  #pendingLength = 0;
  #sequenceNumber = 1;
  #ended = false;
  #finalClaimed = false;
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
    let key: KeyObject;
    try {
      const body = serializeHeaderBody({
        suite: options.suite,
        messageId: options.messageId,
        encryptionContext: options.encryptionContext,
        encryptedDataKeys: options.encryptedDataKeys,
        frameLength,
        commitKey,
      });
      // The key as a KeyObject (held in OpenSSL memory, cleansed when freed): set up once, used by every frame.
      key = createSecretKey(encryptionKey);
      // Header tag: AES-GCM of nothing, IV all zero, AAD = the header body.
      const cipher = createCipheriv('aes-256-gcm', key, Buffer.alloc(IV_LENGTH), { authTagLength: TAG_LENGTH });
      cipher.setAAD(body);
      cipher.final();
      this.#header = Buffer.concat([body, cipher.getAuthTag()]);
    } finally {
      encryptionKey.fill(0);
    }
    this.#frames = new FrameCipher(key, options.messageId);
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

  /** Whether the message is signed: authenticate() must then see every serialized frame, in order. */
  get signed(): boolean {
    return this.#signer !== undefined;
  }

  /** The frames' cipher (its key object may be handed to a worker thread). */
  get frameCipher(): FrameCipher {
    this.#checkOpen();
    return this.#frames;
  }

  /**
   * For the pumps: numbers the frames of the next `length` plaintext bytes, the last of
   * them the final frame when `final` (see splitFrames), and returns the first sequence
   * number. Not to be mixed with push().
   */
  claimFrames(length: number, final: boolean): number {
    this.#checkOpen();
    if (this.#finalClaimed) throw new FileFormatError('InvalidArgument', 'the final frame was already claimed');
    if (this.#pendingLength > 0) throw new FileFormatError('InvalidArgument', 'claimFrames() cannot follow push() of a partial frame');
    return this.#claim(length, final);
  }

  #claim(length: number, final: boolean): number {
    const { regular, finalLength } = splitFrames(length, this.frameLength, final);
    const first = this.#sequenceNumber;
    const last = first + regular + (finalLength === undefined ? 0 : 1) - 1;
    // A regular frame may not take the last sequence number: the final frame needs one.
    if (last > MAX_FRAME_COUNT || (finalLength === undefined && last >= MAX_FRAME_COUNT)) {
      throw new FileFormatError('TooManyFrames', `a message holds at most ${MAX_FRAME_COUNT} frames: use a larger frame length`);
    }
    this.#sequenceNumber = last + 1;
    this.#plaintextLength += length;
    if (final) this.#finalClaimed = true;
    return first;
  }

  /** For the pumps: feeds serialized frames to the signature (signed suite), in message order. */
  authenticate(frames: Uint8Array): void {
    this.#signer?.update(frames);
  }

  /** Takes a chunk of plaintext; returns the serialized regular frames it completes (maybe none). */
  push(chunk: Uint8Array): Buffer[] {
    this.#checkOpen();
    if (chunk.byteLength === 0) return [];
    this.#pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#pendingLength += chunk.byteLength;
    // Strictly more than a frame: a frame is regular only when more plaintext follows it.
    const count = Math.floor((this.#pendingLength - 1) / this.frameLength);
    const out = count > 0 ? [this.#encryptPending(count * this.frameLength, false)] : [];
    // Keep no view of the caller's buffer past this call: it may be reused for the next read.
    if (this.#pendingLength > 0 && this.#pending.some((piece) => piece.buffer === chunk.buffer)) {
      this.#pending = [Buffer.concat(this.#pending, this.#pendingLength)];
    }
    return out;
  }

  /** The final frame (0 to frameLength bytes), unless claimFrames() took it, and, for the signed suite, the footer. */
  end(): Buffer[] {
    this.#checkOpen();
    const out: Buffer[] = [];
    if (!this.#finalClaimed) out.push(this.#encryptPending(this.#pendingLength, true));
    this.#ended = true;
    if (this.#signer) {
      const signature = this.#signer.sign();
      const footer = Buffer.allocUnsafe(2 + signature.length);
      footer.writeUInt16BE(signature.length, 0);
      signature.copy(footer, 2);
      out.push(footer);
    }
    this.#pending = [];
    return out;
  }

  /** Ends the encryptor after an error; it cannot be used afterwards. */
  destroy(): void {
    this.#ended = true;
    this.#pending = [];
  }

  #checkOpen(): void {
    if (!this.#headerTaken) throw new FileFormatError('InvalidArgument', 'call header() first');
    if (this.#ended) throw new FileFormatError('InvalidArgument', 'the message has ended');
  }

  /** Encrypts the first `length` pending bytes (whole frames, or everything for the final frame). */
  #encryptPending(length: number, final: boolean): Buffer {
    let plaintext: Buffer;
    const first = this.#pending[0];
    if (first !== undefined && first.length >= length) {
      plaintext = first.subarray(0, length);
      if (first.length === length) this.#pending.shift();
      else this.#pending[0] = first.subarray(length);
    } else {
      plaintext = Buffer.concat(this.#pending, this.#pendingLength);
      this.#pending = plaintext.length > length ? [plaintext.subarray(length)] : [];
      plaintext = plaintext.subarray(0, length);
    }
    this.#pendingLength -= length;
    const sequenceNumber = this.#claim(length, final);
    const { regular, finalLength } = splitFrames(length, this.frameLength, final);
    const out = Buffer.allocUnsafe(framesLength(this.frameLength, regular, finalLength));
    this.#frames.encryptFrames(plaintext, this.frameLength, sequenceNumber, final, out, 0);
    this.#signer?.update(out);
    return out;
  }
}

/** Encrypts a whole buffer at once (tests, small inputs). */
export function encryptBuffer(plaintext: Uint8Array, options: EncryptorOptions): Buffer {
  const encryptor = new MessageEncryptor(options);
  return Buffer.concat([encryptor.header(), ...encryptor.push(plaintext), ...encryptor.end()]);
}
