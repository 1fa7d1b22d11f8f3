// Small helpers for the harness's child processes: the tools a build script installs,
// children killed when the test process exits however it exits, and their output as lines.
import { type ChildProcess, execFile } from 'node:child_process';

/**
 * Runs a tool's build script (idempotent, cached under ~/.cache/envseal) and returns the
 * bin directory it prints on its last line. `name` names the script in errors.
 */
export function toolBinDir(script: string, options: { name: string; timeoutMs: number }): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile('bash', [script], { timeout: options.timeoutMs, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`${options.name} failed: ${error.message}\n${stderr.slice(-4000)}`));
        return;
      }
      const dir = stdout.trim().split('\n').at(-1);
      if (dir === undefined || dir === '') reject(new Error(`${options.name} printed no bin directory`));
      else resolve(dir);
    });
  });
}

/** Children still running, killed when this process exits, however it exits. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kills `child` with SIGKILL if this process exits while it still runs. */
export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** Calls `onLine` with each non-empty line `child` writes to stdout or stderr. */
export function forEachOutputLine(child: ChildProcess, onLine: (line: string) => void): void {
  let partial = '';
  const onData = (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line !== '') onLine(line);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
}
