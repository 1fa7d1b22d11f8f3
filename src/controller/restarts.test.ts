import { beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../envelope/random.ts';
import { KubeApiError } from '../kube/client.ts';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { sealEnvelopeSecret } from '../sealing/seal.ts';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ManualClock } from '../test-support/manual-clock.ts';
import { TestWorld } from '../test-support/reconciler-world.ts';
import { DataKeyCache } from './dek-cache.ts';
import { ANNOTATION_DATA_HASH } from './desired.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconciler, type ReconcileResult } from './reconciler.ts';
import type { EnvelopeSecretObject } from './records.ts';
import { WorkloadRestarts } from './restarts.ts';

const NS = 'prod';
const WINDOW = 10_000;
const WEB = `${NS}/Deployment/web`;
let identity: { identity: string; recipient: string };
let sealer: ProviderRegistry;

beforeAll(async () => {
  identity = await generateAgeIdentity();
  sealer = ProviderRegistry.of([createAgeProvider({})]);
});

async function sealed(name: string, value: string, namespace = NS, workloads = ['web']): Promise<EnvelopeSecretObject> {
  const secret = await sealEnvelopeSecret({
    values: { VALUE: Buffer.from(value) },
    binding: { scope: 'strict', namespace, name },
    targets: [{ provider: 'age', target: identity.recipient }],
    providers: sealer,
    random: seededRandom(`${namespace}/${name}=${value}`),
  });
  const object = secret as EnvelopeSecretObject;
  return { ...object, spec: { ...object.spec, restartWorkloads: workloads.map((w) => ({ kind: 'Deployment' as const, name: w })) } };
}

/** A Deployment whose containers read these Secrets through envFrom. */
function deployment(secrets: readonly string[]) {
  return {
    metadata: { generation: 1 },
    spec: {
      template: {
        metadata: { annotations: {} as Record<string, string> },
        spec: { containers: [{ envFrom: secrets.map((name) => ({ secretRef: { name } })) }] },
      },
    },
  };
}

/**
 * A reconciler with a restart window over a TestWorld, and a stand-in for the work queue:
 * the keys to look at again and when (requeueAfterMs), run when the clock gets there.
 */
function setup(options: { windowMs?: number; maxPendingPerNamespace?: number; maxPending?: number; world?: TestWorld; clock?: ManualClock } = {}) {
  const world = options.world ?? new TestWorld();
  const clock = options.clock ?? new ManualClock();
  const { logger, lines } = captureLogger();
  const providers = ProviderRegistry.of([createAgeProvider({ identities: [identity.identity] })]);
  const restarts = new WorkloadRestarts({
    api: world.api,
    events: world.eventSink,
    logger,
    clock,
    windowMs: options.windowMs ?? WINDOW,
    ...(options.maxPendingPerNamespace === undefined ? {} : { maxPendingPerNamespace: options.maxPendingPerNamespace }),
    ...(options.maxPending === undefined ? {} : { maxPending: options.maxPending }),
  });
  const reconciler = new Reconciler({
    api: world.api,
    envelopeSecrets: world.records,
    secrets: world.secretCache,
    unwrap: (r) => unwrapDataKey({ ...r, providers }),
    dataKeys: new DataKeyCache({ maxEntries: 1024, ttlMs: 5 * 60_000, now: () => clock.now() }),
    events: world.eventSink,
    logger,
    metrics: new ControllerMetrics({ defaultMetrics: false }),
    clock,
    restarts,
  });
  const requeued = new Map<string, number>();
  const reconcile = async (key: string): Promise<ReconcileResult> => {
    const slash = key.indexOf('/');
    requeued.delete(key);
    const result = await reconciler.reconcile({ namespace: key.slice(0, slash), name: key.slice(slash + 1) }, AbortSignal.timeout(10_000));
    if (result.requeueAfterMs) requeued.set(key, clock.now() + result.requeueAfterMs);
    return result;
  };
  /** Moves the clock on and reconciles, together as workers would, each key whose requeue fell due. */
  const advance = async (ms: number) => {
    await clock.advance(ms);
    const due = [...requeued].filter(([, at]) => at <= clock.now()).map(([key]) => key);
    return Promise.all(due.map(reconcile));
  };
  return { world, clock, restarts, reconcile, advance, requeued, logs: lines };
}

const patches = (world: TestWorld) => world.callsOf('annotatePodTemplate');
const reasonOf = (world: TestWorld, key: string) => world.ready(key)?.reason;
const names = (count: number, prefix = 'app') => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

describe('WorkloadRestarts: one restart per window, whatever the number of Secrets', () => {
  it('restarts a Deployment that uses 40 rotated Secrets once, after all of them are written', async () => {
    const s = setup();
    const secrets = names(40);
    s.world.workloads.set(WEB, deployment(secrets));
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v1'));
    for (const name of secrets) await s.reconcile(`${NS}/${name}`);
    expect(patches(s.world)).toEqual([]);
    for (const name of secrets) {
      expect(s.world.ready(`${NS}/${name}`)).toMatchObject({ status: 'True', reason: 'RestartPending', message: expect.stringContaining('Deployment web') });
      // The Secret is written before the restart.
      expect(s.world.secretValues(`${NS}/${name}`)).toEqual({ VALUE: 'v1' });
    }
    // Only the workload's one read to begin the batch; the others join it.
    expect(s.world.callsOf('getWorkload')).toHaveLength(1);
    await s.advance(WINDOW - 1);
    expect(patches(s.world)).toEqual([]);
    await s.advance(1);
    expect(patches(s.world)).toHaveLength(1);
    for (const name of secrets) expect(reasonOf(s.world, `${NS}/${name}`)).toBe('Synced');
    const rolled = s.world.events.filter((e) => e.reason === 'RolloutRestarted');
    expect(rolled).toHaveLength(1);
    expect(rolled[0]!.message).toMatch(/^restarted Deployment web once for 40 changed Secrets \(app-\d+, .* and 30 more\)$/);
    expect(s.world.events.filter((e) => e.reason === 'RestartPending')).toEqual([]);
    // All settled: nothing pending in memory, nothing more to do at the next resync.
    expect(s.restarts.size).toBe(0);
    for (const name of secrets) expect(await s.reconcile(`${NS}/${name}`)).toEqual({ outcome: 'unchanged' });
    expect(patches(s.world)).toHaveLength(1);

    // A second rotation after the window: a second restart, again one for all.
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v2'));
    for (const name of secrets) await s.reconcile(`${NS}/${name}`);
    await s.advance(WINDOW);
    expect(patches(s.world)).toHaveLength(2);
    expect(s.world.workloads.get(WEB)?.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(patches(s.world)[0]![3]).not.toEqual(patches(s.world)[1]![3]);
  });

  it('a change within the window joins the pending restart; one after it fired starts the next window', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    s.world.putEnvelopeSecret(await sealed('a', 'v1'));
    await s.reconcile(`${NS}/a`);
    await s.advance(WINDOW / 2);
    s.world.putEnvelopeSecret(await sealed('b', 'v1'));
    s.world.putEnvelopeSecret(await sealed('a', 'v2'));
    await s.reconcile(`${NS}/b`);
    await s.reconcile(`${NS}/a`);
    // Due at the first change + window, not pushed back by later ones.
    await s.advance(WINDOW / 2);
    expect(patches(s.world)).toHaveLength(1);
    expect([reasonOf(s.world, `${NS}/a`), reasonOf(s.world, `${NS}/b`)]).toEqual(['Synced', 'Synced']);
    s.world.putEnvelopeSecret(await sealed('b', 'v2'));
    await s.reconcile(`${NS}/b`);
    await s.advance(WINDOW - 1);
    expect(patches(s.world)).toHaveLength(1);
    await s.advance(1);
    expect(patches(s.world)).toHaveLength(2);
  });

  it('with window 0 restarts at each Secret written, as before', async () => {
    const s = setup({ windowMs: 0 });
    const secrets = names(5);
    s.world.workloads.set(WEB, deployment(secrets));
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v1'));
    for (const name of secrets) expect(await s.reconcile(`${NS}/${name}`)).toEqual({ outcome: 'synced' });
    expect(patches(s.world)).toHaveLength(5);
    expect(s.world.events.filter((e) => e.reason === 'RolloutRestarted')).toHaveLength(5);
  });

  it('objects reconciled at the same time by several workers open one batch, not one each', async () => {
    const s = setup();
    const secrets = names(8);
    s.world.workloads.set(WEB, deployment(secrets));
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v1'));
    // Reads of the workload answer only once every object has asked: all are in flight together.
    const read = s.world.api.getWorkload;
    let waiting: (() => void)[] = [];
    s.world.api.getWorkload = async (...args) => {
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        setTimeout(() => {
          for (const go of waiting) go();
          waiting = [];
        }, 50);
      });
      return read(...args);
    };
    await Promise.all(secrets.map((name) => s.reconcile(`${NS}/${name}`)));
    await s.advance(WINDOW);
    expect(patches(s.world)).toHaveLength(1);
    for (const name of secrets) expect(reasonOf(s.world, `${NS}/${name}`)).toBe('Synced');
  });

  it('one batch fired by members reconciled at the same time is patched once', async () => {
    const s = setup();
    const secrets = names(8);
    s.world.workloads.set(WEB, deployment(secrets));
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v1'));
    for (const name of secrets) await s.reconcile(`${NS}/${name}`);
    const results = await s.advance(WINDOW);
    expect(results).toHaveLength(8);
    expect(patches(s.world)).toHaveLength(1);
  });
});

describe('WorkloadRestarts: what changes before the restart fires', () => {
  it('a workload deleted meanwhile: no patch, no error, no loop; the objects say Synced', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    for (const name of ['a', 'b']) {
      s.world.putEnvelopeSecret(await sealed(name, 'v1'));
      await s.reconcile(`${NS}/${name}`);
    }
    s.world.workloads.delete(WEB);
    const results = await s.advance(WINDOW);
    expect(results.map((r) => r.outcome).sort()).toEqual(['synced', 'synced']);
    expect(patches(s.world)).toEqual([]);
    expect(s.world.events.filter((e) => e.reason === 'WorkloadNotFound')).toHaveLength(1);
    expect(s.requeued.size).toBe(0);
    expect(await s.reconcile(`${NS}/a`)).toEqual({ outcome: 'unchanged' });
  });

  it('a workload that stopped using one Secret: restarted for the others, RestartRefused for that one', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    for (const name of ['a', 'b']) {
      s.world.putEnvelopeSecret(await sealed(name, 'v1'));
      await s.reconcile(`${NS}/${name}`);
    }
    s.world.workloads.set(WEB, deployment(['a']));
    await s.advance(WINDOW);
    expect(patches(s.world)).toHaveLength(1);
    expect(reasonOf(s.world, `${NS}/a`)).toBe('Synced');
    expect(s.world.ready(`${NS}/b`)).toMatchObject({ status: 'False', reason: 'RestartRefused', message: expect.stringContaining('Deployment web does not') });
  });

  it('a workload that uses none of them any more is not patched', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a']));
    s.world.putEnvelopeSecret(await sealed('a', 'v1'));
    await s.reconcile(`${NS}/a`);
    s.world.workloads.set(WEB, deployment([]));
    await s.advance(WINDOW);
    expect(patches(s.world)).toEqual([]);
    expect(reasonOf(s.world, `${NS}/a`)).toBe('RestartRefused');
  });

  it('an EnvelopeSecret deleted before the restart: its batch is dropped, nothing restarted', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a']));
    s.world.putEnvelopeSecret(await sealed('a', 'v1'));
    await s.reconcile(`${NS}/a`);
    s.world.envelopeSecrets.delete(`${NS}/a`);
    s.world.records.delete(`${NS}/a`);
    expect(await s.reconcile(`${NS}/a`)).toEqual({ outcome: 'gone' });
    expect(s.restarts.size).toBe(0);
    await s.advance(WINDOW);
    expect(patches(s.world)).toEqual([]);
  });

  it('a failed patch is retried by the next reconcile, still one restart', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    for (const name of ['a', 'b']) {
      s.world.putEnvelopeSecret(await sealed(name, 'v1'));
      await s.reconcile(`${NS}/${name}`);
    }
    await s.clock.advance(WINDOW);
    s.world.failNext.set('annotatePodTemplate', new KubeApiError(503, 'ServiceUnavailable', 'the API server is busy'));
    await expect(s.reconcile(`${NS}/a`)).rejects.toThrow(/busy/);
    expect(reasonOf(s.world, `${NS}/a`)).toBe('RestartPending');
    await s.reconcile(`${NS}/b`);
    await s.reconcile(`${NS}/a`);
    expect(patches(s.world)).toHaveLength(2);
    expect(s.world.workloads.get(WEB)?.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH]).toMatch(/^sha256:/);
    expect([reasonOf(s.world, `${NS}/a`), reasonOf(s.world, `${NS}/b`)]).toEqual(['Synced', 'Synced']);
  });
});

describe('WorkloadRestarts: failover and bounds', () => {
  it('a new leader (nothing in memory) restarts what the status says is pending, a window after it took over', async () => {
    const old = setup();
    const secrets = names(10);
    old.world.workloads.set(WEB, deployment(secrets));
    for (const name of secrets) old.world.putEnvelopeSecret(await sealed(name, 'v1'));
    for (const name of secrets) await old.reconcile(`${NS}/${name}`);
    // The leader stops before the window ends: what is pending is in the statuses only.
    await old.clock.advance(WINDOW / 2);
    const next = setup({ world: old.world, clock: old.clock });
    for (const name of secrets) expect((await next.reconcile(`${NS}/${name}`)).requeueAfterMs).toBe(WINDOW);
    expect(patches(next.world)).toEqual([]);
    await next.advance(WINDOW);
    expect(patches(next.world)).toHaveLength(1);
    for (const name of secrets) expect(reasonOf(next.world, `${NS}/${name}`)).toBe('Synced');
  });

  it('a new leader finds the restart of a lone Secret already done (its digest on the pod template): no second restart', async () => {
    const old = setup();
    old.world.workloads.set(WEB, deployment(['a']));
    old.world.putEnvelopeSecret(await sealed('a', 'v1'));
    await old.reconcile(`${NS}/a`);
    await old.clock.advance(WINDOW);
    // The old leader patched the workload and stopped before it wrote the status.
    old.world.failNext.set('patchStatus', new KubeApiError(503, 'ServiceUnavailable', 'stopping'));
    await expect(old.reconcile(`${NS}/a`)).rejects.toThrow();
    expect(patches(old.world)).toHaveLength(1);
    const next = setup({ world: old.world, clock: old.clock });
    expect(await next.reconcile(`${NS}/a`)).toEqual({ outcome: 'synced' });
    expect(patches(next.world)).toHaveLength(1);
    expect(reasonOf(next.world, `${NS}/a`)).toBe('Synced');
  });

  it('bounds what is pending per namespace: beyond it, restarts happen at once; another namespace keeps its window', async () => {
    const s = setup({ maxPendingPerNamespace: 3 });
    const secrets = names(5);
    s.world.workloads.set(WEB, deployment(secrets));
    s.world.workloads.set('other/Deployment/web', deployment(['x']));
    for (const name of secrets) s.world.putEnvelopeSecret(await sealed(name, 'v1'));
    for (const name of secrets) await s.reconcile(`${NS}/${name}`);
    expect(s.restarts.size).toBe(3);
    expect(patches(s.world)).toHaveLength(2);
    s.world.putEnvelopeSecret(await sealed('x', 'v1', 'other'));
    await s.reconcile('other/x');
    expect(s.restarts.size).toBe(4);
    await s.advance(WINDOW);
    // 2 at once + 1 for the three that waited + 1 in the other namespace: never more than one per Secret.
    expect(patches(s.world)).toHaveLength(4);
    expect(s.restarts.size).toBe(0);
  });

  it('bounds what is pending in all: a full table makes restarts immediate, not later', async () => {
    const s = setup({ maxPending: 2 });
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    s.world.workloads.set('other/Deployment/web', deployment(['x']));
    for (const name of ['a', 'b']) {
      s.world.putEnvelopeSecret(await sealed(name, 'v1'));
      await s.reconcile(`${NS}/${name}`);
    }
    s.world.putEnvelopeSecret(await sealed('x', 'v1', 'other'));
    expect(await s.reconcile('other/x')).toEqual({ outcome: 'synced' });
    expect(patches(s.world).map((p) => p[0])).toEqual(['other']);
    expect(reasonOf(s.world, 'other/x')).toBe('Synced');
  });

  it('says nothing of the values in statuses, Events or logs', async () => {
    const s = setup();
    s.world.workloads.set(WEB, deployment(['a', 'b']));
    for (const name of ['a', 'b']) {
      s.world.putEnvelopeSecret(await sealed(name, 'CANARY-restarts'));
      await s.reconcile(`${NS}/${name}`);
    }
    await s.advance(WINDOW);
    const said = JSON.stringify([...s.world.envelopeSecrets.values()].map((o) => o.status)) + JSON.stringify(s.world.events) + s.logs.join('');
    expect(said).not.toContain('CANARY');
    expect(said).not.toContain(identity.identity);
  });
});
