export interface TextWriter {
  write(text: string): unknown;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${UNITS[unit]}`;
}

/**
 * A one-line progress bar for a terminal (stderr): redrawn with \r at most every
 * 200 ms, erased by done(). Shows no file content, only names and byte counts.
 */
export class ProgressBar {
  readonly #writer: TextWriter;
  readonly #label: string;
  readonly #total: number | undefined;
  readonly #now: () => number;
  readonly #started: number;
  #last = 0;
  #drawn = false;

  constructor(writer: TextWriter, label: string, total: number | undefined, now: () => number = () => Date.now()) {
    this.#writer = writer;
    this.#label = label.length > 40 ? `…${label.slice(-39)}` : label;
    this.#total = total;
    this.#now = now;
    this.#started = now();
  }

  update(bytes: number): void {
    const now = this.#now();
    if (now - this.#last < 200) return;
    this.#last = now;
    const seconds = Math.max((now - this.#started) / 1000, 0.001);
    const rate = `${formatBytes(bytes / seconds)}/s`;
    let line: string;
    if (this.#total !== undefined && this.#total > 0) {
      const fraction = Math.min(bytes / this.#total, 1);
      const width = 24;
      const filled = Math.round(fraction * width);
      line = `${this.#label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(bytes)} / ${formatBytes(this.#total)} ${rate}`;
    } else {
      line = `${this.#label} ${formatBytes(bytes)} ${rate}`;
    }
    this.#writer.write(`\r${line}\x1b[K`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#writer.write('\r\x1b[K');
    this.#drawn = false;
  }
}
