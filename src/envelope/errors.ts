/**
 * Codes of the envelope format's errors. Every one of them is terminal: retrying the
 * same input gives the same answer.
 */
import { EnvsealError, type ExitClass } from '../util/errors.ts';
export type EnvelopeErrorCode =
  | 'InvalidBase64'
  | 'InvalidEnvelope'
  | 'UnsupportedFormat'
  | 'UnknownSuite'
  | 'InvalidDataKey'
  | 'CommitmentMismatch'
  | 'ValueAuthenticationFailed'
  /** No value of an envelope authenticates: sealed for another namespace, name or scope. */
  | 'ContextMismatch'
  | 'ContextTooLarge';

/**
 * An error of the envelope format. Messages name fields and key names, never values
 * or key material.
 */
export class EnvelopeError extends EnvsealError {
  readonly code: EnvelopeErrorCode;
  /** The data key name or field the error is about, when there is one. */
  readonly field: string | undefined;

  constructor(code: EnvelopeErrorCode, message: string, options?: { field?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EnvelopeError';
    this.code = code;
    this.field = options?.field;
  }

  override get exitClass(): ExitClass {
    return 'invalidInput';
  }
}
