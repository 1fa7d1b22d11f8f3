// The process side of the CLI: wires process.* into run() and exits with its code.
import { readFileSync } from 'node:fs';
import { CliError } from './errors.ts';
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

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.writableLength === 0) resolve();
    else stream.write('', () => resolve());
  });
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
  // A closed pipe (envseal unseal | head) is not an error worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
    });
  }

  const io: CliIo = {
    stdin: (options) => readStdin(controller.signal, options?.maxBytes),
    stdinStream: () => process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    now: () => new Date(),
    stdinIsTTY: process.stdin.isTTY === true,
    stdoutIsTTY: process.stdout.isTTY === true,
    spawnEditor,
    signal: controller.signal,
    temporaries,
    collectGarbage,
    programName: options.programName ?? 'envseal',
    ...(packageVersion() ? { version: packageVersion()! } : {}),
  };
  const code = await run(process.argv.slice(2), io);
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  // Exit now: idle keep-alive sockets of the AWS SDK must not hold the process.
  process.exit(code);
}
