// A shared cluster as a hostile tenant meets it: the chart installed with helm (its RBAC,
// its Deployment's args and env), the controller run exactly as that Deployment would run
// it (as its ServiceAccount, through a TokenRequest token, as a separate process), and a
// tenant whose kubeconfig carries a token of a ServiceAccount that may only manage
// EnvelopeSecrets in one namespace. Every attack of test/e2e/tenant-*.test.ts is made
// with the tenant's client or kubectl.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { KubeApiError, KubeClient, paths, type WatchEvent } from '../../src/kube/client.ts';
import { sharedCluster, tokenKubeConfig, waitFor } from './cluster.ts';
import { repoRoot } from './control-plane.ts';
import { freePort, sumMetric } from './controller.ts';
import { recordLeakText } from './faults-leaks.ts';
import { adminClient, getOrUndefined, installCrd, type KubectlResult } from './kube.ts';
import { forEachOutputLine } from './processes.ts';

export const chartDir = path.join(repoRoot, 'charts/envseal');

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function run(file: string, args: readonly string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** helm against the shared control plane, with its caches inside the cluster's temp dir. */
export function helm(args: readonly string[]): Promise<KubectlResult> {
  const cluster = sharedCluster();
  const env = {
    ...process.env,
    HELM_CACHE_HOME: path.join(cluster.dir, 'helm-cache'),
    HELM_CONFIG_HOME: path.join(cluster.dir, 'helm-config'),
    HELM_DATA_HOME: path.join(cluster.dir, 'helm-data'),
  };
  return run(cluster.helmPath, [...args, '--kubeconfig', cluster.kubeconfigPath], { env });
}

/** A token of a ServiceAccount from the TokenRequest API (what the kubelet projects into a pod). */
export async function serviceAccountToken(client: KubeClient, namespace: string, name: string): Promise<string> {
  const response = await client.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  return response.status.token;
}

/** Writes a kubeconfig file that authenticates with `token`; returns its path. */
export function writeTokenKubeconfig(token: string, namespace: string, file: string): string {
  fs.writeFileSync(file, tokenKubeConfig(token, namespace).exportConfig(), { mode: 0o600 });
  return file;
}

export interface ChartRelease {
  release: string;
  /** The release namespace: the controller's own (age identity, lease, recipient). */
  namespace: string;
  serviceAccount: string;
  watchNamespaces: readonly string[];
  uninstall(): Promise<void>;
}

/**
 * `helm install` of the chart in namespaced mode (a Role and RoleBinding per watched
 * namespace, which must exist). The CRD is applied from crds/ first so that the one
 * under test is served even if an older copy was installed earlier in the run.
 */
export async function installChart(options: {
  release: string;
  namespace: string;
  watchNamespaces: readonly string[];
  sets?: readonly string[];
}): Promise<ChartRelease> {
  await installCrd();
  const sets = [`watchNamespaces={${options.watchNamespaces.join(',')}}`, ...(options.sets ?? [])];
  const result = await helm([
    'install',
    options.release,
    chartDir,
    '--namespace',
    options.namespace,
    '--create-namespace',
    ...sets.flatMap((s) => ['--set', s]),
  ]);
  if (result.code !== 0) throw new Error(`helm install failed: ${result.stderr}`);
  return {
    release: options.release,
    namespace: options.namespace,
    // The chart names its ServiceAccount after the release when the release name contains the chart name.
    serviceAccount: options.release,
    watchNamespaces: options.watchNamespaces,
    async uninstall() {
      await helm(['uninstall', options.release, '--namespace', options.namespace]);
    },
  };
}

// ---------------------------------------------------------------------------------
// The controller as the chart's Deployment runs it

interface DeploymentContainer {
  args: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  resources?: { limits?: { memory?: string } };
}

export interface ChartController {
  readonly pid: number;
  readonly metricsUrl: string;
  /** Every log line so far (pino JSON). */
  readonly logs: string[];
  /** The Deployment's memory limit in bytes (resources.limits.memory). */
  readonly memoryLimitBytes: number;
  /** The NODE_OPTIONS the Deployment sets. */
  readonly nodeOptions: string;
  /** Highest resident set size seen (VmHWM included), in bytes: anonymous and file-backed pages. */
  peakRssBytes(): number;
  /**
   * Highest anonymous resident memory seen (RssAnon, sampled every 100 ms), in bytes:
   * what a container's memory limit cannot reclaim. File-backed pages (the node binary's
   * code, ~35 MiB) count towards the limit too, but the kernel drops them under pressure
   * before it OOM-kills.
   */
  peakAnonBytes(): number;
  /** Settles when the process exits, by itself or after stop(). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True once the process has exited. */
  hasExited(): boolean;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** The raw /metrics text. */
  scrape(): Promise<string>;
  /** SIGSTOP: the process freezes as in a long GC pause or a throttled container (resume() undoes it). */
  pause(): void;
  resume(): void;
  /** SIGTERM (a rolling update), SIGKILL after 25 s; resolves when it is gone. */
  stop(): Promise<void>;
}

/** Parses a Kubernetes memory quantity (256Mi, 1Gi, 300M) to bytes. */
export function memoryQuantity(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(text.trim());
  if (!match) throw new Error(`not a memory quantity: ${text}`);
  const unit: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 };
  return Number(match[1]) * unit[match[2] ?? '']!;
}

/** VmRSS, VmHWM and RssAnon of a process, in bytes; undefined once it is gone. */
function memoryOf(pid: number): { rss: number; peak: number; anon: number } | undefined {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM'), anon: kb('RssAnon') };
  } catch {
    return undefined;
  }
}

/**
 * Starts `envseal controller` (bin/envseal.js: the bundle in dist/, what the image runs)
 * with exactly the args and env of the installed Deployment's container, authenticated
 * with a TokenRequest token of the chart's ServiceAccount. Only the metrics address moves
 * to a free loopback port. `extraArgs` go last; `env` is what the platform would inject
 * besides the chart (e.g. AWS credentials); `namespaces` replaces the chart's watched
 * namespaces (a subset of them: the Roles exist only there).
 */
export async function startChartController(
  chart: ChartRelease,
  options: { identity: string; extraArgs?: readonly string[]; dir: string; env?: Record<string, string>; namespaces?: readonly string[] },
): Promise<ChartController> {
  const admin = adminClient();
  const entry = path.join(repoRoot, 'bin/envseal.js');
  if (!fs.existsSync(path.join(repoRoot, 'dist'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  const deployment = await admin.request<{ spec: { template: { spec: { containers: DeploymentContainer[] } } } }>({
    method: 'GET',
    path: `/apis/apps/v1/namespaces/${chart.namespace}/deployments/${chart.release}`,
  });
  const container = deployment.spec.template.spec.containers[0]!;
  const port = await freePort();
  const kubeconfig = writeTokenKubeconfig(
    await serviceAccountToken(admin, chart.namespace, chart.serviceAccount),
    chart.namespace,
    path.join(options.dir, `${options.identity}.kubeconfig`),
  );
  if (options.namespaces && !container.args.some((a) => a.startsWith('--namespaces=')))
    throw new Error('the chart watches all namespaces: no --namespaces to replace');
  const args = [
    ...container.args.map((a) => {
      if (a.startsWith('--metrics-address=')) return `--metrics-address=127.0.0.1:${port}`;
      if (options.namespaces && a.startsWith('--namespaces=')) return `--namespaces=${options.namespaces.join(',')}`;
      return a;
    }),
    `--kubeconfig=${kubeconfig}`,
    ...(options.extraArgs ?? []),
  ];
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'LANG', 'TMPDIR']) if (process.env[name] !== undefined) env[name] = process.env[name];
  env.POD_NAMESPACE = chart.namespace;
  env.POD_NAME = options.identity;
  for (const variable of container.env ?? []) if (variable.value !== undefined) env[variable.name] = variable.value;
  // What the platform injects besides the chart (e.g. IRSA's AWS credentials).
  Object.assign(env, options.env);
  const limit = container.resources?.limits?.memory;
  if (!limit) throw new Error('the chart sets no memory limit on the controller container');

  const child: ChildProcess = spawn(process.execPath, [entry, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  forEachOutputLine(child, (line) => {
    logs.push(line);
    recordLeakText('log', line);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const pid = child.pid ?? -1;
  let peak = 0;
  let peakAnon = 0;
  const sample = () => {
    const m = memoryOf(pid);
    if (m && Number.isFinite(m.rss)) peak = Math.max(peak, m.rss, Number.isFinite(m.peak) ? m.peak : 0);
    if (m && Number.isFinite(m.anon)) peakAnon = Math.max(peakAnon, m.anon);
  };
  const sampler = setInterval(sample, 100);
  sampler.unref();
  void exited.then(() => clearInterval(sampler));
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const scrape = () => fetch(metricsUrl, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text());
  const handle: ChartController = {
    pid,
    metricsUrl,
    logs,
    memoryLimitBytes: memoryQuantity(limit),
    nodeOptions: env.NODE_OPTIONS ?? '',
    peakRssBytes: () => {
      if (!gone()) sample();
      return peak;
    },
    peakAnonBytes: () => {
      if (!gone()) sample();
      return peakAnon;
    },
    exited,
    hasExited: gone,
    scrape,
    metric: async (name, labels = {}) => sumMetric(await scrape(), name, labels),
    pause: () => {
      if (!gone()) child.kill('SIGSTOP');
    },
    resume: () => {
      if (!gone()) child.kill('SIGCONT');
    },
    async stop() {
      if (gone()) return;
      child.kill('SIGCONT');
      sample();
      const text = await scrape().catch(() => undefined);
      if (text !== undefined) recordLeakText('metrics', text);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 25_000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (
      await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (gone()) throw new Error(`the controller exited at start (code ${child.exitCode}):\n${logs.slice(-20).join('\n')}`);
    if (Date.now() > deadline) {
      await handle.stop();
      throw new Error(`the controller did not serve /healthz within 60 s:\n${logs.slice(-20).join('\n')}`);
    }
    await sleep(100);
  }
  return handle;
}

// ---------------------------------------------------------------------------------
// The tenant

export interface Tenant {
  namespace: string;
  serviceAccount: string;
  /** A client that authenticates as the tenant. */
  client: KubeClient;
  /** kubectl as the tenant (its own kubeconfig file). */
  kubectl(args: readonly string[], input?: string): Promise<KubectlResult>;
}

/** What the tenant may do: manage EnvelopeSecrets in its namespace, and nothing else. */
export const TENANT_VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'] as const;

/**
 * A ServiceAccount in `namespace` bound by a Role to EnvelopeSecret rights there only
 * (not their status, no Secrets, no workloads), and a kubeconfig with its token.
 */
export async function createTenant(options: { namespace: string; name: string; dir: string }): Promise<Tenant> {
  const admin = adminClient();
  const { namespace, name } = options;
  await admin.request({
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/serviceaccounts`,
    body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } },
  });
  await admin.request({
    method: 'POST',
    path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`,
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name },
      rules: [{ apiGroups: ['envseal.dev'], resources: ['envelopesecrets'], verbs: [...TENANT_VERBS] }],
    },
  });
  await admin.request({
    method: 'POST',
    path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`,
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
  });
  const token = await serviceAccountToken(admin, namespace, name);
  const kubeconfig = writeTokenKubeconfig(token, namespace, path.join(options.dir, `tenant-${namespace}.kubeconfig`));
  const client = new KubeClient(tokenKubeConfig(token, namespace));
  // RBAC is cached by the authorizer for a moment: wait until the grant is seen.
  await waitFor(`the tenant's Role in ${namespace} to take effect`, async () => {
    await client.request({ method: 'GET', path: paths.envelopeSecrets(namespace) });
    return true;
  });
  return {
    namespace,
    serviceAccount: name,
    client,
    kubectl: (args, input) => run(sharedCluster().kubectlPath, ['--kubeconfig', kubeconfig, ...args], input === undefined ? {} : { input }),
  };
}

// ---------------------------------------------------------------------------------
// Observations

/** Conditions of an EnvelopeSecret, read as admin. */
export interface LiveConditions {
  generation: number;
  observedGeneration: number | undefined;
  conditions: { type: string; status: string; reason: string; message: string; observedGeneration?: number }[];
}

export async function conditionsOf(client: KubeClient, namespace: string, name: string): Promise<LiveConditions | undefined> {
  const es = await getOrUndefined<{ metadata: { generation: number }; status?: { observedGeneration?: number; conditions?: LiveConditions['conditions'] } }>(
    client,
    paths.envelopeSecret(namespace, name),
  );
  if (!es) return undefined;
  return { generation: es.metadata.generation, observedGeneration: es.status?.observedGeneration, conditions: es.status?.conditions ?? [] };
}

/** The Ready condition once the status describes the current generation. */
export async function currentReady(client: KubeClient, namespace: string, name: string): Promise<LiveConditions['conditions'][number] | undefined> {
  const live = await conditionsOf(client, namespace, name);
  if (!live || live.observedGeneration !== live.generation) return undefined;
  return live.conditions.find((c) => c.type === 'Ready');
}

/** Waits for Ready with this reason (True for Synced, False otherwise) on the current generation. */
export async function waitForReason(
  client: KubeClient,
  namespace: string,
  name: string,
  reason: string,
  timeoutMs = 60_000,
): Promise<{ status: string; reason: string; message: string }> {
  return waitFor(
    `${namespace}/${name} Ready reason ${reason}`,
    async () => {
      const ready = await currentReady(client, namespace, name);
      return ready?.reason === reason ? ready : undefined;
    },
    { timeoutMs },
  );
}

/** Events about one object, read as admin. */
export async function eventsAbout(client: KubeClient, namespace: string, name: string): Promise<{ type: string; reason: string; message: string }[]> {
  const list = await client.request<{ items: { type: string; reason: string; message: string; involvedObject: { name: string } }[] }>({
    method: 'GET',
    path: paths.events(namespace),
  });
  return list.items.filter((e) => e.involvedObject.name === name);
}

/**
 * Counts the distinct resourceVersions a watch sees for one Secret (creations,
 * updates, deletions) while it runs.
 */
export function countResourceVersions(client: KubeClient, namespace: string, name: string): { stop(): Promise<{ versions: number; deletions: number }> } {
  const abort = new AbortController();
  const versions = new Set<string>();
  let deletions = 0;
  const watching = (async () => {
    while (!abort.signal.aborted) {
      try {
        await client.watch<{ metadata: { resourceVersion: string } }>({
          path: paths.secrets(namespace),
          query: { fieldSelector: `metadata.name=${name}` },
          idleTimeoutMs: 60_000,
          signal: abort.signal,
          onEvent: (event: WatchEvent<{ metadata: { resourceVersion: string } }>) => {
            if (event.type === 'BOOKMARK') return;
            versions.add(event.object.metadata.resourceVersion);
            if (event.type === 'DELETED') deletions++;
          },
        });
      } catch {
        if (!abort.signal.aborted) await sleep(200);
      }
    }
  })();
  return {
    async stop() {
      abort.abort();
      await watching;
      return { versions: versions.size, deletions };
    },
  };
}

// ---------------------------------------------------------------------------------
// Forged input

const unpadded = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

/**
 * An age-wrapped key (base64, as an EnvelopeSecret recipient's encryptedKey) whose header
 * holds `stanzas` X25519 stanzas of random bytes: no identity opens any of them, and an
 * age decrypter pays one X25519 agreement per stanza to find that out. `genuine` is a
 * real wrapped key whose MAC line and payload are kept, so the file parses.
 */
export function forgedAgeKey(genuine: string, stanzas: number): string {
  const file = Buffer.from(genuine, 'base64');
  const macLine = file.indexOf('\n---');
  if (macLine < 0) throw new Error('not an age file');
  let header = 'age-encryption.org/v1\n';
  for (let i = 0; i < stanzas; i++) header += `-> X25519 ${unpadded(randomBytes(32))}\n${unpadded(randomBytes(32))}\n`;
  return Buffer.concat([Buffer.from(header, 'latin1'), file.subarray(macLine + 1)]).toString('base64');
}

/** Whether the API server admits `object` on create (a dry run, as `client`): undefined, or its refusal. */
export async function admits(client: KubeClient, namespace: string, object: unknown): Promise<string | undefined> {
  try {
    await client.request({ method: 'POST', path: paths.envelopeSecrets(namespace), query: { dryRun: 'All', fieldManager: 'tenant' }, body: object });
    return undefined;
  } catch (error) {
    if (error instanceof KubeApiError && (error.status === 422 || error.status === 400 || error.status === 413)) return error.message;
    throw error;
  }
}
