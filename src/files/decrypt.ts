import { createDecipheriv, type DecipherGCM } from 'node:crypto';
import { FileFormatError } from './errors.ts';
import { BodyAad, frameIv, SEQUENCE_NUMBER_END } from './frames.ts';
import { type MessageHeader, type ParsedHeader, parseHeader, type ParseHeaderOptions } from './header.ts';
import { commitKeysEqual, deriveMessageKeys } from './kdf.ts';
import { MessageVerifier } from './signature.ts';
import { IV_LENGTH, MAX_FRAME_COUNT, MAX_FRAME_LENGTH, PUBLIC_KEY_CONTEXT_KEY, TAG_LENGTH } from './suites.ts';

/** A FIFO of byte chunks; reads return views into the chunks where they can. */
class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next `n` bytes as one buffer (a view when they lie in one chunk), without consuming them. */
  peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const chunk of this.#chunks) {
      const take = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, take);
      filled += take;
      if (filled === n) break;
    }
    return out;
  }

  /** Consumes `n` bytes, returned as views in order. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let remaining = n;
    while (remaining > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.length <= remaining) {
        out.push(chunk);
        this.#chunks.shift();
        remaining -= chunk.length;
      } else {
        out.push(chunk.subarray(0, remaining));
        this.#chunks[0] = chunk.subarray(remaining);
        remaining = 0;
      }
    }
    this.#length -= n;
    return out;
  }

  /** Copies the queued bytes into one buffer of their own (no view of a caller's buffer remains). */
  own(): void {
    if (this.#length === 0) return;
    this.#chunks = [Buffer.concat(this.#chunks, this.#length)];
  }

  /** Everything left, as one buffer. */
  drain(): Buffer {
    const out = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return out;
  }
}

export interface DecryptorOptions extends ParseHeaderOptions {
  /** Header bytes accepted before giving up (default 1 MiB). */
  maxHeaderLength?: number;
}

const DEFAULT_MAX_HEADER_LENGTH = 1024 * 1024;
type Phase = 'header' | 'key' | 'frame' | 'footer' | 'done' | 'failed';

/**
 * Decrypts one message, incrementally: push() bytes until header() returns the parsed
 * header, then begin(dataKey) (which checks the commitment and the header tag), then
 * push() the rest; each push returns the plaintext of the frames that authenticated
 * and may be released, and end() checks that the message ended exactly (final frame,
 * footer and signature, no trailing bytes) and returns what was withheld: for the
 * signed suite the final frame's plaintext is released only once the signature
 * verifies. Any failure is a FileFormatError and leaves the decryptor unusable.
 */
export class MessageDecryptor {
  readonly #options: DecryptorOptions;
  readonly #queue = new ByteQueue();
  #phase: Phase = 'header';
  #parsed: ParsedHeader | undefined;
  #key: Buffer | undefined;
  #aad: BodyAad | undefined;
  #verifier: MessageVerifier | undefined;
  #sequenceNumber = 1;
  #withheld: Buffer[] = [];
  #plaintextLength = 0;

  constructor(options: DecryptorOptions = {}) {
    this.#options = options;
  }

  /** The parsed header once enough bytes were pushed (not yet authenticated before begin()). */
  get header(): MessageHeader | undefined {
    return this.#parsed?.header;
  }

  get plaintextLength(): number {
    return this.#plaintextLength;
  }

  /**
   * Verifies the commitment (constant time) and the header tag with the unwrapped data
   * key; afterwards push() decrypts frames. The data key is not kept (zero it yourself).
   */
  begin(dataKey: Uint8Array): void {
    if (this.#phase !== 'key' || this.#parsed === undefined) throw new FileFormatError('InvalidArgument', 'begin() needs a parsed header and is called once');
    const { header, body, tag } = this.#parsed;
    const { encryptionKey, commitKey } = deriveMessageKeys(dataKey, header.messageId, header.suite);
    if (!commitKeysEqual(commitKey, header.commitKey)) {
      encryptionKey.fill(0);
      this.#fail();
      throw new FileFormatError('CommitmentMismatch', 'the data key does not match the commitment in the header: the message was altered or made to decrypt differently for different recipients');
    }
    const decipher = createDecipheriv('aes-256-gcm', encryptionKey, Buffer.alloc(IV_LENGTH), { authTagLength: TAG_LENGTH });
    decipher.setAAD(body);
    decipher.setAuthTag(tag);
    try {
      decipher.final();
    } catch (cause) {
      encryptionKey.fill(0);
      this.#fail();
      throw new FileFormatError('HeaderAuthenticationFailed', 'the header does not authenticate: it was altered', { cause: sanitized(cause) });
    }
    this.#key = encryptionKey;
    this.#aad = new BodyAad(header.messageId);
    if (header.suite.signed) {
      try {
        this.#verifier = new MessageVerifier(header.encryptionContext[PUBLIC_KEY_CONTEXT_KEY]!);
      } catch (error) {
        this.#fail();
        throw error;
      }
      this.#verifier.update(body);
      this.#verifier.update(tag);
    }
    this.#phase = 'frame';
  }

  /**
   * Takes message bytes. Before begin(): returns [] and parses the header as soon as it
   * is complete (see `header`). After: returns the plaintext that may be released.
   */
  push(chunk: Uint8Array): Buffer[] {
    if (this.#phase === 'failed') throw new FileFormatError('InvalidArgument', 'the decryptor failed earlier');
    if (chunk.byteLength > 0) this.#queue.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    try {
      const out = this.#advance();
      // The caller may reuse its buffer for the next read: keep a copy of what is left
      // (less than one frame, or the header so far).
      this.#queue.own();
      return out;
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** The input ended: checks that the message is complete and returns the withheld plaintext. */
  end(): Buffer[] {
    if (this.#phase === 'failed') throw new FileFormatError('InvalidArgument', 'the decryptor failed earlier');
    try {
      const out = this.#advance();
      switch (this.#phase) {
        case 'header':
        case 'key':
          throw new FileFormatError('Truncated', this.#parsed === undefined ? 'the input ends inside the message header' : 'the input ends after the header: the message has no body');
        case 'frame':
          throw new FileFormatError('Truncated', `the input ends before the final frame (after ${this.#sequenceNumber - 1} frame${this.#sequenceNumber === 2 ? '' : 's'}): the message was truncated`);
        case 'footer':
          throw new FileFormatError('Truncated', 'the input ends before the signature: the message was truncated');
        case 'done':
          break;
      }
      out.push(...this.#withheld);
      this.#withheld = [];
      this.#zero();
      return out;
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** Zeroes the key; the decryptor cannot be used afterwards. */
  destroy(): void {
    this.#fail();
  }

  #fail(): void {
    this.#phase = 'failed';
    this.#withheld = [];
    this.#zero();
  }

  #zero(): void {
    this.#key?.fill(0);
    this.#key = undefined;
  }

  #advance(): Buffer[] {
    const out: Buffer[] = [];
    for (;;) {
      switch (this.#phase) {
        case 'header': {
          const max = this.#options.maxHeaderLength ?? DEFAULT_MAX_HEADER_LENGTH;
          if (this.#queue.length === 0) return out;
          const bytes = this.#queue.peek(Math.min(this.#queue.length, max));
          const parsed = parseHeader(bytes, this.#options);
          if (parsed === undefined) {
            if (this.#queue.length >= max) throw new FileFormatError('HeaderTooLarge', `the message header is larger than ${max} bytes`);
            return out;
          }
          this.#queue.take(parsed.length);
          this.#parsed = parsed;
          this.#phase = 'key';
          return out;
        }
        case 'key':
          return out;
        case 'frame':
          if (!this.#frame(out)) return out;
          break;
        case 'footer': {
          if (this.#queue.length < 2) return out;
          const length = this.#queue.peek(2).readUInt16BE(0);
          if (this.#queue.length < 2 + length) return out;
          this.#queue.take(2);
          const signature = Buffer.concat(this.#queue.take(length));
          if (!this.#verifier!.verify(signature)) {
            throw new FileFormatError('SignatureInvalid', 'the signature does not verify: the message was altered');
          }
          this.#phase = 'done';
          break;
        }
        case 'done':
          if (this.#queue.length > 0) throw new FileFormatError('TrailingData', 'bytes follow the end of the message');
          return out;
        case 'failed':
          throw new FileFormatError('InvalidArgument', 'the decryptor failed earlier');
      }
    }
  }

  /** Decrypts the next frame when all its bytes are queued; false when more are needed. */
  #frame(out: Buffer[]): boolean {
    const queue = this.#queue;
    const frameLength = this.#parsed!.header.frameLength;
    if (queue.length < 4) return false;
    const first = queue.peek(4).readUInt32BE(0);
    const final = first === SEQUENCE_NUMBER_END;
    const headLength = final ? 4 + 4 + IV_LENGTH + 4 : 4 + IV_LENGTH;
    if (queue.length < headLength) return false;
    const head = queue.peek(headLength);
    const sequenceNumber = final ? head.readUInt32BE(4) : first;
    const contentLength = final ? head.readUInt32BE(4 + 4 + IV_LENGTH) : frameLength;
    if (final && contentLength > frameLength) {
      throw new FileFormatError('InvalidFrame', `the final frame holds ${contentLength} bytes, more than the frame length ${frameLength}`);
    }
    if (sequenceNumber !== this.#sequenceNumber) {
      throw new FileFormatError('FrameOutOfOrder', `frame ${this.#sequenceNumber} was expected, frame ${sequenceNumber} found: frames were reordered, duplicated or dropped`);
    }
    if (sequenceNumber > MAX_FRAME_COUNT || sequenceNumber === 0) throw new FileFormatError('TooManyFrames', 'the message has too many frames');
    if (queue.length < headLength + contentLength + TAG_LENGTH) return false;

    const iv = head.subarray(final ? 8 : 4, (final ? 8 : 4) + IV_LENGTH);
    const expectedIv = frameIv(sequenceNumber);
    if (!iv.equals(expectedIv)) throw new FileFormatError('InvalidFrame', `frame ${sequenceNumber} has an IV other than its sequence number`);
    const verifier = this.#verifier;
    for (const piece of queue.take(headLength)) verifier?.update(piece);
    const decipher: DecipherGCM = createDecipheriv('aes-256-gcm', this.#key!, expectedIv, { authTagLength: TAG_LENGTH });
    decipher.setAAD(this.#aad!.of(final, sequenceNumber, contentLength));
    const plaintext: Buffer[] = [];
    for (const piece of queue.take(contentLength)) {
      verifier?.update(piece);
      const part = decipher.update(piece);
      if (part.length > 0) plaintext.push(part);
    }
    const tagPieces = queue.take(TAG_LENGTH);
    const tag = tagPieces.length === 1 ? tagPieces[0]! : Buffer.concat(tagPieces);
    verifier?.update(tag);
    decipher.setAuthTag(tag);
    try {
      const rest = decipher.final();
      if (rest.length > 0) plaintext.push(rest);
    } catch (cause) {
      for (const part of plaintext) part.fill(0);
      throw new FileFormatError('FrameAuthenticationFailed', `frame ${sequenceNumber} does not authenticate: it was altered, or moved from another message`, { cause: sanitized(cause) });
    }
    this.#sequenceNumber++;
    this.#plaintextLength += contentLength;
    if (final) {
      if (this.#verifier) {
        this.#withheld = plaintext;
        this.#phase = 'footer';
      } else {
        out.push(...plaintext);
        this.#phase = 'done';
      }
    } else {
      out.push(...plaintext);
    }
    return true;
  }
}

function sanitized(cause: unknown): Error {
  return new Error(cause instanceof Error ? cause.message.slice(0, 80) : 'crypto error');
}

/** Decrypts a whole message held in memory (tests, small inputs). */
export function decryptBuffer(message: Uint8Array, dataKeyFor: (header: MessageHeader) => Uint8Array, options: DecryptorOptions = {}): { header: MessageHeader; plaintext: Buffer } {
  const decryptor = new MessageDecryptor({ maxFrameLength: MAX_FRAME_LENGTH, ...options });
  decryptor.push(message.subarray(0, 0));
  const parts: Buffer[] = [];
  // Header first, then the body.
  const header = headerOf(decryptor, message);
  decryptor.begin(dataKeyFor(header.header));
  parts.push(...decryptor.push(header.rest));
  parts.push(...decryptor.end());
  return { header: header.header, plaintext: Buffer.concat(parts) };
}

function headerOf(decryptor: MessageDecryptor, message: Uint8Array): { header: MessageHeader; rest: Uint8Array } {
  // Push the bytes; the decryptor keeps whatever follows the header queued.
  decryptor.push(message);
  const header = decryptor.header;
  if (header === undefined) throw new FileFormatError('Truncated', 'the input ends inside the message header');
  return { header, rest: new Uint8Array(0) };
}
