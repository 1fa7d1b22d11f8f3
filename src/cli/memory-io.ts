import type { CliIo, Writer } from './io.ts';

/** A CliIo whose streams are in memory (tests, embedding). */
export interface MemoryIo extends CliIo {
  stdout: Writer & { text(): string; bytes(): Buffer };
  stderr: Writer & { text(): string; bytes(): Buffer };
}

function memoryWriter(): Writer & { text(): string; bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return {
    write(data: string | Uint8Array) {
      chunks.push(typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data));
      return true;
    },
    bytes: () => Buffer.concat(chunks),
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

export function memoryIo(options: Partial<Omit<CliIo, 'stdin' | 'stdout' | 'stderr'>> & { cwd: string; stdin?: string | Uint8Array }): MemoryIo {
  const input = options.stdin === undefined ? Buffer.alloc(0) : Buffer.from(options.stdin);
  const { stdin: _stdin, ...rest } = options;
  return {
    env: {},
    now: () => new Date('2025-01-01T00:00:00Z'),
    stdinIsTTY: false,
    stdoutIsTTY: false,
    ...rest,
    stdin: async () => Buffer.from(input),
    stdout: memoryWriter(),
    stderr: memoryWriter(),
  };
}
