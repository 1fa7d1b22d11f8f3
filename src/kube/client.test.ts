import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient, tlsFingerprint } from './client.ts';

describe('tlsFingerprint', () => {
  const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n');
  const cert = Buffer.from('client certificate bytes');
  const key = Buffer.from('client key bytes');
  const base = [ca, cert, key, undefined, undefined, true, 'kubernetes'];

  it('is stable for the same material (a rotated certificate re-read from disk compares equal)', () => {
    expect(tlsFingerprint(base)).toBe(tlsFingerprint([Buffer.from(ca), Buffer.from(cert), Buffer.from(key), undefined, undefined, true, 'kubernetes']));
  });

  it('changes when any part changes', () => {
    const seen = new Set([tlsFingerprint(base)]);
    const variants = [
      [Buffer.from('another CA'), cert, key, undefined, undefined, true, 'kubernetes'],
      [ca, Buffer.from('rotated certificate'), key, undefined, undefined, true, 'kubernetes'],
      [ca, cert, Buffer.from('rotated key'), undefined, undefined, true, 'kubernetes'],
      [ca, cert, key, undefined, undefined, false, 'kubernetes'],
      [ca, cert, key, undefined, undefined, true, 'other-server'],
      [ca, cert, key, undefined, 'passphrase', true, 'kubernetes'],
      [[ca, Buffer.from('second CA')], cert, key, undefined, undefined, true, 'kubernetes'],
    ];
    for (const variant of variants) seen.add(tlsFingerprint(variant));
    expect(seen.size).toBe(variants.length + 1);
  });

  it('does not let parts run into each other', () => {
    expect(tlsFingerprint([Buffer.from('ab'), Buffer.from('c')])).not.toBe(tlsFingerprint([Buffer.from('a'), Buffer.from('bc')]));
    expect(tlsFingerprint([undefined, 'x'])).not.toBe(tlsFingerprint(['x', undefined]));
    expect(tlsFingerprint(['true'])).not.toBe(tlsFingerprint([Buffer.from('true')]));
  });
});

describe('KubeClient error answers', () => {
  // The API server's refusal of a dockerconfigjson Secret quotes the value's first byte.
  const LEAKY =
    'Secret "db" is invalid: data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": invalid character \'S\' looking for beginning of value';
  const status = {
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    reason: 'Invalid',
    code: 422,
    message: LEAKY,
    details: {
      name: 'db',
      kind: 'secrets',
      causes: [{ reason: 'FieldValueInvalid', message: 'Invalid value: "S": invalid character \'S\'', field: 'data[.dockerconfigjson]' }],
    },
  };

  async function withServer<T>(answer: object, run: (client: KubeClient) => Promise<T>): Promise<T> {
    const server = createServer((_request, response) => {
      response.writeHead(422, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
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
      return await run(new KubeClient(kubeConfig));
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }

  it('keeps only field paths and reason codes of a refused Secret write', async () => {
    const error = await withServer(status, (client) =>
      client.request({ method: 'PATCH', path: '/api/v1/namespaces/app/secrets/db', body: { data: {} }, patchType: 'apply' }).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    expect(error).toBeInstanceOf(KubeApiError);
    const apiError = error as KubeApiError;
    expect(apiError.status).toBe(422);
    expect(apiError.message).toBe('PATCH /api/v1/namespaces/app/secrets/db: 422 Invalid: data[.dockerconfigjson] FieldValueInvalid');
    expect(apiError.message).not.toContain("'S'");
    expect(apiError.causes).toEqual([{ field: 'data[.dockerconfigjson]', reason: 'FieldValueInvalid' }]);
  });

  it("quotes the server's message for requests that carry no Secret data, capped at 1 KiB", async () => {
    const long = { ...status, message: `x${'y'.repeat(5000)}` };
    const error = (await withServer(long, (client) =>
      client
        .request({ method: 'PATCH', path: '/apis/envseal.dev/v1alpha1/namespaces/app/envelopesecrets/db/status', body: {}, patchType: 'merge' })
        .catch((e: unknown) => e),
    )) as KubeApiError;
    expect(error.message.startsWith('PATCH /apis/envseal.dev/v1alpha1/namespaces/app/envelopesecrets/db/status: 422 Invalid: xyyy')).toBe(true);
    expect(Buffer.byteLength(error.message)).toBeLessThanOrEqual(1024);
  });
});
