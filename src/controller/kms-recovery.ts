import { Reason } from './conditions.ts';

/** Failures that end when the KMS answers again. */
const KMS_OUTAGE_REASONS: ReadonlySet<string> = new Set([Reason.KMSUnavailable, Reason.KMSThrottled]);

/**
 * Ends the wait after a KMS outage. Objects that failed because the KMS was down or
 * throttling back off exponentially (up to 5 minutes), so after an outage each would
 * wait out its own backoff, however early the KMS came back. When one of them succeeds
 * again -- its KMS answers -- the others are handed back for an immediate retry, with
 * their backoff reset. Only a recovered object triggers this, never an unrelated one,
 * so objects that still fail are not retried in a storm.
 */
export class KmsOutageTracker {
  readonly #waiting = new Set<string>();

  /** Records a failed reconcile; true when its reason is a KMS outage. */
  failed(key: string, reason: string): boolean {
    if (!KMS_OUTAGE_REASONS.has(reason)) {
      this.#waiting.delete(key);
      return false;
    }
    this.#waiting.add(key);
    return true;
  }

  /** Records a reconcile that did not fail; returns the keys to retry now (empty unless `key` was waiting on the KMS). */
  succeeded(key: string): string[] {
    if (!this.#waiting.delete(key)) return [];
    const retry = [...this.#waiting];
    this.#waiting.clear();
    return retry;
  }

  /** Stops tracking `key`: it ended another way (terminal, gone), which says nothing about the KMS. */
  forget(key: string): void {
    this.#waiting.delete(key);
  }

  get size(): number {
    return this.#waiting.size;
  }
}
