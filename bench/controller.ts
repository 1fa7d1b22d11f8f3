// Controller benchmark: the envseal controller against the Sealed Secrets controller on
// the same real control plane (test/harness/control-plane.ts), each as its own process.
//
//   npx node bench/controller.ts [--counts 1000,10000] [--changes 200] [--only envseal|sealed-secrets]
//                                [--ss-qps -1] [--ss-burst 10] [--timeout 14m] [--out controller]
//                                [--features templates,namespaces] [--envseal-bin PATH | NAME=PATH,NAME=PATH]
//
// For each count N, for each controller:
//   1. N objects are made (envseal: EnvelopeSecrets sealed for an aws-kms key on local-kms;
//      Sealed Secrets: SealedSecrets for the key its controller generated in its namespace)
//      and created with parallel requests while the controller is not running;
//   2. cold start: the controller is started; the time from its spawn until every Secret
//      exists with the right values (a watch checks each), its peak RSS (VmHWM), its CPU
//      time, and for envseal the key-provider calls (envseal_kms_requests_total);
//   3. steady state (envseal): one resync pass (--resync 20s) must make no KMS call;
//   4. changes: `--changes` objects are changed one after the other (merge patch of the
//      spec with new ciphertext made beforehand); the time from the request to the
//      updated Secret, p50/p99.
// Each controller watches only its own namespace (envseal --namespaces, Sealed Secrets
// --all-namespaces=false). Results: bench/results/NAME.json, docs/benchmarks/NAME.png.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import type { EnvelopeSecret } from '../src/api/types.ts';
import { systemRandom } from '../src/envelope/random.ts';
import { KubeClient } from '../src/kube/client.ts';
import { createAwsKmsProvider } from '../src/providers/aws-kms/index.ts';
import { ProviderRegistry } from '../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../src/sealing/seal.ts';
import { ensureBinaries, freePorts, startControlPlane } from '../test/harness/control-plane.ts';
import { startLocalKms } from '../test/harness/kms-emulators.ts';
import { type Bar, COLORS, writeChart } from './lib/chart.ts';
import { cpuSecondsOf, pool, scrape, sumOf } from './lib/cluster-metrics.ts';
import { ensurePeers, repoRoot, sealedSecretsCrdPath } from './lib/peers.ts';
import { describeMachine, type MachineInfo, machineInfo, RssSampler, sleep } from './lib/proc.ts';
import { sealedSecret, startSealedSecretsController } from './lib/sealed-secrets.ts';
import { SecretWatch } from './lib/secret-watch.ts';
import { formatBytes, formatMs, summarize, type Summary } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    counts: { type: 'string', default: '1000,10000' },
    changes: { type: 'string', default: '200' },
    only: { type: 'string', default: 'envseal,sealed-secrets' },
    'ss-qps': { type: 'string', default: '-1' },
    'ss-burst': { type: 'string', default: '10' },
    timeout: { type: 'string', default: '14' },
    resync: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '32' },
    out: { type: 'string', default: 'controller' },
    /** Only redraw the table and chart from bench/results/NAME.json. */
    'report-only': { type: 'boolean', default: false },
    /** Run the envseal controller with --cpu-prof into bench/results/tmp/NAME/. */
    profile: { type: 'boolean', default: false },
    /** Node options for the envseal controller process; default: the chart's controller.nodeOptions ("none" for Node's defaults). */
    'node-options': { type: 'string', default: '' },
    /**
     * The envseal CLI to run (default bin/envseal.js of this checkout, which runs dist/);
     * or several builds as NAME=PATH,NAME=PATH, each run in turn on the same control plane
     * (before and after a change, in one run).
     */
    'envseal-bin': { type: 'string', default: '' },
    /**
     * Issue 18's features the envseal objects use (comma-separated): `templates` (a
     * config-file template rendering both values), `namespaces` (scope namespaces over
     * the object's namespace and one more: one wrapping per namespace).
     */
    features: { type: 'string', default: '' },
  },
});
const COUNTS = flags.counts.split(',').map(Number);
const CHANGES = Number(flags.changes);
const ONLY = new Set(flags.only.split(','));
const TIMEOUT_MS = Number(flags.timeout) * 60_000;
const RESYNC_S = Number(flags.resync);
const CONCURRENCY = Number(flags.concurrency);
/** What the Helm chart runs the controller with (controller.nodeOptions in its values). */
function chartNodeOptions(): string {
  const values = parseYaml(readFileSync(path.join(repoRoot, 'charts/envseal/values.yaml'), 'utf8')) as { controller?: { nodeOptions?: string } };
  return values.controller?.nodeOptions ?? '';
}
const FEATURES = new Set(flags.features.split(',').filter(Boolean));
for (const feature of FEATURES) if (feature !== 'templates' && feature !== 'namespaces') throw new Error(`--features: unknown feature ${feature}`);
const NODE_OPTIONS = flags['node-options'] === 'none' ? '' : flags['node-options'] || chartNodeOptions();
/** The envseal builds to run; `name` is empty for the one build of an ordinary run. */
const ENVSEAL_BUILDS: { name: string; bin: string }[] = flags['envseal-bin']
  ? flags['envseal-bin'].split(',').map((entry) => {
      const eq = entry.indexOf('=');
      return eq < 0 ? { name: '', bin: path.resolve(entry) } : { name: entry.slice(0, eq), bin: path.resolve(entry.slice(eq + 1)) };
    })
  : [{ name: '', bin: path.join(repoRoot, 'bin/envseal.js') }];
const log = (message: string) => process.stderr.write(`[controller-bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

const machine = machineInfo();
log(describeMachine(machine));

// --- helpers ---------------------------------------------------------------------------

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${command} ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout),
    );
  });
}

function kmsByOperation(series: Map<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [key, value] of series) {
    if (!key.startsWith('envseal_kms_requests_total{')) continue;
    const operation = /operation="([^"]+)"/.exec(key)?.[1] ?? '?';
    const provider = /provider="([^"]+)"/.exec(key)?.[1] ?? '?';
    result[`${provider}:${operation}`] = (result[`${provider}:${operation}`] ?? 0) + value;
  }
  return result;
}

interface Running {
  child: ChildProcess;
  rss: RssSampler;
  exited: Promise<void>;
}

function launch(child: ChildProcess, logFile: string): Running {
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { child, rss: new RssSampler(child.pid!, 100), exited };
}

async function stop(running: Running): Promise<void> {
  running.child.kill('SIGTERM');
  const timer = setTimeout(() => running.child.kill('SIGKILL'), 20_000);
  await running.exited;
  clearTimeout(timer);
}

// --- result shape ------------------------------------------------------------------------

interface RunResult {
  controller: 'envseal' | 'sealed-secrets';
  /** Which envseal build, when the run compares several (--envseal-bin NAME=PATH,...). */
  build?: string;
  count: number;
  setup: { makeMs: number; createMs: number };
  coldStart: { converged: boolean; ms: number; correct: number; peakRssBytes: number; cpuSeconds: number };
  kms?: { coldStart: Record<string, number>; steadyState: Record<string, number>; changes: Record<string, number>; resyncReconciles: number };
  /** envseal's own memory gauges right after the cold start (bytes). */
  memory?: Record<string, number>;
  changes?: { n: number; summary: Summary };
  afterChangesPeakRssBytes?: number;
  flags: string[];
  note?: string;
}

const results: RunResult[] = [];
const notes: string[] = [];
const command = `npx node bench/controller.ts ${process.argv.slice(2).join(' ')}`.trim();
if (flags['report-only']) {
  // Redraw the table and chart from bench/results/NAME.json, without running anything.
  const saved = JSON.parse(readFileSync(path.join(repoRoot, `bench/results/${flags.out}.json`), 'utf8')) as {
    results: RunResult[];
    notes: string[];
    command: string;
    machine: MachineInfo;
  };
  report(saved.results, saved.notes, saved.command, saved.machine);
  process.exit(0);
}
const peersInfo: Record<string, unknown> = {};
notes.push(`envseal controller run with NODE_OPTIONS ${NODE_OPTIONS ? `"${NODE_OPTIONS}"` : 'unset (Node defaults)'}`);

function save(): void {
  mkdirSync(path.join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(
    path.join(repoRoot, `bench/results/${flags.out}.json`),
    `${JSON.stringify({ date: new Date().toISOString(), command, machine, peers: peersInfo, results, notes }, null, 2)}\n`,
  );
}

// --- environment -------------------------------------------------------------------------

const work = mkdtempSync(path.join(os.tmpdir(), 'envseal-controller-bench-'));
// The controllers' logs are kept (bench/results/tmp is not committed).
const logDir = path.join(repoRoot, 'bench/results/tmp', flags.out);
rmSync(logDir, { recursive: true, force: true });
mkdirSync(logDir, { recursive: true });
const binDir = await ensureBinaries(log);
const peers = ONLY.has('sealed-secrets') ? await ensurePeers(['controller'], log) : undefined;
if (peers) peersInfo.controller = peers.controller;
if (peers && !peers.controller.path) notes.push(`The Sealed Secrets controller could not be built: ${peers.controller.error}`);

log('starting the control plane');
const cp = await startControlPlane({ binDir, controllerManager: false, log });
const kms = await startLocalKms();
let exiting = false;
const cleanup = async () => {
  if (exiting) return;
  exiting = true;
  await kms.stop().catch(() => {});
  await cp.stop().catch(() => {});
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

const kubeConfig = new KubeConfig();
kubeConfig.loadFromFile(cp.kubeconfigPath);
const client = new KubeClient(kubeConfig);
const kubectl = (args: string[]) => run(cp.kubectlPath, ['--kubeconfig', cp.kubeconfigPath, ...args]);

async function createNamespace(name: string): Promise<void> {
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
}

await kubectl(['apply', '--server-side', '-f', path.join(repoRoot, 'crds/envelopesecrets.envseal.dev.yaml')]);
await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/envelopesecrets.envseal.dev']);
await createNamespace('envseal-system');

const kmsCredentials = kms.credentials;
const kmsProvider = createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kmsCredentials });
const { keyArn } = await kmsProvider.createKey({ alias: 'alias/envseal-bench' });
const providers = ProviderRegistry.of([kmsProvider]);

const valuesOf = (i: number, version: number) => ({ DB_USER: `app-${i}`, DB_PASSWORD: `v${version}-${randomBytes(12).toString('hex')}` });
const nameOf = (i: number) => `db-${String(i).padStart(5, '0')}`;

// --- envseal ---------------------------------------------------------------------------

const CONFIG_TEMPLATE = 'user: {{ .DB_USER }}\npassword: {{ .DB_PASSWORD | json }}\n';

async function sealFor(namespace: string, name: string, values: Record<string, string>): Promise<EnvelopeSecret> {
  return sealEnvelopeSecret({
    values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])),
    binding: FEATURES.has('namespaces')
      ? { scope: 'namespaces', namespace, name, namespaces: [namespace, `${namespace}-b`] }
      : { scope: 'strict', namespace, name },
    targets: [{ provider: 'aws-kms', target: keyArn }],
    providers,
    random: systemRandom,
    ...(FEATURES.has('templates') ? { template: { type: 'Opaque', data: { 'config.yaml': CONFIG_TEMPLATE } } } : {}),
  });
}

/** The Secret's data the controller must write for these values (the rendered template too). */
function secretDataOf(values: Record<string, string>): Record<string, string> {
  if (!FEATURES.has('templates')) return values;
  return { ...values, 'config.yaml': `user: ${values.DB_USER}\npassword: ${JSON.stringify(values.DB_PASSWORD)}\n` };
}

async function benchEnvseal(count: number, build: { name: string; bin: string }): Promise<RunResult> {
  const namespace = build.name ? `envseal-${build.name}-${count}` : `envseal-${count}`;
  await createNamespace(namespace);
  const watch = new SecretWatch({ client, namespace, log });
  log(`envseal ${count}: sealing ${count} EnvelopeSecrets (aws-kms GenerateDataKey on local-kms)`);
  let t = performance.now();
  const objects: EnvelopeSecret[] = new Array(count);
  await pool(
    Array.from({ length: count }, (_, i) => i),
    16,
    async (i) => {
      const values = valuesOf(i, 1);
      objects[i] = await sealFor(namespace, nameOf(i), values);
      watch.expect(nameOf(i), secretDataOf(values));
    },
  );
  const makeMs = performance.now() - t;
  log(`envseal ${count}: creating them (${CONCURRENCY} parallel requests)`);
  t = performance.now();
  await pool(objects, CONCURRENCY, async (object) => {
    await client.request({ method: 'POST', path: `/apis/envseal.dev/v1alpha1/namespaces/${namespace}/envelopesecrets`, body: object });
  });
  const createMs = performance.now() - t;
  await watch.start();

  const port = (await freePorts(1))[0]!;
  const controllerFlags = [
    'controller',
    '--kubeconfig',
    cp.kubeconfigPath,
    '--controller-namespace',
    'envseal-system',
    '--namespaces',
    namespace,
    '--metrics-address',
    `127.0.0.1:${port}`,
    '--no-leader-elect',
    '--resync',
    `${RESYNC_S}s`,
    '--kms-endpoint',
    kms.endpoint,
    '--region',
    kms.region,
  ];
  log(`envseal ${count}: cold start`);
  const started = performance.now();
  const running = launch(
    spawn(
      process.execPath,
      [...(flags.profile ? ['--cpu-prof', `--cpu-prof-dir=${logDir}`] : []), ...NODE_OPTIONS.split(' ').filter(Boolean), build.bin, ...controllerFlags],
      {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          TMPDIR: process.env.TMPDIR,
          AWS_ACCESS_KEY_ID: kmsCredentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: kmsCredentials.secretAccessKey,
          AWS_EC2_METADATA_DISABLED: 'true',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    ),
    path.join(logDir, `envseal-${count}.log`),
  );
  const converged = await watch.until(() => watch.correct.size === count, TIMEOUT_MS);
  const coldMs = performance.now() - started;
  const coldCpu = cpuSecondsOf(running.child.pid!);
  running.rss.sample();
  const coldPeak = running.rss.peak;
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  const afterCold = await scrape(metricsUrl);
  log(
    `envseal ${count}: ${converged ? 'converged' : 'NOT converged'} in ${formatMs(coldMs)} (${watch.correct.size}/${count}); peak RSS ${formatBytes(coldPeak)}; KMS ${JSON.stringify(kmsByOperation(afterCold))}`,
  );
  const memory = Object.fromEntries(
    [
      'envseal_process_resident_memory_bytes',
      'envseal_nodejs_heap_size_total_bytes',
      'envseal_nodejs_heap_size_used_bytes',
      'envseal_nodejs_external_memory_bytes',
    ].map((name) => [name.replace('envseal_', ''), sumOf(afterCold, name)]),
  );
  log(`envseal ${count}: memory after cold start ${JSON.stringify(Object.fromEntries(Object.entries(memory).map(([k, v]) => [k, formatBytes(v)])))}`);
  const result: RunResult = {
    memory,
    controller: 'envseal',
    ...(build.name ? { build: build.name } : {}),
    count,
    setup: { makeMs, createMs },
    coldStart: { converged, ms: coldMs, correct: watch.correct.size, peakRssBytes: coldPeak, cpuSeconds: coldCpu },
    flags: controllerFlags.slice(1).map((f) => (f === cp.kubeconfigPath ? 'KUBECONFIG' : f === kms.endpoint ? 'LOCAL_KMS_URL' : f)),
  };
  if (converged) {
    // Steady state: wait for one resync pass over every object, then count KMS calls.
    const unchangedBefore = sumOf(afterCold, 'envseal_reconcile_total', (l) => l.includes('result="unchanged"'));
    const deadline = Date.now() + (RESYNC_S * 3 + 60) * 1000;
    let steady = afterCold;
    while (Date.now() < deadline) {
      await sleep(2000);
      steady = await scrape(metricsUrl);
      if (sumOf(steady, 'envseal_reconcile_total', (l) => l.includes('result="unchanged"')) - unchangedBefore >= count) break;
    }
    const resyncReconciles = sumOf(steady, 'envseal_reconcile_total', (l) => l.includes('result="unchanged"')) - unchangedBefore;
    const delta = (a: Record<string, number>, b: Record<string, number>) =>
      Object.fromEntries(Object.keys({ ...a, ...b }).map((k) => [k, (a[k] ?? 0) - (b[k] ?? 0)]));
    const coldKms = kmsByOperation(afterCold);
    const steadyKms = delta(kmsByOperation(steady), coldKms);
    log(`envseal ${count}: steady state: ${resyncReconciles} unchanged reconciles, KMS calls ${JSON.stringify(steadyKms)}`);

    // Changes: new ciphertext made beforehand, then applied one at a time.
    const n = Math.min(CHANGES, count);
    const updates: { name: string; values: Record<string, string>; spec: EnvelopeSecret['spec'] }[] = [];
    for (let i = 0; i < n; i++) {
      const values = valuesOf(i, 2);
      updates.push({ name: nameOf(i), values, spec: (await sealFor(namespace, nameOf(i), values)).spec });
    }
    log(`envseal ${count}: ${n} changes`);
    const latencies: number[] = [];
    for (const update of updates) {
      watch.expect(update.name, secretDataOf(update.values));
      const t0 = performance.now();
      await client.request({
        method: 'PATCH',
        path: `/apis/envseal.dev/v1alpha1/namespaces/${namespace}/envelopesecrets/${update.name}`,
        patchType: 'merge',
        body: { spec: update.spec },
      });
      const ok = await watch.until(() => watch.correct.has(update.name), 60_000);
      if (!ok) throw new Error(`envseal: ${update.name} was not updated within 60 s`);
      latencies.push(performance.now() - t0);
    }
    const afterChanges = await scrape(metricsUrl);
    result.kms = { coldStart: coldKms, steadyState: steadyKms, changes: delta(kmsByOperation(afterChanges), kmsByOperation(steady)), resyncReconciles };
    result.changes = { n, summary: summarize(latencies) };
    log(`envseal ${count}: change latency p50 ${formatMs(result.changes.summary.median)}, p99 ${formatMs(result.changes.summary.p99)}`);
  }
  await stop(running);
  result.afterChangesPeakRssBytes = running.rss.stop();
  await watch.stop();
  return result;
}

// --- Sealed Secrets ----------------------------------------------------------------------------

let ssToken: string | undefined;
async function sealedSecretsToken(): Promise<string> {
  if (ssToken) return ssToken;
  await client.request({
    method: 'POST',
    path: '/api/v1/namespaces/kube-system/serviceaccounts',
    body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sealed-secrets-bench' } },
  });
  await client.request({
    method: 'POST',
    path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'sealed-secrets-bench' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: 'sealed-secrets-bench', namespace: 'kube-system' }],
    },
  });
  const answer = await client.request<{ status: { token: string } }>({
    method: 'POST',
    path: '/api/v1/namespaces/kube-system/serviceaccounts/sealed-secrets-bench/token',
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 86400 } },
  });
  ssToken = answer.status.token;
  return ssToken;
}

let ssCrdInstalled = false;

async function benchSealedSecrets(count: number, binary: string): Promise<RunResult> {
  if (!ssCrdInstalled) {
    await kubectl(['apply', '--server-side', '-f', await sealedSecretsCrdPath()]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/sealedsecrets.bitnami.com']);
    ssCrdInstalled = true;
  }
  const namespace = `sealed-secrets-${count}`;
  await createNamespace(namespace);
  const token = await sealedSecretsToken();
  const caCertPem = readFileSync(cp.pki.caCert, 'utf8');
  const ssFlags = (listen: number, metrics: number) => [
    '--all-namespaces=false',
    '--key-renew-period=0',
    `--listen-addr=127.0.0.1:${listen}`,
    `--listen-metrics-addr=127.0.0.1:${metrics}`,
    `--kubeclient-qps=${flags['ss-qps']}`,
    `--kubeclient-burst=${flags['ss-burst']}`,
  ];
  const start = async (label: string) => {
    const [listen, metrics] = await freePorts(2);
    return launch(
      startSealedSecretsController({
        binary,
        dir: path.join(work, `ss-${count}-${label}`),
        apiServerPort: cp.ports.apiServer,
        token,
        caCertPem,
        namespace,
        args: ssFlags(listen!, metrics!),
      }),
      path.join(logDir, `sealed-secrets-${count}-${label}.log`),
    );
  };

  // Its key: generated by the controller in its namespace on first start (then stopped).
  log(`sealed-secrets ${count}: first start, to generate its key`);
  const first = await start('keygen');
  let certPem: string | undefined;
  for (let i = 0; i < 600 && !certPem; i++) {
    const keys = await client.request<{ items: { data?: Record<string, string> }[] }>({
      method: 'GET',
      path: `/api/v1/namespaces/${namespace}/secrets`,
      query: { labelSelector: 'sealedsecrets.bitnami.com/sealed-secrets-key=active' },
    });
    const crt = keys.items[0]?.data?.['tls.crt'];
    if (crt) certPem = Buffer.from(crt, 'base64').toString();
    else await sleep(100);
  }
  await stop(first);
  if (!certPem)
    throw new Error(
      `sealed-secrets: no key appeared in ${namespace}; log: ${readFileSync(path.join(logDir, `sealed-secrets-${count}-keygen.log`), 'utf8').slice(-2000)}`,
    );
  const publicKey = createPublicKey(certPem);

  const watch = new SecretWatch({ client, namespace, log });
  log(`sealed-secrets ${count}: sealing ${count} SealedSecrets`);
  let t = performance.now();
  const objects: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    const values = valuesOf(i, 1);
    objects.push(sealedSecret(publicKey, namespace, nameOf(i), values));
    watch.expect(nameOf(i), values);
  }
  const makeMs = performance.now() - t;
  log(`sealed-secrets ${count}: creating them (${CONCURRENCY} parallel requests)`);
  t = performance.now();
  await pool(objects, CONCURRENCY, async (object) => {
    await client.request({ method: 'POST', path: `/apis/bitnami.com/v1alpha1/namespaces/${namespace}/sealedsecrets`, body: object });
  });
  const createMs = performance.now() - t;
  await watch.start();

  log(`sealed-secrets ${count}: cold start`);
  const started = performance.now();
  const running = await start('run');
  const converged = await watch.until(() => watch.correct.size === count, TIMEOUT_MS);
  const coldMs = performance.now() - started;
  const coldCpu = cpuSecondsOf(running.child.pid!);
  running.rss.sample();
  const coldPeak = running.rss.peak;
  log(
    `sealed-secrets ${count}: ${converged ? 'converged' : 'NOT converged'} in ${formatMs(coldMs)} (${watch.correct.size}/${count}); peak RSS ${formatBytes(coldPeak)}`,
  );
  const result: RunResult = {
    controller: 'sealed-secrets',
    count,
    setup: { makeMs, createMs },
    coldStart: { converged, ms: coldMs, correct: watch.correct.size, peakRssBytes: coldPeak, cpuSeconds: coldCpu },
    flags: ssFlags(0, 0).map((f) => f.replace(/127\.0\.0\.1:0/, '127.0.0.1:PORT')),
  };
  if (converged) {
    const n = Math.min(CHANGES, count);
    const updates = Array.from({ length: n }, (_, i) => {
      const values = valuesOf(i, 2);
      return { name: nameOf(i), values, spec: (sealedSecret(publicKey, namespace, nameOf(i), values) as { spec: unknown }).spec };
    });
    log(`sealed-secrets ${count}: ${n} changes`);
    const latencies: number[] = [];
    for (const update of updates) {
      watch.expect(update.name, update.values);
      const t0 = performance.now();
      await client.request({
        method: 'PATCH',
        path: `/apis/bitnami.com/v1alpha1/namespaces/${namespace}/sealedsecrets/${update.name}`,
        patchType: 'merge',
        body: { spec: update.spec },
      });
      const ok = await watch.until(() => watch.correct.has(update.name), 60_000);
      if (!ok) throw new Error(`sealed-secrets: ${update.name} was not updated within 60 s`);
      latencies.push(performance.now() - t0);
    }
    result.changes = { n, summary: summarize(latencies) };
    log(`sealed-secrets ${count}: change latency p50 ${formatMs(result.changes.summary.median)}, p99 ${formatMs(result.changes.summary.p99)}`);
  }
  await stop(running);
  result.afterChangesPeakRssBytes = running.rss.stop();
  await watch.stop();
  return result;
}

// --- run -------------------------------------------------------------------------------------

try {
  for (const count of COUNTS) {
    if (ONLY.has('envseal')) {
      for (const build of ENVSEAL_BUILDS) {
        results.push(await benchEnvseal(count, build));
        save();
      }
    }
    if (ONLY.has('sealed-secrets') && peers?.controller.path) {
      results.push(await benchSealedSecrets(count, peers.controller.path));
      save();
    }
  }
} finally {
  kmsProvider.close();
  await cleanup();
}

// --- report ----------------------------------------------------------------------------------

/** Prints the Markdown table and draws the chart (also with --report-only, from the saved JSON). */
function report(results: RunResult[], notes: string[], command: string, machine: MachineInfo): void {
  const label = (r: RunResult) => (r.controller === 'envseal' ? (r.build ? `envseal (${r.build})` : 'envseal') : 'Sealed Secrets');
  const lines: string[] = [`Machine: ${describeMachine(machine)}`, '', `Command: \`${command}\``, ''];
  lines.push(
    '| Controller | objects | cold start: all Secrets correct | peak RSS | CPU time | KMS calls (cold start) | KMS calls (one resync pass) | change → Secret p50 | p99 |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of results) {
    const kmsCold = r.kms
      ? Object.entries(r.kms.coldStart)
          .map(([k, v]) => `${v} ${k}`)
          .join(', ') || '0'
      : 'none (local RSA key)';
    const kmsSteady = r.kms ? `${Object.values(r.kms.steadyState).reduce((a, b) => a + b, 0)} (${r.kms.resyncReconciles} reconciles)` : 'n/a';
    lines.push(
      `| ${label(r)} | ${r.count} | ${r.coldStart.converged ? formatMs(r.coldStart.ms) : `not within ${formatMs(r.coldStart.ms)} (${r.coldStart.correct} done)`} | ${formatBytes(Math.max(r.coldStart.peakRssBytes, r.afterChangesPeakRssBytes ?? 0))} | ${r.coldStart.cpuSeconds.toFixed(1)} s | ${kmsCold} | ${kmsSteady} | ${r.changes ? formatMs(r.changes.summary.median) : 'n/a'} | ${r.changes ? formatMs(r.changes.summary.p99) : 'n/a'} |`,
    );
  }
  for (const note of notes) lines.push('', `Note: ${note}`);
  const colorOf = (r: RunResult) => (r.controller === 'envseal' ? COLORS.envseal : COLORS.sealedSecrets);
  const barsFor = (pick: (r: RunResult) => number | undefined, text: (v: number, r: RunResult) => string): Bar[] =>
    results
      .filter((r) => pick(r) !== undefined)
      .map((r) => ({ label: `${label(r)}, ${r.count}`, value: pick(r)!, text: text(pick(r)!, r), color: colorOf(r) }));
  const png = writeChart(
    {
      title: 'Controllers: cold start, memory, change latency',
      subtitle: `${machine.cpus} cores, ${machine.cpuModel}; shared machine; ${new Date().toISOString().slice(0, 10)}`,
      panels: [
        {
          title: 'Cold start: spawn until every Secret is correct (lower is better)',
          bars: barsFor(
            (r) => r.coldStart.ms,
            (v, r) => (r.coldStart.converged ? formatMs(v) : `> ${formatMs(v)} (${r.coldStart.correct}/${r.count} done)`),
          ),
        },
        {
          title: 'Peak RSS of the controller process (lower is better)',
          bars: barsFor(
            (r) => Math.max(r.coldStart.peakRssBytes, r.afterChangesPeakRssBytes ?? 0) / 2 ** 20,
            (v) => `${v.toFixed(0)} MiB`,
          ),
        },
        {
          title: `Change applied → Secret updated, p50 of ${CHANGES} (lower is better)`,
          bars: barsFor(
            (r) => r.changes?.summary.median,
            (v) => formatMs(v),
          ),
        },
        {
          title: `Change applied → Secret updated, p99 of ${CHANGES} (lower is better)`,
          bars: barsFor(
            (r) => r.changes?.summary.p99,
            (v) => formatMs(v),
          ),
        },
      ],
    },
    path.join(repoRoot, 'docs/benchmarks', flags.out),
    path.join(repoRoot, 'bench/results/tmp'),
  );
  lines.push('', `Chart: ${png ? path.relative(repoRoot, png) : '(no PNG: install librsvg2-bin)'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

report(results, notes, command, machine);
process.exit(0);
