import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_TENANT_POLICY, tenantPolicyIssues } from '../api/policy.ts';
import type { EnvelopeSecret } from '../api/types.ts';
import type { ValidationIssue } from '../api/validation.ts';
import { seededRandom } from '../envelope/random.ts';
import { KubeApiError } from '../kube/client.ts';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError, type ProviderErrorCode } from '../providers/types.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { sealEnvelopeSecret } from '../sealing/seal.ts';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ManualClock } from '../test-support/manual-clock.ts';
import { TestWorld } from '../test-support/reconciler-world.ts';
import { NamespaceBudget } from './budget.ts';
import { ReportedError, TerminalError } from './controller.ts';
import { DataKeyCache } from './dek-cache.ts';
import { ANNOTATION_DATA_HASH, ANNOTATION_SPEC_HASH } from './desired.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconciler, type ReconcileResult, type UnwrapDataKey } from './reconciler.ts';
import type { EnvelopeSecretObject } from './records.ts';

const NS = 'prod';
const NAME = 'db';
const KEY = `${NS}/${NAME}`;
const CANARY = 'CANARY-reconciler';
const request = { namespace: NS, name: NAME };

let mine: { identity: string; recipient: string };
let stranger: { identity: string; recipient: string };
let sealer: ProviderRegistry;

beforeAll(async () => {
  mine = await generateAgeIdentity();
  stranger = await generateAgeIdentity();
  sealer = ProviderRegistry.of([createAgeProvider({})]);
});

/** An EnvelopeSecret sealed for this cluster's age identity (and `also`), bound to `name` in `namespace`. */
async function sealed(
  values: Record<string, string>,
  options: { namespace?: string; name?: string; also?: string; seed?: string } = {},
): Promise<EnvelopeSecretObject> {
  const recipients = [...(options.also ? [{ provider: 'age', target: options.also }] : []), { provider: 'age', target: mine.recipient }];
  const secret = await sealEnvelopeSecret({
    values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])),
    binding: { scope: 'strict', namespace: options.namespace ?? NS, name: options.name ?? NAME },
    targets: recipients,
    providers: sealer,
    random: seededRandom(options.seed ?? JSON.stringify(values)),
  });
  return secret as EnvelopeSecretObject;
}

/** Places a (possibly foreign) manifest at prod/db, as kubectl apply would. */
function at(object: EnvelopeSecret, patch: Partial<EnvelopeSecret['spec']> = {}): EnvelopeSecretObject {
  return { ...object, metadata: { name: NAME, namespace: NS }, spec: { ...object.spec, ...patch } } as EnvelopeSecretObject;
}

interface Setup {
  world: TestWorld;
  clock: ManualClock;
  reconciler: Reconciler;
  metrics: ControllerMetrics;
  logs: string[];
  unwraps: () => number;
  reconcile: () => Promise<ReconcileResult>;
}

function setup(
  options: {
    unwrap?: UnwrapDataKey;
    identities?: string[];
    budget?: { perSecond: number; burst: number };
    policy?: (source: EnvelopeSecretObject) => ValidationIssue[];
  } = {},
): Setup {
  const world = new TestWorld();
  const clock = new ManualClock();
  const metrics = new ControllerMetrics({ defaultMetrics: false });
  const { logger, lines: logs } = captureLogger();
  const providers = ProviderRegistry.of([createAgeProvider({ identities: options.identities ?? [mine.identity] })]);
  let unwraps = 0;
  const real: UnwrapDataKey = (r) => unwrapDataKey({ ...r, providers });
  const reconciler = new Reconciler({
    api: world.api,
    envelopeSecrets: world.records,
    secrets: world.secretCache,
    unwrap: (r) => {
      unwraps++;
      return (options.unwrap ?? real)(r);
    },
    dataKeys: new DataKeyCache({ maxEntries: 16, ttlMs: 5 * 60_000, now: () => clock.now() }),
    events: world.eventSink,
    logger,
    metrics,
    clock,
    resyncMs: 10 * 60_000,
    ...(options.budget ? { budget: new NamespaceBudget({ ...options.budget, now: () => clock.now() }) } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
  });
  return { world, clock, reconciler, metrics, logs, unwraps: () => unwraps, reconcile: () => reconciler.reconcile(request, AbortSignal.timeout(10_000)) };
}

/** The error a reconcile threw. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('the reconcile did not fail');
}

/** No value, data key or identity in any status, Event or log line. */
function expectNoLeak(s: Setup) {
  const said = JSON.stringify([...s.world.envelopeSecrets.values()].map((o) => o.status)) + JSON.stringify(s.world.events) + s.logs.join('');
  expect(said).not.toContain('CANARY');
  expect(said).not.toContain(mine.identity);
}

describe('Reconciler: the Secret', () => {
  it('creates the Secret with the sealed values, owned by the EnvelopeSecret, and says Synced', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1`, USER: 'app' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1`, USER: 'app' });
    const secret = s.world.secrets.get(KEY)!;
    expect(secret.metadata?.ownerReferences).toEqual([expect.objectContaining({ kind: 'EnvelopeSecret', name: NAME, uid: `uid-${NAME}`, controller: true })]);
    expect(secret.metadata?.annotations?.[ANNOTATION_SPEC_HASH]).toBe(s.world.records.get(KEY)!.specHash);
    expect(s.world.ready(KEY)).toMatchObject({ status: 'True', reason: 'Synced', message: 'Secret db is up to date (2 keys)' });
    expect(s.world.status(KEY)).toMatchObject({ observedGeneration: 1, secretResourceVersion: secret.metadata?.resourceVersion });
    expect(s.world.events).toEqual([expect.objectContaining({ type: 'Normal', reason: 'Synced' })]);
    expectNoLeak(s);
  });

  it("reads the EnvelopeSecret no older than the cache's version (the API server's watch cache, not etcd)", async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const cached = s.world.records.get(KEY)!.metadata.resourceVersion;
    expect(cached).toEqual(expect.any(String));
    await s.reconcile();
    expect(s.world.callsOf('getEnvelopeSecret')).toEqual([[NS, NAME, cached]]);
  });

  it('does nothing for an object in sync: no API call, no key-provider call', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    await s.reconcile();
    const calls = s.world.calls.length;
    const unwraps = s.unwraps();
    expect(await s.reconcile()).toEqual({ outcome: 'unchanged' });
    expect(s.world.calls.length).toBe(calls);
    expect(s.unwraps()).toBe(unwraps);
  });

  it('updates the Secret when the spec changes, and records the new generation', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    await s.reconcile();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-2`, EXTRA: 'x' }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-2`, EXTRA: 'x' });
    expect(s.world.status(KEY)?.observedGeneration).toBe(2);
    // The Ready reason did not change: no second Event.
    expect(s.world.events.map((e) => e.reason)).toEqual(['Synced']);
  });

  it('removes keys that another writer added, so that the Secret holds exactly the sealed keys', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    await s.reconcile();
    s.world.foreignKeys.add('INJECTED');
    const live = s.world.secrets.get(KEY)!;
    s.world.putSecret({ ...live, data: { ...live.data, INJECTED: Buffer.from('x').toString('base64') } }, 'intruder');
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.callsOf('removeSecretKeys')).toEqual([[NS, NAME, ['INJECTED']]]);
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
    expect(s.world.status(KEY)?.secretResourceVersion).toBe(s.world.secrets.get(KEY)!.metadata?.resourceVersion);
  });

  it('replaces an immutable Secret whose data must change (delete with the uid as precondition, then create)', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }).then((o) => at(o, { template: { immutable: true } })));
    await s.reconcile();
    const before = s.world.secrets.get(KEY)!;
    expect(before.immutable).toBe(true);
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-2` }).then((o) => at(o, { template: { immutable: true } })));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.callsOf('deleteSecret')).toEqual([[NS, NAME, before.metadata?.uid]]);
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-2` });
    expect(s.world.ready(KEY)?.reason).toBe('Synced');
  });

  it('says gone for an object that is not in the cache, and does nothing else', async () => {
    const s = setup();
    expect(await s.reconcile()).toEqual({ outcome: 'gone' });
    expect(s.world.calls).toEqual([]);
  });
});

describe('Reconciler: drift and ownership', () => {
  it('repairs a Secret someone changed, up to 3 times a minute, then backs off saying Conflict and who', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    await s.reconcile();
    const unwrapsAfterCreate = s.unwraps();
    const tamper = () => {
      const live = s.world.secrets.get(KEY)!;
      s.world.putSecret({ ...live, data: { PASSWORD: Buffer.from('changed').toString('base64') } }, 'fighter');
    };
    for (let i = 0; i < 3; i++) {
      tamper();
      await s.clock.advance(1000);
      expect(await s.reconcile()).toEqual({ outcome: 'synced' });
      expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
    }
    // The data key came from the cache: repairs cost no key-provider call.
    expect(s.unwraps()).toBe(unwrapsAfterCreate);
    tamper();
    expect(await s.reconcile()).toEqual({ outcome: 'deferred', requeueAfterMs: 60_000 });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: 'changed' });
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason: 'Conflict' });
    expect(s.world.ready(KEY)?.message).toContain('field manager "fighter"');
    expect(s.world.status(KEY)?.conditions?.find((c) => c.type === 'Stalled')?.status).toBe('True');
    // After the backoff the Secret is repaired again.
    await s.clock.advance(60_000);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
  });

  it('recreates a Secret someone deleted', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    await s.reconcile();
    s.world.deleteSecret(KEY);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
  });

  it('never touches a Secret it does not own: SecretNotOwned, looked at again in a minute', async () => {
    const s = setup();
    s.world.putSecret({ metadata: { name: NAME, namespace: NS }, data: { PASSWORD: Buffer.from('theirs').toString('base64') } });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    expect(await s.reconcile()).toEqual({ outcome: 'terminal', requeueAfterMs: 60_000 });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: 'theirs' });
    expect(s.world.callsOf('applySecret')).toEqual([]);
    expect(s.unwraps()).toBe(0);
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason: 'SecretNotOwned' });
    expect(s.world.events).toEqual([expect.objectContaining({ type: 'Warning', reason: 'SecretNotOwned' })]);
  });

  it('adopts a Secret annotated envseal.dev/adopt=true: overwrites its data and takes ownership', async () => {
    const s = setup();
    s.world.putSecret({
      metadata: { name: NAME, namespace: NS, annotations: { 'envseal.dev/adopt': 'true' } },
      data: { OLD: Buffer.from('old').toString('base64') },
    });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
    expect(s.world.secrets.get(KEY)?.metadata?.ownerReferences?.[0]).toMatchObject({ kind: 'EnvelopeSecret', controller: true });
  });
});

describe('Reconciler: failures', () => {
  it('InvalidSpec: terminal, stalled, naming the field, with no key-provider call, and not retried for the same generation', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(at(await sealed({ PASSWORD: `${CANARY}-1` }), { scope: 'galactic' as 'strict' }));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect((error as TerminalError).reason).toBe('InvalidSpec');
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    expect(s.world.ready(KEY)?.message).toMatch(/^spec\.scope/);
    expect(s.unwraps()).toBe(0);
    expect(s.world.secrets.has(KEY)).toBe(false);
    expect(await s.reconcile()).toEqual({ outcome: 'terminal' });
  });

  it('PolicyViolation: terminal, naming what the tenant policy refuses', async () => {
    const s = setup({ policy: (source) => tenantPolicyIssues(source, DEFAULT_TENANT_POLICY) });
    s.world.putEnvelopeSecret(at(await sealed({ PASSWORD: `${CANARY}-1` }), { template: { type: 'example.com/custom' } }));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)).toMatchObject({ reason: 'PolicyViolation', message: expect.stringContaining('spec.template.type') });
    expect(s.unwraps()).toBe(0);
  });

  it('ContextMismatch: a manifest sealed for another name opens to nothing', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(at(await sealed({ PASSWORD: `${CANARY}-1` }, { name: 'other' })));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)).toMatchObject({ reason: 'ContextMismatch', message: expect.stringContaining('prod/db (scope strict)') });
    expect(s.world.secrets.has(KEY)).toBe(false);
    expectNoLeak(s);
  });

  it('DecryptFailed: an altered value is named; no Secret is written with the others', async () => {
    const s = setup();
    const object = await sealed({ PASSWORD: `${CANARY}-1`, USER: 'app' });
    const envelope = object.spec.envelopes[0]!;
    const other = await sealed({ PASSWORD: `${CANARY}-other`, USER: 'app' }, { seed: 'other' });
    envelope.data.PASSWORD = other.spec.envelopes[0]!.data.PASSWORD!;
    s.world.putEnvelopeSecret(object);
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)).toMatchObject({ reason: 'DecryptFailed', message: expect.stringContaining('"PASSWORD"') });
    expect(s.world.secrets.has(KEY)).toBe(false);
    expectNoLeak(s);
  });

  it('CommitmentMismatch: a recipient that wraps another data key', async () => {
    const s = setup();
    const object = await sealed({ PASSWORD: `${CANARY}-1` });
    const other = await sealed({ PASSWORD: `${CANARY}-2` });
    object.spec.envelopes[0]!.recipients = other.spec.envelopes[0]!.recipients;
    s.world.putEnvelopeSecret(object);
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)?.reason).toBe('CommitmentMismatch');
    expectNoLeak(s);
  });

  it('NoUsableRecipient: sealed only for an age recipient that is not this cluster', async () => {
    const s = setup({ identities: [stranger.identity] });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)?.reason).toBe('NoUsableRecipient');
  });

  const kms =
    (code: ProviderErrorCode): UnwrapDataKey =>
    async () => {
      throw new ProviderError(code, `aws-kms: arn:aws:kms:eu-west-1:111122223333:key/k refused (${code})`, {
        provider: 'aws-kms',
        serviceCode: `${code}Exception`,
      });
    };

  it.each([
    ['AccessDenied', 'KMSAccessDenied'],
    ['KeyUnavailable', 'KMSKeyUnavailable'],
    ['KeyNotFound', 'KMSKeyNotFound'],
  ] as const)('%s from the KMS: terminal (%s), tried again only at the next resync', async (code, reason) => {
    const s = setup({ unwrap: kms(code) });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason, message: expect.stringContaining(`${code}Exception`) });
    expect(s.world.status(KEY)?.conditions?.find((c) => c.type === 'Stalled')?.status).toBe('True');
    // Within the resync period: no second KMS call.
    await s.clock.advance(5 * 60_000);
    expect(await s.reconcile()).toEqual({ outcome: 'terminal' });
    expect(s.unwraps()).toBe(1);
    // At the next resync the KMS is asked again.
    await s.clock.advance(5 * 60_000);
    await failure(s.reconcile());
    expect(s.unwraps()).toBe(2);
  });

  it.each([
    ['Throttled', 'KMSThrottled'],
    ['Unavailable', 'KMSUnavailable'],
    ['Internal', 'ProviderError'],
  ] as const)('%s from the KMS: retried (%s), the status says Reconciling', async (code, reason) => {
    const s = setup({ unwrap: kms(code) });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(ReportedError);
    expect((error as ReportedError).reason).toBe(reason);
    expect(s.world.ready(KEY)).toMatchObject({ status: 'False', reason });
    expect(s.world.status(KEY)?.conditions?.find((c) => c.type === 'Reconciling')?.status).toBe('True');
    // Nothing remembered: the retry asks the KMS again.
    await failure(s.reconcile());
    expect(s.unwraps()).toBe(2);
  });

  it('SecretRejected: the API server refuses the Secret (422): terminal', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    s.world.failNext.set('applySecret', new KubeApiError(422, 'Invalid', 'Secret "db" is invalid: data[.dockerconfigjson]: Invalid value'));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(TerminalError);
    expect(s.world.ready(KEY)?.reason).toBe('SecretRejected');
  });

  it('KubernetesError: a failed write is retried, and the retry writes the Secret', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    s.world.failNext.set('applySecret', new KubeApiError(500, 'InternalError', 'etcdserver: request timed out'));
    const error = await failure(s.reconcile());
    expect(error).toBeInstanceOf(ReportedError);
    expect(s.world.ready(KEY)).toMatchObject({ reason: 'KubernetesError' });
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
  });

  it('an error outside the reconcile steps (reading the object) is thrown as it is, to be retried', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const boom = new KubeApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
    s.world.failNext.set('getEnvelopeSecret', boom);
    expect(await failure(s.reconcile())).toBe(boom);
  });

  it('a failure is remembered for its generation even when the status cannot be written', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(at(await sealed({ PASSWORD: `${CANARY}-1` }, { name: 'other' })));
    s.world.failNext.set('patchStatus', new KubeApiError(500, 'InternalError', 'status write failed'));
    await failure(s.reconcile());
    expect(s.world.status(KEY)).toBeUndefined();
    expect(await s.reconcile()).toEqual({ outcome: 'terminal' });
    expect(s.unwraps()).toBe(1);
    // A new spec is tried at once.
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
  });

  it('waits for its slot when the namespace spent its budget of key-provider calls, without a status change', async () => {
    const s = setup({ budget: { perSecond: 1, burst: 1 } });
    s.world.putEnvelopeSecret(await sealed({ PASSWORD: `${CANARY}-1` }));
    const other = await sealed({ PASSWORD: `${CANARY}-2` }, { name: 'two' });
    s.world.putEnvelopeSecret(other);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    const second = () => s.reconciler.reconcile({ namespace: NS, name: 'two' }, AbortSignal.timeout(10_000));
    expect(await second()).toEqual({ outcome: 'deferred', requeueAfterMs: 1000 });
    expect(s.world.status(`${NS}/two`)).toBeUndefined();
    await s.clock.advance(1000);
    expect(await second()).toEqual({ outcome: 'synced' });
  });
});

describe('Reconciler: restartWorkloads', () => {
  const deployment = (usesSecret: boolean) => ({
    spec: {
      template: {
        metadata: { annotations: {} as Record<string, string> },
        spec: { containers: [{ envFrom: usesSecret ? [{ secretRef: { name: NAME } }] : [] }] },
      },
    },
  });

  it('restarts a listed workload that uses the Secret, once per sealed data', async () => {
    const s = setup();
    s.world.workloads.set(`${NS}/Deployment/web`, deployment(true));
    const object = at(await sealed({ PASSWORD: `${CANARY}-1` }), {
      restartWorkloads: [
        { kind: 'Deployment', name: 'web' },
        { kind: 'Deployment', name: 'missing' },
      ],
    });
    s.world.putEnvelopeSecret(object);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    const digest = s.world.workloads.get(`${NS}/Deployment/web`)?.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH];
    expect(digest).toMatch(/^sha256:/);
    expect(s.world.events.map((e) => e.reason).sort()).toEqual(['RolloutRestarted', 'Synced', 'WorkloadNotFound']);
    // Someone deletes the Secret: it is written again, but the workload already has this digest.
    s.world.deleteSecret(KEY);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.callsOf('annotatePodTemplate')).toHaveLength(1);
  });

  it('refuses to restart a listed workload that does not use the Secret: RestartRefused, Secret still written', async () => {
    const s = setup();
    s.world.workloads.set(`${NS}/Deployment/bystander`, deployment(false));
    s.world.putEnvelopeSecret(at(await sealed({ PASSWORD: `${CANARY}-1` }), { restartWorkloads: [{ kind: 'Deployment', name: 'bystander' }] }));
    expect(await s.reconcile()).toEqual({ outcome: 'terminal' });
    expect(s.world.secretValues(KEY)).toEqual({ PASSWORD: `${CANARY}-1` });
    expect(s.world.callsOf('annotatePodTemplate')).toEqual([]);
    expect(s.world.ready(KEY)).toMatchObject({ reason: 'RestartRefused', message: expect.stringContaining('Deployment bystander does not') });
    // Once the workload uses the Secret, the next look restarts it without any key-provider call.
    s.world.workloads.set(`${NS}/Deployment/bystander`, deployment(true));
    const unwraps = s.unwraps();
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.unwraps()).toBe(unwraps);
    expect(s.world.callsOf('annotatePodTemplate')).toHaveLength(1);
  });
});
