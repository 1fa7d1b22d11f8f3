/** A FIFO of byte chunks; reads return views into the chunks where they can. */
export class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next `n` bytes as one buffer (a view when they lie in one chunk), without consuming them. */
  peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    for (const chunk of this.#chunks) {
      const take = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, take);
      filled += take;
      if (filled === n) break;
    }
    return out;
  }

  /** Consumes `n` bytes, returned as views in order. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let remaining = n;
    while (remaining > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.length <= remaining) {
        out.push(chunk);
        this.#chunks.shift();
        remaining -= chunk.length;
      } else {
        out.push(chunk.subarray(0, remaining));
        this.#chunks[0] = chunk.subarray(remaining);
        remaining = 0;
      }
    }
    this.#length -= n;
    return out;
  }

  /** Copies the queued bytes into one buffer of their own (no view of a caller's buffer remains). */
  own(): void {
    if (this.#length === 0) return;
    this.#chunks = [Buffer.concat(this.#chunks, this.#length)];
  }

  /** Everything left, as one buffer. */
  drain(): Buffer {
    const out = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    this.#chunks = [];
    this.#length = 0;
    return out;
  }
}
