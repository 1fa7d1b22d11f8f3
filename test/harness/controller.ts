// Runs the envseal controller in this process against the shared control plane, with its
// log lines captured (for assertions and the canary scan) and its metrics served on a
// free loopback port.
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { KubeConfig } from '@kubernetes/client-node';
import { type ControllerConfig, DEFAULT_CONTROLLER_CONFIG, runController } from '../../src/controller/manager.ts';
import { freePorts } from './control-plane.ts';
import { recordLeakText } from './faults-leaks.ts';

export interface TestController {
  logs: string[];
  metricsUrl: string;
  /** Graceful stop (as on SIGTERM); resolves when the controller has stopped. */
  stop(): Promise<void>;
  /** Settles when the controller exits by itself (an error) or after stop(). */
  done: Promise<void>;
  /** The current value of a counter or gauge, summed over series matching `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

/**
 * Every log line of every controller started in this test file, for leak scans. Each
 * line, and a scrape of /metrics at stop(), is also recorded for the suite-wide leak
 * check (test/harness/faults-leaks.ts, test/e2e/zz-leaks.test.ts).
 */
export const allControllerLogs: string[] = [];

/** One free loopback port. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

export async function startTestController(options: {
  kubeConfig: KubeConfig;
  config: Partial<ControllerConfig> & Pick<ControllerConfig, 'namespace'>;
}): Promise<TestController> {
  const port = await freePort();
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) {
        if (line) {
          logs.push(line);
          allControllerLogs.push(line);
          recordLeakText('log', line);
        }
      }
      callback();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const config: ControllerConfig = {
    ...DEFAULT_CONTROLLER_CONFIG,
    metricsAddress: `127.0.0.1:${port}`,
    leaderElection: { ...DEFAULT_CONTROLLER_CONFIG.leaderElection, leaseDurationMs: 4000, renewDeadlineMs: 3000, retryPeriodMs: 500 },
    shutdownGraceMs: 5000,
    ...options.config,
  };
  const abort = new AbortController();
  const done = runController(config, { logger, signal: abort.signal, kubeConfig: options.kubeConfig });
  done.catch(() => {});
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  // Ready once the health server answers.
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    logs,
    metricsUrl,
    done,
    async stop() {
      const scrape = await fetch(metricsUrl).then(
        (r) => r.text(),
        () => undefined,
      );
      if (scrape !== undefined) recordLeakText('metrics', scrape);
      abort.abort();
      await done.catch(() => {});
    },
    async metric(name, labels = {}) {
      return sumMetric(await fetch(metricsUrl).then((r) => r.text()), name, labels);
    },
  };
}

/** The sum of a counter or gauge over the series of a Prometheus text scrape that match `labels`. */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const series = Object.fromEntries([...(match[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => series[k] === v)) sum += Number(match[4]);
  }
  return sum;
}

/**
 * Runs a command that starts the controller as a child process (stderr collected), runs
 * `whileRunning` against it, then sends SIGTERM -- also when `whileRunning` throws -- and
 * waits for the exit. Its log goes to the suite-wide leak check.
 */
export async function withControllerProcess(
  command: { args: readonly string[]; cwd: string; env: NodeJS.ProcessEnv },
  whileRunning: (log: () => string) => Promise<void>,
): Promise<{ code: number | null; log: string }> {
  const child = spawn(process.execPath, command.args, { cwd: command.cwd, env: command.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (log += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await whileRunning(() => log);
  } finally {
    child.kill('SIGTERM');
  }
  const code = await exited;
  recordLeakText('log', log);
  return { code, log };
}
