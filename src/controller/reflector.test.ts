import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { KubeClient, KubeObject, RequestOptions, WatchEvent } from '../kube/client.ts';
import { PageSizer, Reflector } from './reflector.ts';

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
  return { reflector, emit: s.emit, stop: async () => (abort.abort(), await running) };
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
