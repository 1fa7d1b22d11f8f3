/**
 * A work queue with client-go's semantics: a key is queued at most once (dirty set), is
 * never processed by two workers at once (a key added while processing is queued again
 * when done), and failed keys come back after a per-key exponential backoff, throttled
 * by a global token bucket.
 */

export interface RateLimits {
  /** First retry delay; doubles per consecutive failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Global bucket for retries: sustained rate and burst. */
  retriesPerSecond: number;
  burst: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { baseDelayMs: 200, maxDelayMs: 5 * 60_000, retriesPerSecond: 10, burst: 100 };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): { unref?(): unknown };
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class WorkQueue {
  readonly #limits: RateLimits;
  readonly #clock: Clock;
  readonly #queue: string[] = [];
  #head = 0;
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #delayed = new Map<string, { at: number; handle: unknown }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  #tokens: number;
  #tokensAt: number;
  #shuttingDown = false;
  /** Called whenever the depth changes (metrics). */
  onDepthChange: ((depth: number) => void) | undefined;

  constructor(options: { limits?: Partial<RateLimits>; clock?: Clock } = {}) {
    this.#limits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#limits.burst;
    this.#tokensAt = this.#clock.now();
  }

  get depth(): number {
    return this.#queue.length - this.#head;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      waiter(key);
      return;
    }
    this.#queue.push(key);
    this.onDepthChange?.(this.depth);
  }

  /** Waits for the next key; undefined once the queue is shut down and drained. */
  get(): Promise<string | undefined> {
    if (this.depth > 0) {
      const key = this.#queue[this.#head++]!;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue.splice(0, this.#head);
        this.#head = 0;
      }
      this.#dirty.delete(key);
      this.#processing.add(key);
      this.onDepthChange?.(this.depth);
      return Promise.resolve(key);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) {
      this.#dirty.delete(key);
      this.add(key);
    }
  }

  /** Adds the key after `delayMs`; an earlier pending add of the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    const at = this.#clock.now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) this.#clock.clearTimeout(pending.handle);
    const handle = this.#clock.setTimeout(() => {
      this.#delayed.delete(key);
      this.add(key);
    }, delayMs);
    handle.unref?.();
    this.#delayed.set(key, { at, handle });
  }

  /** Re-adds a failed key after its backoff; returns the delay chosen. */
  addRateLimited(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    const backoff = Math.min(this.#limits.baseDelayMs * 2 ** failures, this.#limits.maxDelayMs);
    const delay = Math.max(backoff, this.#reserveToken());
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the key's failure count after a success or a terminal error. */
  forget(key: string): void {
    this.#failures.delete(key);
  }

  failures(key: string): number {
    return this.#failures.get(key) ?? 0;
  }

  /** Stops taking new keys; pending `get` calls resolve with undefined. */
  shutDown(): void {
    this.#shuttingDown = true;
    for (const { handle } of this.#delayed.values()) this.#clock.clearTimeout(handle);
    this.#delayed.clear();
    this.#queue.length = 0;
    this.#head = 0;
    this.#dirty.clear();
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  // Token bucket: the delay (ms) until a token is available, reserving it.
  #reserveToken(): number {
    const now = this.#clock.now();
    const rate = this.#limits.retriesPerSecond / 1000;
    this.#tokens = Math.min(this.#limits.burst, this.#tokens + (now - this.#tokensAt) * rate);
    this.#tokensAt = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil(-this.#tokens / rate);
  }
}
