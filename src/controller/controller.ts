import type { Logger } from 'pino';
import { EnvsealError } from '../util/errors.ts';
import { describeError } from '../util/message.ts';
import { type Clock, systemClock } from './clock.ts';
import type { WorkQueue } from './queue.ts';

/**
 * A Controller runs a reconcile function over the keys of a work queue, as
 * controller-runtime's does: workers take keys, a key is never reconciled by two workers
 * at once, and what the reconcile answers decides what happens to the key:
 *
 * - a result: the key's backoff is reset; `requeueAfterMs` looks at it again later;
 * - a thrown error: retried after the key's backoff (errors retry by default);
 * - a TerminalError: not retried (until the key is added again by a change).
 *
 * It knows nothing of EnvelopeSecrets: the reconciler and the wiring (manager.ts) do.
 */

/** What a successful reconcile asks of the Controller. */
export interface ReconcileResult {
  /** Look again after this long even if nothing changes. */
  requeueAfterMs?: number;
}

/**
 * A failure that retrying cannot cure: the key is not retried until it is added again.
 * `code` is the reason the reconciler reported (a condition reason).
 */
export class TerminalError extends EnvsealError {
  readonly code: string;
  constructor(message: string, options: { cause?: unknown; reason?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TerminalError';
    this.code = options.reason ?? 'Terminal';
  }

  /** The reason the reconciler reported, if any. */
  get reason(): string | undefined {
    return this.code === 'Terminal' ? undefined : this.code;
  }
}

/**
 * A failure the reconciler already reported (status, log line): retried like any error,
 * but not logged again as unexpected.
 */
export class ReportedError extends EnvsealError {
  readonly code: string;
  constructor(message: string, options: { cause?: unknown; reason: string }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReportedError';
    this.code = options.reason;
  }

  get reason(): string {
    return this.code;
  }

  override get retryable(): boolean {
    return true;
  }
}

export type Outcome<R> =
  | { kind: 'result'; result: R }
  | { kind: 'terminal'; error: TerminalError }
  /** `retryInMs` is undefined when the error came during shutdown (not retried). */
  | { kind: 'error'; error: unknown; retryInMs: number | undefined };

export interface ControllerOptions<R extends ReconcileResult> {
  queue: WorkQueue;
  reconcile: (key: string, signal: AbortSignal) => Promise<R>;
  workers: number;
  /** After the stop signal: how long reconciles in flight may take before their signal aborts. */
  shutdownGraceMs: number;
  logger: Logger;
  clock?: Clock;
  /** Told of each finished reconcile and its duration (metrics; retries that depend on other keys). */
  onOutcome?: (key: string, outcome: Outcome<R>, seconds: number) => void;
}

export class Controller<R extends ReconcileResult> {
  readonly #o: ControllerOptions<R>;
  readonly #clock: Clock;

  constructor(options: ControllerOptions<R>) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
  }

  get queue(): WorkQueue {
    return this.#o.queue;
  }

  /** Retries these keys now, their backoff reset (e.g. the service they waited on answers again). */
  retryNow(keys: Iterable<string>): void {
    for (const key of keys) {
      this.#o.queue.forget(key);
      this.#o.queue.add(key);
    }
  }

  /**
   * Runs the workers until `signal` aborts: then the queue takes no more keys, and the
   * reconciles in flight have the grace period to finish (their signal aborts after it).
   * `drain` runs after the last worker, within what is left of the grace period.
   */
  async run(signal: AbortSignal, drain?: (graceSignal: AbortSignal) => Promise<void>): Promise<void> {
    const work = new AbortController();
    let grace: unknown;
    const onStop = () => {
      this.#o.queue.shutDown();
      grace = this.#clock.setTimeout(() => work.abort(new Error('shutdown grace period over')), this.#o.shutdownGraceMs);
      (grace as { unref?(): unknown }).unref?.();
    };
    signal.addEventListener('abort', onStop, { once: true });
    if (signal.aborted) onStop();
    try {
      await Promise.all(Array.from({ length: this.#o.workers }, () => this.#worker(work.signal)));
      await drain?.(work.signal);
    } finally {
      signal.removeEventListener('abort', onStop);
      if (grace !== undefined) this.#clock.clearTimeout(grace);
    }
  }

  async #worker(signal: AbortSignal): Promise<void> {
    const { queue, logger } = this.#o;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const started = performance.now();
      let outcome: Outcome<R>;
      try {
        try {
          const result = await this.#o.reconcile(key, signal);
          queue.forget(key);
          if (result.requeueAfterMs) queue.addAfter(key, result.requeueAfterMs);
          outcome = { kind: 'result', result };
        } catch (error) {
          if (error instanceof TerminalError) {
            queue.forget(key);
            logger.debug({ key, reason: error.reason }, 'reconcile failed terminally; not retrying');
            outcome = { kind: 'terminal', error };
          } else if (signal.aborted) {
            outcome = { kind: 'error', error, retryInMs: undefined };
          } else {
            if (!(error instanceof ReportedError)) logger.error({ key, error: describeError(error) }, 'reconcile failed unexpectedly; retrying');
            outcome = { kind: 'error', error, retryInMs: queue.addRateLimited(key) };
          }
        }
        try {
          this.#o.onOutcome?.(key, outcome, (performance.now() - started) / 1000);
        } catch (error) {
          logger.error({ key, error: describeError(error) }, 'reconcile outcome handler failed');
        }
      } finally {
        queue.done(key);
      }
      // Stopped mid-reconcile: the queue is shut down, the key is not retried here.
      if (outcome.kind === 'error' && outcome.retryInMs === undefined) return;
    }
  }
}
