// The Kubernetes client benchmark: envseal's hand-written client (src/kube/client.ts) against
// @kubernetes/client-node's KubernetesObjectApi and Watch, on one real control plane
// (test/harness/control-plane.ts), each task in its own process so that peak RSS is its own.
//
//   npx node bench/kube-client.ts [--rounds 3] [--applies 1000] [--parallel 16] [--list 10000]
//                                 [--watch 1000] [--out kube-client]
//
// Variants:
//   envseal            src/kube/client.ts (one keep-alive undici Agent per TLS identity)
//   client-node        KubernetesObjectApi.makeApiClient(kc) and Watch, as documented
//   client-node-h1     the same, with a middleware that swaps the new undici Agent that
//                      applySecurityAuthentication makes per request for the KubeClient's
//                      keep-alive HTTP/1.1 Agent and sets the caller's AbortSignal (what
//                      src/kube/object-api.ts ships)
//   client-node-h2     the same with HTTP/2 allowed (undici 8's default)
// Tasks (each run is a fresh process):
//   apply   N server-side applies of Secrets (two keys each), P in parallel
//   list    a paginated list (500 a page) of the prepared 10,000 Secrets, kept in a Map
//   watch   a watch from "now" over a namespace of 1,000 Secrets: the time until the
//           server's 1,000 initial ADDED events have all arrived
//   error   a server-side apply the API server refuses with a message that quotes the
//           Secret's value: whether the client's error (message, stack) carries it
//   idle    a watch with bookmarks on a namespace where nothing changes, for --idle
//           seconds, resumed from its resourceVersion whenever it ends: how often it ended
//   abort   one request sent with an AbortSignal that is already aborted (per-call options
//           for client-node): whether the request was refused or went to the API server
// Counted per run: wall time, CPU time (user + system), peak RSS (getrusage maxRSS),
// and new TCP connections (undici's diagnostics channel `undici:client:connected`,
// which both clients publish to: client-node uses the same undici).
// Results: bench/results/NAME.json.
import { execFile } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import { subscribe } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import type https from 'node:https';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  createConfiguration,
  KubeConfig,
  KubernetesObjectApi,
  type Middleware as PromiseMiddleware,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  Watch,
} from '@kubernetes/client-node';
import { Agent } from 'undici';
import { KubeClient, type KubeList, type KubeObject, paths } from '../src/kube/client.ts';
import { ensureBinaries, startControlPlane } from '../test/harness/control-plane.ts';
import { pool } from './lib/cluster-metrics.ts';
import { describeMachine, machineInfo } from './lib/proc.ts';
import { summarize } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    child: { type: 'string' },
    task: { type: 'string' },
    kubeconfig: { type: 'string' },
    namespace: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    applies: { type: 'string', default: '1000' },
    parallel: { type: 'string', default: '16' },
    list: { type: 'string', default: '10000' },
    watch: { type: 'string', default: '1000' },
    variants: { type: 'string', default: 'envseal,client-node,client-node-h1,client-node-h2' },
    tasks: { type: 'string', default: 'abort,error,apply,list,watch,idle' },
    out: { type: 'string', default: 'kube-client' },
    idle: { type: 'string', default: '70' },
  },
});

type Variant = 'envseal' | 'client-node' | 'client-node-h1' | 'client-node-h2';
interface RunResult {
  variant: Variant;
  task: string;
  ms: number;
  cpuMs: number;
  peakRssBytes: number;
  connections: number;
  count: number;
  note?: string;
}

/** The AbortSignal of the call in progress, for the shared-Agent middleware. */
const callSignal = new AsyncLocalStorage<AbortSignal>();

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (message: string) => process.stderr.write(`[kube-client-bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

// ---- child: one task with one variant ----

/**
 * A middleware that replaces the undici Agent that applySecurityAuthentication makes for
 * every request with one shared Agent, and puts the caller's AbortSignal on the request.
 * HTTP/1.1: the KubeClient's own Agent (what src/kube/object-api.ts ships); HTTP/2: one
 * Agent made once from the same TLS material, HTTP/2 allowed (undici 8's default).
 */
function sharedAgentMiddleware(kc: KubeConfig, client: KubeClient, allowH2: boolean): PromiseMiddleware {
  let shared: Promise<Agent> | undefined;
  const make = async () => {
    const tls: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(tls);
    const connect = Object.fromEntries(
      Object.entries({ ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: tls.rejectUnauthorized, servername: tls.servername }).filter(
        ([, v]) => v !== undefined,
      ),
    );
    return new Agent({ allowH2, connect: { ...connect, keepAlive: true, keepAliveInitialDelay: 30_000 } });
  };
  return {
    pre: async (context: RequestContext) => {
      if (allowH2) {
        const fresh = context.getDispatcher();
        if (fresh instanceof Agent) void fresh.close();
        shared ??= make();
        context.setDispatcher(await shared);
      } else {
        context.setDispatcher((await client.dispatcher(context)) as never);
      }
      // KubernetesObjectApi ignores per-call options: the signal comes from the caller's async context.
      const signal = callSignal.getStore();
      if (signal) context.setSignal(signal as never);
      return context;
    },
    post: async (response: ResponseContext) => response,
  };
}

function objectApi(kc: KubeConfig, client: KubeClient, variant: Variant): KubernetesObjectApi {
  if (variant === 'client-node') return KubernetesObjectApi.makeApiClient(kc);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no current cluster');
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [sharedAgentMiddleware(kc, client, variant === 'client-node-h2')],
  });
  return new KubernetesObjectApi(configuration);
}

const secretOf = (namespace: string, name: string, i: number) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace, labels: { bench: 'kube-client' } },
  type: 'Opaque',
  data: { DB_USER: Buffer.from(`app-${i}`).toString('base64'), DB_PASSWORD: Buffer.from(`pw-${i}-${'x'.repeat(24)}`).toString('base64') },
});

/** 0 .. n-1, for pool(). */
const indices = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

async function child(): Promise<void> {
  const variant = flags.child as Variant;
  const task = flags.task ?? '';
  const namespace = flags.namespace ?? '';
  const kc = new KubeConfig();
  kc.loadFromFile(flags.kubeconfig ?? '');
  let connections = 0;
  subscribe('undici:client:connected', () => connections++);
  const envseal = new KubeClient(kc);
  const api = variant === 'envseal' ? undefined : objectApi(kc, envseal, variant);
  let count = 0;
  let note: string | undefined;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (task === 'apply') {
    const n = Number(flags.applies);
    const prefix = `${variant}-${process.pid}`;
    await pool(indices(n), Number(flags.parallel), async (i) => {
      const secret = secretOf(namespace, `${prefix}-${i}`, i);
      if (api) await api.patch(secret, undefined, undefined, 'envseal-bench', true, PatchStrategy.ServerSideApply);
      else
        await envseal.request({
          method: 'PATCH',
          path: paths.secret(namespace, secret.metadata.name),
          query: { fieldManager: 'envseal-bench', force: true },
          body: secret,
          patchType: 'apply',
        });
      count++;
    });
  } else if (task === 'list') {
    const store = new Map<string, unknown>();
    let token: string | undefined;
    do {
      let page: KubeList<KubeObject>;
      if (api)
        page = (await api.list(
          'v1',
          'Secret',
          namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
          500,
          token,
        )) as unknown as KubeList<KubeObject>;
      else page = await envseal.request<KubeList<KubeObject>>({ method: 'GET', path: paths.secrets(namespace), query: { limit: 500, continue: token } });
      for (const item of page.items) store.set(`${item.metadata?.namespace}/${item.metadata?.name}`, item);
      // client-node's models name it `_continue` (a reserved word in its generator).
      token = (api ? (page.metadata as { _continue?: string })._continue : page.metadata?.continue) || undefined;
    } while (token);
    count = store.size;
    const sample = store.values().next().value as { metadata?: { creationTimestamp?: unknown } } | undefined;
    note = `creationTimestamp kept as ${sample?.metadata?.creationTimestamp instanceof Date ? 'Date' : typeof sample?.metadata?.creationTimestamp}`;
  } else if (task === 'watch') {
    const expected = Number(flags.watch);
    const abort = new AbortController();
    const seen = new Set<string>();
    await new Promise<void>((resolve, reject) => {
      const onEvent = (type: string, object: KubeObject) => {
        if (type === 'ADDED') seen.add(object.metadata?.name ?? '');
        if (seen.size >= expected) resolve();
      };
      if (variant === 'envseal') {
        envseal
          .watch<KubeObject>({
            path: paths.secrets(namespace),
            query: {},
            idleTimeoutMs: 60_000,
            signal: abort.signal,
            onEvent: (e) => onEvent(e.type, e.object),
          })
          .then(() => reject(new Error(`watch ended after ${seen.size} events`)), reject);
      } else {
        void new Watch(kc)
          .watch(
            paths.secrets(namespace),
            {},
            (type, object: KubeObject) => onEvent(type, object),
            (error: unknown) => {
              if (seen.size < expected) reject(error instanceof Error ? error : new Error(`watch ended after ${seen.size} events`));
            },
          )
          .then((controller) => abort.signal.addEventListener('abort', () => controller.abort()));
      }
    });
    count = seen.size;
    abort.abort();
  } else if (task === 'abort') {
    const aborted = AbortSignal.abort(new Error('aborted before sending'));
    const name = `abort-${variant}-${process.pid}`;
    const secret = secretOf(namespace, name, 0);
    let outcome: string;
    try {
      if (api && variant === 'client-node') {
        // Per-call options: a middleware that puts the signal on the request.
        const signalMiddleware: PromiseMiddleware = {
          pre: async (c: RequestContext) => {
            c.setSignal(aborted as never);
            return c;
          },
          post: async (r: ResponseContext) => r,
        };
        const base = createConfiguration({
          baseServer: new ServerConfiguration(kc.getCurrentCluster()?.server ?? '', {}),
          authMethods: { default: kc },
          promiseMiddleware: [signalMiddleware],
        });
        await api.patch(secret, undefined, undefined, 'envseal-bench', true, PatchStrategy.ServerSideApply, base);
      } else if (api) {
        // The instance's middleware reads the signal from the async context.
        await callSignal.run(aborted, () => api.patch(secret, undefined, undefined, 'envseal-bench', true, PatchStrategy.ServerSideApply));
      } else {
        await envseal.request({
          method: 'PATCH',
          path: paths.secret(namespace, name),
          query: { fieldManager: 'envseal-bench', force: true },
          body: secret,
          patchType: 'apply',
          signal: aborted,
        });
      }
      outcome = 'the call completed';
    } catch (error) {
      outcome = `the call was refused (${error instanceof Error ? error.message.slice(0, 300).replaceAll('\n', ' ') : String(error)})`;
    }
    // Did the Secret reach the API server?
    let written = true;
    try {
      await envseal.request({ method: 'GET', path: paths.secret(namespace, name) });
    } catch {
      written = false;
    }
    count = written ? 1 : 0;
    note = `${outcome}; the Secret was ${written ? '' : 'not '}written`;
  } else if (task === 'error') {
    // A dockerconfigjson Secret whose value is not JSON: the API server's refusal quotes it.
    const canary = 'CANARY-kube-client-bench';
    const secret = {
      ...secretOf(namespace, `error-${variant}-${process.pid}`, 0),
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': Buffer.from(`${canary} not json`).toString('base64') },
    };
    let text = '';
    try {
      if (api) await api.patch(secret, undefined, undefined, 'envseal-bench', true, PatchStrategy.ServerSideApply);
      else
        await envseal.request({
          method: 'PATCH',
          path: paths.secret(namespace, secret.metadata.name),
          query: { fieldManager: 'envseal-bench', force: true },
          body: secret,
          patchType: 'apply',
        });
    } catch (error) {
      text = error instanceof Error ? `${error.message} ${String(error.stack)}` : String(error);
    }
    const leaked = /invalid character 'C'/.test(text);
    count = leaked ? 1 : 0;
    note = `the error message ${leaked ? 'quotes' : 'does not quote'} the value (${text.length} characters)`;
  } else if (task === 'idle') {
    // A watch on a namespace where nothing changes, with bookmarks, for --idle seconds.
    const abort = new AbortController();
    const until = Date.now() + Number(flags.idle) * 1000;
    let ended = 0;
    let resourceVersion = (await envseal.request<KubeList<KubeObject>>({ method: 'GET', path: paths.secrets(namespace), query: { limit: 1 } })).metadata
      .resourceVersion;
    const onEvent = (object: KubeObject) => (resourceVersion = object.metadata?.resourceVersion ?? resourceVersion);
    const query = () => ({ resourceVersion, allowWatchBookmarks: true, timeoutSeconds: 600 });
    setTimeout(() => abort.abort(), until - Date.now()).unref();
    while (!abort.signal.aborted) {
      if (variant === 'envseal') {
        await envseal
          .watch<KubeObject>({
            path: paths.secrets(namespace),
            query: query(),
            idleTimeoutMs: 420_000,
            signal: abort.signal,
            onEvent: (e) => onEvent(e.object),
          })
          .catch(() => undefined);
      } else {
        await new Promise<void>((resolve) => {
          void new Watch(kc)
            .watch(
              paths.secrets(namespace),
              query(),
              (_type, object: KubeObject) => onEvent(object),
              () => resolve(),
            )
            .then((controller) => abort.signal.addEventListener('abort', () => controller.abort(), { once: true }));
        });
      }
      if (!abort.signal.aborted) ended++;
    }
    count = ended;
    note = `the watch ended ${ended} times in ${flags.idle} s`;
  } else {
    throw new Error(`unknown task ${task}`);
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const result: RunResult = {
    variant,
    task,
    ms,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    connections,
    count,
    ...(note ? { note } : {}),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

// ---- parent: control plane, data, interleaved runs ----

async function parent(): Promise<void> {
  const machine = machineInfo();
  log(describeMachine(machine));
  const binDir = await ensureBinaries(log);
  const cp = await startControlPlane({ binDir, controllerManager: false, log });
  const results: RunResult[] = [];
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    const client = new KubeClient(kc);
    for (const name of ['bench-apply', 'bench-list', 'bench-watch', 'bench-idle']) {
      await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
    }
    const tasks = flags.tasks.split(',');
    const fill = async (namespace: string, n: number) => {
      log(`creating ${n} Secrets in ${namespace}`);
      await pool(indices(n), 32, async (i) => {
        await client.request({ method: 'POST', path: paths.secrets(namespace), body: secretOf(namespace, `s-${String(i).padStart(5, '0')}`, i) });
      });
    };
    if (tasks.includes('list')) await fill('bench-list', Number(flags.list));
    if (tasks.includes('watch')) await fill('bench-watch', Number(flags.watch));
    const variants = flags.variants.split(',') as Variant[];
    const run = promisify(execFile);
    const namespaceOf: Record<string, string> = {
      apply: 'bench-apply',
      list: 'bench-list',
      watch: 'bench-watch',
      abort: 'bench-apply',
      error: 'bench-apply',
      idle: 'bench-idle',
    };
    for (let round = 0; round < Number(flags.rounds); round++) {
      for (const task of tasks) {
        // Rotate the order each round so that load from elsewhere hits each variant alike.
        const order = variants.map((_, i) => variants[(i + round) % variants.length]!);
        for (const variant of order) {
          // The watch tasks use client-node's Watch, the same in all client-node variants; idle runs once.
          if ((task === 'watch' || task === 'idle') && (variant === 'client-node-h1' || variant === 'client-node-h2')) continue;
          if (task === 'idle' && round > 0) continue;
          const { stdout } = await run(
            process.execPath,
            [
              fileURLToPath(import.meta.url),
              '--child',
              variant,
              '--task',
              task,
              '--kubeconfig',
              cp.kubeconfigPath,
              '--namespace',
              namespaceOf[task] ?? '',
              '--applies',
              flags.applies,
              '--parallel',
              flags.parallel,
              '--watch',
              flags.watch,
              '--idle',
              flags.idle,
            ],
            { cwd: repoRoot, maxBuffer: 1 << 20 },
          );
          const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as RunResult;
          results.push(result);
          log(
            `round ${round + 1} ${task} ${variant}: ${result.ms.toFixed(0)} ms, CPU ${result.cpuMs.toFixed(0)} ms, peak RSS ${(result.peakRssBytes / 2 ** 20).toFixed(0)} MiB, ${result.connections} connections, ${result.count} objects${result.note ? `; ${result.note}` : ''}`,
          );
        }
      }
    }
  } finally {
    await cp.stop();
  }
  const summary: Record<string, unknown> = {};
  for (const task of new Set(results.map((r) => r.task))) {
    for (const variant of new Set(results.map((r) => r.variant))) {
      const runs = results.filter((r) => r.task === task && r.variant === variant);
      if (runs.length === 0) continue;
      summary[`${task}/${variant}`] = {
        ms: summarize(runs.map((r) => r.ms)).median,
        cpuMs: summarize(runs.map((r) => r.cpuMs)).median,
        peakRssMiB: summarize(runs.map((r) => r.peakRssBytes / 2 ** 20)).median,
        connections: summarize(runs.map((r) => r.connections)).median,
        notes: [...new Set(runs.map((r) => r.note).filter(Boolean))],
      };
    }
  }
  console.log(JSON.stringify(summary, null, 2));
  const out = path.join(repoRoot, 'bench/results', `${flags.out}.json`);
  writeFileSync(out, `${JSON.stringify({ machine, flags: { ...flags }, date: new Date().toISOString(), summary, runs: results }, null, 2)}\n`);
  log(`wrote ${out}`);
}

if (flags.child) await child();
else await parent();
