import { type Clock, systemClock } from './clock.ts';

export type { Clock } from './clock.ts';

/**
 * A work queue with client-go's semantics: a key is queued at most once (dirty set), is
 * never processed by two workers at once (a key added while processing is queued again
 * when done), and failed keys come back after a per-key exponential backoff, throttled
 * by a global token bucket.
 *
 * Unlike client-go's FIFO, it is fair between namespaces (the part of a key before "/"):
 * each namespace has its own FIFO and `get` takes from them in turn, preferring one whose
 * keys being processed, with its next key, weigh at most `maxInFlightPerNamespace` (a key
 * weighs `weightOf(key)`, 1 by default: large objects weigh more). So one tenant with 10,000
 * objects, or with objects that are slow to open, cannot make another tenant's new object
 * wait behind all of them.
 *
 * Keys come in two classes: `event` (what the API server just told: a new or changed
 * object, a retry) before `resync` (the periodic pass over every object, and the objects
 * of the cold start's first list). A new EnvelopeSecret does not wait behind a resync of
 * 100,000 objects. A key waiting in both is processed once, in the higher class.
 */

/** Which line a key waits in: `event` keys are served before any `resync` key. */
export type Priority = 'event' | 'resync';

export interface RateLimits {
  /** First retry delay; doubles per consecutive failure. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Global bucket for retries: sustained rate and burst. */
  retriesPerSecond: number;
  burst: number;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { baseDelayMs: 200, maxDelayMs: 5 * 60_000, retriesPerSecond: 10, burst: 100 };

export class WorkQueue {
  readonly #limits: RateLimits;
  readonly #clock: Clock;
  readonly #shares: Shares;
  readonly #lines: Record<Priority, FairFifo>;
  /** Keys waiting to be processed, or to be processed again when done, with their class. */
  readonly #dirty = new Map<string, Priority>();
  readonly #processing = new Set<string>();
  /** Entries left in the resync line by keys that moved up to the event line (skipped when reached). */
  #stale = 0;
  readonly #failures = new Map<string, number>();
  readonly #delayed = new Map<string, { at: number; handle: unknown }>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  #tokens: number;
  #tokensAt: number;
  #shuttingDown = false;
  /** Called whenever the depth changes (metrics). */
  onDepthChange: ((depth: number) => void) | undefined;

  constructor(options: { limits?: Partial<RateLimits>; clock?: Clock; maxInFlightPerNamespace?: number; weightOf?: (key: string) => number } = {}) {
    this.#limits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
    this.#shares = new Shares(options.maxInFlightPerNamespace ?? Number.POSITIVE_INFINITY, options.weightOf ?? (() => 1));
    this.#lines = { event: new FairFifo(this.#shares), resync: new FairFifo(this.#shares) };
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#limits.burst;
    this.#tokensAt = this.#clock.now();
  }

  get depth(): number {
    return this.#lines.event.size + this.#lines.resync.size - this.#stale;
  }

  /** Keys waiting in each class (for tests and metrics). */
  depthOf(priority: Priority): number {
    return this.#lines[priority].size - (priority === 'resync' ? this.#stale : 0);
  }

  add(key: string, priority: Priority = 'event'): void {
    if (this.#shuttingDown) return;
    const queued = this.#dirty.get(key);
    if (queued !== undefined) {
      if (queued === 'event' || priority === 'resync') return;
      // Waiting as resync, now an event: it moves up (its resync entry is skipped later).
      this.#dirty.set(key, 'event');
      if (this.#processing.has(key)) return;
      this.#stale++;
      this.#lines.event.push(key);
      return;
    }
    this.#dirty.set(key, priority);
    if (this.#processing.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(key);
      this.#start(key);
      waiter(key);
      return;
    }
    this.#lines[priority].push(key);
    this.onDepthChange?.(this.depth);
  }

  #start(key: string): void {
    this.#processing.add(key);
    this.#shares.started(key);
  }

  /** The next key to process: events first, then resyncs; skips entries of keys that moved up. */
  #next(): string | undefined {
    for (const priority of ['event', 'resync'] as const) {
      for (;;) {
        const key = this.#lines[priority].shift();
        if (key === undefined) break;
        if (this.#dirty.get(key) === priority && !this.#processing.has(key)) return key;
        this.#stale--;
      }
    }
    return undefined;
  }

  /** Waits for the next key; undefined once the queue is shut down and drained. */
  get(): Promise<string | undefined> {
    const key = this.#next();
    if (key !== undefined) {
      this.#dirty.delete(key);
      this.#start(key);
      this.onDepthChange?.(this.depth);
      return Promise.resolve(key);
    }
    if (this.#shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    if (this.#processing.delete(key)) this.#shares.finished(key);
    const again = this.#dirty.get(key);
    if (again !== undefined) {
      this.#dirty.delete(key);
      this.add(key, again);
    }
  }

  /** Adds the key after `delayMs`; an earlier pending add of the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
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
    this.#lines.event.clear();
    this.#lines.resync.clear();
    this.#stale = 0;
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

const namespaceOf = (key: string): string => key.slice(0, Math.max(0, key.indexOf('/')));

/**
 * What each namespace's keys being processed weigh, whichever class they came from: one
 * share per namespace across both lines, so that moving keys between classes gives a
 * namespace no more workers.
 */
class Shares {
  readonly maxInFlight: number;
  readonly weightOf: (key: string) => number;
  /** The weight each key being processed was started with (its object may change meanwhile). */
  readonly #started = new Map<string, number>();
  readonly #inFlight = new Map<string, number>();

  constructor(maxInFlight: number, weightOf: (key: string) => number) {
    this.maxInFlight = maxInFlight;
    this.weightOf = weightOf;
  }

  /** Whether the namespace, with `next` started too, stays within its share. */
  fits(namespace: string, next: string): boolean {
    return (this.#inFlight.get(namespace) ?? 0) + Math.max(1, this.weightOf(next)) <= this.maxInFlight;
  }

  started(key: string): void {
    const namespace = namespaceOf(key);
    const weight = Math.max(1, this.weightOf(key));
    this.#started.set(key, weight);
    this.#inFlight.set(namespace, (this.#inFlight.get(namespace) ?? 0) + weight);
  }

  finished(key: string): void {
    const namespace = namespaceOf(key);
    const weight = this.#started.get(key) ?? 1;
    this.#started.delete(key);
    const left = (this.#inFlight.get(namespace) ?? weight) - weight;
    if (left > 0) this.#inFlight.set(namespace, left);
    else this.#inFlight.delete(namespace);
  }
}

/**
 * FIFOs per namespace, served in turn (round robin). A namespace is passed over while
 * another has keys waiting if its keys being processed and its next key would weigh more
 * than its share (so a key heavier than that share waits for a moment when no other
 * namespace can start one); when no waiting namespace is within its share, the next in
 * turn is served anyway, so no worker idles while there is work.
 */
class FairFifo {
  readonly #shares: Shares;
  readonly #queues = new Map<string, { keys: string[]; head: number }>();
  /** Namespaces with waiting keys, in the order they are served. */
  #ring: string[] = [];
  #cursor = 0;
  size = 0;

  constructor(shares: Shares) {
    this.#shares = shares;
  }

  push(key: string): void {
    const namespace = namespaceOf(key);
    let queue = this.#queues.get(namespace);
    if (!queue) {
      queue = { keys: [], head: 0 };
      this.#queues.set(namespace, queue);
      this.#ring.push(namespace);
    }
    queue.keys.push(key);
    this.size++;
  }

  shift(): string | undefined {
    if (this.size === 0) return undefined;
    const count = this.#ring.length;
    let chosen = -1;
    for (let step = 0; step < count; step++) {
      const index = (this.#cursor + step) % count;
      const namespace = this.#ring[index]!;
      const next = this.#queues.get(namespace)!;
      // Within its share with its next key: a key heavier than the whole share (a
      // megabyte object) waits while other namespaces have work.
      if (this.#shares.fits(namespace, next.keys[next.head]!)) {
        chosen = index;
        break;
      }
    }
    if (chosen < 0) chosen = this.#cursor % count;
    const namespace = this.#ring[chosen]!;
    const queue = this.#queues.get(namespace)!;
    const key = queue.keys[queue.head++]!;
    this.size--;
    if (queue.head === queue.keys.length) {
      this.#queues.delete(namespace);
      this.#ring.splice(chosen, 1);
      this.#cursor = this.#ring.length === 0 ? 0 : chosen % this.#ring.length;
    } else {
      if (queue.head > 1024 && queue.head * 2 > queue.keys.length) {
        queue.keys.splice(0, queue.head);
        queue.head = 0;
      }
      this.#cursor = (chosen + 1) % this.#ring.length;
    }
    return key;
  }

  clear(): void {
    this.#queues.clear();
    this.#ring = [];
    this.#cursor = 0;
    this.size = 0;
  }
}
