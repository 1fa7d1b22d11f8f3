import { encodeContext } from '../envelope/context.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import { FileFormatError } from './errors.ts';
import {
  COMMIT_KEY_LENGTH,
  CONTENT_TYPE_FRAMED,
  CONTENT_TYPE_NON_FRAMED,
  formatSuiteId,
  MAX_FRAME_LENGTH,
  MESSAGE_FORMAT_VERSION,
  MESSAGE_ID_LENGTH,
  PUBLIC_KEY_CONTEXT_KEY,
  type Suite,
  suiteById,
  TAG_LENGTH,
} from './suites.ts';

/** One wrapping of the data key, as the header stores it. */
export interface EncryptedDataKey {
  /** "aws-kms", "envseal-age", or another writer's id (skipped when unknown). */
  providerId: string;
  /** aws-kms: the key ARN (UTF-8); envseal-age: the age recipient. */
  providerInfo: Uint8Array;
  /** aws-kms: the KMS CiphertextBlob; envseal-age: a binary age file holding the data key. */
  ciphertext: Uint8Array;
}

export interface MessageHeader {
  suite: Suite;
  messageId: Buffer;
  /** The encryption context, in the header's order (an object keeps insertion order). */
  encryptionContext: Record<string, string>;
  encryptedDataKeys: EncryptedDataKey[];
  frameLength: number;
  /** The suite data: the commitment key. */
  commitKey: Buffer;
}

export interface ParsedHeader {
  header: MessageHeader;
  /** The serialized header body: the AAD of the header tag. */
  body: Buffer;
  tag: Buffer;
  /** Header body + tag: how many input bytes the header took. */
  length: number;
}

const MAX_U16 = 0xffff;
const MAX_U32 = 0xffffffff;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

function lengthPrefixed(bytes: Uint8Array, what: string): Buffer[] {
  if (bytes.byteLength > MAX_U16) throw new FileFormatError('InvalidArgument', `${what} is longer than 65535 bytes`);
  return [u16(bytes.byteLength), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)];
}

/**
 * The serialized encryption context as the header's AAD field holds it: empty context
 * -> nothing; else UInt16 count, then each pair sorted by the key's UTF-8 bytes as
 * UInt16 length + key + UInt16 length + value.
 */
export function serializeEncryptionContext(context: Readonly<Record<string, string>>): Buffer {
  if (Object.keys(context).length === 0) return Buffer.alloc(0);
  let out: Buffer;
  try {
    // The same canonical encoding as the envelopes' AAD (docs/format.md).
    out = encodeContext(context);
  } catch (error) {
    if (error instanceof EnvelopeError) throw new FileFormatError('InvalidContext', `the ${error.message}`, { cause: error });
    throw error;
  }
  if (out.length > MAX_U16) throw new FileFormatError('InvalidContext', 'the serialized encryption context is longer than 65535 bytes');
  return out;
}

/** The header body (everything the header tag authenticates). */
export function serializeHeaderBody(header: MessageHeader): Buffer {
  if (header.messageId.length !== MESSAGE_ID_LENGTH) throw new FileFormatError('InvalidArgument', `the message id must be ${MESSAGE_ID_LENGTH} bytes`);
  if (header.commitKey.length !== COMMIT_KEY_LENGTH) throw new FileFormatError('InvalidArgument', `the commitment key must be ${COMMIT_KEY_LENGTH} bytes`);
  checkFrameLength(header.frameLength, 'InvalidArgument');
  const edks = header.encryptedDataKeys;
  if (edks.length === 0) throw new FileFormatError('InvalidArgument', 'a message needs at least one encrypted data key');
  if (edks.length > MAX_U16) throw new FileFormatError('InvalidArgument', 'a message holds at most 65535 encrypted data keys');
  const context = serializeEncryptionContext(header.encryptionContext);
  const parts: Buffer[] = [Buffer.of(MESSAGE_FORMAT_VERSION), u16(header.suite.id), header.messageId, u16(context.length), context, u16(edks.length)];
  for (const edk of edks) {
    parts.push(
      ...lengthPrefixed(Buffer.from(edk.providerId, 'utf8'), 'a key provider id'),
      ...lengthPrefixed(edk.providerInfo, 'key provider information'),
      ...lengthPrefixed(edk.ciphertext, 'an encrypted data key'),
    );
  }
  parts.push(Buffer.of(CONTENT_TYPE_FRAMED), u32(header.frameLength), header.commitKey);
  return Buffer.concat(parts);
}

function checkFrameLength(frameLength: number, code: 'InvalidArgument' | 'InvalidHeader'): void {
  if (!Number.isInteger(frameLength) || frameLength < 1 || frameLength > MAX_U32) {
    throw new FileFormatError(code, `the frame length must be a whole number from 1 to ${MAX_U32}`);
  }
}

/** Thrown inside the parser when the buffer ends before the header does. */
const NEED_MORE: unique symbol = Symbol('need more bytes');

class Cursor {
  offset = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  take(n: number): Buffer {
    if (this.offset + n > this.buf.length) throw NEED_MORE;
    const out = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
  u8(): number {
    return this.take(1)[0]!;
  }
  u16(): number {
    return this.take(2).readUInt16BE(0);
  }
  u32(): number {
    return this.take(4).readUInt32BE(0);
  }
}

function text(bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch (cause) {
    throw new FileFormatError('InvalidHeader', `${what} is not valid UTF-8`, { cause });
  }
}

function parseEncryptionContext(aad: Buffer): Record<string, string> {
  const context: Record<string, string> = Object.create(null) as Record<string, string>;
  if (aad.length === 0) return context;
  const cursor = new Cursor(aad);
  try {
    const count = cursor.u16();
    if (count === 0) throw new FileFormatError('InvalidHeader', 'the encryption context has a pair count of 0 but a non-zero length');
    for (let i = 0; i < count; i++) {
      const key = text(cursor.take(cursor.u16()), 'an encryption context key');
      const value = text(cursor.take(cursor.u16()), 'an encryption context value');
      if (Object.hasOwn(context, key)) throw new FileFormatError('InvalidHeader', 'the encryption context has a duplicate key');
      context[key] = value;
    }
  } catch (error) {
    if (error === NEED_MORE) throw new FileFormatError('InvalidHeader', 'the encryption context is shorter than its pair count says');
    throw error;
  }
  if (cursor.offset !== aad.length) throw new FileFormatError('InvalidHeader', 'the encryption context has bytes after its last pair');
  // A plain object, so that callers can spread and compare it.
  return { ...context };
}

export interface ParseHeaderOptions {
  /** Largest frame length accepted (default MAX_FRAME_LENGTH): one frame is held in memory. */
  maxFrameLength?: number;
  /** Most encrypted data keys accepted (default 65535, the format's limit). */
  maxEncryptedDataKeys?: number;
}

/**
 * Parses a message header at the start of `buf`. Returns undefined when `buf` ends
 * before the header does (call again with more bytes), and throws FileFormatError for
 * anything it does not understand: another version, suite or content type, malformed
 * lengths, bad UTF-8, duplicate context keys, a frame length out of range, a signed
 * suite without its public key (or an unsigned one with it). The tag is not checked
 * here: that needs the data key (see verifyHeaderTag).
 */
export function parseHeader(buf: Buffer, options: ParseHeaderOptions = {}): ParsedHeader | undefined {
  const maxFrameLength = options.maxFrameLength ?? MAX_FRAME_LENGTH;
  const maxEdks = options.maxEncryptedDataKeys ?? MAX_U16;
  const cursor = new Cursor(buf);
  try {
    const version = cursor.u8();
    if (version !== MESSAGE_FORMAT_VERSION) {
      throw new FileFormatError(
        'UnsupportedVersion',
        version === 0x01
          ? 'this is an AWS Encryption SDK message of format version 1 (a suite without key commitment); envseal reads only version 2 with key commitment'
          : `not an AWS Encryption SDK message of format version 2 (first byte 0x${version.toString(16).padStart(2, '0')})`,
      );
    }
    const suiteId = cursor.u16();
    const suite = suiteById(suiteId);
    if (suite === undefined) {
      throw new FileFormatError('UnknownSuite', `unsupported algorithm suite ${formatSuiteId(suiteId)}: envseal reads 0x0478 and 0x0578`);
    }
    const messageId = Buffer.from(cursor.take(MESSAGE_ID_LENGTH));
    const encryptionContext = parseEncryptionContext(cursor.take(cursor.u16()));
    const edkCount = cursor.u16();
    if (edkCount === 0) throw new FileFormatError('InvalidHeader', 'the message has no encrypted data key');
    if (edkCount > maxEdks) throw new FileFormatError('InvalidHeader', `the message has ${edkCount} encrypted data keys; at most ${maxEdks} are accepted`);
    const encryptedDataKeys: EncryptedDataKey[] = [];
    for (let i = 0; i < edkCount; i++) {
      const providerId = text(cursor.take(cursor.u16()), 'a key provider id');
      const providerInfo = Buffer.from(cursor.take(cursor.u16()));
      const ciphertext = Buffer.from(cursor.take(cursor.u16()));
      encryptedDataKeys.push({ providerId, providerInfo, ciphertext });
    }
    const contentType = cursor.u8();
    if (contentType === CONTENT_TYPE_NON_FRAMED) {
      throw new FileFormatError('UnsupportedContentType', 'the message body is not framed (content type 0x01); envseal reads framed messages only');
    }
    if (contentType !== CONTENT_TYPE_FRAMED) {
      throw new FileFormatError('UnsupportedContentType', `unknown content type 0x${contentType.toString(16).padStart(2, '0')}`);
    }
    const frameLength = cursor.u32();
    checkFrameLength(frameLength, 'InvalidHeader');
    if (frameLength > maxFrameLength) {
      throw new FileFormatError('FrameTooLarge', `the message's frame length is ${frameLength} bytes; at most ${maxFrameLength} are accepted`);
    }
    const commitKey = Buffer.from(cursor.take(COMMIT_KEY_LENGTH));
    const bodyEnd = cursor.offset;
    const tag = Buffer.from(cursor.take(TAG_LENGTH));
    const hasPublicKey = Object.hasOwn(encryptionContext, PUBLIC_KEY_CONTEXT_KEY);
    if (suite.signed && !hasPublicKey) {
      throw new FileFormatError(
        'InvalidPublicKey',
        `the message uses the signed suite ${formatSuiteId(suite.id)} but its encryption context has no ${PUBLIC_KEY_CONTEXT_KEY}`,
      );
    }
    if (!suite.signed && hasPublicKey) {
      throw new FileFormatError(
        'InvalidPublicKey',
        `the message uses the unsigned suite ${formatSuiteId(suite.id)} but its encryption context has ${PUBLIC_KEY_CONTEXT_KEY}`,
      );
    }
    return {
      header: { suite, messageId, encryptionContext, encryptedDataKeys, frameLength, commitKey },
      body: Buffer.from(buf.subarray(0, bodyEnd)),
      tag,
      length: cursor.offset,
    };
  } catch (error) {
    if (error === NEED_MORE) return undefined;
    throw error;
  }
}
