// Standard output and error for main without Node's stream objects: the first touch of
// process.stdout builds a net.Socket (a pipe), tty.WriteStream or SyncWriteStream, and
// loads the stream modules behind it, which costs a one-line command like `envseal
// verify` some 15 % of Node's own start-up (docs/benchmarks.md, "second pass").
import type { OutputWriter } from '../files/sinks.ts';

export interface FdWriterOptions {
  fd: number;
  /** The stream to hand over to when the descriptor is non-blocking and full (EAGAIN). */
  stream: () => OutputWriter;
}

export interface FdWriter extends OutputWriter {
  write(chunk: string | Uint8Array): unknown;
  readonly isTTY: boolean;
  /** Resolves once everything written has left the process (at once unless handed over). */
  flush(): Promise<void>;
}

type WritableStream = OutputWriter & { writableLength?: number; write(chunk: Uint8Array, callback?: () => void): unknown };

/**
 * Writes synchronously with fs.writeSync, as Node's own stdout and stderr do for files,
 * pipes and terminals on Linux. A descriptor some other process made non-blocking can
 * refuse a write (EAGAIN): from then on every write goes to the stream, in order, with
 * its backpressure. A closed reader (EPIPE: `envseal unseal | head`) drops the rest
 * quietly, as main's stream error handler did.
 */
export function fdWriter(options: FdWriterOptions): FdWriter {
  const { writeSync } = process.getBuiltinModule('node:fs');
  let stream: WritableStream | undefined;
  let closed = false;
  const toStream = (bytes: Uint8Array): unknown => {
    stream ??= options.stream() as WritableStream;
    return stream.write(bytes);
  };
  return {
    // Asked only by a command that cares: node:tty loads node:net and the stream modules.
    get isTTY() {
      return process.getBuiltinModule('node:tty').isatty(options.fd);
    },
    write(chunk: Uint8Array | string): unknown {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      if (stream !== undefined) return stream.write(bytes);
      if (closed) return true;
      // Windows consoles and pipes are asynchronous in Node: its stream handles them.
      if (process.platform === 'win32') return toStream(bytes);
      let offset = 0;
      try {
        while (offset < bytes.length) offset += writeSync(options.fd, bytes, offset);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return toStream(bytes.subarray(offset));
        if (code === 'EPIPE') {
          closed = true;
          return true;
        }
        throw error;
      }
      return true;
    },
    once(event, listener) {
      return stream?.once?.(event, listener);
    },
    removeListener(event, listener) {
      return stream?.removeListener?.(event, listener);
    },
    flush() {
      const pending = stream;
      return new Promise((resolve) => {
        if (pending === undefined || !pending.writableLength) resolve();
        else pending.write(new Uint8Array(0), () => resolve());
      });
    },
  };
}
