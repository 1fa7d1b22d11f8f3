import type { Clock } from '../controller/clock.ts';

/**
 * A clock that moves only when a test says so: `advance` fires the timers that fall due,
 * in order, letting the promises they settle run between them.
 */
export class ManualClock implements Clock {
  #now: number;
  #next = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): { unref(): void; id: number } {
    const id = ++this.#next;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return { id, unref: () => {} };
  }

  clearTimeout(handle: unknown): void {
    if (handle && typeof handle === 'object' && 'id' in handle) this.#timers.delete((handle as { id: number }).id);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its own time. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) if (entry[1].at <= end && (!due || entry[1].at < due[1].at)) due = entry;
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].fn();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets pending promise callbacks (and the ones they start) run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
