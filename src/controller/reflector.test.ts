import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { KubeApiError, type KubeClient, type KubeObject, type RequestOptions, type WatchEvent } from '../kube/client.ts';
import { ManualClock, settle } from '../test-support/manual-clock.ts';
import { type ListMode, PageSizer, Reflector, retryDelay } from './reflector.ts';

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
  const reflector = new Reflector<KubeObject>({
    client: s.client,
    path: '/api/v1/secrets',
    listMode: 'pages',
    onEvent: () => {},
    logger: pino({ level: 'silent' }),
  });
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
type Step = { list: KubeObject[]; rv?: string; continue?: string } | { watch: WatchEvent<KubeObject>[] } | { fail: Error } | 'hang';
function scripted(steps: Step[]) {
  const seen: string[] = [];
  const next = () => steps.shift() ?? 'hang';
  const client = {
    async request(options: RequestOptions) {
      const step = next();
      const q = options.query ?? {};
      seen.push(`list${q.limit === undefined ? ' unpaginated' : ''}${q.continue ? ` continue ${q.continue}` : ''}`);
      if (step === 'hang') throw new Error('no more steps');
      if ('fail' in step) throw step.fail;
      if (!('list' in step)) throw new Error(`expected a list step, got ${JSON.stringify(step)}`);
      return { metadata: { resourceVersion: step.rv ?? '1', continue: step.continue }, items: step.list };
    },
    async watch(options: { query: Record<string, unknown>; onEvent: (event: WatchEvent<KubeObject>) => void; signal: AbortSignal }) {
      const q = options.query;
      seen.push(q.sendInitialEvents ? `watch-list ${q.resourceVersionMatch}` : `watch from ${q.resourceVersion} timeout ${q.timeoutSeconds}`);
      const step = next();
      if (step === 'hang') return new Promise<void>((resolve) => options.signal.addEventListener('abort', () => resolve(), { once: true }));
      if ('fail' in step) throw step.fail;
      if (!('watch' in step)) throw new Error(`expected a watch step, got ${JSON.stringify(step)}`);
      for (const event of step.watch) options.onEvent(event);
    },
  } as unknown as KubeClient;
  return { client, seen };
}

const end = (rv: string): WatchEvent<KubeObject> => ({
  type: 'BOOKMARK',
  object: { metadata: { resourceVersion: rv, annotations: { 'k8s.io/initial-events-end': 'true' } } },
});
const added = (object: KubeObject): WatchEvent<KubeObject> => ({ type: 'ADDED', object });

describe('Reflector.run', () => {
  function run(source: ReturnType<typeof scripted>, random: () => number, listMode: ListMode = 'pages') {
    const clock = new ManualClock();
    const events: string[] = [];
    const restarts: string[] = [];
    const reflector = new Reflector<KubeObject>({
      client: source.client,
      path: '/api/v1/secrets',
      listMode,
      onEvent: (event, object, initial) => events.push(`${event} ${object.metadata?.name}${initial ? ' (initial)' : ''}`),
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
    expect(r.events).toEqual(['added a (initial)']);
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
    expect(r.events).toEqual(['added a (initial)', 'added b (initial)', 'updated a', 'updated a', 'deleted b']);
    expect([...r.reflector.store.keys()]).toEqual(['ns/a']);
    await r.stop();
  });

  it('lists the rest in one unpaginated request when a continue token expires, not from page 1 again', async () => {
    const source = scripted([
      { list: [secret('a', '5'), secret('gone', '5')], rv: '5', continue: 'c1' },
      { fail: new KubeApiError(410, 'Expired', 'continue token expired') },
      { list: [secret('a', '8'), secret('b', '7')], rv: '8' },
    ]);
    const r = run(source, () => 0);
    await settle();
    expect(source.seen).toEqual(['list', 'list continue c1', 'list unpaginated', 'watch from 8 timeout 240']);
    expect(r.restarts).toEqual(['continue-expired@0']);
    // What the older pages had and the one list does not is deleted.
    expect([...r.reflector.store.keys()].sort()).toEqual(['ns/a', 'ns/b']);
    expect(r.events).toEqual(['added a (initial)', 'added gone (initial)', 'updated a (initial)', 'added b (initial)', 'deleted gone (initial)']);
    expect(r.reflector.hasSynced).toBe(true);
    await r.stop();
  });

  it('reads in one request when the watch from a finished list is gone before any event (the list was too slow)', async () => {
    const gone = { fail: new KubeApiError(410, 'Expired', 'too old resource version') };
    const source = scripted([
      { list: [secret('a', '5')], rv: '5', continue: 'c1' },
      { list: [secret('b', '6')], rv: '5' },
      gone,
      { list: [secret('a', '5'), secret('b', '6')], rv: '20' },
      { watch: [{ type: 'MODIFIED', object: secret('a', '21') }] },
      gone,
      { list: [secret('a', '21')], rv: '30', continue: 'c2' },
      { list: [], rv: '30' },
    ]);
    const r = run(source, () => 0);
    await settle();
    expect(source.seen).toEqual([
      'list',
      'list continue c1',
      'watch from 5 timeout 240',
      'list unpaginated',
      'watch from 20 timeout 240',
      // The watch ran (an event came): a later 410 is not the list's fault; pages again.
      'watch from 21 timeout 240',
      'list',
      'list continue c2',
      'watch from 30 timeout 240',
    ]);
    expect(r.restarts).toEqual(['gone@0', 'gone@0']);
    await r.stop();
  });

  it('reads the collection with a watch-list: items as they stream, then watches on from the stream', async () => {
    const source = scripted([
      { watch: [added(secret('a', '5')), added(secret('b', '6')), end('9'), { type: 'MODIFIED', object: secret('b', '10') }] },
      { watch: [{ type: 'DELETED', object: secret('a', '11') }] },
    ]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(source.seen).toEqual(['watch-list NotOlderThan', 'watch from 10 timeout 240', 'watch from 11 timeout 240']);
    expect(r.reflector.hasSynced).toBe(true);
    expect(r.reflector.listMode).toBe('watch-list');
    expect(r.events).toEqual(['added a (initial)', 'added b (initial)', 'updated b', 'deleted a']);
    expect([...r.reflector.store.keys()]).toEqual(['ns/b']);
    expect(r.restarts).toEqual([]);
    await r.stop();
  });

  it('drops at the end bookmark the stored objects the watch-list did not send', async () => {
    const source = scripted([
      { watch: [added(secret('a', '5')), added(secret('b', '6')), end('9')] },
      { fail: new KubeApiError(410, 'Expired', 'too old') },
      { watch: [added(secret('b', '6')), end('12')] },
    ]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(source.seen).toEqual(['watch-list NotOlderThan', 'watch from 9 timeout 240', 'watch-list NotOlderThan', 'watch from 12 timeout 240']);
    // b unchanged (same resourceVersion): no event; a deleted at the second end bookmark.
    expect(r.events).toEqual(['added a (initial)', 'added b (initial)', 'deleted a']);
    expect(r.restarts).toEqual(['gone@0']);
    await r.stop();
  });

  it('is not synced before the end bookmark, and lists in pages once when a watch-list ends early', async () => {
    const source = scripted([{ watch: [added(secret('a', '5'))] }, { list: [secret('a', '5'), secret('b', '6')], rv: '7' }]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(source.seen).toEqual(['watch-list NotOlderThan', 'list', 'watch from 7 timeout 240']);
    expect(r.restarts).toEqual(['incomplete@0']);
    expect(r.reflector.hasSynced).toBe(true);
    // Still a watch-list reflector: only this one read was in pages.
    expect(r.reflector.listMode).toBe('watch-list');
    await r.stop();
  });

  it('falls back to pages for good when the server refuses the watch-list (422 on sendInitialEvents)', async () => {
    const refused = new KubeApiError(422, 'Invalid', 'invalid', { causes: [{ field: 'sendInitialEvents', reason: 'FieldValueForbidden' }] });
    const source = scripted([
      { fail: refused },
      { list: [secret('a', '5')], rv: '7' },
      { fail: new KubeApiError(410, 'Expired', 'x') },
      { list: [secret('a', '5')], rv: '8' },
    ]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(r.reflector.listMode).toBe('pages');
    expect(r.reflector.hasSynced).toBe(true);
    // After a later 410: a list again (in one request: the watch had not started), never another watch-list; no backoff.
    expect(source.seen).toEqual(['watch-list NotOlderThan', 'list', 'watch from 7 timeout 240', 'list unpaginated', 'watch from 8 timeout 240']);
    expect(r.restarts).toEqual(['unsupported@0', 'gone@0']);
    await r.stop();
  });

  it('falls back to pages for good when the server ignores the watch-list (a plain watch: MODIFIED before any end)', async () => {
    const source = scripted([
      { watch: [added(secret('a', '5')), { type: 'MODIFIED', object: secret('a', '6') }] },
      { list: [secret('a', '6')], rv: '7' },
      'hang',
    ]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(r.reflector.listMode).toBe('pages');
    expect(source.seen).toEqual(['watch-list NotOlderThan', 'list', 'watch from 7 timeout 240']);
    expect(r.restarts).toEqual(['unsupported@0']);
    expect(r.events).toEqual(['added a (initial)', 'updated a (initial)']);
    await r.stop();
  });

  it('does not take a refused list for a refused watch-list', async () => {
    const badRequest = new KubeApiError(400, 'BadRequest', 'bad request');
    const source = scripted([{ watch: [added(secret('a', '5'))] }, { fail: badRequest }]);
    const r = run(source, () => 0, 'watch-list');
    await settle();
    expect(r.restarts).toEqual(['incomplete@0', 'error@0']);
    expect(r.reflector.listMode).toBe('watch-list');
    await r.stop();
  });

  it('retries a watch-list that failed with a server error after a backoff, without falling back', async () => {
    const source = scripted([{ fail: new KubeApiError(503, 'ServiceUnavailable', 'x') }, { watch: [added(secret('a', '5')), end('6')] }]);
    const r = run(source, () => 0.5, 'watch-list');
    await settle();
    expect(r.restarts).toEqual(['error@0']);
    await r.clock.advance(250);
    expect(r.reflector.hasSynced).toBe(true);
    expect(r.reflector.listMode).toBe('watch-list');
    await r.stop();
  });

  it('waits out a 429 for its Retry-After (plus jitter), as a wait and not a failure, then watch-lists', async () => {
    const throttled = (retryAfterMs: number | undefined) => ({ fail: new KubeApiError(429, 'TooManyRequests', 'too many requests', { retryAfterMs }) });
    const failed = { fail: new KubeApiError(503, 'ServiceUnavailable', 'x') };
    const source = scripted([throttled(3000), throttled(undefined), failed, { watch: [added(secret('a', '5')), end('6')] }]);
    const r = run(source, () => 0.5, 'watch-list');
    await settle();
    expect(r.restarts).toEqual(['throttled@0']);
    // 3 s asked, an eighth more with this randomness; not the error backoff's 250 ms.
    await r.clock.advance(3374);
    expect(source.seen).toHaveLength(1);
    await r.clock.advance(1);
    // Without a Retry-After: 1 s (and the eighth).
    expect(r.restarts).toEqual(['throttled@0', 'throttled@3375']);
    await r.clock.advance(1124);
    expect(source.seen).toHaveLength(2);
    await r.clock.advance(1);
    // The 429s did not count as failures: the 503 after them backs off from the start (250 ms).
    expect(r.restarts).toEqual(['throttled@0', 'throttled@3375', 'error@4500']);
    await r.clock.advance(250);
    expect(r.reflector.hasSynced).toBe(true);
    expect(r.reflector.listMode).toBe('watch-list');
    expect(source.seen.slice(0, 4)).toEqual(Array(4).fill('watch-list NotOlderThan'));
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
