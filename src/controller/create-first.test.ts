import { beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../envelope/random.ts';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { sealEnvelopeSecret } from '../sealing/seal.ts';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ManualClock } from '../test-support/manual-clock.ts';
import { TestWorld } from '../test-support/reconciler-world.ts';
import { DataKeyCache } from './dek-cache.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconciler } from './reconciler.ts';
import type { EnvelopeSecretObject } from './records.ts';

const KEY = 'prod/db';
const request = { namespace: 'prod', name: 'db' };
let identity: { identity: string; recipient: string };

beforeAll(async () => {
  identity = await generateAgeIdentity();
});

async function sealed(values: Record<string, string>): Promise<EnvelopeSecretObject> {
  return (await sealEnvelopeSecret({
    values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])),
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    targets: [{ provider: 'age', target: identity.recipient }],
    providers: ProviderRegistry.of([createAgeProvider({})]),
    random: seededRandom(JSON.stringify(values)),
  })) as EnvelopeSecretObject;
}

function setup(listed: boolean) {
  const world = new TestWorld();
  const clock = new ManualClock();
  const providers = ProviderRegistry.of([createAgeProvider({ identities: [identity.identity] })]);
  let unwraps = 0;
  const reconciler = new Reconciler({
    api: world.api,
    envelopeSecrets: world.records,
    secrets: world.secretCache,
    secretsListed: () => listed,
    unwrap: (r) => {
      unwraps++;
      return unwrapDataKey({ ...r, providers });
    },
    dataKeys: new DataKeyCache({ maxEntries: 16, ttlMs: 60_000, now: () => clock.now() }),
    events: world.eventSink,
    logger: captureLogger().logger,
    metrics: new ControllerMetrics({ defaultMetrics: false }),
    clock,
  });
  const calls = () => world.calls.map((c) => c.call);
  return { world, calls, unwraps: () => unwraps, reconcile: () => reconciler.reconcile(request, AbortSignal.timeout(10_000)) };
}

describe('Reconciler: create before apply', () => {
  it('creates a new Secret without reading it first once the Secret cache is complete', async () => {
    const s = setup(true);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: 'p1' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.calls()).toEqual(['getEnvelopeSecret', 'createSecret', 'patchStatus']);
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: 'p1' });
    expect(s.world.ready(KEY)).toMatchObject({ status: 'True', reason: 'Synced' });
  });

  it('reads first while the Secret cache is still listing (it may not hold an existing Secret yet)', async () => {
    const s = setup(false);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: 'p1' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.calls()).toEqual(['getSecret', 'getEnvelopeSecret', 'applySecret', 'patchStatus']);
  });

  it('leaves a foreign Secret alone: the create fails, the Secret is read, and the status says SecretNotOwned', async () => {
    const s = setup(true);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: 'p1' }));
    // Not labelled as envseal's, so never in the managed-Secret cache.
    s.world.putSecret({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'prod' }, data: { OTHER: 'eA==' } });
    s.world.secretCache.delete(KEY);
    const result = await s.reconcile();
    expect(result.outcome).toBe('terminal');
    expect(s.world.secretValues(KEY)).toEqual({ OTHER: 'x' });
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason: 'SecretNotOwned' });
    expect(s.calls()).toEqual(['getEnvelopeSecret', 'createSecret', 'getSecret', 'patchStatus']);
    // The data key was unwrapped once; the next look reads the Secret rather than trying to create it.
    expect(s.unwraps()).toBe(1);
    await s.reconcile();
    expect(s.calls().filter((c) => c === 'createSecret')).toHaveLength(1);
  });

  it('takes over its own Secret that the cache had not seen yet: the create fails, then the apply', async () => {
    const s = setup(true);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: 'p1' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    // The watch has not told about the Secret yet (a lagging cache).
    s.world.secretCache.delete(KEY);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: 'p2' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: 'p2' });
    expect(s.calls().slice(3)).toEqual(['getEnvelopeSecret', 'createSecret', 'getSecret', 'getEnvelopeSecret', 'applySecret', 'patchStatus']);
    expect(s.unwraps()).toBe(2);
  });
});
