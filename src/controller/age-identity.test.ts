import { describe, expect, it } from 'vitest';
import { captureLogger } from '../test-support/capture-logger.ts';
import { KubeApiError, type KubeObject } from '../kube/client.ts';
import type { ObjectRef } from '../kube/object-api.ts';
import { formatAgeIdentityFile, generateAgeIdentity } from '../providers/age.ts';
import { PUBLISHED_RECIPIENT_KEY } from '../kube/cluster-recipient.ts';
import { AGE_IDENTITY_KEY, type IdentityObjectCalls, ensureClusterAgeIdentity } from './age-identity.ts';

type Obj = { metadata?: { name?: string }; data?: Record<string, string> };

/** Secrets and ConfigMaps of one namespace as the API server keeps them; `beforeCreate` runs just before a create lands. */
function apiServer(options: { beforeCreate?: (objects: Map<string, Obj>) => void } = {}) {
  const objects = new Map<string, Obj>();
  const pathOf = (ref: { kind?: string; namespace?: string; name?: string }) =>
    `/api/v1/namespaces/${ref.namespace}/${ref.kind === 'Secret' ? 'secrets' : 'configmaps'}/${ref.name}`;
  const refOf = (object: KubeObject) => ({ kind: object.kind, namespace: object.metadata?.namespace, name: object.metadata?.name });
  // The calls of KubeObjectApi that the identity makes.
  const client: IdentityObjectCalls = {
    async read<T>(ref: ObjectRef): Promise<T> {
      const found = objects.get(pathOf(ref));
      if (!found) throw new KubeApiError(404, 'NotFound', `${pathOf(ref)} not found`);
      return structuredClone(found) as T;
    },
    async create<T>(object: KubeObject): Promise<T> {
      options.beforeCreate?.(objects);
      const at = pathOf(refOf(object));
      if (objects.has(at)) throw new KubeApiError(409, 'AlreadyExists', `${at} already exists`);
      objects.set(at, structuredClone(object as Obj));
      return structuredClone(object) as T;
    },
    async apply<T>(object: KubeObject): Promise<T> {
      objects.set(pathOf(refOf(object)), structuredClone(object as Obj));
      return structuredClone(object) as T;
    },
  };
  return { client, objects };
}

const SECRET = '/api/v1/namespaces/envseal-system/secrets/envseal-age-identity';
const CONFIGMAP = '/api/v1/namespaces/envseal-system/configmaps/envseal-age-recipient';

function ensure(client: ReturnType<typeof apiServer>['client'], logger = captureLogger().logger) {
  return ensureClusterAgeIdentity({
    client,
    namespace: 'envseal-system',
    secretName: 'envseal-age-identity',
    configMapName: 'envseal-age-recipient',
    logger,
    signal: AbortSignal.timeout(10_000),
  });
}

describe('ensureClusterAgeIdentity', () => {
  it('creates the identity on first start and publishes its recipient, never logging the identity', async () => {
    const api = apiServer();
    const { logger, lines: logs } = captureLogger();
    const first = await ensure(api.client, logger);
    expect(first.created).toBe(true);
    expect(first.recipient).toMatch(/^age1/);
    const stored = Buffer.from(api.objects.get(SECRET)!.data![AGE_IDENTITY_KEY]!, 'base64').toString();
    expect(stored).toContain(first.identities[0]);
    expect(api.objects.get(CONFIGMAP)?.data).toEqual({ [PUBLISHED_RECIPIENT_KEY]: first.recipient });
    expect(logs.join('')).toContain(first.recipient);
    expect(logs.join('')).not.toContain(first.identities[0]);
    // The next start reads the same identity.
    const second = await ensure(api.client);
    expect(second).toEqual({ ...first, created: false });
  });

  it('uses the identity another replica created at the same moment', async () => {
    const theirs = await generateAgeIdentity();
    const api = apiServer({
      beforeCreate: (objects) =>
        objects.set(SECRET, {
          metadata: { name: 'envseal-age-identity' },
          data: { [AGE_IDENTITY_KEY]: Buffer.from(formatAgeIdentityFile(theirs, new Date())).toString('base64') },
        }),
    });
    const result = await ensure(api.client);
    expect(result).toMatchObject({ created: false, recipient: theirs.recipient, identities: [theirs.identity] });
  });

  it('refuses an identity Secret without its key, naming the Secret and the key', async () => {
    const api = apiServer();
    api.objects.set(SECRET, { metadata: { name: 'envseal-age-identity' }, data: { other: 'eA==' } });
    await expect(ensure(api.client)).rejects.toThrow(`Secret envseal-system/envseal-age-identity has no key ${AGE_IDENTITY_KEY}`);
    expect(api.objects.has(CONFIGMAP)).toBe(false);
  });
});
