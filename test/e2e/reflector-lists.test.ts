// The reflector's first read of a collection against the real API server (1.34): a
// streaming watch-list where the WatchList gate is on (the default), paginated lists where
// it is off, and one unpaginated list, not a loop of relists, when a continue token expires
// (etcd compacted under a slow list). Requests are counted by a hook around the real client.
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeClient, type KubeObject, type RequestOptions } from '../../src/kube/client.ts';
import { Reflector, type StoreEvent } from '../../src/controller/reflector.ts';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { type ControlPlane, startControlPlane } from '../harness/control-plane.ts';
import { adminClient, createNamespace } from '../harness/kube.ts';

const logger = pino({ level: 'silent' });
// Only the test's ConfigMaps (each namespace also gets kube-root-ca.crt).
const LABELS = { 'envseal.dev/test': 'lists' };

/** Every request the reflector sends, as `LIST limit=… continue` or `WATCH …`; `afterFirstPage` runs once between pages. */
function recorded(client: KubeClient, afterFirstPage?: () => Promise<void>) {
  const requests: string[] = [];
  let pagesSeen = 0;
  const hooked: Pick<KubeClient, 'request' | 'watch'> = {
    async request<T>(options: RequestOptions): Promise<T> {
      const q = options.query ?? {};
      requests.push(`LIST${q.limit === undefined ? ' unpaginated' : ''}${q.continue ? ' continue' : ''}`);
      const answer = await client.request<T>(options);
      if (++pagesSeen === 1 && afterFirstPage) await afterFirstPage();
      return answer;
    },
    watch(options) {
      requests.push(options.query.sendInitialEvents ? 'WATCH-LIST' : 'WATCH');
      return client.watch(options);
    },
  };
  return { requests, client: hooked };
}

async function createConfigMaps(client: KubeClient, namespace: string, count: number): Promise<void> {
  const names = Array.from({ length: count }, (_, i) => `cm-${String(i).padStart(4, '0')}`);
  for (let i = 0; i < names.length; i += 16) {
    await Promise.all(
      names.slice(i, i + 16).map((name) =>
        client.request({
          method: 'POST',
          path: `/api/v1/namespaces/${namespace}/configmaps`,
          body: { metadata: { name, labels: LABELS }, data: { n: name } },
        }),
      ),
    );
  }
}

function reflectorOn(client: Pick<KubeClient, 'request' | 'watch'>, namespace: string, extra: { pageSize?: number } = {}) {
  const events: string[] = [];
  const restarts: string[] = [];
  const reflector = new Reflector<KubeObject>({
    client,
    path: `/api/v1/namespaces/${namespace}/configmaps`,
    labelSelector: 'envseal.dev/test=lists',
    onEvent: (event: StoreEvent, object, initial) => events.push(`${event} ${object.metadata?.name}${initial ? ' initial' : ''}`),
    onRestart: (reason) => restarts.push(reason),
    logger,
    ...extra,
  });
  const abort = new AbortController();
  const running = reflector.run(abort.signal);
  return {
    reflector,
    events,
    restarts,
    stop: async () => {
      abort.abort();
      await running;
    },
  };
}

const names = (reflector: Reflector<KubeObject>) => [...reflector.store.values()].map((o) => o.metadata?.name).sort();

describe('the first read with the WatchList gate on (the shared API server, 1.34 defaults)', () => {
  const namespace = uniqueName('watchlist');
  const admin = adminClient();

  beforeAll(async () => {
    await createNamespace(admin, namespace);
    await createConfigMaps(admin, namespace, 300);
  });

  it('reads the collection with one watch-list request, no LIST, drops what the server no longer has, and watches on in the same stream', async () => {
    const hook = recorded(admin);
    const r = reflectorOn(hook.client, namespace);
    // A key left from an earlier read that the API server no longer has.
    r.reflector.store.set(`${namespace}/deleted-meanwhile`, { metadata: { name: 'deleted-meanwhile', namespace, resourceVersion: '1' } });
    try {
      await r.reflector.waitForSync();
      expect(r.reflector.listMode).toBe('watch-list');
      expect(r.reflector.store.size).toBe(300);
      expect(names(r.reflector)).toContain('cm-0299');
      expect(r.events.filter((e) => e.startsWith('added') && e.endsWith(' initial'))).toHaveLength(300);
      expect(r.events).toContain('deleted deleted-meanwhile initial');
      expect(hook.requests).toEqual(['WATCH-LIST']);
      expect(r.restarts).toEqual([]);

      // The same stream carries the changes that follow.
      await admin.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name: 'after-sync', labels: LABELS } } });
      await admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${namespace}/configmaps/cm-0000` });
      await waitFor(
        'the watch to deliver the create and the delete',
        () => r.reflector.store.has(`${namespace}/after-sync`) && !r.reflector.store.has(`${namespace}/cm-0000`),
      );
      expect(r.events).toContain('added after-sync');
      expect(r.events).toContain('deleted cm-0000');
      expect(hook.requests).toEqual(['WATCH-LIST']);
    } finally {
      await r.stop();
    }
  });
});

describe('on an API server with the WatchList gate off', () => {
  let cp: ControlPlane;
  let client: KubeClient;
  const namespace = 'lists';

  beforeAll(async () => {
    cp = await startControlPlane({
      binDir: sharedCluster().binDir,
      controllerManager: false,
      // ListFromCacheSnapshot off too: continue pages come from etcd, where compaction expires them.
      extraApiServerArgs: ['--feature-gates=WatchList=false,ListFromCacheSnapshot=false'],
    });
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromFile(cp.kubeconfigPath);
    client = new KubeClient(kubeConfig);
    await createNamespace(client, namespace);
    await createConfigMaps(client, namespace, 600);
  }, 300_000);

  afterAll(async () => {
    await cp?.stop();
  });

  it('falls back to paginated lists after the refusal (422), once, and keeps the store right', async () => {
    const hook = recorded(client);
    const r = reflectorOn(hook.client, namespace);
    try {
      await r.reflector.waitForSync();
      expect(r.reflector.listMode).toBe('pages');
      expect(r.restarts).toEqual(['unsupported']);
      expect(r.reflector.store.size).toBe(600);
      await waitFor('the watch to start', () => hook.requests.includes('WATCH'));
      // One refused watch-list, the pages (16 first, then up to 2,000), then a plain watch.
      expect(hook.requests).toEqual(['WATCH-LIST', 'LIST', 'LIST continue', 'WATCH']);
      await client.request({ method: 'DELETE', path: `/api/v1/namespaces/${namespace}/configmaps/cm-0001` });
      await waitFor('the watch to deliver the delete', () => !r.reflector.store.has(`${namespace}/cm-0001`));
      await client.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name: 'cm-0001', labels: LABELS } } });
    } finally {
      await r.stop();
    }
  });

  it('lists in one unpaginated request when etcd compacted under a paginated list, then watches: no relist loop', async () => {
    // Between the first page and the next: changes (one delete), then a compaction past the
    // list's snapshot, as etcd's 5-minute compaction does under a list that takes longer.
    const compactAfterFirstPage = async () => {
      await client.request({ method: 'DELETE', path: `/api/v1/namespaces/${namespace}/configmaps/cm-0599` });
      await client.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name: 'late', labels: LABELS } } });
      await compactEtcd(cp.etcdUrl);
    };
    const hook = recorded(client, compactAfterFirstPage);
    const r = reflectorOn(hook.client, namespace, { pageSize: 100 });
    try {
      await r.reflector.waitForSync();
      expect(r.restarts).toEqual(['unsupported', 'continue-expired']);
      await waitFor('the watch to start', () => hook.requests.includes('WATCH'));
      expect(hook.requests).toEqual(['WATCH-LIST', 'LIST', 'LIST continue', 'LIST unpaginated', 'WATCH']);
      // The store is the collection now: the delete and the create made during the list are in it.
      expect(r.reflector.store.size).toBe(600);
      expect(r.reflector.store.has(`${namespace}/cm-0599`)).toBe(false);
      expect(r.reflector.store.has(`${namespace}/late`)).toBe(true);
      // The watch from the one list's resourceVersion runs: changes arrive, nothing lists again.
      await client.request({ method: 'POST', path: `/api/v1/namespaces/${namespace}/configmaps`, body: { metadata: { name: 'later', labels: LABELS } } });
      await waitFor('the watch to deliver a create', () => r.reflector.store.has(`${namespace}/later`));
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      expect(hook.requests.filter((q) => q.startsWith('LIST'))).toHaveLength(3);
      expect(r.restarts).toEqual(['unsupported', 'continue-expired']);
    } finally {
      await r.stop();
    }
  });
});

/** Compacts etcd at its current revision through its v3 JSON gateway (physical: done when it answers). */
async function compactEtcd(etcdUrl: string): Promise<void> {
  const range = await fetch(`${etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64'), limit: 1 }) });
  const revision = ((await range.json()) as { header: { revision: string } }).header.revision;
  const compacted = await fetch(`${etcdUrl}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision, physical: true }) });
  if (!compacted.ok) throw new Error(`etcd compaction failed: ${compacted.status} ${await compacted.text()}`);
}
