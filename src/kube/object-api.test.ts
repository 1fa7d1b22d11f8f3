import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient } from './client.ts';
import { KubeObjectApi } from './object-api.ts';

// The discovery answer KubernetesObjectApi asks for before its first call of a group version.
const CORE_V1 = {
  kind: 'APIResourceList',
  apiVersion: 'v1',
  groupVersion: 'v1',
  resources: [
    { name: 'configmaps', singularName: 'configmap', namespaced: true, kind: 'ConfigMap', verbs: ['get', 'patch'] },
    { name: 'secrets', singularName: 'secret', namespaced: true, kind: 'Secret', verbs: ['get', 'patch'] },
  ],
};

interface Seen {
  requests: { method: string; url: string; contentType: string | undefined; body: string }[];
  connections: number;
}

/** A plain HTTP server standing in for the API server, with client-node's real client in front. */
async function withServer<T>(
  answer: (request: IncomingMessage, response: ServerResponse) => void,
  run: (api: KubeObjectApi, seen: Seen) => Promise<T>,
): Promise<T> {
  const seen: Seen = { requests: [], connections: 0 };
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      seen.requests.push({ method: request.method ?? '', url: request.url ?? '', contentType: request.headers['content-type'], body });
      if (request.url === '/api/v1') response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(CORE_V1));
      else answer(request, response);
    });
  });
  server.on('connection', () => seen.connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'test' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  try {
    return await run(new KubeObjectApi(new KubeClient(kubeConfig)), seen);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

const json = (response: ServerResponse, status: number, body: object) =>
  response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

describe('KubeObjectApi (client-node KubernetesObjectApi)', () => {
  it('reads objects over kept-alive connections', async () => {
    await withServer(
      (_request, response) =>
        json(response, 200, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'r', namespace: 'ns' }, data: { recipient: 'age1xyz' } }),
      async (api, seen) => {
        for (let i = 0; i < 10; i++) {
          const configMap = await api.read<{ kind?: string; data?: Record<string, string> }>({
            apiVersion: 'v1',
            kind: 'ConfigMap',
            namespace: 'ns',
            name: 'r',
          });
          expect(configMap.data).toEqual({ recipient: 'age1xyz' });
        }
        expect(seen.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
          'GET /api/v1',
          ...Array.from({ length: 10 }, () => 'GET /api/v1/namespaces/ns/configmaps/r'),
        ]);
        // client-node alone opens a connection per request (a new undici Agent each time):
        // 11 here. undici may open a second while the first is being handed back.
        expect(seen.connections).toBeLessThanOrEqual(2);
      },
    );
  });

  it('asks for a version not older than the one given on the object read only, not on discovery', async () => {
    await withServer(
      (_request, response) => json(response, 200, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'v1', namespace: 'ns', resourceVersion: '9' } }),
      async (api, seen) => {
        // Named like the discovery path's last segment: only the object's own path gets the query.
        const ref = { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns', name: 'v1' };
        await api.read(ref, { notOlderThan: '8' });
        await api.read(ref);
        expect(seen.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
          'GET /api/v1',
          'GET /api/v1/namespaces/ns/configmaps/v1?resourceVersion=8',
          'GET /api/v1/namespaces/ns/configmaps/v1',
        ]);
      },
    );
  });

  it('sends a server-side apply with the field manager and force', async () => {
    await withServer(
      (_request, response) => json(response, 200, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app', resourceVersion: '7' } }),
      async (api, seen) => {
        const written = await api.apply<{
          apiVersion?: string;
          kind?: string;
          data?: Record<string, string>;
          metadata?: { name: string; namespace: string; resourceVersion?: string };
        }>({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app' }, data: { K: 'dg==' } }, { fieldManager: 'envseal', force: true });
        expect(written.metadata?.resourceVersion).toBe('7');
        const patch = seen.requests.at(-1);
        expect(patch?.method).toBe('PATCH');
        expect(patch?.url).toBe('/api/v1/namespaces/app/secrets/db?fieldManager=envseal&force=true');
        expect(patch?.contentType).toBe('application/apply-patch+yaml');
        expect(JSON.parse(patch?.body ?? '{}')).toMatchObject({ kind: 'Secret', data: { K: 'dg==' } });
      },
    );
  });

  it('answers objects as the API server wrote them, not as client-node models (timestamps, unknown fields)', async () => {
    // What the controller reads of a Secret, in the API's own JSON.
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: 'db',
        namespace: 'app',
        uid: '0f6c1d2e-8a4b-4c5d-9e6f-7a8b9c0d1e2f',
        resourceVersion: '4711',
        creationTimestamp: '2026-11-29T15:00:00Z',
        managedFields: [
          {
            manager: 'envseal',
            operation: 'Apply',
            apiVersion: 'v1',
            time: '2026-11-29T15:00:01Z',
            fieldsType: 'FieldsV1',
            fieldsV1: { 'f:data': { 'f:K': {} } },
          },
        ],
        ownerReferences: [{ apiVersion: 'envseal.dev/v1alpha1', kind: 'EnvelopeSecret', name: 'db', uid: 'u-1', controller: true, blockOwnerDeletion: true }],
        futureField: { kept: true },
      },
      immutable: true,
      type: 'Opaque',
      data: { K: 'dg==' },
    };
    await withServer(
      (_request, response) => json(response, 200, secret),
      async (api) => {
        const read = await api.read({ apiVersion: 'v1', kind: 'Secret', namespace: 'app', name: 'db' });
        expect(read).toEqual(secret);
        const written = await api.apply(
          { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app' }, data: { K: 'dg==' } },
          { fieldManager: 'envseal' },
        );
        expect(written).toEqual(secret);
        // client-node's V1Secret would hold a Date here, and would have dropped futureField.
        expect(typeof written.metadata?.creationTimestamp).toBe('string');
      },
    );
  });

  it('sends a merge patch whose resourceVersion is a precondition, and null to remove a key', async () => {
    await withServer(
      (_request, response) =>
        json(response, 200, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app', resourceVersion: '8' }, data: { K: 'dg==' } }),
      async (api, seen) => {
        const pruned = await api.mergePatch(
          { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app', resourceVersion: '7' }, data: { EXTRA: null } },
          { fieldManager: 'envseal' },
        );
        expect(pruned.metadata?.resourceVersion).toBe('8');
        const patch = seen.requests.at(-1);
        expect(patch?.url).toBe('/api/v1/namespaces/app/secrets/db?fieldManager=envseal');
        expect(patch?.contentType).toBe('application/merge-patch+json');
        expect(JSON.parse(patch?.body ?? '{}')).toEqual({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: 'db', namespace: 'app', resourceVersion: '7' },
          data: { EXTRA: null },
        });
      },
    );
  });

  it('deletes with a uid precondition', async () => {
    await withServer(
      (_request, response) => json(response, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success' }),
      async (api, seen) => {
        await api.delete({ apiVersion: 'v1', kind: 'Secret', namespace: 'app', name: 'db' }, { uid: 'u-1' });
        const request = seen.requests.at(-1);
        expect(`${request?.method} ${request?.url}`).toBe('DELETE /api/v1/namespaces/app/secrets/db');
        expect(JSON.parse(request?.body ?? '{}')).toEqual({ preconditions: { uid: 'u-1' } });
      },
    );
  });

  it('says conflict when a precondition fails', async () => {
    await withServer(
      (_request, response) =>
        json(response, 409, {
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          reason: 'Conflict',
          code: 409,
          message: 'Operation cannot be fulfilled on secrets "db": the object has been modified',
        }),
      async (api) => {
        const error = (await api
          .mergePatch({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app', resourceVersion: '7' }, data: { EXTRA: null } }, {})
          .catch((e: unknown) => e)) as KubeApiError;
        expect(error).toBeInstanceOf(KubeApiError);
        expect(error.conflict).toBe(true);
        // A Secret write: the server's wording is left out.
        expect(error.message).toBe('PATCH Secret app/db: 409 Conflict');
      },
    );
  });

  it('keeps only field paths and reason codes of a refused Secret write (the server quotes the value)', async () => {
    const leaky =
      'Secret "db" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character \'S\' looking for beginning of value';
    const status = {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'Invalid',
      code: 422,
      message: leaky,
      details: { causes: [{ reason: 'FieldValueInvalid', message: "invalid character 'S'", field: 'data[.dockerconfigjson]' }] },
    };
    await withServer(
      (_request, response) => json(response, 422, status),
      async (api) => {
        const error = await api
          .apply(
            {
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name: 'db', namespace: 'app' },
              type: 'kubernetes.io/dockerconfigjson',
              data: { '.dockerconfigjson': 'U2VjcmV0' },
            },
            { fieldManager: 'envseal' },
          )
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(KubeApiError);
        const apiError = error as KubeApiError;
        expect(apiError.status).toBe(422);
        expect(apiError.message).toBe('PATCH Secret app/db: 422 Invalid: data[.dockerconfigjson] FieldValueInvalid');
        expect(apiError.cause).toBeUndefined();
        expect(`${apiError.message}${apiError.stack}`).not.toContain("'S'");
        expect(apiError.causes).toEqual([{ field: 'data[.dockerconfigjson]', reason: 'FieldValueInvalid' }]);
      },
    );
  });

  it('says not found, with the server message, for a read', async () => {
    await withServer(
      (_request, response) =>
        json(response, 404, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'configmaps "r" not found' }),
      async (api) => {
        const error = (await api.read({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns', name: 'r' }).catch((e: unknown) => e)) as KubeApiError;
        expect(error).toBeInstanceOf(KubeApiError);
        expect(error.notFound).toBe(true);
        expect(error.message).toBe('GET ConfigMap ns/r: 404 NotFound: configmaps "r" not found');
      },
    );
  });

  it('honours the AbortSignal: an aborted call sends nothing', async () => {
    await withServer(
      (_request, response) => json(response, 200, {}),
      async (api, seen) => {
        const reason = new Error('stopped');
        const error = await api
          .apply(
            { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'app' } },
            { fieldManager: 'envseal', signal: AbortSignal.abort(reason) },
          )
          .catch((e: unknown) => e);
        expect(error).toBe(reason);
        expect(seen.requests.filter((r) => r.method === 'PATCH')).toEqual([]);
      },
    );
  });

  it('aborts a call in flight', async () => {
    await withServer(
      () => {
        // never answers
      },
      async (api) => {
        const controller = new AbortController();
        const pending = api.read({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns', name: 'r' }, { signal: controller.signal }).catch((e: unknown) => e);
        setTimeout(() => controller.abort(new Error('deadline')), 100);
        expect(((await pending) as Error).message).toBe('deadline');
      },
    );
  });

  it('names an unreachable API server', async () => {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: 'c', server: 'http://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 'test' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    const error = (await new KubeObjectApi(new KubeClient(kubeConfig))
      .read({ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'ns', name: 'r' })
      .catch((e: unknown) => e)) as KubeApiError;
    expect(error).toBeInstanceOf(KubeApiError);
    expect(error.reason).toBe('Unreachable');
    expect(error.message).toMatch(/^GET ConfigMap ns\/r: the API server did not answer/);
  });
});
