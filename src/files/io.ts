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
 * Memory stays bounded whatever the size: the pumps read, encrypt or decrypt and write
 * in batches of whole frames (1 MiB by default) through a few reused buffers.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, open, realpath, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { MessageDecryptor } from './decrypt.ts';
import type { MessageEncryptor } from './encrypt.ts';
import { FileFormatError } from './errors.ts';
import { framesLength } from './frames.ts';
import type { MessageHeader } from './header.ts';

export const READ_CHUNK_BYTES = 1024 * 1024;

/**
 * A young-generation garbage collection, when the program provides one (the CLI does:
 * src/cli/gc.ts). Every frame's AES-GCM output is a new 64 KiB buffer whose memory V8
 * frees only when a scavenge collects its small JS wrapper; between scavenges dead frames
 * pile up (RSS grows by ~70 MiB). The pumps and the held sink call it after each batch.
 */
export type CollectGarbage = () => void;

const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;
const DEFAULT_SYNC_EVERY_BYTES = 64 * 1024 * 1024;

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

export interface PumpOptions {
  signal?: AbortSignal;
  /** Called with the input bytes consumed so far (for a progress bar). */
  onProgress?: (inputBytes: number) => void;
  /** Plaintext bytes per batch of frames (default 1 MiB, rounded down to whole frames, at least one frame). */
  batchBytes?: number;
  /** Called every `collectEveryBytes` input bytes (default: once per batch; 0: never, V8's own schedule). */
  collectGarbage?: CollectGarbage;
  collectEveryBytes?: number;
}

export const DEFAULT_BATCH_BYTES = 1024 * 1024;
/** Reads a source into the pumps' own buffers: a file directly (no copy), any other source by copying its chunks. */
interface Filler {
  /** Fills `target` from `offset` until it is full or the input ends; returns the bytes placed. */
  fill(target: Buffer, offset: number): Promise<number>;
  close(): Promise<void>;
}

/** A file to read, for the pumps: read straight into their buffers, in parallel with the crypto. */
export class FileSource implements AsyncIterable<Buffer> {
  readonly path: string;
  readonly signal: AbortSignal | undefined;
  constructor(file: string, signal?: AbortSignal) {
    this.path = file;
    this.signal = signal;
  }
  /** As readFileChunks: for any consumer of a ByteSource. */
  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return readFileChunks(this.path, this.signal)[Symbol.asyncIterator]();
  }
}

/** A file (FileSource) as a ByteSource: read straight into the pumps' buffers. */
export function fileSource(file: string, signal?: AbortSignal): FileSource {
  return new FileSource(file, signal);
}

async function openFiller(source: ByteSource): Promise<Filler> {
  if (source instanceof FileSource) {
    const handle = await open(source.path, 'r');
    let position = 0;
    return {
      async fill(target, offset) {
        let at = offset;
        while (at < target.length) {
          source.signal?.throwIfAborted();
          const { bytesRead } = await handle.read(target, at, target.length - at, position);
          if (bytesRead === 0) break;
          at += bytesRead;
          position += bytesRead;
        }
        return at - offset;
      },
      close: () => handle.close(),
    };
  }
  const iterator = source[Symbol.asyncIterator]();
  let rest: Uint8Array | undefined;
  let done = false;
  return {
    async fill(target, offset) {
      let at = offset;
      while (at < target.length && !done) {
        if (rest === undefined || rest.byteLength === 0) {
          const next = await iterator.next();
          if (next.done === true) {
            done = true;
            break;
          }
          rest = next.value;
          continue;
        }
        const n = Math.min(rest.byteLength, target.length - at);
        target.set(rest.subarray(0, n), at);
        rest = rest.subarray(n);
        at += n;
      }
      return at - offset;
    },
    async close() {
      // Stops a generator early (its finally closes a file); no-op when it ended.
      if (!done) await iterator.return?.();
    },
  };
}

/** Buffers of one size, reused once written: no allocation (and no fresh pages) per batch. */
class BufferPool {
  readonly size: number;
  readonly #free: ArrayBuffer[] = [];
  constructor(size: number) {
    this.size = size;
  }
  take(): Buffer {
    return Buffer.from(this.#free.pop() ?? new ArrayBuffer(this.size));
  }
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.size) this.#free.push(buffer);
  }
}

function collector(options: PumpOptions): (consumed: number) => void {
  const every = options.collectEveryBytes ?? options.batchBytes ?? DEFAULT_BATCH_BYTES;
  const collectGarbage = options.collectGarbage;
  if (every <= 0 || collectGarbage === undefined) return () => {};
  let at = every;
  return (consumed) => {
    if (consumed < at) return;
    at = consumed + every;
    collectGarbage();
  };
}

function framesPerBatch(frameLength: number, options: PumpOptions): number {
  return Math.max(1, Math.floor((options.batchBytes ?? DEFAULT_BATCH_BYTES) / frameLength));
}

/**
 * Encrypts `source` into `sink` (header, frames, footer). Does not commit or abort the
 * sink. Plaintext is read in batches of whole frames into reused buffers (the next read
 * runs while this batch is encrypted); each batch is encrypted into one reused output
 * buffer, signed and written while the next one is computed. Memory is a handful of
 * batch buffers whatever the size. The last frame of a full batch is the final frame
 * only when the next read finds nothing.
 */
export async function pumpEncrypt(source: ByteSource, encryptor: MessageEncryptor, sink: Sink, options: PumpOptions = {}): Promise<void> {
  const frameLength = encryptor.frameLength;
  const perBatch = framesPerBatch(frameLength, options);
  const inputs = new BufferPool(perBatch * frameLength);
  const outputs = new BufferPool(framesLength(frameLength, perBatch - 1, frameLength));
  const collect = collector(options);
  const filler = await openFiller(source);
  let consumed = 0;
  const read = async (): Promise<{ buffer: Buffer; length: number }> => {
    const buffer = inputs.take();
    return { buffer, length: await filler.fill(buffer, 0) };
  };
  let ahead: Promise<{ buffer: Buffer; length: number }> | undefined;
  try {
    await sink.write([encryptor.header()]);
    let written: Buffer | undefined;
    let current = await read();
    ahead = current.length === inputs.size ? read() : undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      // A batch that is not full is the last; a full one is the last when the next read finds nothing.
      const next = ahead === undefined ? undefined : await ahead;
      ahead = next !== undefined && next.length === inputs.size ? read() : undefined;
      const final = next === undefined || next.length === 0;
      const sequenceNumber = encryptor.claimFrames(current.length, final);
      const output = outputs.take();
      const length = encryptor.frameCipher.encryptFrames(current.buffer.subarray(0, current.length), frameLength, sequenceNumber, final, output, 0);
      inputs.give(current.buffer.buffer as ArrayBuffer);
      const frames = output.subarray(0, length);
      encryptor.authenticate(frames);
      // Resolves once the previous batch is written: its buffer is free again.
      await sink.write([frames]);
      if (written !== undefined) outputs.give(written.buffer as ArrayBuffer);
      written = output;
      consumed += current.length;
      collect(consumed);
      options.onProgress?.(consumed);
      if (final) break;
      current = next!;
    }
    options.signal?.throwIfAborted();
    const footer = encryptor.end();
    if (footer.length > 0) await sink.write(footer);
  } finally {
    await ahead?.catch(() => {});
    await filler.close();
  }
}

/**
 * Decrypts `source` into `sink`: parses the header, asks `dataKeyFor` for the data key
 * (which it zeroes afterwards), then streams the authenticated frames: each batch of
 * whole frames is scanned (sequence, IV, lengths, signature input), decrypted into a
 * reused buffer and written once every tag in it verified; the final frame of a signed
 * message only once the signature verified. Throws FileFormatError on anything wrong;
 * the sink is neither committed nor aborted here.
 */
export async function pumpDecrypt(
  source: ByteSource,
  decryptor: MessageDecryptor,
  dataKeyFor: (header: MessageHeader) => Promise<Uint8Array>,
  sink: Sink,
  options: PumpOptions = {},
): Promise<MessageHeader> {
  const filler = await openFiller(source);
  const collect = collector(options);
  let consumed = 0;
  try {
    // The header: pushed in small reads until the decryptor has parsed it.
    const small = Buffer.allocUnsafe(64 * 1024);
    let eof = false;
    while (decryptor.header === undefined && !eof) {
      options.signal?.throwIfAborted();
      const n = await filler.fill(small, 0);
      consumed += n;
      eof = n < small.length;
      decryptor.push(small.subarray(0, n));
    }
    if (decryptor.header === undefined) {
      decryptor.end();
      throw new FileFormatError('Truncated', 'the input ends inside the message header');
    }
    const header = decryptor.header;
    const dataKey = await dataKeyFor(header);
    try {
      decryptor.begin(dataKey);
    } finally {
      dataKey.fill(0);
    }
    const frameLength = header.frameLength;
    const perBatch = framesPerBatch(frameLength, options);
    // Room for a batch of regular frames, or fewer and the final frame (its head is longer).
    const inputs = new BufferPool(framesLength(frameLength, perBatch - 1, frameLength));
    const outputs = new BufferPool(perBatch * frameLength);
    const cipher = decryptor.frameCipher;
    const input = inputs.take();
    let carry = decryptor.takeQueued();
    let written: Buffer | undefined;
    let withheld: Buffer | undefined;
    let final = false;
    while (!final) {
      options.signal?.throwIfAborted();
      let bytes: Buffer;
      let read = false;
      if (carry.length >= input.length) {
        // More than a batch was read with the header: decrypt that first.
        bytes = carry;
      } else {
        // What is left of the previous read (less than a frame) first, then the input.
        carry.copy(input, 0);
        const n = eof ? 0 : await filler.fill(input, carry.length);
        consumed += n;
        eof ||= n < input.length - carry.length;
        bytes = input.subarray(0, carry.length + n);
        read = true;
      }
      const scan = decryptor.scanFrames(bytes, perBatch);
      final = scan.final;
      if (scan.frames.length > 0) {
        const output = outputs.take();
        const length = cipher.decryptFrames(bytes, scan.frames, output, 0);
        const last = scan.frames[scan.frames.length - 1]!;
        // The signed suite's final frame waits for the signature.
        const withhold = last.final && header.suite.signed ? last.contentLength : 0;
        if (withhold > 0) withheld = Buffer.from(output.subarray(length - withhold, length));
        // Resolves once the previous batch is written: its buffer is free again.
        await sink.write([output.subarray(0, length - withhold)]);
        if (written !== undefined) outputs.give(written.buffer as ArrayBuffer);
        written = output;
      } else if (!eof) {
        throw new Error('a batch of the body holds no whole frame');
      }
      // A copy: the input buffer is read into again.
      carry = Buffer.from(bytes.subarray(scan.length));
      collect(consumed);
      options.onProgress?.(consumed);
      if (eof && read) break;
    }
    // What follows the frames (the footer, or a truncated frame) goes through the
    // decryptor, to the end of the input; it releases no frame (none is left whole).
    const tail = decryptor.push(carry);
    while (!eof) {
      options.signal?.throwIfAborted();
      const n = await filler.fill(small, 0);
      consumed += n;
      eof = n < small.length;
      tail.push(...decryptor.push(small.subarray(0, n)));
    }
    if (tail.length > 0) throw new Error('frames after the batches');
    options.signal?.throwIfAborted();
    // Checks the end (final frame, signature, no trailing bytes); the withheld final frame follows.
    const rest = decryptor.end();
    if (withheld !== undefined) rest.push(withheld);
    if (rest.length > 0) await sink.write(rest);
    options.onProgress?.(consumed);
    return header;
  } finally {
    await filler.close();
  }
}
