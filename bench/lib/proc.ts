// Running and timing processes for the benchmarks, and describing the machine.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// GNU time reports the child's CPU time (user + system), which, unlike wall time,
// hardly depends on what else the machine is doing. It wraps every tool alike.
const GNU_TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
let timeDir: string | undefined;
let timeFileCounter = 0;

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to the child's stdin, which is then closed (stdin is /dev/null otherwise). */
  stdin?: string | Buffer;
  /** Keep stdout (default: discarded). */
  captureStdout?: boolean;
}

export interface RunResult {
  /** Wall time from spawn to exit, in milliseconds (process start-up included). */
  ms: number;
  /** CPU time (user + system) of the process and its children, in milliseconds; NaN without /usr/bin/time. */
  cpuMs: number;
  stdout: string;
}

/** Runs a command to completion and returns its wall time; rejects on a non-zero exit (with stderr). */
export function timedRun(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let timeFile: string | undefined;
    let argv: readonly string[] = args;
    let file = command;
    if (GNU_TIME) {
      timeDir ??= mkdtempSync(path.join(os.tmpdir(), 'envseal-bench-time-'));
      timeFile = path.join(timeDir, `t${timeFileCounter++ % 64}`);
      argv = ['-f', '%U %S', '-o', timeFile, command, ...args];
      file = GNU_TIME;
    }
    const started = process.hrtime.bigint();
    const child = spawn(file, argv, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: [options.stdin === undefined ? 'ignore' : 'pipe', options.captureStdout ? 'pipe' : 'ignore', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code !== 0) {
        reject(new Error(`${command} ${args.join(' ')} exited ${code ?? signal}: ${Buffer.concat(err).toString().slice(-2000)}`));
        return;
      }
      let cpuMs = Number.NaN;
      if (timeFile) {
        const [user, system] = readFileSync(timeFile, 'utf8').trim().split(/\s+/).slice(-2).map(Number);
        cpuMs = ((user ?? Number.NaN) + (system ?? Number.NaN)) * 1000;
      }
      resolve({ ms, cpuMs, stdout: Buffer.concat(out).toString() });
    });
  });
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  go: string;
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  let go = 'n/a';
  try {
    go = execFileSync('go', ['version'], { encoding: 'utf8' }).trim().split(' ')[2] ?? 'n/a';
  } catch {
    // no go on PATH
  }
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // keep availableParallelism
  }
  return {
    cpus: nproc,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    go,
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.cpus} cores (nproc), ${m.cpuModel}, ${m.memoryGiB} GiB memory, ${m.kernel}, Node ${m.node}, ${m.go}; load average at start ${m.loadAverage.join(' / ')}`;
}

/** Resident set size and its peak (VmHWM) of a running process, in bytes; undefined once it is gone. */
export function memoryOf(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Polls a process's memory every `intervalMs` and keeps the highest peak seen. */
export class RssSampler {
  peak = 0;
  last = 0;
  readonly #timer: NodeJS.Timeout;
  readonly #pid: number;

  constructor(pid: number, intervalMs = 200) {
    this.#pid = pid;
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  sample(): void {
    const m = memoryOf(this.#pid);
    // A process that has exited (a zombie) has no VmRSS/VmHWM lines: keep what we had.
    if (m && Number.isFinite(m.rss)) {
      this.last = m.rss;
      this.peak = Math.max(this.peak, m.rss, Number.isFinite(m.peak) ? m.peak : 0);
    }
  }

  stop(): number {
    this.sample();
    clearInterval(this.#timer);
    return this.peak;
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
