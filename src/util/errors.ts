/**
 * What the CLI's exit code says about an error (src/cli/errors.ts maps each to its
 * number): the command line was wrong, the input is bad, a key service failed, the
 * operation was refused to protect something, or a bug.
 */
export type ExitClass = 'usage' | 'invalidInput' | 'provider' | 'refused' | 'unexpected';

/**
 * The base of envseal's own errors. Their messages are written by envseal and name
 * fields, files, keys and services, never a value, a data key or a private key: the
 * CLI and the controller show them as they are (other errors only by name).
 */
export abstract class EnvsealError extends Error {
  /** A stable name of what went wrong, for programs and tests. */
  abstract readonly code: string;

  /** Which exit code the CLI gives it. */
  get exitClass(): ExitClass {
    return 'unexpected';
  }

  /** The same call may succeed later (throttling, an unreachable service): worth a retry with backoff. */
  get retryable(): boolean {
    return false;
  }
}
