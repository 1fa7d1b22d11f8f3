// Smoke tests of the shared control plane (test/harness/global-setup.ts) through
// @kubernetes/client-node: what the operator and its tests rely on.
import {
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubernetesObjectApi,
  PatchStrategy,
  RbacAuthorizationV1Api,
  VersionApi,
  Watch,
  type KubernetesObject,
  type V1ConfigMap,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKubeConfig, clusterControl, failureStatus, sharedCluster, statusOf, tokenKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';

const kc = adminKubeConfig();
const core = kc.makeApiClient(CoreV1Api);
const objects = KubernetesObjectApi.makeApiClient(kc);
const custom = kc.makeApiClient(CustomObjectsApi);
const extensions = kc.makeApiClient(ApiextensionsV1Api);
const rbac = kc.makeApiClient(RbacAuthorizationV1Api);

const fieldManager = 'envseal-smoke';
const group = 'smoke.envseal.dev';
const crdName = `widgets.${group}`;

const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: crdName },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: 'v1alpha1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: { size: { type: 'integer', minimum: 1 }, color: { type: 'string' } },
              },
              status: { type: 'object', properties: { ready: { type: 'boolean' } } },
            },
          },
        },
      },
    ],
  },
};

interface Widget extends KubernetesObject {
  spec: { size: number | string; color?: string };
}

function widget(namespace: string, name: string, spec: Widget['spec']): Widget {
  return { apiVersion: `${group}/v1alpha1`, kind: 'Widget', metadata: { name, namespace }, spec };
}

async function notFound(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return false;
  } catch (err) {
    if (statusOf(err) === 404) return true;
    throw err;
  }
}

async function crdEstablished(): Promise<boolean> {
  const crd = await extensions.readCustomResourceDefinition({ name: crdName });
  return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
}

let ns: string;

beforeAll(async () => {
  ns = uniqueName('smoke');
  await core.createNamespace({ body: { metadata: { name: ns } } });
  // Applied up front: the garbage collector only learns about a new resource type on
  // its 30 s discovery resync, which the custom-resource GC test (last) depends on.
  await objects.patch(widgetCrd, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
});

afterAll(async () => {
  await core.deleteNamespace({ name: ns }).catch(() => {});
  await extensions.deleteCustomResourceDefinition({ name: crdName }).catch(() => {});
});

describe('control plane', () => {
  it('is a real Kubernetes 1.34 API server reached with the admin kubeconfig', async () => {
    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version.major).toBe('1');
    expect(version.minor).toBe('34');
    expect(version.gitVersion).toMatch(/^v1\.34\.\d+$/);
    expect(sharedCluster().server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const namespaces = await core.listNamespace();
    expect(namespaces.items.map((n) => n.metadata?.name)).toEqual(expect.arrayContaining(['default', 'kube-system', ns]));
  });

  it('creates a namespace, and deleting it removes it with its contents (namespace controller)', async () => {
    const name = uniqueName('ns');
    await core.createNamespace({ body: { metadata: { name, labels: { purpose: 'smoke' } } } });
    const created = await core.readNamespace({ name });
    expect(created.status?.phase).toBe('Active');
    expect(created.metadata?.labels?.purpose).toBe('smoke');
    await core.createNamespacedConfigMap({ namespace: name, body: { metadata: { name: 'content' }, data: { a: '1' } } });

    await core.deleteNamespace({ name });
    const terminating = await core.readNamespace({ name }).catch(() => undefined);
    if (terminating !== undefined) expect(terminating.status?.phase).toBe('Terminating');
    await waitFor(`namespace ${name} to be gone`, () => notFound(() => core.readNamespace({ name })), { timeoutMs: 90_000 });
  });

  it('applies a CRD and an instance of it (server-side apply); the schema is enforced', async () => {
    // Applying the same CRD again is a no-op (server-side apply is declarative).
    const reapplied = await objects.patch(widgetCrd, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
    expect(reapplied.metadata?.generation).toBe(1);
    await waitFor(`CRD ${crdName} to be Established`, crdEstablished, { timeoutMs: 30_000 });

    // Discovery of the new resource may lag behind Established for a moment.
    const applied = await waitFor(
      'the Widget to be applied',
      () => objects.patch(widget(ns, 'w1', { size: 3, color: 'blue' }), undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
      { timeoutMs: 30_000 },
    );
    expect(applied.metadata?.uid).toBeTruthy();

    const read = (await custom.getNamespacedCustomObject({ group, version: 'v1alpha1', namespace: ns, plural: 'widgets', name: 'w1' })) as Widget;
    expect(read.spec).toEqual({ size: 3, color: 'blue' });
    expect(read.metadata?.managedFields?.map((f) => f.manager)).toContain(fieldManager);

    // Re-applying with a changed field updates it; the generation moves.
    const updated = await objects.patch(widget(ns, 'w1', { size: 4, color: 'blue' }), undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
    expect(updated.spec.size).toBe(4);
    expect(updated.metadata?.generation).toBe(2);

    // A value outside the schema's bounds: 422 Invalid.
    const outOfRange = await failureStatus(() =>
      objects.patch(widget(ns, 'bad', { size: 0 }), undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    );
    expect(outOfRange).toBe(422);
    // A value of the wrong type is rejected too; with server-side apply the real API
    // server answers 500 ("failed to create typed patch object ... expected numeric"),
    // not 422 -- a controller must not treat every 5xx as transient.
    const wrongType = await failureStatus(() =>
      objects.patch(widget(ns, 'bad', { size: 'big' }), undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    );
    expect(wrongType).toBe(500);

    const list = (await custom.listNamespacedCustomObject({ group, version: 'v1alpha1', namespace: ns, plural: 'widgets' })) as {
      items: Widget[];
    };
    expect(list.items.map((w) => w.metadata?.name)).toEqual(['w1']);
  });

  it('garbage-collects a Secret whose owner (a ConfigMap) is deleted, and only that one', async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'gc-owner' }, data: { k: 'v' } } });
    const uid = owner.metadata?.uid;
    expect(uid).toBeTruthy();
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: 'gc-owned',
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'gc-owner', uid: uid!, controller: true, blockOwnerDeletion: true }],
        },
        stringData: { password: 'x' },
      },
    });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'gc-bystander' }, stringData: { password: 'y' } } });

    await core.deleteNamespacedConfigMap({ namespace: ns, name: 'gc-owner' });
    await waitFor('the owned Secret to be garbage-collected', () => notFound(() => core.readNamespacedSecret({ namespace: ns, name: 'gc-owned' })), {
      timeoutMs: 60_000,
    });
    const bystander = await core.readNamespacedSecret({ namespace: ns, name: 'gc-bystander' });
    expect(bystander.metadata?.deletionTimestamp).toBeUndefined();
  });

  it('delivers ADDED, MODIFIED and DELETED watch events in order', async () => {
    const list = await core.listNamespacedConfigMap({ namespace: ns });
    const events: { type: string; name: string | undefined; value: string | undefined }[] = [];
    let watchError: unknown;
    const watch = new Watch(kc);
    const controller = await watch.watch(
      `/api/v1/namespaces/${ns}/configmaps`,
      { resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
      (type, obj: V1ConfigMap) => {
        if (type !== 'BOOKMARK' && obj.metadata?.name === 'watched') events.push({ type, name: obj.metadata.name, value: obj.data?.value });
      },
      (err) => {
        if (err !== null && err !== undefined) watchError = err;
      },
    );
    try {
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'watched' }, data: { value: 'one' } } });
      await core.replaceNamespacedConfigMap({ namespace: ns, name: 'watched', body: { metadata: { name: 'watched' }, data: { value: 'two' } } });
      await core.deleteNamespacedConfigMap({ namespace: ns, name: 'watched' });
      await waitFor('three watch events', () => events.length >= 3 || (watchError !== undefined && Promise.reject(watchError)), {
        timeoutMs: 30_000,
      });
    } finally {
      controller.abort();
    }
    expect(events).toEqual([
      { type: 'ADDED', name: 'watched', value: 'one' },
      { type: 'MODIFIED', name: 'watched', value: 'two' },
      { type: 'DELETED', name: 'watched', value: 'two' },
    ]);
  });

  it('issues ServiceAccount tokens (TokenRequest) that authenticate and are limited by RBAC', async () => {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'reader' } } });
    await rbac.createNamespacedRole({
      namespace: ns,
      body: { metadata: { name: 'configmap-reader' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: 'reader-reads-configmaps' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns }],
      },
    });
    const tokenRequest = await core.createNamespacedServiceAccountToken({
      namespace: ns,
      name: 'reader',
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const token = tokenRequest.status?.token;
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const claims = JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString('utf8')) as { iss: string; sub: string };
    expect(claims.iss).toBe(sharedCluster().server);
    expect(claims.sub).toBe(`system:serviceaccount:${ns}:reader`);

    const asReader = tokenKubeConfig(token!, ns);
    const review = await asReader.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    });
    expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${ns}:reader`);
    expect(review.status?.userInfo?.groups).toContain(`system:serviceaccounts:${ns}`);

    const readerCore = asReader.makeApiClient(CoreV1Api);
    // Granted: list ConfigMaps in its namespace (the RBAC cache may lag the binding briefly).
    const allowed = await waitFor('the RoleBinding to take effect', () => readerCore.listNamespacedConfigMap({ namespace: ns }), {
      timeoutMs: 15_000,
    });
    expect(Array.isArray(allowed.items)).toBe(true);
    // Not granted: Secrets, other namespaces, writes.
    expect(await failureStatus(() => readerCore.listNamespacedSecret({ namespace: ns }))).toBe(403);
    expect(await failureStatus(() => readerCore.listNamespacedConfigMap({ namespace: 'default' }))).toBe(403);
    expect(await failureStatus(() => readerCore.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'nope' } } }))).toBe(403);
    // A tampered token does not authenticate at all.
    const tampered = token!.slice(0, -4) + (token!.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    expect(await failureStatus(() => tokenKubeConfig(tampered, ns).makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace: ns }))).toBe(401);
  });

  it('keeps its data across a kube-apiserver restart', async () => {
    const before = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'survives-apiserver' }, data: { answer: '42' } },
    });
    await clusterControl().restartApiServer();
    const after = await core.readNamespacedConfigMap({ namespace: ns, name: 'survives-apiserver' });
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    expect(after.data).toEqual({ answer: '42' });
    // CRDs are served again, with their instances.
    await waitFor(
      `CRD ${crdName} to be served after the restart`,
      () => custom.getNamespacedCustomObject({ group, version: 'v1alpha1', namespace: ns, plural: 'widgets', name: 'w1' }),
      { timeoutMs: 30_000 },
    );
    // And it accepts writes.
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after-apiserver-restart' } } });
  });

  it('keeps its data across an etcd restart', async () => {
    const before = await core.createNamespacedConfigMap({
      namespace: ns,
      body: { metadata: { name: 'survives-etcd' }, data: { answer: '43' } },
    });
    await clusterControl().restartEtcd();
    const after = await waitFor(
      'the ConfigMap to be readable after the etcd restart',
      () => core.readNamespacedConfigMap({ namespace: ns, name: 'survives-etcd' }),
      { timeoutMs: 30_000 },
    );
    expect(after.metadata?.uid).toBe(before.metadata?.uid);
    expect(after.data).toEqual({ answer: '43' });
    await waitFor(
      'a write to succeed after the etcd restart',
      () => core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'after-etcd-restart' } } }),
      { timeoutMs: 30_000 },
    );
  });

  it('garbage-collects a Secret owned by a custom resource (as EnvelopeSecret owns its Secret)', async () => {
    if (!(await crdEstablished().catch(() => false))) {
      await objects.patch(widgetCrd, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply);
      await waitFor(`CRD ${crdName} to be Established`, crdEstablished, { timeoutMs: 30_000 });
    }
    const owner = await waitFor(
      'the owner Widget to be applied',
      () => objects.patch(widget(ns, 'gc-widget', { size: 1 }), undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
      { timeoutMs: 30_000 },
    );
    await core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: {
          name: 'gc-widget-owned',
          ownerReferences: [{ apiVersion: `${group}/v1alpha1`, kind: 'Widget', name: 'gc-widget', uid: owner.metadata!.uid!, controller: true }],
        },
        stringData: { password: 'z' },
      },
    });
    await custom.deleteNamespacedCustomObject({ group, version: 'v1alpha1', namespace: ns, plural: 'widgets', name: 'gc-widget' });
    // The garbage collector picks up new resource types on its discovery resync (30 s).
    await waitFor(
      'the Widget-owned Secret to be garbage-collected',
      () => notFound(() => core.readNamespacedSecret({ namespace: ns, name: 'gc-widget-owned' })),
      { timeoutMs: 120_000, intervalMs: 500 },
    );
  });
});
