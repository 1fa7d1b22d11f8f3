// Debounced rollout restarts on the real control plane: 200 EnvelopeSecrets whose Secrets
// one Deployment reads (envFrom), rotated all at once, restart it once per window; a
// controller stopped while restarts are pending leaves them to the next one; window 0
// shows what happens without a window (one rollout per Secret).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ANNOTATION_DATA_HASH } from '../../src/controller/desired.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const client = adminClient();
const controllerNamespace = uniqueName('envseal-rw');
const ns = uniqueName('rw');
const COUNT = 200;
// Long enough for 200 reconciles on a loaded 2-core machine (at 20 s, one shared by
// eight test runs spread the writes over five windows).
const WINDOW_MS = 60_000;
const NAMES = Array.from({ length: COUNT }, (_, i) => `svc-${String(i).padStart(3, '0')}`);
const DEPLOYMENT = `/apis/apps/v1/namespaces/${ns}/deployments/web`;
let controller: TestController | undefined;
let recipient: string;

interface Deployment {
  metadata: { generation: number };
  spec: { template: { metadata?: { annotations?: Record<string, string> } } };
}
type Listed = { items: EnvelopeSecret[] };

const log = (message: string) => process.stderr.write(`[restart-window] ${message}\n`);
const generation = async () => (await getOrUndefined<Deployment>(client, DEPLOYMENT))!.metadata.generation;

async function start(restartWindowMs: number): Promise<TestController> {
  const started = await startTestController({
    kubeConfig: adminKubeConfig(),
    config: { namespace: controllerNamespace, namespaces: [ns], restartWindowMs },
  });
  await waitFor('leading', async () => (await started.metric('envseal_leader')) === 1);
  return started;
}

/** Runs `fn` over `items`, `concurrency` at a time. */
async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** Seals a new value into every object (before any is applied), then applies them all at once. */
async function rotate(round: string): Promise<{ startedAt: number; appliedMs: number }> {
  const sealed = await Promise.all(
    NAMES.map(async (name) => {
      const object = await sealFor({ namespace: ns, name, values: { TOKEN: `${CANARY_MARKER}${round}-${name}` }, targets: [ageTarget(recipient)] });
      return { ...object, spec: { ...object.spec, restartWorkloads: [{ kind: 'Deployment' as const, name: 'web' }] } };
    }),
  );
  const started = Date.now();
  await pool(sealed, 16, async (object) => {
    await client.request({
      method: 'PATCH',
      path: paths.envelopeSecret(ns, object.metadata.name),
      query: { fieldManager: 'e2e', force: true },
      body: object,
      patchType: 'apply',
    });
  });
  return { startedAt: started, appliedMs: Date.now() - started };
}

async function reasons(): Promise<Map<string, string>> {
  const listed = await client.request<Listed>({ method: 'GET', path: paths.envelopeSecrets(ns) });
  const out = new Map<string, string>();
  for (const item of listed.items) {
    const ready = item.status?.conditions?.find((c) => c.type === 'Ready');
    if (ready && item.status?.observedGeneration === item.metadata.generation) out.set(item.metadata.name, ready.reason);
  }
  return out;
}

/** Waits until every object's current generation says `reason`. */
async function allSay(reason: string, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `all ${COUNT} ${reason}`,
    async () => {
      const now = await reasons();
      return NAMES.every((name) => now.get(name) === reason);
    },
    { timeoutMs, intervalMs: 500 },
  );
}

/** Waits until every Secret holds the value of `round`; returns when that was first seen. */
async function allWritten(round: string): Promise<number> {
  await waitFor(
    `all ${COUNT} Secrets at ${round}`,
    async () => {
      const listed = await client.request<{ items: { metadata: { name: string }; data?: Record<string, string> }[] }>({
        method: 'GET',
        path: paths.secrets(ns),
      });
      const values = new Map(listed.items.map((s) => [s.metadata.name, Buffer.from(s.data?.TOKEN ?? '', 'base64').toString()]));
      return NAMES.every((name) => values.get(name) === `${CANARY_MARKER}${round}-${name}`);
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  return Date.now();
}

beforeAll(async () => {
  await installCrd();
  for (const name of [controllerNamespace, ns]) await createNamespace(client, name);
  await client.request({
    method: 'POST',
    path: `/apis/apps/v1/namespaces/${ns}/deployments`,
    body: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: ns },
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
  controller = await start(WINDOW_MS);
  recipient = (
    await waitFor('recipient', () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')))
  ).data.recipient;
});

afterAll(async () => {
  await controller?.stop();
});

describe(`a Deployment that reads ${COUNT} Secrets, with a restart window of ${WINDOW_MS / 1000} s`, () => {
  it('is restarted once when all of them are created, and once per rotation of all of them', async () => {
    const before = await generation();
    const created = await rotate('r0');
    const createdWritten = await allWritten('r0');
    log(`created ${COUNT}: applied in ${created.appliedMs} ms, all Secrets written ${createdWritten - created.startedAt} ms after the first apply`);
    await allSay('Synced');
    // Listed for the first time: one restart for all 200.
    const g0 = await generation();
    expect(g0).toBe(before + 1);

    const first = await rotate('r1');
    const written = await allWritten('r1');
    const rotationStarted = first.startedAt;
    // Meanwhile the objects are Ready and say when the restart is due.
    const pending = (await reasons()).get(NAMES[0]!);
    await allSay('Synced');
    const synced = Date.now();
    const g1 = await generation();
    expect(g1).toBe(g0 + 1);
    log(
      `rotation of ${COUNT}: applied in ${first.appliedMs} ms, all Secrets written ${written - rotationStarted} ms after the first apply, ` +
        `all Synced (restart done) after ${synced - rotationStarted} ms; status while pending: ${pending}; rollouts: ${g1 - g0}`,
    );
    expect(await controller!.metric('envseal_reconcile_total', { result: 'error' })).toBe(0);
    const events = await client.request<{ items: { reason: string; message: string }[] }>({ method: 'GET', path: paths.events(ns) });
    expect(events.items.filter((e) => e.reason === 'RolloutRestarted').length).toBeLessThanOrEqual(2);
    expect(events.items.find((e) => e.reason === 'RolloutRestarted' && e.message.includes(`once for ${COUNT} changed Secrets`))).toBeDefined();

    // A second rotation, after the window: a second rollout, and only one.
    await rotate('r2');
    await allWritten('r2');
    await allSay('Synced');
    expect(await generation()).toBe(g1 + 1);
    const template = (await getOrUndefined<Deployment>(client, DEPLOYMENT))!.spec.template.metadata?.annotations?.[ANNOTATION_DATA_HASH];
    expect(template).toMatch(/^sha256:[0-9a-f]{64}$/);
  }, 400_000);

  it('a restart pending when the controller stops is done by the next one, once', async () => {
    const g = await generation();
    await rotate('r3');
    await allWritten('r3');
    await controller!.stop();
    controller = undefined;
    expect(await generation()).toBe(g);
    const stopped = Date.now();
    controller = await start(WINDOW_MS);
    await allSay('Synced');
    log(`after a controller stop with ${COUNT} restarts pending: the next controller restarted the Deployment ${Date.now() - stopped} ms later`);
    expect(await generation()).toBe(g + 1);
  }, 300_000);

  it('with window 0, as before this option: one rollout per rotated Secret', async () => {
    await controller!.stop();
    controller = await start(0);
    const g = await generation();
    await rotate('r4');
    await allWritten('r4');
    await allSay('Synced');
    const rollouts = (await waitFor('the last restart', async () => ((await generation()) - g >= COUNT ? (await generation()) - g : undefined))) as number;
    log(`window 0: rotation of ${COUNT} Secrets -> ${rollouts} rollouts`);
    expect(rollouts).toBe(COUNT);
  }, 300_000);
});
