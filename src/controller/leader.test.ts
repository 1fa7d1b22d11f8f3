import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KubeApiError } from '../kube/client.ts';
import { ManualClock, settle } from '../test-support/manual-clock.ts';
import { LeaderElector, microTime } from './leader.ts';

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/**
 * One Lease as the API server keeps it: created once, updated only with the current
 * resourceVersion (else 409). `cut` makes a candidate's requests fail, as a partition would.
 */
function leaseStore() {
  let lease: Lease | undefined;
  let rv = 0;
  const cut = new Set<string>();
  const requests: string[] = [];
  const call = <T>(who: string, method: 'GET' | 'POST' | 'PUT', body?: Lease): T => {
    requests.push(`${who} ${method}`);
    if (cut.has(who)) throw new KubeApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
    switch (method) {
      case 'GET':
        if (!lease) throw new KubeApiError(404, 'NotFound', 'leases "envseal-controller" not found');
        return structuredClone(lease) as T;
      case 'POST':
        if (lease) throw new KubeApiError(409, 'AlreadyExists', 'leases "envseal-controller" already exists');
        lease = { ...structuredClone(body!), metadata: { ...body!.metadata, resourceVersion: String(++rv) } };
        return structuredClone(lease) as T;
      case 'PUT':
        if (!lease || body!.metadata.resourceVersion !== lease.metadata.resourceVersion)
          throw new KubeApiError(409, 'Conflict', 'the object has been modified');
        lease = { ...structuredClone(body!), metadata: { ...body!.metadata, resourceVersion: String(++rv) } };
        return structuredClone(lease) as T;
    }
  };
  // The Lease calls of KubeObjectApi, as leader election makes them.
  const clientFor = (who: string) => ({
    read: async <T>() => call<T>(who, 'GET'),
    create: async <T>(object: unknown) => call<T>(who, 'POST', object as Lease),
    replace: async <T>(object: unknown) => call<T>(who, 'PUT', object as Lease),
  });
  return {
    clientFor,
    cut,
    requests,
    lease: () => lease,
    set: (next: Lease) => (lease = { ...next, metadata: { ...next.metadata, resourceVersion: String(++rv) } }),
  };
}

function candidate(store: ReturnType<typeof leaseStore>, clock: ManualClock, identity: string, random = () => 0) {
  const changes: boolean[] = [];
  const elector = new LeaderElector({
    client: store.clientFor(identity),
    namespace: 'envseal-system',
    leaseName: 'envseal-controller',
    identity,
    leaseDurationMs: 15_000,
    renewDeadlineMs: 10_000,
    retryPeriodMs: 2_000,
    logger: pino({ level: 'silent' }),
    onChange: (leading) => changes.push(leading),
    clock,
    random,
  });
  const stop = new AbortController();
  let leadSignal: AbortSignal | undefined;
  let stopLeading!: () => void;
  const result = elector.run(stop.signal, async (signal) => {
    leadSignal = signal;
    await new Promise<void>((resolve) => {
      stopLeading = resolve;
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
  });
  return { elector, changes, stop: () => stop.abort(), result, leadSignal: () => leadSignal, stopLeading: () => stopLeading() };
}

describe('LeaderElector', () => {
  it('creates the lease and leads; a second candidate stands by while the leader renews', async () => {
    const clock = new ManualClock();
    const store = leaseStore();
    const a = candidate(store, clock, 'a');
    await settle();
    expect(a.elector.leading).toBe(true);
    expect(store.lease()?.spec).toMatchObject({
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      leaseTransitions: 0,
      renewTime: microTime(new Date(clock.now())),
    });
    const b = candidate(store, clock, 'b');
    await clock.advance(60_000);
    expect(b.elector.leading).toBe(false);
    expect(store.lease()?.spec.holderIdentity).toBe('a');
    // Renewed every retry period: the renew time is the manual clock's.
    expect(store.lease()?.spec.renewTime).toBe(microTime(new Date(clock.now())));
    a.stop();
    b.stop();
    expect(await a.result).toBe(true);
    expect(await b.result).toBe(true);
    expect(a.changes).toEqual([true, false]);
  });

  it('takes over a lease whose holder stopped renewing, one lease duration after it last saw it change', async () => {
    const clock = new ManualClock();
    const store = leaseStore();
    const a = candidate(store, clock, 'a');
    await settle();
    const b = candidate(store, clock, 'b');
    await settle();
    store.cut.add('a');
    // b saw the last renewal at t=0: it waits the whole lease duration from then, whatever a's clock says.
    await clock.advance(14_000);
    expect(b.elector.leading).toBe(false);
    await clock.advance(4_000);
    expect(b.elector.leading).toBe(true);
    expect(store.lease()?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    // a could not renew within its renew deadline: it stopped leading and says so.
    expect(a.leadSignal()?.aborted).toBe(true);
    expect(await a.result).toBe(false);
    b.stop();
    await b.result;
  });

  it('judges expiry by when it observed the record, not by the renew time written with another clock', async () => {
    const clock = new ManualClock();
    const store = leaseStore();
    // Renewed "in 1970" by a holder whose clock is wrong: still held until it stops changing for a lease duration.
    store.set({
      metadata: { name: 'envseal-controller', namespace: 'envseal-system' },
      spec: { holderIdentity: 'skewed', leaseDurationSeconds: 15, renewTime: microTime(new Date(0)) },
    });
    const b = candidate(store, clock, 'b');
    await clock.advance(10_000);
    expect(b.elector.leading).toBe(false);
    await clock.advance(8_000);
    expect(b.elector.leading).toBe(true);
    b.stop();
    await b.result;
  });

  it('releases the lease on a graceful stop, so that a standby takes over within a retry period', async () => {
    const clock = new ManualClock();
    const store = leaseStore();
    const a = candidate(store, clock, 'a');
    await settle();
    const b = candidate(store, clock, 'b');
    await clock.advance(5_000);
    a.stopLeading();
    expect(await a.result).toBe(true);
    expect(store.lease()?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });
    await clock.advance(2_000);
    expect(b.elector.leading).toBe(true);
    b.stop();
    await b.result;
  });

  it('spreads a standby’s retries by the injected randomness (up to 20% of the retry period)', async () => {
    const clock = new ManualClock();
    const store = leaseStore();
    store.set({
      metadata: { name: 'envseal-controller', namespace: 'envseal-system' },
      spec: { holderIdentity: 'other', leaseDurationSeconds: 15, renewTime: microTime(new Date(clock.now())) },
    });
    const slow = candidate(store, clock, 'slow', () => 0.999);
    const quick = candidate(store, clock, 'quick', () => 0);
    await clock.advance(11_000);
    const gets = (who: string) => store.requests.filter((r) => r === `${who} GET`).length;
    // At 0, then every 2.0 s (6 tries within 11 s) or every ~2.4 s (5 tries).
    expect(gets('quick')).toBe(6);
    expect(gets('slow')).toBe(5);
    slow.stop();
    quick.stop();
    await Promise.all([slow.result, quick.result]);
  });
});
