/**
 * A budget of key-provider calls per namespace (token buckets): one tenant rewriting its
 * EnvelopeSecrets in a loop, or posting manifests with many recipients that all fail,
 * cannot spend the account's KMS request quota (or the controller's CPU) for everyone.
 */
export interface BudgetOptions {
  /** Calls per second a namespace regains; 0 disables the budget. */
  perSecond: number;
  /** Calls a namespace may make at once after being idle. */
  burst: number;
  now?: () => number;
}

export const DEFAULT_UNWRAP_BUDGET: BudgetOptions = { perSecond: 50, burst: 1000 };

/** Thrown before a provider call the namespace cannot afford; nothing was sent. */
export class UnwrapBudgetExhausted extends Error {
  readonly namespace: string;
  readonly retryAfterMs: number;
  constructor(namespace: string, retryAfterMs: number) {
    super(`namespace ${namespace} spent its budget of key-provider calls; next call possible in ${Math.ceil(retryAfterMs / 1000)} s`);
    this.name = 'UnwrapBudgetExhausted';
    this.namespace = namespace;
    this.retryAfterMs = retryAfterMs;
  }
}

export class NamespaceBudget {
  readonly #o: BudgetOptions;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(options: Partial<BudgetOptions> = {}) {
    this.#o = { ...DEFAULT_UNWRAP_BUDGET, ...options };
    this.#now = options.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.#o.perSecond > 0;
  }

  /** Takes one call from the namespace's budget, or throws UnwrapBudgetExhausted. */
  take(namespace: string): void {
    if (!this.enabled) return;
    const now = this.#now();
    const rate = this.#o.perSecond / 1000;
    const bucket = this.#buckets.get(namespace) ?? { tokens: this.#o.burst, at: now };
    bucket.tokens = Math.min(this.#o.burst, bucket.tokens + (now - bucket.at) * rate);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.#buckets.set(namespace, bucket);
      throw new UnwrapBudgetExhausted(namespace, Math.ceil((1 - bucket.tokens) / rate));
    }
    bucket.tokens -= 1;
    this.#buckets.set(namespace, bucket);
    if (this.#buckets.size > 4096) this.#dropFull(now);
  }

  /** A full bucket is the same as none: keeps the map as small as the set of busy namespaces. */
  #dropFull(now: number): void {
    const rate = this.#o.perSecond / 1000;
    for (const [namespace, bucket] of this.#buckets) {
      if (bucket.tokens + (now - bucket.at) * rate >= this.#o.burst) this.#buckets.delete(namespace);
    }
  }
}
