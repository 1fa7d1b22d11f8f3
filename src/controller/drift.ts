/**
 * Notices another writer fighting the controller over a Secret it owns (another field
 * manager rewriting it, kube-controller-manager filling in a token, a script deleting
 * it): more than `maxRepairs` repairs within `windowMs` stop the repairs for a backoff
 * that doubles each time, up to `maxBackoffMs`. Without it the two writers would loop
 * forever, a new resourceVersion every few hundred milliseconds.
 */
export interface DriftOptions {
  windowMs: number;
  maxRepairs: number;
  baseBackoffMs: number;
  maxBackoffMs: number;
  now?: () => number;
}

export const DEFAULT_DRIFT_OPTIONS: DriftOptions = { windowMs: 60_000, maxRepairs: 3, baseBackoffMs: 60_000, maxBackoffMs: 10 * 60_000 };

export type DriftDecision =
  | { repair: true }
  /** `started`: this drift began the backoff (say so in the status once). */
  | { repair: false; retryAfterMs: number; started: boolean; repairs: number };

interface Entry {
  repairs: number[];
  level: number;
  until: number;
}

export class DriftTracker {
  readonly #o: DriftOptions;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(options: Partial<DriftOptions> = {}) {
    this.#o = { ...DEFAULT_DRIFT_OPTIONS, ...options };
    this.#now = options.now ?? Date.now;
  }

  /** The Secret of `key` was found changed by someone else: repair it now, or wait? */
  drifted(key: string): DriftDecision {
    const now = this.#now();
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { repairs: [], level: 0, until: 0 };
      this.#entries.set(key, entry);
    }
    if (entry.until > now) return { repair: false, retryAfterMs: entry.until - now, started: false, repairs: 0 };
    entry.repairs = entry.repairs.filter((at) => at > now - this.#o.windowMs);
    if (entry.repairs.length < this.#o.maxRepairs) {
      entry.repairs.push(now);
      return { repair: true };
    }
    const repairs = entry.repairs.length;
    entry.level++;
    const backoff = Math.min(this.#o.baseBackoffMs * 2 ** (entry.level - 1), this.#o.maxBackoffMs);
    entry.until = now + backoff;
    entry.repairs = [];
    return { repair: false, retryAfterMs: backoff, started: true, repairs };
  }

  /** The object is gone or has a new spec: start over. */
  forget(key: string): void {
    this.#entries.delete(key);
  }
}
