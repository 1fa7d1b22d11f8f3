import { EnvelopeError } from './errors.ts';

// RFC 4648 section 4, with padding; nothing else is accepted.
const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/**
 * Decodes standard, padded base64 and rejects anything else: URL-safe alphabets,
 * missing padding, white space, and non-zero trailing bits (so that one byte string
 * has exactly one accepted text, and a flipped trailing bit cannot go unnoticed).
 * `field` names what is being decoded, for the error; the text itself is never quoted.
 */
export function decodeBase64(text: string, field: string): Buffer {
  if (typeof text !== 'string' || !STANDARD_BASE64.test(text)) {
    throw new EnvelopeError('InvalidBase64', `${field} is not standard padded base64`, { field });
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.toString('base64') !== text) {
    throw new EnvelopeError('InvalidBase64', `${field} is not canonical base64 (non-zero trailing bits)`, {
      field,
    });
  }
  return bytes;
}

export function isStandardBase64(text: string): boolean {
  return STANDARD_BASE64.test(text) && Buffer.from(text, 'base64').toString('base64') === text;
}
