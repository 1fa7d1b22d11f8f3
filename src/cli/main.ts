// The process side of the CLI: wires process.* into run() and exits with its code.
import { readFileSync } from 'node:fs';
import { CliError } from './errors.ts';
import { fdWriter } from './fd-writer.ts';
import { TemporaryFiles } from './files.ts';
import { youngGenerationCollector } from './gc.ts';
import type { CollectGarbage } from '../files/sinks.ts';
import type { CliIo, EditorRequest } from './io.ts';
import { run } from './run.ts';

/** All of stdin; Ctrl-C stops the wait (the command then ends with exit 130). */
function readStdin(signal: AbortSignal, maxBytes: number | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onAbort = () => {
      process.stdin.destroy();
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    process.stdin.on('data', (chunk: Buffer | string) => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += bytes.length;
      if (maxBytes !== undefined && total > maxBytes) {
        signal.removeEventListener('abort', onAbort);
        process.stdin.destroy();
        reject(new CliError('InvalidInput', `stdin holds more than ${maxBytes} bytes`));
        return;
      }
      chunks.push(bytes);
    });
    process.stdin.once('error', reject);
    process.stdin.once('end', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Runs the editor through the shell, so that EDITOR="code --wait" works, with the terminal attached. */
function spawnEditor(request: EditorRequest): Promise<number> {
  // Loaded on use: node:child_process brings net, dgram and the stream internals.
  const { spawn } = process.getBuiltinModule('node:child_process');
  return new Promise((resolve, reject) => {
    const child =
      process.platform === 'win32'
        ? spawn(`${request.editor} "${request.file}"`, { stdio: 'inherit', shell: true })
        : spawn('/bin/sh', ['-c', `${request.editor} "$1"`, 'sh', request.file], { stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

function packageVersion(): string | undefined {
  try {
    // src/cli/main.ts and dist/cli/main.js are both two levels below the package root.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : undefined;
  } catch {
    return undefined;
  }
}

/** process.stdout or process.stderr, made only when a write needs it (see fd-writer.ts). */
function standardStream(stream: NodeJS.WriteStream): NodeJS.WriteStream {
  // A closed pipe (envseal unseal | head) is not an error worth a stack trace.
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  return stream;
}

export interface MainOptions {
  /** "kubectl envseal" for the kubectl plugin shim. */
  programName?: string;
}

/** Runs the CLI with process.argv, stdio and environment, then exits. */
export async function main(options: MainOptions = {}): Promise<never> {
  const controller = new AbortController();
  const temporaries = new TemporaryFiles();
  const removeTemporariesSync = () => temporaries.removeAllSync();
  // Made on first use: only encrypt and decrypt want it, and it changes a V8 flag.
  let collect: CollectGarbage | null | undefined;
  const collectGarbage = () => {
    if (collect === undefined) collect = youngGenerationCollector() ?? null;
    collect?.();
  };
  let signals = 0;
  // The first SIGINT (Ctrl-C) or SIGTERM (Kubernetes stopping the controller's pod) aborts
  // the command, which stops at its next step and cleans up (temporary files included;
  // the controller finishes in-flight work and releases its lease). A second one exits.
  const onSignal = (exitCode: number) => () => {
    signals++;
    if (signals === 1) {
      controller.abort(new DOMException('interrupted', 'AbortError'));
    } else {
      removeTemporariesSync();
      process.exit(exitCode);
    }
  };
  process.on('SIGINT', onSignal(130));
  process.on('SIGTERM', onSignal(143));
  process.on('exit', removeTemporariesSync);
  // Written with fs.writeSync: no stream object (and its modules) unless one is needed.
  const stdout = fdWriter({ fd: 1, stream: () => standardStream(process.stdout) });
  const stderr = fdWriter({ fd: 2, stream: () => standardStream(process.stderr) });

  const version = packageVersion();
  const io: CliIo = {
    stdin: (options) => readStdin(controller.signal, options?.maxBytes),
    stdinStream: () => process.stdin,
    stdout,
    stderr,
    env: process.env,
    cwd: process.cwd(),
    now: () => new Date(),
    // Asked on use: process.stdin.isTTY builds the stdin stream, and node:tty loads node:net.
    get stdinIsTTY() {
      return process.getBuiltinModule('node:tty').isatty(0);
    },
    get stdoutIsTTY() {
      return stdout.isTTY;
    },
    spawnEditor,
    signal: controller.signal,
    temporaries,
    collectGarbage,
    programName: options.programName ?? 'envseal',
    ...(version ? { version } : {}),
  };
  const code = await run(process.argv.slice(2), io);
  await Promise.all([stdout.flush(), stderr.flush()]);
  // Exit now: idle keep-alive sockets of the AWS SDK must not hold the process.
  process.exit(code);
}
