/**
 * A budget of key-provider calls per namespace (token buckets): one tenant rewriting its
 * EnvelopeSecrets in a loop, or posting manifests with many recipients that all fail,
 * cannot spend the account's KMS request quota (or the controller's CPU) for everyone.
 *
 * A reconcile that will unwrap asks `admit` first, before any other work. When the
 * namespace has no token left, the object reserves the next free slot and is told how
 * long to wait: waiting objects are spread at the namespace's rate instead of all
 * retrying at once. Calls beyond the first in one reconcile (more recipients tried) are
 * charged afterwards, as debt that later admissions wait out.
 */
export interface BudgetOptions {
  /** Calls per second a namespace regains; 0 disables the budget. */
  perSecond: number;
  /** Calls a namespace may make at once after being idle. */
  burst: number;
  now?: () => number;
}

export const DEFAULT_UNWRAP_BUDGET: BudgetOptions = { perSecond: 50, burst: 1000 };

interface Bucket {
  tokens: number;
  at: number;
}

export class NamespaceBudget {
  readonly #o: BudgetOptions;
  readonly #now: () => number;
  readonly #buckets = new Map<string, Bucket>();
  /** Objects that reserved a slot, and when it is theirs. */
  readonly #reserved = new Map<string, number>();

  constructor(options: Partial<BudgetOptions> = {}) {
    this.#o = { ...DEFAULT_UNWRAP_BUDGET, ...options };
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#o.perSecond > 0;
  }

  /**
   * Whether the object `key` of `namespace` may make a key-provider call now: 0, or the
   * milliseconds to wait for the slot it has just reserved.
   */
  admit(namespace: string, key: string): number {
    if (!this.enabled) return 0;
    const now = this.#now();
    const slot = this.#reserved.get(key);
    if (slot !== undefined) {
      if (slot <= now) {
        this.#reserved.delete(key);
        return 0;
      }
      return slot - now;
    }
    const bucket = this.#refilled(namespace, now);
    bucket.tokens -= 1;
    if (bucket.tokens >= 0) return 0;
    const wait = Math.ceil(-bucket.tokens / this.#rate);
    this.#reserved.set(key, now + wait);
    if (this.#reserved.size > 100_000) this.#dropStale(now);
    return wait;
  }

  /** Charges a call made beyond the admitted one (it may leave the namespace in debt). */
  charge(namespace: string): void {
    if (this.enabled) this.#refilled(namespace, this.#now()).tokens -= 1;
  }

  /** Gives back an admission that made no call (the data key was cached). */
  refund(namespace: string): void {
    if (this.enabled) {
      const bucket = this.#refilled(namespace, this.#now());
      bucket.tokens = Math.min(this.#o.burst, bucket.tokens + 1);
    }
  }

  /** The object is gone: its reservation goes too. */
  forget(key: string): void {
    this.#reserved.delete(key);
  }

  get #rate(): number {
    return this.#o.perSecond / 1000;
  }

  #refilled(namespace: string, now: number): Bucket {
    let bucket = this.#buckets.get(namespace);
    if (!bucket) {
      bucket = { tokens: this.#o.burst, at: now };
      this.#buckets.set(namespace, bucket);
      if (this.#buckets.size > 4096) this.#dropFull(now);
    }
    bucket.tokens = Math.min(this.#o.burst, bucket.tokens + (now - bucket.at) * this.#rate);
    bucket.at = now;
    return bucket;
  }

  /** A full bucket is the same as none: the map stays as small as the set of busy namespaces. */
  #dropFull(now: number): void {
    for (const [namespace, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * this.#rate >= this.#o.burst) this.#buckets.delete(namespace);
    }
  }

  /** Reservations long past (their objects went away): dropped. */
  #dropStale(now: number): void {
    for (const [key, slot] of this.#reserved) if (slot < now - 60_000) this.#reserved.delete(key);
  }
}
