import { createDecipheriv, createSecretKey } from 'node:crypto';
import { ByteQueue } from './byte-queue.ts';
import { FileFormatError } from './errors.ts';
import { FINAL_FRAME_HEADER_LENGTH, FRAME_HEADER_LENGTH, FrameCipher, type ScannedFrame, SEQUENCE_NUMBER_END } from './frames.ts';
import { type MessageHeader, type ParsedHeader, parseHeader, type ParseHeaderOptions, serializeEncryptionContext } from './header.ts';
import { commitKeysEqual, deriveMessageKeys } from './kdf.ts';
import { MessageVerifier } from './signature.ts';
import { IV_LENGTH, MAX_FRAME_COUNT, MAX_FRAME_LENGTH, PUBLIC_KEY_CONTEXT_KEY, RESERVED_CONTEXT_PREFIX, TAG_LENGTH } from './suites.ts';

/**
 * A reproduced encryption context against the one the header stores: every pair the
 * header holds must match; pairs it lacks are the writer's "encryption context to only
 * authenticate" (the AWS Encryption SDK 4 required-encryption-context CMM leaves them out
 * of the message and binds them through the header tag and the keyring instead).
 * Returns the whole context (what the keyring binds) and the pairs the header lacks.
 */
export function reproduceContext(
  header: Pick<MessageHeader, 'encryptionContext'>,
  reproduced: Readonly<Record<string, string>>,
): { context: Record<string, string>; authenticateOnly: Record<string, string> } {
  const context = { ...header.encryptionContext };
  const authenticateOnly: Record<string, string> = {};
  for (const [key, value] of Object.entries(reproduced)) {
    if (Object.hasOwn(header.encryptionContext, key)) {
      if (header.encryptionContext[key] !== value)
        throw new FileFormatError('ContextMismatch', `the message's encryption context has another value for ${JSON.stringify(key.slice(0, 60))}`);
      continue;
    }
    if (key.startsWith(RESERVED_CONTEXT_PREFIX))
      throw new FileFormatError(
        'ReservedContextKey',
        `encryption context keys starting with ${RESERVED_CONTEXT_PREFIX} are reserved (got ${JSON.stringify(key.slice(0, 60))})`,
      );
    context[key] = value;
    authenticateOnly[key] = value;
  }
  return { context, authenticateOnly };
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
  #frames: FrameCipher | undefined;
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
   * `authenticateOnly`: the pairs of reproduceContext() that the header lacks; the header
   * tag covers them after the header body.
   */
  begin(dataKey: Uint8Array, options: { authenticateOnly?: Readonly<Record<string, string>> } = {}): void {
    if (this.#phase !== 'key' || this.#parsed === undefined) throw new FileFormatError('InvalidArgument', 'begin() needs a parsed header and is called once');
    const { header, body, tag } = this.#parsed;
    const { encryptionKey, commitKey } = deriveMessageKeys(dataKey, header.messageId, header.suite);
    if (!commitKeysEqual(commitKey, header.commitKey)) {
      encryptionKey.fill(0);
      this.#fail();
      throw new FileFormatError(
        'CommitmentMismatch',
        'the data key does not match the commitment in the header: the message was altered or made to decrypt differently for different recipients',
      );
    }
    // The key as a KeyObject (held in OpenSSL memory, cleansed when freed): set up once, used by every frame.
    const key = createSecretKey(encryptionKey);
    encryptionKey.fill(0);
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.alloc(IV_LENGTH), { authTagLength: TAG_LENGTH });
    const onlyAuthenticated = options.authenticateOnly === undefined ? Buffer.alloc(0) : serializeEncryptionContext(options.authenticateOnly);
    decipher.setAAD(onlyAuthenticated.length === 0 ? body : Buffer.concat([body, onlyAuthenticated]));
    decipher.setAuthTag(tag);
    try {
      decipher.final();
    } catch (cause) {
      this.#fail();
      throw new FileFormatError('HeaderAuthenticationFailed', 'the header does not authenticate: it was altered', { cause: sanitized(cause) });
    }
    this.#frames = new FrameCipher(key, header.messageId);
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

  /** For the pumps, after begin(): the frames' cipher (its key object may be handed to a worker thread). */
  get frameCipher(): FrameCipher {
    if (this.#frames === undefined || this.#phase === 'failed') throw new FileFormatError('InvalidArgument', 'begin() first');
    return this.#frames;
  }

  /** For the pumps, after begin(): hands over the message bytes queued so far; the decryptor keeps none. */
  takeQueued(): Buffer {
    if (this.#phase !== 'frame') throw new FileFormatError('InvalidArgument', 'takeQueued() follows begin()');
    return this.#queue.drain();
  }

  /**
   * For the pumps, after begin() and instead of push(): scans the whole frames at the
   * start of `bytes` (which starts at a frame), checking each one as push() does
   * (sequence, IV, lengths), feeding it to the signature and counting it; stops after
   * the final frame. Returns them for frameCipher.decryptFrames (here or on a worker;
   * the caller releases no plaintext before its tag verified, and none of the final
   * frame of a signed message before end()), and how many bytes they took. After the
   * final frame, push() the rest of the input and call end() as usual.
   */
  scanFrames(bytes: Buffer, maxFrames = Number.POSITIVE_INFINITY): { frames: ScannedFrame[]; length: number; final: boolean } {
    if (this.#phase !== 'frame' || this.#queue.length > 0) throw new FileFormatError('InvalidArgument', 'scanFrames() follows begin() or takeQueued()');
    const frames: ScannedFrame[] = [];
    let offset = 0;
    try {
      while (frames.length < maxFrames) {
        const scanned = this.#scanFrame(bytes, offset);
        if (typeof scanned === 'number') break;
        this.#verifier?.update(bytes.subarray(offset, scanned.end));
        frames.push(scanned.frame);
        this.#accept(scanned.frame);
        offset = scanned.end;
        if (scanned.frame.final) return { frames, length: offset, final: true };
      }
      return { frames, length: offset, final: false };
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
          throw new FileFormatError(
            'Truncated',
            this.#parsed === undefined ? 'the input ends inside the message header' : 'the input ends after the header: the message has no body',
          );
        case 'frame':
          throw new FileFormatError(
            'Truncated',
            `the input ends before the final frame (after ${this.#sequenceNumber - 1} frame${this.#sequenceNumber === 2 ? '' : 's'}): the message was truncated`,
          );
        case 'footer':
          throw new FileFormatError('Truncated', 'the input ends before the signature: the message was truncated');
        case 'done':
          break;
      }
      out.push(...this.#withheld);
      this.#withheld = [];
      this.#dropKey();
      return out;
    } catch (error) {
      this.#fail();
      throw error;
    }
  }

  /** Drops the key (a KeyObject: OpenSSL cleanses its copy when it is freed); the decryptor cannot be used afterwards. */
  destroy(): void {
    this.#fail();
  }

  #fail(): void {
    this.#phase = 'failed';
    this.#withheld = [];
    this.#dropKey();
  }

  #dropKey(): void {
    this.#frames = undefined;
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

  /**
   * Checks the frame at `offset` of `bytes` (in the order push() always checked: head
   * fields, then completeness, then the IV). Returns the frame and where it ends, or
   * how many bytes from `offset` it needs when they are not all there yet.
   */
  #scanFrame(bytes: Buffer, offset: number): { frame: ScannedFrame; end: number } | number {
    const available = bytes.length - offset;
    const frameLength = this.#parsed!.header.frameLength;
    if (available < 4) return 4;
    const first = bytes.readUInt32BE(offset);
    const final = first === SEQUENCE_NUMBER_END;
    const headLength = final ? FINAL_FRAME_HEADER_LENGTH : FRAME_HEADER_LENGTH;
    if (available < headLength) return headLength;
    const sequenceNumber = final ? bytes.readUInt32BE(offset + 4) : first;
    const contentLength = final ? bytes.readUInt32BE(offset + 4 + 4 + IV_LENGTH) : frameLength;
    if (final && contentLength > frameLength) {
      throw new FileFormatError('InvalidFrame', `the final frame holds ${contentLength} bytes, more than the frame length ${frameLength}`);
    }
    if (sequenceNumber !== this.#sequenceNumber) {
      throw new FileFormatError(
        'FrameOutOfOrder',
        `frame ${this.#sequenceNumber} was expected, frame ${sequenceNumber} found: frames were reordered, duplicated or dropped`,
      );
    }
    if (sequenceNumber > MAX_FRAME_COUNT || sequenceNumber === 0) throw new FileFormatError('TooManyFrames', 'the message has too many frames');
    const total = headLength + contentLength + TAG_LENGTH;
    if (available < total) return total;
    // The IV is the sequence number, left-padded with zeros.
    const ivAt = offset + (final ? 8 : 4);
    for (let i = 0; i < IV_LENGTH - 4; i++) {
      if (bytes[ivAt + i] !== 0) throw new FileFormatError('InvalidFrame', `frame ${sequenceNumber} has an IV other than its sequence number`);
    }
    if (bytes.readUInt32BE(ivAt + IV_LENGTH - 4) !== sequenceNumber)
      throw new FileFormatError('InvalidFrame', `frame ${sequenceNumber} has an IV other than its sequence number`);
    return { frame: { sequenceNumber, final, contentOffset: offset + headLength, contentLength }, end: offset + total };
  }

  /** Counts a scanned frame: the next sequence number, and the phase after the final frame. */
  #accept(frame: ScannedFrame): void {
    this.#sequenceNumber++;
    this.#plaintextLength += frame.contentLength;
    if (frame.final) this.#phase = this.#verifier ? 'footer' : 'done';
  }

  /** Decrypts the next frame when all its bytes are queued; false when more are needed. */
  #frame(out: Buffer[]): boolean {
    const queue = this.#queue;
    let scanned: { frame: ScannedFrame; end: number } | number = 4;
    while (typeof scanned === 'number') {
      if (queue.length < scanned) return false;
      scanned = this.#scanFrame(queue.peek(scanned), 0);
    }
    const { frame, end } = scanned;
    // One buffer for the frame (a view when it lies in one queued chunk).
    const bytes = queue.peek(end);
    this.#verifier?.update(bytes);
    const plaintext = Buffer.allocUnsafe(frame.contentLength);
    this.#frames!.decryptFrames(bytes, [frame], plaintext, 0);
    queue.take(end);
    this.#accept(frame);
    if (frame.final && this.#verifier) this.#withheld = [plaintext];
    else if (plaintext.length > 0) out.push(plaintext);
    return true;
  }
}

function sanitized(cause: unknown): Error {
  return new Error(cause instanceof Error ? cause.message.slice(0, 80) : 'crypto error');
}

/** Decrypts a whole message held in memory (tests, small inputs). */
export function decryptBuffer(
  message: Uint8Array,
  dataKeyFor: (header: MessageHeader) => Uint8Array,
  options: DecryptorOptions = {},
): { header: MessageHeader; plaintext: Buffer } {
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
