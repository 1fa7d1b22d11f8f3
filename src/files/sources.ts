/**
 * Input of whole messages: a file read into the pumps' own buffers, or any async
 * iterable of chunks (stdin), copied in.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';

export const READ_CHUNK_BYTES = 1024 * 1024;

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
  return createReadStream(file, { highWaterMark: READ_CHUNK_BYTES, signal });
}

/** Where output goes; nothing is visible at the destination before commit(). */
export interface Filler {
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

export async function openFiller(source: ByteSource): Promise<Filler> {
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
