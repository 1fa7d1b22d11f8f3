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

export class WorkQueue {
  readonly #limits: RateLimits;
  readonly #clock: Clock;
  readonly #fifo: FairFifo;
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

  constructor(options: { limits?: Partial<RateLimits>; clock?: Clock; maxInFlightPerNamespace?: number; weightOf?: (key: string) => number } = {}) {
    this.#limits = { ...DEFAULT_RATE_LIMITS, ...options.limits };
    this.#fifo = new FairFifo(options.maxInFlightPerNamespace ?? Number.POSITIVE_INFINITY, options.weightOf ?? (() => 1));
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#limits.burst;
    this.#tokensAt = this.#clock.now();
  }

  get depth(): number {
    return this.#fifo.size;
  }

  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#dirty.delete(key);
      this.#start(key);
      waiter(key);
      return;
    }
    this.#fifo.push(key);
    this.onDepthChange?.(this.depth);
  }

  #start(key: string): void {
    this.#processing.add(key);
    this.#fifo.started(key);
  }

  /** Waits for the next key; undefined once the queue is shut down and drained. */
  get(): Promise<string | undefined> {
    const key = this.#fifo.shift();
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
    if (this.#processing.delete(key)) this.#fifo.finished(key);
    if (this.#dirty.has(key)) {
      this.#dirty.delete(key);
      this.add(key);
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
    this.#fifo.clear();
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
 * FIFOs per namespace, served in turn (round robin). A namespace is passed over while
 * another has keys waiting if its keys being processed and its next key would weigh more
 * than `maxInFlight` (so a key heavier than that share waits for a moment when no other
 * namespace can start one); when no waiting namespace is within its share, the next in
 * turn is served anyway, so no worker idles while there is work.
 */
class FairFifo {
  readonly #maxInFlight: number;
  readonly #weightOf: (key: string) => number;
  /** The weight each key being processed was started with (its object may change meanwhile). */
  readonly #started = new Map<string, number>();
  readonly #queues = new Map<string, { keys: string[]; head: number }>();
  /** Namespaces with waiting keys, in the order they are served. */
  #ring: string[] = [];
  #cursor = 0;
  readonly #inFlight = new Map<string, number>();
  size = 0;

  constructor(maxInFlight: number, weightOf: (key: string) => number) {
    this.#maxInFlight = maxInFlight;
    this.#weightOf = weightOf;
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
      if ((this.#inFlight.get(namespace) ?? 0) + Math.max(1, this.#weightOf(next.keys[next.head]!)) <= this.#maxInFlight) {
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

  started(key: string): void {
    const namespace = namespaceOf(key);
    const weight = Math.max(1, this.#weightOf(key));
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

  clear(): void {
    this.#queues.clear();
    this.#ring = [];
    this.#cursor = 0;
    this.size = 0;
  }
}
