// The controller process dies while 1,000 EnvelopeSecrets are being reconciled: SIGKILL
// mid-reconcile and a restart (as the kubelet restarts a container), and the leader
// killed for good while a standby runs (the standby must take over within the lease
// terms). After each, every Secret must be exactly right and every status Ready=True.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgeProvider } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { paths } from '../../src/kube/client.ts';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { type ControllerProcess, FaultBench, sleep, SupervisedController, scanControllerOutput } from '../harness/faults.ts';
import { declaringDataKeys } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, publishedRecipient } from '../harness/kube.ts';

const COUNT = 1000;
const TEST_MS = 600_000;
// The defaults of `envseal controller` (and of client-go).
const LEASE_MS = 15_000;
const RETRY_MS = 2_000;
const client = adminClient();
const controllerNamespace = uniqueName('envseal-faults-ctl');
const namespaces = [uniqueName('faults-ctl-a'), uniqueName('faults-ctl-b')];
let replicaA: SupervisedController;
let replicaB: SupervisedController | undefined;
let leader: SupervisedController;
let bench: FaultBench;

interface Lease {
  spec: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

const replica = (identity: string) =>
  new SupervisedController({
    kubeconfig: sharedCluster().kubeconfigPath,
    namespace: controllerNamespace,
    namespaces,
    identity,
    args: ['--workers', '8', '--log-level', 'info'],
  });

/** When a process first logged a message (pino's time field). */
function loggedAt(process: ControllerProcess, message: string): number | undefined {
  for (const line of process.logs) {
    if (!line.includes(`"msg":"${message}"`)) continue;
    return (JSON.parse(line) as { time: number }).time;
  }
  return undefined;
}

const becameLeaderAt = (process: ControllerProcess) => loggedAt(process, 'became leader');

beforeAll(async () => {
  await installCrd();
  for (const ns of [controllerNamespace, ...namespaces]) await createNamespace(client, ns);
  replicaA = replica('replica-a');
  await replicaA.start();
  leader = replicaA;
  const recipient = await publishedRecipient(client, controllerNamespace);
  bench = new FaultBench({
    client,
    tag: 'faults-controller',
    load: {
      namespaces,
      count: COUNT,
      prefix: 'load',
      targets: [{ provider: 'age', target: recipient }],
      providers: ProviderRegistry.of([declaringDataKeys(createAgeProvider({}))]),
    },
    synced: async () => (await leader.current.metric('envseal_reconcile_total', { result: 'synced' })) ?? 0,
  });
});

afterAll(async () => {
  await replicaA?.stop();
  await replicaB?.stop();
  if (bench?.figures.length) process.stderr.write(`[faults-controller] figures:\n  ${bench.figures.join('\n  ')}\n`);
});

describe('controller process faults with 1,000 EnvelopeSecrets', () => {
  it(
    'materializes 1,000 EnvelopeSecrets',
    async () => {
      await bench.initial();
    },
    TEST_MS,
  );

  it(
    'recovers from SIGKILL mid-reconcile, twice in one round, with nothing lost or wrong',
    async () => {
      const kills: { pid: number; restartedLeadingMs: number; startupMs: number; electionMs: number }[] = [];
      await bench.faultRound(
        'controller SIGKILLed twice mid-reconcile and restarted',
        async () => {
          for (let kill = 0; kill < 2; kill++) {
            const victim = await replicaA.crash();
            const killedAt = Date.now();
            const next = await replicaA.waitForReplacement(victim);
            await waitFor('the restarted controller to lead', () => becameLeaderAt(next), { timeoutMs: 60_000 });
            const serving = loggedAt(next, 'serving /metrics, /healthz, /readyz')!;
            kills.push({
              pid: victim.pid,
              restartedLeadingMs: becameLeaderAt(next)! - killedAt,
              startupMs: serving - killedAt,
              electionMs: becameLeaderAt(next)! - serving,
            });
            // Let it get going again before the second kill.
            if (kill === 0)
              await waitFor(
                'the restarted controller to sync objects',
                async () => ((await next.metric('envseal_reconcile_total', { result: 'synced' })) ?? 0) >= 100,
                { timeoutMs: 120_000, intervalMs: 200 },
              );
          }
        },
        { startAfterSynced: 150 },
      );
      expect(kills).toHaveLength(2);
      expect(replicaA.restarts).toBe(2);
      bench.figure(
        `SIGKILL: the restarted process led again ${kills.map((k) => `${(k.restartedLeadingMs / 1000).toFixed(1)} s (restart delay and process start ${(k.startupMs / 1000).toFixed(1)} s, then election ${(k.electionMs / 1000).toFixed(1)} s)`).join(' and ')} after the kill`,
      );
      // Same identity (pod name) after a restart: it takes its own lease back at its first
      // attempt, without waiting for the lease to expire.
      for (const k of kills) expect(k.electionMs).toBeLessThan(RETRY_MS + 2000);
    },
    TEST_MS,
  );

  it(
    'fails over to the standby within the lease terms when the leader is killed for good',
    async () => {
      replicaB = replica('replica-b');
      await replicaB.start();
      // B stands by: ready, not leading, reconciling nothing.
      await sleep(3 * RETRY_MS);
      expect(await replicaB.current.metric('envseal_leader')).toBe(0);
      expect(await leader.current.metric('envseal_leader')).toBe(1);
      const base = await getOrUndefined<Lease>(client, paths.lease(controllerNamespace, 'envseal-controller'));
      expect(base?.spec.holderIdentity).toBe('replica-a');

      let killedAt = 0;
      let takeoverMs = 0;
      const standby = replicaB;
      await bench.faultRound(
        'leader SIGKILLed for good while a standby runs',
        async () => {
          await replicaA.abandon();
          killedAt = Date.now();
          // The bench's progress counter now follows the new leader.
          leader = standby;
          await waitFor('the standby to take over', () => becameLeaderAt(standby.current), { timeoutMs: 60_000, intervalMs: 100 });
          takeoverMs = becameLeaderAt(standby.current)! - killedAt;
        },
        { startAfterSynced: 150 },
      );
      // client-go's rule: a candidate takes a lease its holder has not renewed for a lease
      // duration, judged by when it last saw the record change (it polls every retry
      // period, with jitter). So the takeover comes between a lease duration minus a
      // retry period and a lease duration plus 2.4 retry periods after the kill.
      expect(takeoverMs).toBeGreaterThan(LEASE_MS - RETRY_MS - 500);
      expect(takeoverMs).toBeLessThan(LEASE_MS + 2.5 * RETRY_MS);
      const after = await getOrUndefined<Lease>(client, paths.lease(controllerNamespace, 'envseal-controller'));
      expect(after?.spec.holderIdentity).toBe('replica-b');
      expect(after?.spec.leaseTransitions).toBe((base?.spec.leaseTransitions ?? 0) + 1);
      bench.figure(
        `failover: the standby led ${(takeoverMs / 1000).toFixed(1)} s after the leader was killed (lease ${LEASE_MS / 1000} s, retry period ${RETRY_MS / 1000} s)`,
      );
    },
    TEST_MS,
  );

  it('leaked no value or data key into the logs or metrics of any replica', async () => {
    await leader.current.recordMetrics();
    const scan = await scanControllerOutput({ logs: [...replicaA.allLogs(), ...(replicaB?.allLogs() ?? [])], metricsUrl: leader.current.metricsUrl });
    expect(scan.keys).toBeGreaterThanOrEqual(COUNT * bench.rounds);
    expect(scan.lines).toBeGreaterThan(COUNT);
    expect(scan.findings).toEqual([]);
  });
});
