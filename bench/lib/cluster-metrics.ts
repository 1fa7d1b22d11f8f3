// Figures the scale benchmark reads from the control plane and the controllers: Prometheus
// text scraped and summed, the API server's request counter, etcd's database size, CPU time.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export function parsePrometheus(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)(?: \d+)?$/.exec(line);
    if (match) series.set(match[1]!, Number(match[2]));
  }
  return series;
}

export async function scrape(url: string): Promise<Map<string, number>> {
  return parsePrometheus(await fetch(url).then((r) => r.text()));
}

export function sumOf(series: Map<string, number>, name: string, filter: (labels: string) => boolean = () => true): number {
  let sum = 0;
  for (const [key, value] of series) {
    const brace = key.indexOf('{');
    const metric = brace < 0 ? key : key.slice(0, brace);
    if (metric === name && filter(brace < 0 ? '' : key.slice(brace))) sum += value;
  }
  return sum;
}

/** Sums a counter by one label's value. */
export function byLabel(series: Map<string, number>, name: string, label: string): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [key, value] of series) {
    if (!key.startsWith(`${name}{`)) continue;
    const v = new RegExp(`[{,]${label}="([^"]*)"`).exec(key)?.[1] ?? '?';
    result[v] = (result[v] ?? 0) + value;
  }
  return result;
}

export function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.keys({ ...after, ...before })
      .map((k) => [k, (after[k] ?? 0) - (before[k] ?? 0)] as const)
      .filter(([, v]) => v !== 0),
  );
}

export const total = (record: Record<string, number>): number => Object.values(record).reduce((a, b) => a + b, 0);

/** The API server's /metrics, read with kubectl (client certificate of the admin kubeconfig). */
export function apiServerMetrics(kubectl: string, kubeconfig: string): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    execFile(kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'], { maxBuffer: 256 << 20 }, (error, stdout, stderr) =>
      error ? reject(new Error(`kubectl get --raw /metrics: ${stderr || error.message}`, { cause: error })) : resolve(parsePrometheus(stdout)),
    );
  });
}

/** apiserver_request_total by verb (watch requests counted once, when they end or start, as the API server does). */
export async function apiRequests(kubectl: string, kubeconfig: string): Promise<Record<string, number>> {
  return byLabel(await apiServerMetrics(kubectl, kubeconfig), 'apiserver_request_total', 'verb');
}

export interface EtcdSize {
  dbBytes: number;
  inUseBytes: number;
  keys: number;
}

export async function etcdSize(etcdUrl: string): Promise<EtcdSize> {
  const m = await scrape(`${etcdUrl}/metrics`);
  return {
    dbBytes: sumOf(m, 'etcd_mvcc_db_total_size_in_bytes'),
    inUseBytes: sumOf(m, 'etcd_mvcc_db_total_size_in_use_in_bytes'),
    keys: sumOf(m, 'etcd_debugging_mvcc_keys_total'),
  };
}

export function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (100/s)
  } catch {
    return Number.NaN;
  }
}

export const loadAverage = (): number[] => os.loadavg().map((x) => Math.round(x * 100) / 100);

/** Runs `items` through `fn` with at most `concurrency` at once. */
export async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        await fn(items[index]!, index);
      }
    }),
  );
}
