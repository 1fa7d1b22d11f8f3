import { setTimeout as delay } from 'node:timers/promises';

/**
 * How the controller's requests meet the API server's priority and fairness (APF): the
 * server answers 429 with a Retry-After when the controller's priority level is full,
 * before it has handled the request, so the request is safe to send again whatever its
 * verb. Without this, a 429 failed the reconcile: the object went Ready=False
 * (KubernetesError) and its status write, Event and retries added more requests to the
 * level that was already full.
 *
 * So a throttled request waits for the Retry-After (with jitter, so that the waiting
 * requests do not come back together) and is sent again, a few times, inside the same
 * call; and the number of requests in flight adapts like a TCP window (AIMD): unlimited
 * until the first 429, then halved on a 429 and grown by one per window of successes,
 * until it is back above what the controller ever had in flight, when it is unlimited
 * again. No client-side rate is set: APF is the server's own measure of what it accepts,
 * and a fixed rate (client-go's 5 requests/s default) is what makes Sealed Secrets take
 * minutes for thousands of objects (docs/benchmarks.md).
 */
export interface RequestGateOptions {
  /** Whether an error is the server's 429, and the Retry-After it asked for. */
  throttled: (error: unknown) => { retryAfterMs: number | undefined } | undefined;
  /** Sends of one request, the first included, while the server answers 429 (default 6). */
  attempts?: number;
  /** Wait when a 429 has no Retry-After (default 1 s), and the most a Retry-After may ask (default 10 s). */
  defaultRetryAfterMs?: number;
  maxRetryAfterMs?: number;
  /** Told of each 429, and of each change of the limit (metrics). */
  onThrottled?: () => void;
  onLimit?: (limit: number) => void;
  /** For tests: time, waits and jitter. */
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/**
 * The wait before sending a throttled request again: never sooner than the server asked
 * (`defaultMs`, 1 s, without a Retry-After), at most `maxMs` (10 s), and up to a quarter
 * later, so that the requests throttled together do not all come back in the same
 * millisecond. `random` is in [0, 1).
 */
export function throttledWaitMs(retryAfterMs: number | undefined, random: number, limits: { defaultMs?: number; maxMs?: number } = {}): number {
  return Math.min(retryAfterMs ?? limits.defaultMs ?? 1000, limits.maxMs ?? 10_000) * (1 + random / 4);
}

export class RequestGate {
  readonly #attempts: number;
  readonly #defaultRetryAfterMs: number;
  readonly #maxRetryAfterMs: number;
  readonly #options: RequestGateOptions;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  /** Infinity until the first 429. */
  #limit = Number.POSITIVE_INFINITY;
  #inFlight = 0;
  #peakInFlight = 0;
  /** Requests started before this time do not lower the limit again (one decrease per window). */
  #decreasedAt = Number.NEGATIVE_INFINITY;
  readonly #waiters: Waiter[] = [];

  constructor(options: RequestGateOptions) {
    this.#options = options;
    this.#attempts = Math.max(1, options.attempts ?? 6);
    this.#defaultRetryAfterMs = options.defaultRetryAfterMs ?? 1000;
    this.#maxRetryAfterMs = options.maxRetryAfterMs ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? ((ms, signal) => delay(ms, undefined, { signal }).catch(() => undefined));
    this.#random = options.random ?? Math.random;
  }

  /** Requests allowed in flight (Infinity: no limit). */
  get limit(): number {
    return this.#limit;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Runs `send` when the limit allows, again after each 429 (up to `attempts` sends in all). */
  async run<T>(send: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      await this.#acquire(signal);
      const startedAt = this.#now();
      let throttled: { retryAfterMs: number | undefined } | undefined;
      try {
        const result = await send();
        this.#succeeded();
        return result;
      } catch (error) {
        throttled = this.#options.throttled(error);
        if (throttled === undefined) throw error;
        this.#throttled(startedAt);
        if (attempt >= this.#attempts) throw error;
      } finally {
        this.#release();
      }
      const wait = throttledWaitMs(throttled.retryAfterMs, this.#random(), { defaultMs: this.#defaultRetryAfterMs, maxMs: this.#maxRetryAfterMs });
      await this.#sleep(wait, signal);
      signal?.throwIfAborted();
    }
  }

  #acquire(signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (this.#waiters.length === 0 && this.#inFlight < this.#limit) {
      this.#take();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.#waiters.indexOf(waiter);
          if (index >= 0) this.#waiters.splice(index, 1);
          reject(signal?.reason);
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #take(): void {
    this.#inFlight++;
    if (this.#inFlight > this.#peakInFlight) this.#peakInFlight = this.#inFlight;
  }

  #release(): void {
    this.#inFlight--;
    while (this.#waiters.length > 0 && this.#inFlight < this.#limit) {
      const waiter = this.#waiters.shift()!;
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      this.#take();
      waiter.resolve();
    }
  }

  #throttled(startedAt: number): void {
    this.#options.onThrottled?.();
    // Requests that were already in flight when the limit went down answer 429 too: one
    // decrease per window, as TCP does per round trip.
    if (startedAt <= this.#decreasedAt) return;
    this.#decreasedAt = this.#now();
    const base = Number.isFinite(this.#limit) ? this.#limit : this.#inFlight;
    this.#setLimit(Math.max(1, Math.floor(base / 2)));
  }

  #succeeded(): void {
    if (!Number.isFinite(this.#limit)) return;
    const grown = this.#limit + 1 / Math.floor(this.#limit);
    // Back above anything the controller had in flight: no limit is needed any more.
    this.#setLimit(grown > this.#peakInFlight ? Number.POSITIVE_INFINITY : grown);
  }

  #setLimit(limit: number): void {
    const before = Math.floor(this.#limit);
    this.#limit = limit;
    if (Math.floor(limit) !== before) this.#options.onLimit?.(limit);
  }
}
