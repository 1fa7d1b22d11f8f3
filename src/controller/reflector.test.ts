import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KubeApiError, type KubeClient, type KubeObject, type RequestOptions, type WatchEvent } from '../kube/client.ts';
import { ManualClock, settle } from '../test-support/manual-clock.ts';
import { PageSizer, Reflector, retryDelay } from './reflector.ts';

const secret = (name: string, resourceVersion: string, uid = `uid-${name}`): KubeObject => ({ metadata: { name, namespace: 'ns', resourceVersion, uid } });

/** A list+watch source that the test drives: list returns `items`, and `emit` sends a watch event. */
function source(items: KubeObject[]) {
  let onEvent: ((event: WatchEvent<KubeObject>) => void) | undefined;
  const limits: number[] = [];
  const client = {
    async request(options: RequestOptions) {
      limits.push(Number(options.query?.limit));
      return { metadata: { resourceVersion: '1' }, items };
    },
    watch(options: { onEvent: (event: WatchEvent<KubeObject>) => void; signal: AbortSignal }) {
      onEvent = options.onEvent;
      return new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
    },
  } as unknown as KubeClient;
  return { client, emit: (event: WatchEvent<KubeObject>) => onEvent!(event), limits };
}

async function started(items: KubeObject[]) {
  const s = source(items);
  const reflector = new Reflector<KubeObject>({ client: s.client, path: '/api/v1/secrets', onEvent: () => {}, logger: pino({ level: 'silent' }) });
  const abort = new AbortController();
  const running = reflector.run(abort.signal);
  await reflector.waitForSync();
  await new Promise((resolve) => setImmediate(resolve));
  const stop = async () => {
    abort.abort();
    await running;
  };
  return { reflector, emit: s.emit, stop };
}

describe('Reflector.remember', () => {
  it('keeps what the controller wrote when the watch told nothing newer', async () => {
    const { reflector, stop } = await started([secret('a', '10')]);
    const mark = reflector.changeMark();
    expect(reflector.remember(secret('a', '11'), mark)).toBe(true);
    expect(reflector.store.get('ns/a')?.metadata?.resourceVersion).toBe('11');
    await stop();
  });

  it('never brings back a Secret whose delete the watch delivered while the write was in flight', async () => {
    const { reflector, emit, stop } = await started([secret('a', '10')]);
    const mark = reflector.changeMark();
    // The write returns rv 11; before the controller remembers it, the watch says: deleted.
    emit({ type: 'MODIFIED', object: secret('a', '11') });
    emit({ type: 'DELETED', object: secret('a', '12') });
    expect(reflector.remember(secret('a', '11'), mark)).toBe(false);
    expect(reflector.store.has('ns/a')).toBe(false);
    await stop();
  });

  it('does not overwrite a newer change by someone else, whatever the resourceVersions look like', async () => {
    const { reflector, emit, stop } = await started([secret('a', 'b')]);
    const mark = reflector.changeMark();
    emit({ type: 'MODIFIED', object: secret('a', 'a') }); // opaque: not ordered as numbers or strings
    expect(reflector.remember(secret('a', 'z'), mark)).toBe(false);
    expect(reflector.store.get('ns/a')?.metadata?.resourceVersion).toBe('a');
    // Changes of other keys do not stop it.
    const next = reflector.changeMark();
    emit({ type: 'ADDED', object: secret('other', 'q') });
    expect(reflector.remember(secret('a', 'y'), next)).toBe(true);
    await stop();
  });

  it('keeps a bounded number of tombstones, and refuses marks older than the ones it forgot', async () => {
    const { reflector, emit, stop } = await started([]);
    const old = reflector.changeMark();
    for (let i = 0; i < 3000; i++) {
      emit({ type: 'ADDED', object: secret(`s${i}`, '1') });
      emit({ type: 'DELETED', object: secret(`s${i}`, '2') });
    }
    expect(reflector.store.size).toBe(0);
    expect(reflector.remember(secret('s0', '1'), old)).toBe(false);
    expect(reflector.remember(secret('new', '1'), reflector.changeMark())).toBe(true);
    await stop();
  });
});

describe('PageSizer', () => {
  it('starts small, grows to the maximum for small objects, and shrinks for megabyte objects', () => {
    const pages = new PageSizer(500);
    expect(pages.limit).toBe(16);
    pages.observe(16, 16 * 2_000);
    expect(pages.limit).toBe(500);
    pages.observe(500, 500 * 1_400_000);
    expect(pages.limit).toBe(2);
    pages.observe(2, 2 * 40_000_000);
    expect(pages.limit).toBe(1);
  });
});

/**
 * A list+watch source that answers from a script: each list and each watch takes the next
 * step (an error to throw, items to list, or events to send before the watch ends).
 */
function scripted(steps: ({ list: KubeObject[]; rv?: string } | { watch: WatchEvent<KubeObject>[] } | { fail: Error } | 'hang')[]) {
  const seen: string[] = [];
  const next = () => steps.shift() ?? 'hang';
  const client = {
    async request(options: RequestOptions) {
      const step = next();
      seen.push(`list${options.query?.continue ? ' continue' : ''}`);
      if (step === 'hang') throw new Error('no more steps');
      if ('fail' in step) throw step.fail;
      if (!('list' in step)) throw new Error(`expected a list step, got ${JSON.stringify(step)}`);
      return { metadata: { resourceVersion: step.rv ?? '1' }, items: step.list };
    },
    async watch(options: { query: Record<string, unknown>; onEvent: (event: WatchEvent<KubeObject>) => void; signal: AbortSignal }) {
      seen.push(`watch from ${options.query.resourceVersion} timeout ${options.query.timeoutSeconds}`);
      const step = next();
      if (step === 'hang') return new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
      if ('fail' in step) throw step.fail;
      if (!('watch' in step)) throw new Error(`expected a watch step, got ${JSON.stringify(step)}`);
      for (const event of step.watch) options.onEvent(event);
    },
  } as unknown as KubeClient;
  return { client, seen };
}

describe('Reflector.run', () => {
  function run(source: ReturnType<typeof scripted>, random: () => number) {
    const clock = new ManualClock();
    const events: string[] = [];
    const restarts: string[] = [];
    const reflector = new Reflector<KubeObject>({
      client: source.client,
      path: '/api/v1/secrets',
      onEvent: (event, object) => events.push(`${event} ${object.metadata?.name}`),
      onRestart: (reason) => restarts.push(`${reason}@${clock.now() - start}`),
      logger: pino({ level: 'silent' }),
      clock,
      random,
    });
    const start = clock.now();
    const abort = new AbortController();
    const running = reflector.run(abort.signal);
    const stop = async () => {
      abort.abort();
      await running;
    };
    return { clock, reflector, events, restarts, stop };
  }

  it('retries a failed list after a backoff with jitter from the injected randomness, and syncs', async () => {
    const fail = { fail: new KubeApiError(500, 'InternalError', 'etcd unavailable') };
    const source = scripted([fail, fail, { list: [secret('a', '5')] }]);
    const r = run(source, () => 0.5);
    await settle();
    expect(r.reflector.hasSynced).toBe(false);
    await r.clock.advance(249);
    expect(source.seen).toEqual(['list']);
    await r.clock.advance(1);
    expect(source.seen).toEqual(['list', 'list']);
    await r.clock.advance(500);
    expect(r.reflector.hasSynced).toBe(true);
    expect(r.restarts).toEqual(['error@0', 'error@250']);
    expect(r.events).toEqual(['added a']);
    // The watch starts from the list's resourceVersion, its timeout spread by the randomness.
    expect(source.seen.at(-1)).toBe('watch from 1 timeout 300');
    await r.stop();
  });

  it('relists at once on 410 Gone, dropping what the new list no longer has', async () => {
    const source = scripted([
      { list: [secret('a', '5'), secret('b', '6')], rv: '6' },
      { watch: [{ type: 'MODIFIED', object: secret('a', '7') }] },
      { fail: new KubeApiError(410, 'Expired', 'too old resource version') },
      { list: [secret('a', '9')], rv: '9' },
    ]);
    const r = run(source, () => 0);
    await settle();
    expect(source.seen).toEqual(['list', 'watch from 6 timeout 240', 'watch from 7 timeout 240', 'list', 'watch from 9 timeout 240']);
    expect(r.restarts).toEqual(['gone@0']);
    expect(r.events).toEqual(['added a', 'added b', 'updated a', 'updated a', 'deleted b']);
    expect([...r.reflector.store.keys()]).toEqual(['ns/a']);
    await r.stop();
  });

  it('backs off up to 30 s (±20%) however many failures in a row', () => {
    expect(retryDelay(1, 0.5)).toBe(250);
    expect(retryDelay(2, 0.5)).toBe(500);
    expect(retryDelay(8, 0.5)).toBe(30_000);
    expect(retryDelay(50, 0)).toBe(24_000);
    expect(retryDelay(50, 0.999)).toBeCloseTo(35_988, 0);
  });
});
