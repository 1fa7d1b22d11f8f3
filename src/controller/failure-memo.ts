/**
 * Failures remembered per object generation, in memory: an object whose opening failed
 * is not opened again (no key-provider call, no CPU) until its spec changes or the entry
 * expires, even when its status could not be written (a status write refused by the API
 * server would otherwise make every resync decrypt it again).
 */
export class FailureMemo {
  readonly #entries = new Map<string, { uid: string | undefined; generation: number | undefined; reason: string; until: number }>();

  remember(key: string, source: { metadata: { uid?: string; generation?: number } }, reason: string, until: number): void {
    this.#entries.set(key, { uid: source.metadata.uid, generation: source.metadata.generation, reason, until });
  }

  /** Whether a remembered failure still holds for this object as it is now. */
  holds(key: string, current: { metadata: { uid?: string; generation?: number } }, now: number): boolean {
    const entry = this.#entries.get(key);
    if (!entry) return false;
    if (entry.uid !== current.metadata.uid || entry.generation !== current.metadata.generation || entry.until <= now) {
      this.#entries.delete(key);
      return false;
    }
    return true;
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }
}
