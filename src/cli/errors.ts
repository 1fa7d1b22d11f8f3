import type { ValidationCheck } from '../api/types.ts';
import { EnvsealError } from '../util/errors.ts';

/** The CLI's exit codes; docs/cli.md has the table. */
export const EXIT = {
  ok: 0,
  unexpected: 1,
  usage: 2,
  invalidInput: 3,
  provider: 4,
  refused: 5,
  interrupted: 130,
} as const;

/** `envseal verify`: which check failed (the lowest code wins when several fail). */
export const VERIFY_EXIT: Readonly<Record<ValidationCheck | 'decrypt', number>> = {
  structure: 10,
  base64: 11,
  size: 12,
  'duplicate-key': 13,
  suite: 14,
  provider: 15,
  decrypt: 16,
};

export type CliErrorCode =
  | 'Usage'
  | 'InvalidInput'
  | 'FileNotFound'
  | 'FileExists'
  | 'FileError'
  | 'IdentityNotFound'
  | 'KeyNotFound'
  | 'Refused'
  | 'EditorFailed'
  | 'EditAborted'
  | 'FileChanged'
  | 'VerifyFailed'
  | 'ClusterRecipient'
  | 'Interrupted';

/**
 * An error the CLI reports as is: the message names the problem (files, fields, key
 * names), never a value, a data key or a private key.
 */
export class CliError extends EnvsealError {
  readonly code: CliErrorCode;
  readonly exitCode: number;

  constructor(code: CliErrorCode, message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.exitCode = options.exitCode ?? DEFAULT_EXIT[code];
  }
}

const DEFAULT_EXIT: Readonly<Record<CliErrorCode, number>> = {
  Usage: EXIT.usage,
  InvalidInput: EXIT.invalidInput,
  FileNotFound: EXIT.invalidInput,
  FileExists: EXIT.refused,
  FileError: EXIT.unexpected,
  IdentityNotFound: EXIT.provider,
  KeyNotFound: EXIT.invalidInput,
  Refused: EXIT.refused,
  EditorFailed: EXIT.refused,
  EditAborted: EXIT.refused,
  FileChanged: EXIT.refused,
  VerifyFailed: VERIFY_EXIT.structure,
  ClusterRecipient: EXIT.provider,
  Interrupted: EXIT.interrupted,
};

export function usageError(message: string): CliError {
  return new CliError('Usage', message);
}

export function invalidInput(message: string, cause?: unknown): CliError {
  return new CliError('InvalidInput', message, cause === undefined ? {} : { cause });
}

/** The exit code for any error a command throws: envseal's own errors say their class. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  if (isAbort(error)) return EXIT.interrupted;
  if (error instanceof EnvsealError) return EXIT[error.exitClass];
  return EXIT.unexpected;
}

export function isAbort(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

// Errors whose messages envseal writes itself, and so never quote a value.
function isOwnError(error: unknown): error is EnvsealError {
  return error instanceof EnvsealError;
}

/**
 * What the user sees for an error. Messages of other libraries (which may quote their
 * input) are never shown: only the error's name. With `debug`, the cause chain follows,
 * again showing only messages of envseal's own errors.
 */
export function describeError(error: unknown, debug: boolean): string {
  let text: string;
  if (isOwnError(error)) text = error.message;
  else if (isAbort(error)) text = 'interrupted';
  else text = `unexpected ${error instanceof Error ? error.name : typeof error}; run with ENVSEAL_DEBUG=1 for details`;
  if (!debug) return text;
  const lines = [text];
  const seen = new Set<unknown>([error]);
  let cause = error instanceof Error ? error.cause : undefined;
  while (cause !== undefined && !seen.has(cause)) {
    seen.add(cause);
    const code = typeof (cause as { code?: unknown }).code === 'string' ? ` [${(cause as { code: string }).code}]` : '';
    lines.push(`  caused by ${cause instanceof Error ? cause.name : typeof cause}${code}${isOwnError(cause) ? `: ${cause.message}` : ''}`);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  if (!isOwnError(error) && error instanceof Error && error.stack) {
    // Stack frames only: the first line of a stack is the (possibly value-quoting) message.
    lines.push(...error.stack.split('\n').filter((line) => /^\s+at /.test(line)));
  }
  return lines.join('\n');
}
