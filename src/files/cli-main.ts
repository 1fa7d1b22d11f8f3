// The file commands as a process (stdin and stdout streamed): used by bench/files/cli.ts
// and the benchmark's compiled entry. Same code as `envseal encrypt` / `envseal decrypt`.
import { removeTemporariesSync } from '../cli/files.ts';
import type { CliIo } from '../cli/io.ts';
import { runFileCommand } from './cli-runner.ts';

export async function mainFiles(argv: readonly string[] = process.argv.slice(2)): Promise<never> {
  const controller = new AbortController();
  process.on('SIGINT', () => controller.abort(new DOMException('interrupted', 'AbortError')));
  process.on('exit', removeTemporariesSync);
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  const io: CliIo = {
    stdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks);
    },
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    now: () => new Date(),
    stdinIsTTY: process.stdin.isTTY === true,
    stdoutIsTTY: process.stdout.isTTY === true,
    signal: controller.signal,
    programName: 'envseal',
  };
  const code = await runFileCommand(argv, io);
  await new Promise<void>((resolve) => (process.stdout.writableLength === 0 ? resolve() : process.stdout.write('', () => resolve())));
  process.exit(code);
}
