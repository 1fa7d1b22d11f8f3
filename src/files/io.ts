/**
 * Streaming plumbing for whole messages: input from a file or any async iterable,
 * output through a Sink that publishes nothing until commit():
 *
 * - AtomicFileSink writes a temporary file beside the target (mode 0600 until the
 *   final mode is set), flushes it and renames it over the target on commit; abort
 *   removes it. The target never holds a partial or unauthenticated result.
 * - HeldSink (stdout by default) keeps the output in memory up to a limit, then in an
 *   anonymous temporary file (created 0600 and unlinked at once, so nothing remains
 *   on disk even after a crash); commit copies it to the writer.
 * - PassThroughSink writes straight through (stdout with --unbuffered).
 *
 * Memory stays bounded whatever the size: one input chunk, one frame, one batch of
 * output in flight.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, realpath, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { MessageDecryptor } from './decrypt.ts';
import type { MessageEncryptor } from './encrypt.ts';
import type { MessageHeader } from './header.ts';

export const READ_CHUNK_BYTES = 1024 * 1024;

type MinorGc = (options: { type: 'minor'; execution: 'sync' }) => void;
let minorGc: MinorGc | null | undefined;

/**
 * Every frame's output is a new buffer whose memory V8 frees only when a scavenge
 * collects its small JS wrapper; between scavenges (the young generation is 16+ MiB)
 * about 100 MiB of dead frames pile up, and peak RSS passes 150 MB. A young-generation
 * collection every 16 MiB of input costs well under a millisecond and keeps peak RSS
 * near 100 MB whatever the size. Nothing else in the process changes.
 */
function collectFrames(): void {
  if (minorGc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      minorGc = runInNewContext('gc') as MinorGc;
    } catch {
      minorGc = null;
    }
  }
  minorGc?.({ type: 'minor', execution: 'sync' });
}

const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;

export type ByteSource = AsyncIterable<Uint8Array>;

/**
 * A file's bytes in chunks of up to 1 MiB, read into two buffers in turn (the next read
 * runs while the caller works on the current chunk). A chunk is valid only until the
 * caller asks for the one after next: MessageEncryptor.push and MessageDecryptor.push
 * keep no view of their input past the call (see their `reusable` handling).
 */
export async function* readFileChunks(file: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffers = [Buffer.allocUnsafe(READ_CHUNK_BYTES), Buffer.allocUnsafe(READ_CHUNK_BYTES)];
    let turn = 0;
    let position = 0;
    let next = handle.read(buffers[0]!, 0, READ_CHUNK_BYTES, position);
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) return;
      position += bytesRead;
      turn ^= 1;
      next = handle.read(buffers[turn]!, 0, READ_CHUNK_BYTES, position);
      // Never an unhandled rejection if the caller stops early.
      next.catch(() => {});
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await handle.close();
  }
}

/** Node streams (stdin): each chunk is a fresh buffer. */
export function readStreamChunks(file: string, signal?: AbortSignal): ByteSource {
  return createReadStream(file, { highWaterMark: READ_CHUNK_BYTES, ...(signal ? { signal } : {}) });
}

/** Where output goes; nothing is visible at the destination before commit(). */
export interface Sink {
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
    const next = previous.then(() => writeAll(handle, buffers));
    // Awaited by the next write or commit; never an unhandled rejection meanwhile.
    next.catch(() => {});
    this.#pending = next;
    return previous.then(() => undefined);
  }

  async commit(): Promise<void> {
    const handle = this.#handle!;
    await this.#pending;
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
    // One write per batch: fewer syscalls for a pipe.
    if (buffers.length === 0) return;
    await writeTo(this.#writer, buffers.length === 1 ? buffers[0]! : Buffer.concat(buffers as Buffer[]));
  }
  async commit(): Promise<void> {}
  async abort(): Promise<void> {}
}

export interface HeldSinkOptions {
  /** Bytes kept in memory before spilling to a temporary file (default 4 MiB). */
  memoryLimit?: number;
  /** Directory of the temporary file (default the system's temporary directory). */
  directory?: string;
}

/** Holds all output until commit(), in memory and then in an unlinked private temporary file. */
export class HeldSink implements Sink {
  readonly #writer: OutputWriter;
  readonly #memoryLimit: number;
  readonly #directory: string;
  #memory: Buffer[] = [];
  #memoryLength = 0;
  #file: FileHandle | undefined;
  #fileLength = 0;
  #pending: Promise<unknown> = Promise.resolve();

  constructor(writer: OutputWriter, options: HeldSinkOptions = {}) {
    this.#writer = writer;
    this.#memoryLimit = options.memoryLimit ?? 4 * 1024 * 1024;
    this.#directory = options.directory ?? tmpdir();
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
      if (position % COLLECT_EVERY_BYTES < READ_CHUNK_BYTES) collectFrames();
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

export interface PumpOptions {
  signal?: AbortSignal;
  /** Called with the input bytes consumed so far (for a progress bar). */
  onProgress?: (inputBytes: number) => void;
}

/** Encrypts `source` into `sink` (header, frames, footer). Does not commit or abort the sink. */
export async function pumpEncrypt(source: ByteSource, encryptor: MessageEncryptor, sink: Sink, options: PumpOptions = {}): Promise<void> {
  let consumed = 0;
  let collectAt = COLLECT_EVERY_BYTES;
  await sink.write([encryptor.header()]);
  for await (const chunk of source) {
    options.signal?.throwIfAborted();
    const out = encryptor.push(chunk);
    consumed += chunk.byteLength;
    if (consumed >= collectAt) {
      collectAt = consumed + COLLECT_EVERY_BYTES;
      collectFrames();
    }
    if (out.length > 0) await sink.write(out);
    options.onProgress?.(consumed);
  }
  options.signal?.throwIfAborted();
  await sink.write(encryptor.end());
}

/**
 * Decrypts `source` into `sink`: parses the header, asks `dataKeyFor` for the data key
 * (which it zeroes afterwards), then streams the authenticated frames. Throws
 * FileFormatError on anything wrong; the sink is neither committed nor aborted here.
 */
export async function pumpDecrypt(
  source: ByteSource,
  decryptor: MessageDecryptor,
  dataKeyFor: (header: MessageHeader) => Promise<Uint8Array>,
  sink: Sink,
  options: PumpOptions = {},
): Promise<MessageHeader> {
  let consumed = 0;
  let collectAt = COLLECT_EVERY_BYTES;
  let started = false;
  for await (const chunk of source) {
    options.signal?.throwIfAborted();
    let out = decryptor.push(chunk);
    consumed += chunk.byteLength;
    if (consumed >= collectAt) {
      collectAt = consumed + COLLECT_EVERY_BYTES;
      collectFrames();
    }
    if (!started && decryptor.header !== undefined) {
      const dataKey = await dataKeyFor(decryptor.header);
      try {
        decryptor.begin(dataKey);
      } finally {
        dataKey.fill(0);
      }
      started = true;
      out = decryptor.push(new Uint8Array(0));
    }
    if (out.length > 0) await sink.write(out);
    options.onProgress?.(consumed);
  }
  options.signal?.throwIfAborted();
  const rest = decryptor.end();
  if (rest.length > 0) await sink.write(rest);
  return decryptor.header!;
}
