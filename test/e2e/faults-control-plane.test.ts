// Faults of the control plane while 1,000 EnvelopeSecrets are being reconciled: the
// controller runs as a process (as in a pod, restarted if it exits) and talks to the
// real kube-apiserver through a TCP proxy that can cut its connections. After each
// fault every Secret must be exactly right and every status Ready=True; while the fault
// lasts no Secret may ever hold anything but its previous or its new values.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgeProvider } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { clusterControl, sharedCluster, uniqueName } from '../harness/cluster.ts';
import {
  compactEtcd,
  FaultBench,
  inParallel,
  keyOf,
  kubeconfigFor,
  type LiveSecret,
  listAll,
  scratchDir,
  sleep,
  startTcpProxy,
  SupervisedController,
  type TcpProxy,
  scanControllerOutput,
} from '../harness/faults.ts';
import { declaringDataKeys } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, installCrd, paths, publishedRecipient } from '../harness/kube.ts';
import { KubeApiError } from '../../src/kube/client.ts';

const COUNT = 1000;
/** A round: sealing, applying, the fault and convergence. */
const TEST_MS = 600_000;
const client = adminClient();
const controllerNamespace = uniqueName('envseal-faults-cp');
const namespaces = [uniqueName('faults-cp-a'), uniqueName('faults-cp-b')];
let proxy: TcpProxy;
let controller: SupervisedController;
let bench: FaultBench;

beforeAll(async () => {
  await installCrd();
  for (const ns of [controllerNamespace, ...namespaces]) await createNamespace(client, ns);
  const apiPort = Number(new URL(sharedCluster().server).port);
  proxy = await startTcpProxy(apiPort);
  const kubeconfig = kubeconfigFor(`https://127.0.0.1:${proxy.port}`, path.join(scratchDir('control-plane'), 'kubeconfig'));
  controller = new SupervisedController({
    kubeconfig,
    namespace: controllerNamespace,
    namespaces,
    identity: 'faults-control-plane-0',
    // A lease that outlives these outages, so that one process lives through all of them
    // (its watches, retries and relists are what is tested here; faults-controller
    // covers processes dying). The supervisor would restart it if it exited anyway.
    args: ['--workers', '8', '--lease-duration', '120s', '--renew-deadline', '100s', '--retry-period', '2s', '--log-level', 'info'],
  });
  await controller.start();
  const recipient = await publishedRecipient(client, controllerNamespace);
  bench = new FaultBench({
    client,
    tag: 'faults-control-plane',
    load: {
      namespaces,
      count: COUNT,
      prefix: 'load',
      targets: [{ provider: 'age', target: recipient }],
      providers: ProviderRegistry.of([declaringDataKeys(createAgeProvider({}))]),
    },
    synced: async () => (await controller.current.metric('envseal_reconcile_total', { result: 'synced' })) ?? 0,
  });
});

afterAll(async () => {
  await controller?.stop();
  await proxy?.close();
  if (bench?.figures.length) process.stderr.write(`[faults-control-plane] figures:\n  ${bench.figures.join('\n  ')}\n`);
});

describe('control plane faults with 1,000 EnvelopeSecrets', () => {
  it(
    'materializes 1,000 EnvelopeSecrets created at once',
    async () => {
      await bench.initial();
      expect(controller.restarts).toBe(0);
    },
    TEST_MS,
  );

  it(
    'survives kube-apiserver restarted mid-reconcile',
    async () => {
      await bench.faultRound('kube-apiserver restart', async () => {
        await clusterControl().restartApiServer();
      });
      expect(controller.restarts).toBe(0);
    },
    TEST_MS,
  );

  it(
    'survives etcd restarted mid-reconcile',
    async () => {
      await bench.faultRound('etcd restart', async () => {
        await clusterControl().restartEtcd();
      });
      expect(controller.restarts).toBe(0);
    },
    TEST_MS,
  );

  it(
    'survives its watch connections cut, again and again',
    async () => {
      const before = (await controller.current.metric('envseal_watch_restarts_total')) ?? 0;
      const cutsBefore = proxy.cuts;
      let cutsWithConnections = 0;
      await bench.faultRound('every connection to the API server cut 8 times, 1.5 s apart', async () => {
        for (let i = 0; i < 8; i++) {
          // Each time, the controller had connections open again (it did not hang).
          if (proxy.open > 0) cutsWithConnections++;
          proxy.cutAll();
          await sleep(1500);
        }
      });
      expect(cutsWithConnections).toBe(8);
      expect(proxy.cuts - cutsBefore).toBeGreaterThanOrEqual(8);
      // Every cut ended the watches; the reflectors noticed and resumed.
      expect(((await controller.current.metric('envseal_watch_restarts_total')) ?? 0) - before).toBeGreaterThanOrEqual(1);
      expect(controller.restarts).toBe(0);
    },
    TEST_MS,
  );

  it(
    'relists after its resourceVersion expired (410 Gone) and repairs what changed meanwhile',
    async () => {
      const process0 = controller.current;
      const goneBefore = (await process0.metric('envseal_watch_restarts_total', { reason: 'gone' })) ?? 0;
      const victims: string[] = [];
      await bench.faultRound(
        '410 Gone (controller cut off; 100 of its Secrets deleted; etcd compacted; API server restarted)',
        async () => {
          proxy.pause();
          // While the controller is cut off: delete 100 of its Secrets (the rest of the
          // round's changes are still being applied), then make the history it holds expire.
          const secrets = await listAll<LiveSecret>(client, paths.secrets, namespaces, { labelSelector: 'app.kubernetes.io/managed-by=envseal' });
          for (const secret of secrets.slice(0, 100)) victims.push(keyOf(secret.metadata));
          await inParallel(secrets.slice(0, 100), 16, async (secret) => {
            await client.request({ method: 'DELETE', path: paths.secret(secret.metadata.namespace, secret.metadata.name) }).catch((error: unknown) => {
              if (!(error instanceof KubeApiError && error.notFound)) throw error;
            });
          });
          await compactEtcd();
          await clusterControl().restartApiServer();
          proxy.resume();
        },
        { startAfterSynced: 200 },
      );
      expect(victims.length).toBe(100);
      // The same process saw its watch expire and relisted (not a restart from scratch).
      expect(controller.current).toBe(process0);
      expect(((await process0.metric('envseal_watch_restarts_total', { reason: 'gone' })) ?? 0) - goneBefore).toBeGreaterThanOrEqual(1);
      expect(process0.logs.some((l) => l.includes('resourceVersion expired (410 Gone); relisting'))).toBe(true);
    },
    TEST_MS,
  );

  it(
    'converges despite 409 conflicts from concurrent edits of its Secrets',
    async () => {
      const editors = { puts: 0, conflicts: 0, patches: 0 };
      const logsBefore = controller.current.logs.length;
      await bench.faultRound(
        'concurrent edits for 20 s: 8 writers on 5 of the Secrets (PUT with resourceVersion, merge patches adding keys) while the controller repairs them',
        async () => {
          const hot = [...bench.expected.values()].slice(0, 5);
          const stopAt = Date.now() + 20_000;
          const editor = async () => {
            while (Date.now() < stopAt) {
              const item = hot[Math.floor(Math.random() * hot.length)]!;
              const path = paths.secret(item.namespace, item.name);
              try {
                if (Math.random() < 0.5) {
                  // Someone else's key and value: the controller must remove and restore them.
                  editors.patches++;
                  await client.request({
                    method: 'PATCH',
                    path,
                    patchType: 'merge',
                    body: {
                      data: {
                        [`EXTRA_${editors.patches % 7}`]: Buffer.from('added by someone else').toString('base64'),
                        USER: Buffer.from('edited').toString('base64'),
                      },
                      metadata: { labels: { 'fault-test/round': 'edited' } },
                    },
                  });
                } else {
                  const live = await client.request<LiveSecret>({ method: 'GET', path });
                  editors.puts++;
                  await client.request({ method: 'PUT', path, body: { ...live, data: { ...live.data, USER: Buffer.from('overwritten').toString('base64') } } });
                }
              } catch (error) {
                if (error instanceof KubeApiError && error.conflict) editors.conflicts++;
                else if (!(error instanceof KubeApiError && error.notFound)) throw error;
              }
            }
          };
          await Promise.all(Array.from({ length: 8 }, editor));
        },
        { sampleNeverWrong: false },
      );
      const failures = controller.current.logs.slice(logsBefore).filter((l) => l.includes('"reconcile failed"'));
      const reasons: Record<string, number> = {};
      for (const line of failures) {
        const reason = (JSON.parse(line) as { reason?: string }).reason ?? 'unknown';
        reasons[reason] = (reasons[reason] ?? 0) + 1;
      }
      bench.figure(
        `concurrent edits: ${editors.puts} PUTs (${editors.conflicts} answered 409 Conflict), ${editors.patches} merge patches; the controller's failed attempts meanwhile, by reason: ${JSON.stringify(reasons)}`,
      );
      expect(editors.puts + editors.patches).toBeGreaterThan(100);
      expect(editors.conflicts).toBeGreaterThan(0);
      expect(controller.restarts).toBe(0);
    },
    TEST_MS,
  );

  it('leaked no value or data key into its logs or metrics during the faults', async () => {
    await controller.current.recordMetrics();
    const scan = await scanControllerOutput({ logs: controller.allLogs(), metricsUrl: controller.current.metricsUrl });
    expect(scan.keys).toBeGreaterThanOrEqual(COUNT * bench.rounds);
    expect(scan.lines).toBeGreaterThan(COUNT);
    expect(scan.findings).toEqual([]);
  });
});
