// Scale benchmark: N EnvelopeSecrets in N/10 namespaces on a real control plane
// (test/harness/control-plane.ts), the envseal controller watching all namespaces.
//
//   npx node bench/scale.ts [--count 10000] [--per-namespace 10] [--changes 1000]
//                           [--subjects floor,envseal,sealed-secrets] [--variants 'base=--workers 4;w16=--workers 16']
//                           [--timeout 30] [--ss-timeout 25] [--resync 60] [--out scale-10000]
//
// Every subject (the floor, each envseal variant, Sealed Secrets) gets a fresh control plane
// (etcd's database starts empty, so its size and the API server's request counts are the
// subject's own) holding the same N objects, created with parallel requests while no
// controller runs. Then, for a controller:
//   1. cold start: spawn until every Secret holds the right values (a cluster-wide watch
//      checks each); wall time, peak RSS (VmHWM), CPU time, key-provider calls and unwrap
//      attempts (the controller's own metrics), API requests (apiserver_request_total
//      before and after, by verb) per object;
//   2. resync (envseal): one pass over every object (envseal_reconcile_total unchanged
//      grows by N) must make no key-provider call; its duration and API requests;
//   3. changes: `--changes` objects spread over the namespaces are changed one after the
//      other (merge patch of the spec with ciphertext made beforehand): p50/p99 from the
//      request to the updated Secret seen by the watch;
//   4. etcd's database size at the end (etcd_mvcc_db_total_size_in_bytes and in use).
// The floor: a minimal client, no decryption and no cache, writes the same N Secrets
// (server-side apply, the manifests the controller writes) and N status updates; the
// parallelism is swept on slices first (4..64), then all N are written at the best one.
// Results: bench/results/NAME.json and a Markdown table on stdout; load averages are
// recorded at the start and end of each step.
import { type ChildProcess, spawn } from 'node:child_process';
import { createPublicKey, randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import type { EnvelopeSecret } from '../src/api/types.ts';
import { statusConditions } from '../src/controller/conditions.ts';
import { desiredSecret, LABEL_MANAGED_BY, MANAGED_BY, specHash } from '../src/controller/desired.ts';
import { systemRandom } from '../src/envelope/random.ts';
import { KubeClient } from '../src/kube/client.ts';
import { createAwsKmsProvider } from '../src/providers/aws-kms/index.ts';
import { ProviderRegistry } from '../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../src/sealing/seal.ts';
import { type ControlPlane, ensureBinaries, freePorts, startControlPlane } from '../test/harness/control-plane.ts';
import { startLocalKms } from '../test/harness/kms-emulators.ts';
import { SecretWatch } from './lib/secret-watch.ts';
import { apiRequests, byLabel, cpuSecondsOf, delta, type EtcdSize, etcdSize, loadAverage, pool, scrape, sumOf, total } from './lib/cluster-metrics.ts';
import { ensurePeers, repoRoot, sealedSecretsCrdPath } from './lib/peers.ts';
import { describeMachine, machineInfo, RssSampler, sleep } from './lib/proc.ts';
import { sealedSecret, startSealedSecretsController } from './lib/sealed-secrets.ts';
import { formatBytes, formatMs, summarize, type Summary } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    'per-namespace': { type: 'string', default: '10' },
    changes: { type: 'string', default: '1000' },
    subjects: { type: 'string', default: 'floor,envseal,sealed-secrets' },
    /** envseal variants: name=extra controller flags, separated by ';' (each gets its own fresh control plane). */
    variants: { type: 'string', default: 'default=' },
    /** Minutes a cold start may take (envseal), and Sealed Secrets' cap. */
    timeout: { type: 'string', default: '30' },
    'ss-timeout': { type: 'string', default: '25' },
    'ss-qps': { type: 'string', default: '-1' },
    'ss-burst': { type: 'string', default: '10' },
    resync: { type: 'string', default: '60' },
    /** Seconds into the cold start at which one object (not yet reconciled, most likely) is changed. */
    'cold-change-after': { type: 'string', default: '15' },
    /** Parallel requests creating the objects. */
    concurrency: { type: 'string', default: '64' },
    'floor-parallelism': { type: 'string', default: '4,8,16,32,64' },
    out: { type: 'string', default: '' },
    'node-options': { type: 'string', default: '' },
    'envseal-bin': { type: 'string', default: '' },
  },
});
const N = Number(flags.count);
const PER_NS = Number(flags['per-namespace']);
const CHANGES = Math.min(Number(flags.changes), N);
const SUBJECTS = new Set(flags.subjects.split(','));
const TIMEOUT_MS = Number(flags.timeout) * 60_000;
const SS_TIMEOUT_MS = Number(flags['ss-timeout']) * 60_000;
const RESYNC_S = Number(flags.resync);
const COLD_CHANGE_AFTER_MS = Number(flags['cold-change-after']) * 1000;
const CONCURRENCY = Number(flags.concurrency);
const OUT = flags.out || `scale-${N}`;
const ENVSEAL_BIN = flags['envseal-bin'] ? path.resolve(flags['envseal-bin']) : path.join(repoRoot, 'bin/envseal.js');
const VARIANTS = flags.variants
  .split(';')
  .filter(Boolean)
  .map((v) => {
    const eq = v.indexOf('=');
    const words = v
      .slice(eq + 1)
      .split(' ')
      .filter(Boolean);
    // --bin=PATH: another build of envseal (e.g. main's, for a before/after in one run).
    const bin = words.find((w) => w.startsWith('--bin='))?.slice('--bin='.length);
    return { name: v.slice(0, eq), args: words.filter((w) => !w.startsWith('--bin=')), bin: bin ? path.resolve(bin) : ENVSEAL_BIN };
  });
const log = (message: string) => process.stderr.write(`[scale-bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

const machine = machineInfo();
log(describeMachine(machine));
const command = `npx node bench/scale.ts ${process.argv.slice(2).join(' ')}`.trim();

const namespaceOf = (i: number) => `t-${String(Math.floor(i / PER_NS)).padStart(5, '0')}`;
const nameOf = (i: number) => `db-${String(i).padStart(6, '0')}`;
const keyOf = (i: number) => `${namespaceOf(i)}/${nameOf(i)}`;
const valuesOf = (i: number, version: number) => ({ DB_USER: `app-${i}`, DB_PASSWORD: `v${version}-${randomBytes(12).toString('hex')}` });
/** The objects changed in step 3: spread over the namespaces. */
const changed = Array.from({ length: CHANGES }, (_, k) => Math.floor((k * N) / CHANGES));
/** The object changed while the resync pass runs (not one of `changed`). */
const duringResync = (() => {
  const taken = new Set(changed);
  return Array.from({ length: N }, (_, i) => i).find((i) => !taken.has(i)) ?? 0;
})();
/**
 * The object changed during the cold start (`--cold-change-after` seconds in): the last of
 * its namespace, so that a queue served in turn would reach it near the end of the backlog.
 */
const duringCold = (() => {
  const taken = new Set([...changed, duringResync]);
  return Array.from({ length: N }, (_, i) => i).find((i) => i % PER_NS === PER_NS - 1 && !taken.has(i)) ?? N - 1;
})();

interface Step {
  ms: number;
  load: { start: number[]; end: number[] };
}
interface SubjectResult {
  subject: string;
  count: number;
  namespaces: number;
  setup: { createMs: number; namespacesMs: number; load: number[] };
  coldStart?: Step & {
    converged: boolean;
    correct: number;
    peakRssBytes: number;
    cpuSeconds: number;
    apiRequests: Record<string, number>;
    apiRequestsPerObject: number;
    kms?: Record<string, number>;
    unwrapAttempts?: number;
    /** At the cap too: data-key cache lookups and reconciles by result (to account for KMS calls). */
    dekCache?: Record<string, number>;
    reconciles?: Record<string, number>;
    /** One object changed during the cold start: its time to a correct Secret, and how many Secrets were correct then. */
    changeDuring?: { ms: number; correctAtChange: number; correctAtSecret: number };
  };
  resync?: Step & {
    /** From the first scrape that saw the pass started to the one that saw it done (ms: the step, with the wait for the tick). */
    passMs?: number;
    reconciles: number;
    kms: Record<string, number>;
    apiRequests: Record<string, number>;
    /** One object changed once the pass had started: its time to a correct Secret, and the pass's reconciles done by then. */
    changeDuring?: { ms: number; reconcilesBefore: number; reconcilesAtSecret: number };
  };
  changes?: Step & { n: number; summary: Summary; kms?: Record<string, number> };
  floor?: { sweep: { parallelism: number; objects: number; ms: number; writesPerSecond: number }[]; best: number } & Step & {
      writes: number;
      writesPerSecond: number;
      apiRequests: Record<string, number>;
    };
  peakRssBytes?: number;
  etcd: EtcdSize;
  flags: string[];
  note?: string;
}
const results: SubjectResult[] = [];
const notes: string[] = [];
const peersInfo: Record<string, unknown> = {};

function save(): void {
  mkdirSync(path.join(repoRoot, 'bench/results'), { recursive: true });
  writeFileSync(
    path.join(repoRoot, `bench/results/${OUT}.json`),
    `${JSON.stringify({ date: new Date().toISOString(), command, machine, peers: peersInfo, results, notes }, null, 2)}\n`,
  );
}

const logDir = path.join(repoRoot, 'bench/results/tmp', OUT);
rmSync(logDir, { recursive: true, force: true });
mkdirSync(logDir, { recursive: true });
const binDir = await ensureBinaries(log);
const peers = SUBJECTS.has('sealed-secrets') ? await ensurePeers(['controller'], log) : undefined;
if (peers) peersInfo.controller = peers.controller;

const kms = await startLocalKms();
const kmsProvider = createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials });
const { keyArn } = await kmsProvider.createKey({ alias: 'alias/envseal-scale' });
const providers = ProviderRegistry.of([kmsProvider]);

let current: { cp: ControlPlane; children: ChildProcess[] } | undefined;
const cleanup = async () => {
  for (const child of current?.children ?? []) child.kill('SIGKILL');
  await current?.cp.stop().catch(() => {});
  await kms.stop().catch(() => {});
};
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.on('SIGTERM', () => void cleanup().then(() => process.exit(143)));

// --- the objects, sealed once and created in each subject's control plane -------------

async function sealAll(version: number, indices: readonly number[]): Promise<Map<number, { values: Record<string, string>; object: EnvelopeSecret }>> {
  const out = new Map<number, { values: Record<string, string>; object: EnvelopeSecret }>();
  await pool(indices, 32, async (i) => {
    const values = valuesOf(i, version);
    const object = await sealEnvelopeSecret({
      values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])),
      binding: { scope: 'strict', namespace: namespaceOf(i), name: nameOf(i) },
      targets: [{ provider: 'aws-kms', target: keyArn }],
      providers,
      random: systemRandom,
    });
    out.set(i, { values, object });
  });
  return out;
}

let sealed: Map<number, { values: Record<string, string>; object: EnvelopeSecret }> | undefined;
let resealed: Map<number, { values: Record<string, string>; object: EnvelopeSecret }> | undefined;
async function envelopeSecrets() {
  if (!sealed) {
    const t = performance.now();
    log(`sealing ${N} EnvelopeSecrets (aws-kms GenerateDataKey on local-kms) and ${CHANGES} changes`);
    sealed = await sealAll(
      1,
      Array.from({ length: N }, (_, i) => i),
    );
    resealed = await sealAll(2, [...changed, duringResync, duringCold]);
    notes.push(`sealing ${N} EnvelopeSecrets and ${CHANGES} changes took ${formatMs(performance.now() - t)} (load ${loadAverage().join(' / ')})`);
  }
  return { sealed, resealed: resealed! };
}

// --- one fresh control plane per subject -------------------------------------------------

interface Cluster {
  cp: ControlPlane;
  client: KubeClient;
  kubectl: (args: string[]) => Promise<string>;
  requests: () => Promise<Record<string, number>>;
}

async function withCluster<T>(label: string, fn: (cluster: Cluster) => Promise<T>): Promise<T> {
  log(`${label}: starting a fresh control plane`);
  const cp = await startControlPlane({
    binDir,
    controllerManager: false,
    log,
    // 100,000 objects and their history outgrow etcd's default 2 GiB quota.
    extraEtcdArgs: ['--quota-backend-bytes=8589934592'],
  });
  current = { cp, children: [] };
  try {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cp.kubeconfigPath);
    const client = new KubeClient(kubeConfig);
    const kubectl = (args: string[]) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(cp.kubectlPath, ['--kubeconfig', cp.kubeconfigPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d));
        child.stderr.on('data', (d: Buffer) => (err += d));
        child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')}: ${err}`))));
      });
    await kubectl(['apply', '--server-side', '-f', path.join(repoRoot, 'crds/envelopesecrets.envseal.dev.yaml')]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/envelopesecrets.envseal.dev']);
    return await fn({ cp, client, kubectl, requests: () => apiRequests(cp.kubectlPath, cp.kubeconfigPath) });
  } finally {
    for (const child of current.children) child.kill('SIGKILL');
    await cp.stop();
    current = undefined;
  }
}

async function createNamespaces(client: KubeClient, extra: string[]): Promise<number> {
  const t = performance.now();
  const names = [...extra, ...new Set(Array.from({ length: N }, (_, i) => namespaceOf(i)))];
  await pool(names, CONCURRENCY, async (name) => {
    await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
  });
  return performance.now() - t;
}

/** Creates every EnvelopeSecret; returns their uids (the floor's owner references) and the time taken. */
async function createEnvelopeSecrets(client: KubeClient): Promise<{ uids: string[]; ms: number }> {
  const { sealed } = await envelopeSecrets();
  const uids: string[] = new Array(N);
  const t = performance.now();
  await pool(
    Array.from({ length: N }, (_, i) => i),
    CONCURRENCY,
    async (i) => {
      const created = await client.request<{ metadata: { uid: string } }>({
        method: 'POST',
        path: `/apis/envseal.dev/v1alpha1/namespaces/${namespaceOf(i)}/envelopesecrets`,
        body: sealed.get(i)!.object,
      });
      uids[i] = created.metadata.uid;
    },
  );
  return { uids, ms: performance.now() - t };
}

function launch(child: ChildProcess, logFile: string) {
  const out = createWriteStream(logFile);
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  current?.children.push(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const rss = new RssSampler(child.pid!, 100);
  return {
    child,
    rss,
    async stop(): Promise<number> {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
      return rss.stop();
    },
  };
}

async function timedStep<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number; load: { start: number[]; end: number[] } }> {
  const start = loadAverage();
  const t = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t, load: { start, end: loadAverage() } };
}

// --- the floor ---------------------------------------------------------------------------

/**
 * The floor on a cluster that holds the N EnvelopeSecrets (alone, or after envseal's run
 * in the same cluster with its controller stopped: every write then changes the object,
 * on an etcd as large as the controller left it).
 */
async function benchFloor(cluster: Cluster, setup: { uids: string[]; createMs: number; namespacesMs: number; load: number[] }): Promise<SubjectResult> {
  const { cp, client, requests } = cluster;
  const { uids, createMs, namespacesMs, load: setupLoad } = setup;
  {
    const { sealed } = await envelopeSecrets();
    // One object's writes: the Secret the controller would write (server-side apply) and a status.
    const write = async (i: number, round: number) => {
      const { object, values } = sealed.get(i)!;
      const source = { ...object, metadata: { ...object.metadata, uid: uids[i]!, namespace: namespaceOf(i), name: nameOf(i) } };
      const data = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(`${v}-floor-${round}`)]));
      const desired = desiredSecret({ source, data, specHash: specHash(source) });
      await client.request({
        method: 'PATCH',
        path: `/api/v1/namespaces/${namespaceOf(i)}/secrets/${nameOf(i)}`,
        query: { fieldManager: 'envseal', force: true },
        body: desired,
        patchType: 'apply',
      });
      const conditions = statusConditions(
        { ready: true, reason: 'Synced', message: `Secret ${nameOf(i)} is up to date (2 keys, round ${round})` },
        undefined,
        1,
        new Date(),
      );
      await client.request({
        method: 'PATCH',
        path: `/apis/envseal.dev/v1alpha1/namespaces/${namespaceOf(i)}/envelopesecrets/${nameOf(i)}/status`,
        body: { status: { observedGeneration: 1, conditions } },
        patchType: 'merge',
      });
    };
    // Sweep: each parallelism on its own slice of objects (first writes of those Secrets).
    const levels = flags['floor-parallelism'].split(',').map(Number);
    const slice = Math.max(100, Math.floor(N / (2 * levels.length)));
    const sweep: NonNullable<SubjectResult['floor']>['sweep'] = [];
    let offset = 0;
    for (const parallelism of levels) {
      const indices = Array.from({ length: Math.min(slice, N - offset) }, (_, k) => offset + k);
      offset += indices.length;
      const t = performance.now();
      await pool(indices, parallelism, (i) => write(i, 1));
      const ms = performance.now() - t;
      sweep.push({ parallelism, objects: indices.length, ms, writesPerSecond: (2 * indices.length) / (ms / 1000) });
      log(`floor: parallelism ${parallelism}: ${indices.length} objects in ${formatMs(ms)} (${((2 * indices.length) / (ms / 1000)).toFixed(0)} writes/s)`);
    }
    const best = sweep.reduce((a, b) => (b.writesPerSecond > a.writesPerSecond ? b : a)).parallelism;
    // All N at the best parallelism; every write changes the object (round 1).
    const before = await requests();
    const step = await timedStep(() =>
      pool(
        Array.from({ length: N }, (_, i) => i),
        best,
        (i) => write(i, 2),
      ),
    );
    const apiDelta = delta(await requests(), before);
    log(
      `floor: all ${N} at parallelism ${best}: ${formatMs(step.ms)} (${((2 * N) / (step.ms / 1000)).toFixed(0)} writes/s), load ${step.load.end.join(' / ')}`,
    );
    return {
      subject: 'floor',
      count: N,
      namespaces: Math.ceil(N / PER_NS),
      setup: { createMs, namespacesMs, load: setupLoad },
      floor: { sweep, best, ms: step.ms, load: step.load, writes: 2 * N, writesPerSecond: (2 * N) / (step.ms / 1000), apiRequests: apiDelta },
      etcd: await etcdSize(cp.etcdUrl),
      flags: [`parallelism ${best}`],
    };
  }
}

async function benchFloorAlone(): Promise<SubjectResult> {
  return withCluster('floor', async (cluster) => {
    const namespacesMs = await createNamespaces(cluster.client, []);
    const { uids, ms: createMs } = await createEnvelopeSecrets(cluster.client);
    log(`floor: ${N} objects created in ${formatMs(createMs)}`);
    return benchFloor(cluster, { uids, createMs, namespacesMs, load: loadAverage() });
  });
}

// --- envseal -----------------------------------------------------------------------------

async function benchEnvseal(variant: { name: string; args: string[]; bin: string }, withFloor: boolean): Promise<SubjectResult[]> {
  const label = `envseal[${variant.name}]`;
  return withCluster(label, async (cluster) => {
    const { cp, client, requests } = cluster;
    const namespacesMs = await createNamespaces(client, ['envseal-system']);
    const { uids, ms: createMs } = await createEnvelopeSecrets(client);
    const { sealed, resealed } = await envelopeSecrets();
    const setupLoad = loadAverage();
    log(`${label}: ${N} objects in ${Math.ceil(N / PER_NS)} namespaces created in ${formatMs(createMs)}`);
    const watch = new SecretWatch({ client, labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}`, log });
    for (let i = 0; i < N; i++) watch.expect(keyOf(i), sealed.get(i)!.values);
    await watch.start();

    const port = (await freePorts(1))[0]!;
    const metricsUrl = `http://127.0.0.1:${port}/metrics`;
    const controllerFlags = [
      'controller',
      '--kubeconfig',
      cp.kubeconfigPath,
      '--controller-namespace',
      'envseal-system',
      '--metrics-address',
      `127.0.0.1:${port}`,
      '--no-leader-elect',
      '--resync',
      `${RESYNC_S}s`,
      '--kms-endpoint',
      kms.endpoint,
      '--region',
      kms.region,
      ...variant.args,
    ];
    const before = await requests();
    log(`${label}: cold start`);
    const loadStart = loadAverage();
    const started = performance.now();
    const running = launch(
      spawn(process.execPath, [...flags['node-options'].split(' ').filter(Boolean), variant.bin, ...controllerFlags], {
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          TMPDIR: process.env.TMPDIR,
          AWS_ACCESS_KEY_ID: kms.credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: kms.credentials.secretAccessKey,
          AWS_EC2_METADATA_DISABLED: 'true',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
      path.join(logDir, `envseal-${variant.name}.log`),
    );
    let lastReport = 0;
    let changeDuringCold: { ms: number; correctAtChange: number; correctAtSecret: number } | undefined;
    const coldChange = (async () => {
      await sleep(COLD_CHANGE_AFTER_MS);
      const update = resealed.get(duringCold)!;
      watch.expect(keyOf(duringCold), update.values);
      const correctAtChange = watch.correct.size;
      const t0 = performance.now();
      await client.request({
        method: 'PATCH',
        path: `/apis/envseal.dev/v1alpha1/namespaces/${namespaceOf(duringCold)}/envelopesecrets/${nameOf(duringCold)}`,
        patchType: 'merge',
        body: { spec: update.object.spec },
      });
      if (await watch.until(() => watch.correct.has(keyOf(duringCold)), TIMEOUT_MS)) {
        changeDuringCold = { ms: performance.now() - t0, correctAtChange, correctAtSecret: watch.correct.size };
      }
      log(
        `${label}: a change ${formatMs(COLD_CHANGE_AFTER_MS)} into the cold start: ${changeDuringCold ? `Secret correct in ${formatMs(changeDuringCold.ms)} (${correctAtChange} Secrets correct at the change, ${changeDuringCold.correctAtSecret} at its Secret)` : 'not correct before the timeout'}`,
      );
    })();
    const converged = await watch.until(() => {
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        log(`${label}: ${watch.correct.size}/${N} correct after ${formatMs(performance.now() - started)}, load ${loadAverage().join(' / ')}`);
      }
      return watch.correct.size === N;
    }, TIMEOUT_MS);
    const coldMs = performance.now() - started;
    // Read together with the KMS counters: in a capped run the controller goes on writing
    // Secrets during the wait for the status writes below (this once made the KMS calls
    // look up to 20 % fewer than the Secrets already correct).
    const correctAtCap = watch.correct.size;
    await coldChange;
    const cpuSeconds = cpuSecondsOf(running.child.pid);
    running.rss.sample();
    const coldLoadEnd = loadAverage();
    const afterCold = await scrape(metricsUrl);
    // The status writes may trail the last Secret: counted once the queue is empty.
    for (let i = 0; i < 60 && sumOf(await scrape(metricsUrl), 'envseal_workqueue_depth') > 0; i++) await sleep(500);
    const coldRequests = delta(await requests(), before);
    const kmsCold = byLabel(afterCold, 'envseal_kms_requests_total', 'operation');
    const unwrapCold = sumOf(afterCold, 'envseal_unwrap_attempts_total');
    const result: SubjectResult = {
      subject: `envseal ${variant.name}`,
      count: N,
      namespaces: Math.ceil(N / PER_NS),
      setup: { createMs, namespacesMs, load: setupLoad },
      coldStart: {
        converged,
        ms: coldMs,
        load: { start: loadStart, end: coldLoadEnd },
        correct: correctAtCap,
        peakRssBytes: running.rss.peak,
        cpuSeconds,
        apiRequests: coldRequests,
        // The requests were counted after the wait, so per Secret correct by then.
        apiRequestsPerObject: total(coldRequests) / Math.max(1, watch.correct.size),
        kms: kmsCold,
        unwrapAttempts: unwrapCold,
        dekCache: byLabel(afterCold, 'envseal_dek_cache_total', 'result'),
        reconciles: byLabel(afterCold, 'envseal_reconcile_total', 'result'),
        ...(changeDuringCold ? { changeDuring: changeDuringCold } : {}),
      },
      etcd: { dbBytes: 0, inUseBytes: 0, keys: 0 },
      ...(variant.bin === ENVSEAL_BIN ? {} : { note: `envseal build: ${variant.bin}` }),
      flags: controllerFlags.slice(1).map((f) => (f === cp.kubeconfigPath ? 'KUBECONFIG' : f === kms.endpoint ? 'LOCAL_KMS_URL' : f)),
    };
    log(
      `${label}: ${converged ? 'converged' : 'NOT converged'} in ${formatMs(coldMs)} (${correctAtCap}/${N}); peak RSS ${formatBytes(running.rss.peak)}; CPU ${cpuSeconds} s; KMS ${JSON.stringify(kmsCold)}; API requests ${JSON.stringify(coldRequests)} (${result.coldStart!.apiRequestsPerObject.toFixed(2)}/object); load ${coldLoadEnd.join(' / ')}`,
    );
    if (converged) {
      // One resync pass: every object reconciled once more, unchanged, with no KMS call.
      const unchanged = (m: Map<string, number>) => sumOf(m, 'envseal_reconcile_total', (l) => l.includes('result="unchanged"'));
      const resyncBefore = await scrape(metricsUrl);
      const requestsBefore = await requests();
      let changeDuring: { ms: number; reconcilesBefore: number; reconcilesAtSecret: number } | undefined;
      let passStarted = 0;
      let passMs = 0;
      const step = await timedStep(async () => {
        const deadline = Date.now() + (RESYNC_S * 3 + 120) * 1000;
        let m = resyncBefore;
        // As soon as the pass has started: a change, which should not wait for the pass.
        while (Date.now() < deadline && unchanged(m) - unchanged(resyncBefore) < 1) {
          await sleep(100);
          m = await scrape(metricsUrl);
        }
        // The step's own time includes the wait for the next resync tick; the pass is timed from here.
        passStarted = performance.now();
        const update = resealed.get(duringResync)!;
        watch.expect(keyOf(duringResync), update.values);
        const reconcilesBefore = unchanged(await scrape(metricsUrl)) - unchanged(resyncBefore);
        const t0 = performance.now();
        await client.request({
          method: 'PATCH',
          path: `/apis/envseal.dev/v1alpha1/namespaces/${namespaceOf(duringResync)}/envelopesecrets/${nameOf(duringResync)}`,
          patchType: 'merge',
          body: { spec: update.object.spec },
        });
        if (await watch.until(() => watch.correct.has(keyOf(duringResync)), 120_000)) {
          const ms = performance.now() - t0;
          changeDuring = { ms, reconcilesBefore, reconcilesAtSecret: unchanged(await scrape(metricsUrl)) - unchanged(resyncBefore) };
        }
        while (Date.now() < deadline && unchanged(m) - unchanged(resyncBefore) < N - 1) {
          await sleep(250);
          m = await scrape(metricsUrl);
        }
        passMs = performance.now() - passStarted;
        return m;
      });
      result.resync = {
        ms: step.ms,
        passMs,
        load: step.load,
        reconciles: unchanged(step.value) - unchanged(resyncBefore),
        kms: delta(byLabel(step.value, 'envseal_kms_requests_total', 'operation'), byLabel(resyncBefore, 'envseal_kms_requests_total', 'operation')),
        apiRequests: delta(await requests(), requestsBefore),
        ...(changeDuring ? { changeDuring } : {}),
      };
      log(
        `${label}: resync: ${result.resync.reconciles} unchanged reconciles, KMS ${JSON.stringify(result.resync.kms)}, API ${JSON.stringify(result.resync.apiRequests)}`,
      );
      log(
        `${label}: a change during the resync pass: ${changeDuring ? `Secret correct in ${formatMs(changeDuring.ms)} (pass reconciles: ${changeDuring.reconcilesBefore} at the change, ${changeDuring.reconcilesAtSecret} at its Secret)` : 'not correct within 120 s'}`,
      );

      log(`${label}: ${CHANGES} changes`);
      const kmsBefore = byLabel(await scrape(metricsUrl), 'envseal_kms_requests_total', 'operation');
      const latencies: number[] = [];
      const changesStep = await timedStep(async () => {
        for (const i of changed) {
          const update = resealed.get(i)!;
          watch.expect(keyOf(i), update.values);
          const t0 = performance.now();
          await client.request({
            method: 'PATCH',
            path: `/apis/envseal.dev/v1alpha1/namespaces/${namespaceOf(i)}/envelopesecrets/${nameOf(i)}`,
            patchType: 'merge',
            body: { spec: update.object.spec },
          });
          if (!(await watch.until(() => watch.correct.has(keyOf(i)), 60_000))) throw new Error(`${label}: ${keyOf(i)} was not updated within 60 s`);
          latencies.push(performance.now() - t0);
        }
      });
      const kmsAfter = byLabel(await scrape(metricsUrl), 'envseal_kms_requests_total', 'operation');
      result.changes = { n: CHANGES, ms: changesStep.ms, load: changesStep.load, summary: summarize(latencies), kms: delta(kmsAfter, kmsBefore) };
      log(
        `${label}: change latency p50 ${formatMs(result.changes.summary.median)}, p99 ${formatMs(result.changes.summary.p99)}, load ${changesStep.load.end.join(' / ')}`,
      );
    }
    result.peakRssBytes = await running.stop();
    await watch.stop();
    result.etcd = await etcdSize(cp.etcdUrl);
    log(`${label}: etcd ${formatBytes(result.etcd.dbBytes)} (in use ${formatBytes(result.etcd.inUseBytes)}, ${result.etcd.keys} keys)`);
    // The floor on the same API server and etcd, the controller stopped.
    if (!withFloor) return [result];
    return [result, await benchFloor(cluster, { uids, createMs, namespacesMs, load: setupLoad })];
  });
}

// --- Sealed Secrets ----------------------------------------------------------------------

async function benchSealedSecrets(binary: string): Promise<SubjectResult> {
  return withCluster('sealed-secrets', async ({ cp, client, kubectl, requests }) => {
    await kubectl(['apply', '--server-side', '-f', await sealedSecretsCrdPath()]);
    await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/sealedsecrets.bitnami.com']);
    const home = 'sealed-secrets-system';
    const namespacesMs = await createNamespaces(client, [home]);
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
    const { status } = await client.request<{ status: { token: string } }>({
      method: 'POST',
      path: '/api/v1/namespaces/kube-system/serviceaccounts/sealed-secrets-bench/token',
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 86400 } },
    });
    const ssFlags = (listen: number, metrics: number) => [
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
          dir: path.join(cp.dir, `ss-${label}`),
          apiServerPort: cp.ports.apiServer,
          token: status.token,
          caCertPem: readFileSync(cp.pki.caCert, 'utf8'),
          namespace: home,
          args: ssFlags(listen!, metrics!),
        }),
        path.join(logDir, `sealed-secrets-${label}.log`),
      );
    };
    log('sealed-secrets: first start, to generate its key');
    const first = await start('keygen');
    let certPem: string | undefined;
    for (let i = 0; i < 600 && !certPem; i++) {
      const keys = await client.request<{ items: { data?: Record<string, string> }[] }>({
        method: 'GET',
        path: `/api/v1/namespaces/${home}/secrets`,
        query: { labelSelector: 'sealedsecrets.bitnami.com/sealed-secrets-key=active' },
      });
      const crt = keys.items[0]?.data?.['tls.crt'];
      if (crt) certPem = Buffer.from(crt, 'base64').toString();
      else await sleep(100);
    }
    await first.stop();
    if (!certPem) throw new Error(`sealed-secrets: no key appeared in ${home}`);
    const publicKey = createPublicKey(certPem);
    const watch = new SecretWatch({ client, log });
    const objects: Record<string, unknown>[] = [];
    for (let i = 0; i < N; i++) {
      const values = valuesOf(i, 1);
      objects.push(sealedSecret(publicKey, namespaceOf(i), nameOf(i), values));
      watch.expect(keyOf(i), values);
    }
    const t = performance.now();
    await pool(objects, CONCURRENCY, async (object, i) => {
      await client.request({ method: 'POST', path: `/apis/bitnami.com/v1alpha1/namespaces/${namespaceOf(i)}/sealedsecrets`, body: object });
    });
    const createMs = performance.now() - t;
    const setupLoad = loadAverage();
    log(`sealed-secrets: ${N} objects created in ${formatMs(createMs)}`);
    await watch.start();
    const before = await requests();
    log('sealed-secrets: cold start');
    const loadStart = loadAverage();
    const started = performance.now();
    const running = await start('run');
    let lastReport = 0;
    const converged = await watch.until(() => {
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        log(`sealed-secrets: ${watch.correct.size}/${N} correct after ${formatMs(performance.now() - started)}, load ${loadAverage().join(' / ')}`);
      }
      return watch.correct.size === N;
    }, SS_TIMEOUT_MS);
    const coldMs = performance.now() - started;
    const cpuSeconds = cpuSecondsOf(running.child.pid);
    running.rss.sample();
    const coldRequests = delta(await requests(), before);
    const correct = watch.correct.size;
    const result: SubjectResult = {
      subject: 'Sealed Secrets',
      count: N,
      namespaces: Math.ceil(N / PER_NS),
      setup: { createMs, namespacesMs, load: setupLoad },
      coldStart: {
        converged,
        ms: coldMs,
        load: { start: loadStart, end: loadAverage() },
        correct,
        peakRssBytes: running.rss.peak,
        cpuSeconds,
        apiRequests: coldRequests,
        apiRequestsPerObject: total(coldRequests) / Math.max(1, correct),
      },
      etcd: { dbBytes: 0, inUseBytes: 0, keys: 0 },
      flags: ssFlags(0, 0).map((f) => f.replace(/127\.0\.0\.1:0/, '127.0.0.1:PORT')),
    };
    if (!converged) result.note = `stopped after ${formatMs(coldMs)}: ${correct} of ${N} (${(correct / (coldMs / 1000)).toFixed(1)}/s)`;
    log(
      `sealed-secrets: ${converged ? 'converged' : 'NOT converged'} in ${formatMs(coldMs)} (${correct}/${N}); peak RSS ${formatBytes(running.rss.peak)}; CPU ${cpuSeconds} s; API ${JSON.stringify(coldRequests)}`,
    );
    if (converged) {
      const latencies: number[] = [];
      const step = await timedStep(async () => {
        for (const i of changed) {
          const values = valuesOf(i, 2);
          const spec = (sealedSecret(publicKey, namespaceOf(i), nameOf(i), values) as { spec: unknown }).spec;
          watch.expect(keyOf(i), values);
          const t0 = performance.now();
          await client.request({
            method: 'PATCH',
            path: `/apis/bitnami.com/v1alpha1/namespaces/${namespaceOf(i)}/sealedsecrets/${nameOf(i)}`,
            patchType: 'merge',
            body: { spec },
          });
          if (!(await watch.until(() => watch.correct.has(keyOf(i)), 60_000))) throw new Error(`sealed-secrets: ${keyOf(i)} was not updated within 60 s`);
          latencies.push(performance.now() - t0);
        }
      });
      result.changes = { n: CHANGES, ms: step.ms, load: step.load, summary: summarize(latencies) };
      log(`sealed-secrets: change latency p50 ${formatMs(result.changes.summary.median)}, p99 ${formatMs(result.changes.summary.p99)}`);
    }
    result.peakRssBytes = await running.stop();
    await watch.stop();
    result.etcd = await etcdSize(cp.etcdUrl);
    return result;
  });
}

// --- run ---------------------------------------------------------------------------------

try {
  if (SUBJECTS.has('floor') && !SUBJECTS.has('envseal')) {
    results.push(await benchFloorAlone());
    save();
  }
  if (SUBJECTS.has('envseal')) {
    for (const [index, variant] of VARIANTS.entries()) {
      results.push(...(await benchEnvseal(variant, index === 0 && SUBJECTS.has('floor'))));
      save();
    }
  }
  if (SUBJECTS.has('sealed-secrets')) {
    if (peers?.controller.path) {
      results.push(await benchSealedSecrets(peers.controller.path));
      save();
    } else notes.push(`The Sealed Secrets controller could not be built: ${peers?.controller.error}`);
  }
} finally {
  kmsProvider.close();
  await cleanup();
  save();
}

const line = (r: SubjectResult): string => {
  const c = r.coldStart;
  const cold = c
    ? c.converged
      ? formatMs(c.ms)
      : `not within ${formatMs(c.ms)} (${c.correct} done)`
    : r.floor
      ? `${formatMs(r.floor.ms)} (p=${r.floor.best})`
      : '';
  const load = c ? `${c.load.start[0]} → ${c.load.end[0]}` : r.floor ? `${r.floor.load.start[0]} → ${r.floor.load.end[0]}` : '';
  const requests = c ? c.apiRequestsPerObject.toFixed(2) : r.floor ? (total(r.floor.apiRequests) / N).toFixed(2) : '';
  const kmsCalls = c?.kms ? `${total(c.kms)} / ${c.unwrapAttempts}` : '—';
  const resync = r.resync
    ? `${r.resync.passMs === undefined ? formatMs(r.resync.ms) : `${formatMs(r.resync.passMs)} (step ${formatMs(r.resync.ms)})`}, ${total(r.resync.kms)} KMS`
    : '—';
  const changes = r.changes ? `${formatMs(r.changes.summary.median)} / ${formatMs(r.changes.summary.p99)}` : '—';
  return `| ${r.subject} | ${r.count} | ${cold} | ${load} | ${r.peakRssBytes ? formatBytes(Math.max(r.peakRssBytes, c?.peakRssBytes ?? 0)) : '—'} | ${c ? `${c.cpuSeconds.toFixed(1)} s` : '—'} | ${kmsCalls} | ${requests} | ${resync} | ${changes} | ${formatBytes(r.etcd.dbBytes)} |`;
};
process.stdout.write(
  [
    `Machine: ${describeMachine(machine)}`,
    '',
    `Command: \`${command}\``,
    '',
    '| Subject | objects | cold start (floor: all writes) | load (1 min) start → end | peak RSS | CPU | KMS calls / unwrap attempts | API requests per object | resync pass | change → Secret p50 / p99 | etcd db |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map(line),
    ...notes.map((n) => `\nNote: ${n}`),
    '',
  ].join('\n'),
);
process.exit(0);
