/**
 * Output of whole messages, through a Sink that publishes nothing until commit():
 *
 * - AtomicFileSink writes a temporary file beside the target (mode 0600 until the
 *   final mode is set), flushes it and renames it over the target on commit; abort
 *   removes it. The target never holds a partial or unauthenticated result.
 * - HeldSink (stdout by default) keeps the output in memory up to a limit, then in an
 *   anonymous temporary file (created 0600 and unlinked at once, so nothing remains
 *   on disk even after a crash); commit copies it to the writer.
 * - PassThroughSink writes straight through (stdout with --unbuffered).
 */
import { randomUUID } from 'node:crypto';
import { type FileHandle, open, realpath, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { READ_CHUNK_BYTES } from './sources.ts';

/**
 * A young-generation garbage collection, when the program provides one (the CLI does:
 * src/cli/gc.ts). Every frame's AES-GCM output is a new 64 KiB buffer whose memory V8
 * frees only when a scavenge collects its small JS wrapper; between scavenges dead frames
 * pile up (RSS grows by ~70 MiB). The pumps and the held sink call it after each batch.
 */
export type CollectGarbage = () => void;

const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;
const DEFAULT_SYNC_EVERY_BYTES = 64 * 1024 * 1024;

export interface Sink {
  /**
   * Queues the buffers; resolves once the previous call's buffers are written (or
   * copied), so the caller may reuse those, not these, from then on.
   */
  write(buffers: readonly Buffer[]): Promise<void>;
  /** Publishes the output (rename, or copy to the writer). */
  commit(): Promise<void>;
  /** Discards everything written; never throws. */
  abort(): Promise<void>;
}

async function writeAll(handle: FileHandle, buffers: readonly Buffer[], position: number | null = null): Promise<number> {
  let total = 0;
  for (const b of buffers) total += b.length;
  if (total === 0) return 0;
  const { bytesWritten } = await handle.writev(buffers as Buffer[], position ?? undefined);
  if (bytesWritten < total) {
    // A short write: write the rest in one piece.
    const rest = Buffer.concat(buffers as Buffer[]).subarray(bytesWritten);
    let offset = 0;
    while (offset < rest.length) {
      const { bytesWritten: n } = await handle.write(rest, offset, rest.length - offset, position === null ? null : position + bytesWritten + offset);
      offset += n;
    }
  }
  return total;
}

export interface AtomicFileSinkOptions {
  /** Mode of a new file (an existing target keeps its mode). */
  mode: number;
  /**
   * Starts writing the temporary file's data to disk (fdatasync, in the background, one
   * at a time) every this many bytes (default 64 MiB; 0: only at commit), so the disk
   * works while the next frames are computed instead of all at the final fsync.
   */
  syncEveryBytes?: number;
  /** Registers the temporary path for removal on abrupt exit; returns the unregister function. */
  trackTemporary?: (file: string) => () => void;
}

/** Writes `target` atomically: temporary file in the same directory, fsync, rename. */
export class AtomicFileSink implements Sink {
  readonly target: string;
  readonly #options: AtomicFileSinkOptions;
  #handle: FileHandle | undefined;
  #temporary: string | undefined;
  #untrack: (() => void) | undefined;
  #mode = 0o600;
  #pending: Promise<unknown> = Promise.resolve();
  #done = false;
  #unsynced = 0;
  #syncing: Promise<void> | undefined;

  constructor(target: string, options: AtomicFileSinkOptions) {
    this.target = target;
    this.#options = options;
  }

  /** Creates the temporary file; call before write(). */
  async open(): Promise<void> {
    let target = this.target;
    let mode = this.#options.mode;
    try {
      target = await realpath(this.target);
      const info = await stat(target);
      if (info.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      mode = info.mode & 0o7777;
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
    }
    this.#mode = mode;
    const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`);
    this.#untrack = this.#options.trackTemporary?.(temporary);
    this.#handle = await open(temporary, 'wx', 0o600);
    this.#temporary = temporary;
    (this as { target: string }).target = target;
  }

  write(buffers: readonly Buffer[]): Promise<void> {
    const handle = this.#handle;
    if (handle === undefined) return Promise.reject(new Error('AtomicFileSink: open() first'));
    // One write in flight while the caller computes the next batch.
    const previous = this.#pending;
    const next = previous.then(() => writeAll(handle, buffers)).then((n) => this.#written(handle, n));
    // Awaited by the next write or commit; never an unhandled rejection meanwhile.
    next.catch(() => {});
    this.#pending = next;
    return previous.then(() => undefined);
  }

  #written(handle: FileHandle, bytes: number): void {
    const every = this.#options.syncEveryBytes ?? DEFAULT_SYNC_EVERY_BYTES;
    this.#unsynced += bytes;
    if (every <= 0 || this.#unsynced < every || this.#syncing !== undefined) return;
    this.#unsynced = 0;
    const syncing = handle.datasync().finally(() => {
      if (this.#syncing === syncing) this.#syncing = undefined;
    });
    // Its error, if any, surfaces at commit (which syncs again and awaits this one).
    syncing.catch(() => {});
    this.#syncing = syncing;
  }

  async commit(): Promise<void> {
    const handle = this.#handle!;
    await this.#pending;
    await this.#syncing;
    await handle.chmod(this.#mode);
    await handle.sync();
    await handle.close();
    this.#handle = undefined;
    await rename(this.#temporary!, this.target);
    this.#done = true;
    this.#untrack?.();
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#pending.catch(() => {});
    await this.#syncing?.catch(() => {});
    await this.#handle?.close().catch(() => {});
    this.#handle = undefined;
    if (this.#temporary !== undefined) await rm(this.#temporary, { force: true }).catch(() => {});
    this.#untrack?.();
  }
}

/** A writer such as process.stdout: write() may return false and emit 'drain'. */
export interface OutputWriter {
  write(chunk: Uint8Array): unknown;
  once?(event: 'drain' | 'error' | 'close', listener: (...args: unknown[]) => void): unknown;
  removeListener?(event: 'drain' | 'error' | 'close', listener: (...args: unknown[]) => void): unknown;
}

/** Writes with backpressure when the writer is a Node stream; rejects if it errors or closes meanwhile. */
export async function writeTo(writer: OutputWriter, chunk: Uint8Array): Promise<void> {
  const ok = writer.write(chunk);
  if (ok !== false || typeof writer.once !== 'function') return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onError = (error: unknown): void => {
      cleanup();
      reject(error instanceof Error ? error : new Error('output stream failed'));
    };
    const onClose = (): void => {
      cleanup();
      reject(Object.assign(new Error('output stream closed'), { code: 'EPIPE' }));
    };
    const cleanup = (): void => {
      writer.removeListener?.('drain', onDrain);
      writer.removeListener?.('error', onError);
      writer.removeListener?.('close', onClose);
    };
    writer.once!('drain', onDrain);
    writer.once!('error', onError);
    writer.once!('close', onClose);
  });
}

/** Writes straight to the writer (stdout with --unbuffered). */
export class PassThroughSink implements Sink {
  readonly #writer: OutputWriter;
  constructor(writer: OutputWriter) {
    this.#writer = writer;
  }
  async write(buffers: readonly Buffer[]): Promise<void> {
    // One write per batch: fewer syscalls for a pipe. Always a copy: the writer may hold
    // the chunk after write() returns, and the pumps reuse their buffers.
    if (buffers.length === 0) return;
    await writeTo(this.#writer, Buffer.concat(buffers as Buffer[]));
  }
  async commit(): Promise<void> {}
  async abort(): Promise<void> {}
}

export interface HeldSinkOptions {
  /** Bytes kept in memory before spilling to a temporary file (default 4 MiB). */
  memoryLimit?: number;
  /** Directory of the temporary file (default the system's temporary directory). */
  directory?: string;
  /** Called every 16 MiB written at commit. */
  collectGarbage?: CollectGarbage;
}

/** Holds all output until commit(), in memory and then in an unlinked private temporary file. */
export class HeldSink implements Sink {
  readonly #writer: OutputWriter;
  readonly #memoryLimit: number;
  readonly #directory: string;
  readonly #collectGarbage: CollectGarbage | undefined;
  #memory: Buffer[] = [];
  #memoryLength = 0;
  #file: FileHandle | undefined;
  #fileLength = 0;
  #pending: Promise<unknown> = Promise.resolve();

  constructor(writer: OutputWriter, options: HeldSinkOptions = {}) {
    this.#writer = writer;
    this.#memoryLimit = options.memoryLimit ?? 4 * 1024 * 1024;
    this.#directory = options.directory ?? tmpdir();
    this.#collectGarbage = options.collectGarbage;
  }

  /** Bytes held so far. */
  get length(): number {
    return this.#memoryLength + this.#fileLength;
  }

  /** Whether output spilled to the temporary file. */
  get spilled(): boolean {
    return this.#file !== undefined;
  }

  async write(buffers: readonly Buffer[]): Promise<void> {
    let size = 0;
    for (const b of buffers) size += b.length;
    if (this.#file === undefined && this.#memoryLength + size <= this.#memoryLimit) {
      // Copies: the caller may reuse or zero its buffers.
      for (const b of buffers) this.#memory.push(Buffer.from(b));
      this.#memoryLength += size;
      return;
    }
    if (this.#file === undefined) {
      const file = path.join(this.#directory, `.envseal-${randomUUID()}.tmp`);
      const handle = await open(file, 'wx+', 0o600);
      // Unlinked at once: only this process's descriptor reaches the data.
      await rm(file, { force: true });
      this.#file = handle;
      const held = this.#memory;
      this.#memory = [];
      this.#memoryLength = 0;
      await writeAll(handle, held, 0);
      this.#fileLength = held.reduce((n, b) => n + b.length, 0);
    }
    await this.#pending;
    const position = this.#fileLength;
    this.#fileLength += size;
    const next = writeAll(this.#file, buffers, position);
    next.catch(() => {});
    this.#pending = next;
  }

  async commit(): Promise<void> {
    await this.#pending;
    for (const b of this.#memory) await writeTo(this.#writer, b);
    this.#memory = [];
    const handle = this.#file;
    if (handle === undefined) return;
    const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let position = 0;
    while (position < this.#fileLength) {
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, this.#fileLength - position), position);
      if (bytesRead === 0) throw new Error('the held output file ended early');
      // A copy per write: the writer may hold the chunk past this loop.
      await writeTo(this.#writer, Buffer.from(buffer.subarray(0, bytesRead)));
      position += bytesRead;
      if (position % COLLECT_EVERY_BYTES < READ_CHUNK_BYTES) this.#collectGarbage?.();
    }
    await handle.close();
    this.#file = undefined;
  }

  async abort(): Promise<void> {
    for (const b of this.#memory) b.fill(0);
    this.#memory = [];
    await this.#pending.catch(() => {});
    await this.#file?.close().catch(() => {});
    this.#file = undefined;
  }
}
