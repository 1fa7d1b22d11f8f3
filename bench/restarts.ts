// Restart benchmark: what the restart window costs and saves when every object of the
// 1,000-object benchmark is rotated at once and one Deployment reads all their Secrets.
//
//   npx node bench/restarts.ts [--count 1000] [--windows 0,10s] [--out restarts]
//
// On a real control plane (test/harness/control-plane.ts, kube-controller-manager
// included, so a rollout is a new ReplicaSet): N EnvelopeSecrets sealed for the
// controller's age identity, each listing Deployment web in restartWorkloads; web reads
// every Secret (envFrom). For each window the controller (bin/envseal.js, its own
// process) is started with --restart-window, all N are rotated at once (sealed
// beforehand, applied 16 at a time), and until every object is Synced again with its new
// value and the Deployment has stopped changing, the benchmark counts:
//   - the controller's CPU time (utime + stime of its process),
//   - the requests the API server served, by verb and resource (apiserver_request_total),
//   - the rollouts (the Deployment's metadata.generation) and the ReplicaSets made.
// Results: bench/results/NAME.json and a table on stderr (docs/benchmarks.md).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import type { EnvelopeSecret } from '../src/api/types.ts';
import { systemRandom } from '../src/envelope/random.ts';
import { KubeClient, paths } from '../src/kube/client.ts';
import { ProviderRegistry } from '../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../src/sealing/seal.ts';
import { freePorts, startControlPlane } from '../test/harness/control-plane.ts';
import { pool } from './lib/cluster-metrics.ts';
import { repoRoot } from './lib/peers.ts';
import { describeMachine, machineInfo, sleep } from './lib/proc.ts';

const { values: flags } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    windows: { type: 'string', default: '0,10s' },
    out: { type: 'string', default: 'restarts' },
  },
});
const COUNT = Number(flags.count);
const WINDOWS = flags.windows.split(',');
const ENVSEAL_BIN = path.join(repoRoot, 'bin/envseal.js');
const NS = 'bench';
const CONTROLLER_NS = 'envseal-system';
const NAMES = Array.from({ length: COUNT }, (_, i) => `svc-${String(i).padStart(4, '0')}`);
const log = (message: string) => process.stderr.write(`[restart-bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);

function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** apiserver_request_total summed by "VERB resource[/subresource]" (requests the API server served). */
async function apiRequests(kubectlPath: string, kubeconfig: string): Promise<Map<string, number>> {
  const text = await kubectl(kubectlPath, kubeconfig, ['get', '--raw', '/metrics']);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (labels.verb === 'WATCH') continue;
    const key = `${labels.verb} ${labels.resource}${labels.subresource ? `/${labels.subresource}` : ''}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of after) {
    const d = value - (before.get(key) ?? 0);
    if (d > 0) out[key] = d;
  }
  return out;
}

async function main(): Promise<void> {
  log(describeMachine(machineInfo()));
  const cluster = await startControlPlane();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(cluster.kubeconfigPath);
  const client = new KubeClient(kubeConfig);
  let controller: { child: ChildProcess; exited: Promise<void> } | undefined;
  const results: unknown[] = [];
  const stop = async () => {
    controller?.child.kill('SIGTERM');
    await controller?.exited;
    controller = undefined;
  };

  try {
    await kubectl(cluster.kubectlPath, cluster.kubeconfigPath, ['apply', '--server-side', '-f', path.join(repoRoot, 'crds/envelopesecrets.envseal.dev.yaml')]);
    await kubectl(cluster.kubectlPath, cluster.kubeconfigPath, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/envelopesecrets.envseal.dev']);
    for (const name of [NS, CONTROLLER_NS]) await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { metadata: { name } } });
    await client.request({
      method: 'POST',
      path: `/apis/apps/v1/namespaces/${NS}/deployments`,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { containers: [{ name: 'web', image: 'example.invalid/web:1', envFrom: NAMES.map((name) => ({ secretRef: { name } })) }] },
          },
        },
      },
    });

    const start = async (window: string) => {
      const [port] = (await freePorts(1)) as [number];
      const child = spawn(
        process.execPath,
        [
          ENVSEAL_BIN,
          'controller',
          '--kubeconfig',
          cluster.kubeconfigPath,
          '--namespaces',
          NS,
          '--controller-namespace',
          CONTROLLER_NS,
          '--metrics-address',
          `127.0.0.1:${port}`,
          '--no-leader-elect',
          `--restart-window=${window}`,
          '--log-level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      return { child, exited };
    };
    controller = await start('10s');
    const recipient = await waitFor('the age recipient', async () => {
      try {
        return (await client.request<{ data: { recipient: string } }>({ method: 'GET', path: paths.configMap(CONTROLLER_NS, 'envseal-age-recipient') })).data
          .recipient;
      } catch {
        return undefined;
      }
    });
    let round = 0;
    const rotate = async () => {
      round++;
      const sealed = await Promise.all(NAMES.map((name) => seal(recipient, name, `value-${round}-${name}`)));
      const started = performance.now();
      await pool(sealed, 16, async (object) => {
        await client.request({
          method: 'PATCH',
          path: paths.envelopeSecret(NS, object.metadata.name),
          query: { fieldManager: 'bench', force: true },
          body: object,
          patchType: 'apply',
        });
      });
      return started;
    };
    const settled = async () => {
      const deployment = () => client.request<{ metadata: { generation: number } }>({ method: 'GET', path: `/apis/apps/v1/namespaces/${NS}/deployments/web` });
      await waitFor('every object Synced with its new value', async () => {
        const listed = await client.request<{ items: EnvelopeSecret[] }>({ method: 'GET', path: paths.envelopeSecrets(NS) });
        const secrets = await client.request<{ items: { metadata: { name: string }; data?: Record<string, string> }[] }>({
          method: 'GET',
          path: paths.secrets(NS),
        });
        const values = new Map(secrets.items.map((s) => [s.metadata.name, Buffer.from(s.data?.VALUE ?? '', 'base64').toString()]));
        const synced = listed.items.filter(
          (o) =>
            o.status?.observedGeneration === o.metadata.generation &&
            o.status?.conditions?.find((c) => c.type === 'Ready')?.reason === 'Synced' &&
            values.get(o.metadata.name) === `value-${round}-${o.metadata.name}`,
        );
        return synced.length === COUNT ? true : undefined;
      });
      // The Deployment has stopped changing: the same generation for 3 s.
      let last = (await deployment()).metadata.generation;
      for (let still = 0; still < 3; ) {
        await sleep(1000);
        const now = (await deployment()).metadata.generation;
        still = now === last ? still + 1 : 0;
        last = now;
      }
      return last;
    };

    // Every object created and restarted for once, without measuring.
    log(`creating ${COUNT} EnvelopeSecrets`);
    await rotate();
    await settled();
    await stop();

    for (const window of WINDOWS) {
      controller = await start(window);
      // Its caches and the first look at every (unchanged) object, before measuring.
      await sleep(15_000);
      const generationBefore = (
        await client.request<{ metadata: { generation: number } }>({ method: 'GET', path: `/apis/apps/v1/namespaces/${NS}/deployments/web` })
      ).metadata.generation;
      const replicaSetsBefore = await replicaSets(client);
      const requestsBefore = await apiRequests(cluster.kubectlPath, cluster.kubeconfigPath);
      const cpuBefore = cpuSecondsOf(controller.child.pid!);
      log(`window ${window}: rotating ${COUNT} at once`);
      const started = await rotate();
      const generationAfter = await settled();
      const seconds = (performance.now() - started) / 1000;
      const cpuSeconds = cpuSecondsOf(controller.child.pid!) - cpuBefore;
      const requests = delta(await apiRequests(cluster.kubectlPath, cluster.kubeconfigPath), requestsBefore);
      const result = {
        window,
        count: COUNT,
        rollouts: generationAfter - generationBefore,
        replicaSetsCreated: (await replicaSets(client)) - replicaSetsBefore,
        seconds,
        controllerCpuSeconds: cpuSeconds,
        requests,
      };
      log(JSON.stringify(result));
      results.push(result);
      await stop();
    }
    const out = path.join(repoRoot, 'bench/results', `${flags.out}.json`);
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ machine: machineInfo(), at: new Date().toISOString(), results }, null, 2)}\n`);
    log(`wrote ${out}`);
  } finally {
    await stop();
    await cluster.stop();
  }
}

/** ReplicaSets created so far for web: the highest revision annotation. */
async function replicaSets(client: KubeClient): Promise<number> {
  const listed = await client.request<{ items: { metadata: { annotations?: Record<string, string> } }[] }>({
    method: 'GET',
    path: `/apis/apps/v1/namespaces/${NS}/replicasets`,
  });
  return Math.max(0, ...listed.items.map((rs) => Number(rs.metadata.annotations?.['deployment.kubernetes.io/revision'] ?? 0)));
}

function seal(recipient: string, name: string, value: string): Promise<EnvelopeSecret> {
  return sealEnvelopeSecret({
    values: { VALUE: Buffer.from(value) },
    binding: { scope: 'strict', namespace: NS, name },
    targets: [{ provider: 'age', target: recipient }],
    providers: new ProviderRegistry({}),
    random: systemRandom,
  }).then((object) => ({ ...object, spec: { ...object.spec, restartWorkloads: [{ kind: 'Deployment' as const, name: 'web' }] } }));
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 15 * 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

function kubectl(bin: string, kubeconfig: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [...args, '--kubeconfig', kubeconfig], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`kubectl ${args.join(' ')} exited ${code}`))));
  });
}

await main();
