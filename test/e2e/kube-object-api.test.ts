// KubeObjectApi (client-node's KubernetesObjectApi as the controller uses it) against the
// real API server: objects come back as the server's JSON (what kubectl shows), the merge
// patch's and the replace's resourceVersion and the delete's uid are preconditions the server enforces, and
// a refused Secret write names the field, never the value.
import { beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError, type KubeObject } from '../../src/kube/client.ts';
import { KubeObjectApi } from '../../src/kube/object-api.ts';
import { uniqueName } from '../harness/cluster.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace } from '../harness/kube.ts';

const ns = uniqueName('objects');
const client = adminClient();
const api = new KubeObjectApi(client);

interface Secret {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    managedFields?: { manager?: string; time?: string }[];
    ownerReferences?: unknown[];
  };
  immutable?: boolean;
  data?: Record<string, string>;
}

const secret = (name: string, data: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name, namespace: ns },
  type: 'Opaque',
  data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
});

beforeAll(async () => {
  await createNamespace(client, ns);
});

describe('KubeObjectApi against the API server', () => {
  it('answers a Secret as the API server has it: the same JSON as a plain GET', async () => {
    // An owner that exists: the garbage collector deletes a Secret whose owner does not.
    const owner = await api.apply<Secret>({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner', namespace: ns } }, { fieldManager: 'envseal' });
    const written = await api.apply<Secret>(
      {
        ...secret('shape', { K: 'v' }),
        immutable: true,
        metadata: {
          name: 'shape',
          namespace: ns,
          ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata?.uid ?? '' }],
        },
      },
      { fieldManager: 'envseal', force: true },
    );
    const plain = await client.request<Secret>({ method: 'GET', path: `/api/v1/namespaces/${ns}/secrets/shape` });
    const read = await api.read<Secret>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'shape' });
    expect(read).toEqual(plain);
    expect(written).toEqual(plain);
    // The fields the controller reads, as the API writes them (client-node's models hold Dates).
    expect(read.metadata?.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(read.metadata?.managedFields?.[0]?.manager).toBe('envseal');
    expect(read.metadata?.managedFields?.[0]?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(read.metadata?.ownerReferences).toHaveLength(1);
    expect(read.immutable).toBe(true);
    expect(read.data).toEqual({ K: Buffer.from('v').toString('base64') });
  });

  it('reads no older than a resourceVersion it was given: the newest version, from an older one or the current one', async () => {
    const first = await api.apply<Secret>(secret('floor', { K: 'one' }), { fieldManager: 'envseal', force: true });
    const second = await api.apply<Secret>(secret('floor', { K: 'two' }), { fieldManager: 'envseal', force: true });
    const ref = { apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'floor' };
    const plain = await client.request<Secret>({ method: 'GET', path: `/api/v1/namespaces/${ns}/secrets/floor` });
    // From the first version the controller may have cached: the API server still answers the newest.
    expect(await api.read<Secret>(ref, { notOlderThan: first.metadata?.resourceVersion })).toEqual(plain);
    expect(await api.read<Secret>(ref, { notOlderThan: second.metadata?.resourceVersion })).toEqual(plain);
    expect(plain.data).toEqual({ K: Buffer.from('two').toString('base64') });
    // A deleted object is gone for such a read too.
    await api.delete(ref);
    const error = (await api.read(ref, { notOlderThan: second.metadata?.resourceVersion }).catch((e: unknown) => e)) as KubeApiError;
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.notFound).toBe(true);
  });

  it('removes keys with a merge patch, and refuses it once the Secret changed since the resourceVersion', async () => {
    const written = await api.apply<Secret>(secret('prune', { K: 'v', EXTRA: 'x', MORE: 'y' }), { fieldManager: 'envseal', force: true });
    const stale = written.metadata?.resourceVersion;
    const pruned = await api.mergePatch<Secret>(
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'prune', namespace: ns, resourceVersion: stale }, data: { EXTRA: null } },
      { fieldManager: 'envseal' },
    );
    expect(Object.keys(pruned.data ?? {}).sort()).toEqual(['K', 'MORE']);
    const error = (await api
      .mergePatch({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'prune', namespace: ns, resourceVersion: stale }, data: { MORE: null } }, {})
      .catch((e: unknown) => e)) as KubeApiError;
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.conflict).toBe(true);
    const now = await api.read<Secret>({ apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'prune' });
    expect(Object.keys(now.data ?? {}).sort()).toEqual(['K', 'MORE']);
  });

  it('deletes only the object with the given uid', async () => {
    await api.apply(secret('replace', { K: 'v' }), { fieldManager: 'envseal', force: true });
    const ref = { apiVersion: 'v1', kind: 'Secret', namespace: ns, name: 'replace' };
    const error = (await api.delete(ref, { uid: '00000000-0000-0000-0000-000000000000' }).catch((e: unknown) => e)) as KubeApiError;
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.conflict).toBe(true);
    const live = await api.read<Secret>(ref);
    await api.delete(ref, { uid: live.metadata?.uid ?? '' });
    const gone = (await api.read(ref).catch((e: unknown) => e)) as KubeApiError;
    expect(gone.notFound).toBe(true);
  });

  it('creates with a generated name, and replaces only the resourceVersion it read (as leader election and Events use it)', async () => {
    const made = await api.create<Secret>({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: 'db.', namespace: ns },
      involvedObject: { apiVersion: 'envseal.dev/v1alpha1', kind: 'EnvelopeSecret', namespace: ns, name: 'db' },
      type: 'Normal',
      reason: 'Synced',
      message: 'made',
    });
    expect(made.metadata?.name).toMatch(/^db\.[a-z0-9]{5}$/);
    const lease = await api.create<KubeObject & { spec?: { holderIdentity?: string } }>({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: 'lease', namespace: ns },
      spec: { holderIdentity: 'a' },
    });
    const taken = await api.replace<typeof lease>({ ...lease, spec: { holderIdentity: 'b' } });
    expect(taken.spec?.holderIdentity).toBe('b');
    const stale = (await api.replace({ ...lease, spec: { holderIdentity: 'c' } }).catch((e: unknown) => e)) as KubeApiError;
    expect(stale).toBeInstanceOf(KubeApiError);
    expect(stale.conflict).toBe(true);
    const twice = (await api.create({ ...lease, metadata: { name: 'lease', namespace: ns } }).catch((e: unknown) => e)) as KubeApiError;
    expect(twice.conflict).toBe(true);
    expect((await api.read<typeof lease>({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: ns, name: 'lease' })).spec?.holderIdentity).toBe(
      'b',
    );
  });

  it('names the refused field of a Secret write, never its value', async () => {
    const value = `${CANARY_MARKER}object-api-${ns}`;
    const error = (await api
      .apply(
        { ...secret('docker', {}), type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(value).toString('base64') } },
        { fieldManager: 'envseal', force: true },
      )
      .catch((e: unknown) => e)) as KubeApiError;
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.status).toBe(422);
    expect(error.message).toContain('data[.dockerconfigjson]');
    // The server's own wording quotes the value's first byte: invalid character 'C' ...
    const told = `${error.message}\n${error.stack}\n${JSON.stringify(error)}`;
    expect(told).not.toContain("'C'");
    expect(told).not.toContain(CANARY_MARKER);
  });
});
