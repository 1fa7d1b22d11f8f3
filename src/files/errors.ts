/**
 * Codes of the file format's errors. All are terminal: the same input gives the same
 * answer. None of their messages holds plaintext, a data key or ciphertext bytes.
 */
import { EnvsealError, type ExitClass } from '../util/errors.ts';
export type FileFormatErrorCode =
  /** The input ended before the message did (header, a frame, the final frame or the footer). */
  | 'Truncated'
  /** Bytes follow the end of the message. */
  | 'TrailingData'
  /** Not message format version 2 (version 1 is the AWS Encryption SDK's non-committing format). */
  | 'UnsupportedVersion'
  | 'UnknownSuite'
  /** Content type other than framed (0x02). */
  | 'UnsupportedContentType'
  /** A header field is malformed (lengths, counts, UTF-8, duplicate context keys, frame length). */
  | 'InvalidHeader'
  | 'HeaderTooLarge'
  /** The frame length is above what this reader holds in memory for one frame. */
  | 'FrameTooLarge'
  | 'HeaderAuthenticationFailed'
  /** The data key does not derive the commitment key stored in the header. */
  | 'CommitmentMismatch'
  /** A frame's tag does not verify: the frame, or the message's context, was altered. */
  | 'FrameAuthenticationFailed'
  /** A frame's sequence number is not the next one: frames were reordered, duplicated or dropped. */
  | 'FrameOutOfOrder'
  /** A frame is malformed (its IV, or a final frame longer than the frame length). */
  | 'InvalidFrame'
  | 'TooManyFrames'
  | 'SignatureInvalid'
  /** The signed suite's message has no aws-crypto-public-key, or an unsigned one has it. */
  | 'InvalidPublicKey'
  /** An encryption context key uses the reserved aws-crypto- prefix. */
  | 'ReservedContextKey'
  | 'InvalidContext'
  /** The message's encryption context lacks a pair the caller requires. */
  | 'ContextMismatch'
  /** No encrypted data key of the message could be decrypted with the configured providers. */
  | 'NoDecryptableKey'
  | 'InvalidArgument';

export class FileFormatError extends EnvsealError {
  readonly code: FileFormatErrorCode;

  constructor(code: FileFormatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FileFormatError';
    this.code = code;
  }

  /** A context the caller required is missing: refused; anything else is bad input. */
  override get exitClass(): ExitClass {
    return this.code === 'ContextMismatch' ? 'refused' : 'invalidInput';
  }
}
