import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { rootCertificates } from 'node:tls';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ProviderError, type ProviderSettingsSource } from './types.ts';
import { createVaultTransitProvider, parseTransitTarget, sanitizeVaultMessage, transitContext, vaultTransitProvider } from './vault-transit/index.ts';

const CANARY = 'CANARY-vault-unit-7d21';
const TOKEN = 'hvs.unit-test-token-never-shown';
const CONTEXT = { 'envseal.dev/scope': 'strict', 'envseal.dev/namespace': 'prod', 'envseal.dev/name': 'db' };

describe('vault-transit targets', () => {
  it('reads NAME on the transit mount, and MOUNT/keys/NAME on any mount', () => {
    expect(parseTransitTarget('app')).toEqual({ mount: 'transit', name: 'app', keyId: 'transit/keys/app' });
    expect(parseTransitTarget('teams/a/transit/keys/app-1.v2')).toEqual({ mount: 'teams/a/transit', name: 'app-1.v2', keyId: 'teams/a/transit/keys/app-1.v2' });
  });

  it.each([
    ['', /is empty/],
    ['a/b', /is not NAME \(on the mount transit\) or MOUNT\/keys\/NAME/],
    ['transit/keys/', /invalid key name/],
    ['transit/keys/a b', /invalid key name/],
    ['transit/keys/..', /invalid key name/],
    ['../x/keys/app', /invalid mount path/],
    ['/keys/app', /invalid mount path/],
  ])('refuses %j', (target, message) => {
    let error: unknown;
    try {
      parseTransitTarget(target);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe('InvalidRecipient');
    expect((error as ProviderError).message).toMatch(message);
  });
});

describe('transit context', () => {
  it('is the same for the same entries in any order, differs per namespace, and is never empty', () => {
    const reordered = Object.fromEntries(Object.entries(CONTEXT).reverse());
    expect(transitContext(reordered)).toBe(transitContext(CONTEXT));
    expect(transitContext({ ...CONTEXT, 'envseal.dev/namespace': 'staging' })).not.toBe(transitContext(CONTEXT));
    expect(Buffer.from(transitContext({}), 'base64').byteLength).toBeGreaterThan(0);
  });
});

describe('sanitizeVaultMessage', () => {
  it('redacts ciphertexts and long base64 runs, keeps key paths', () => {
    const said = sanitizeVaultMessage(
      `decrypt of vault:v1:${Buffer.from(CANARY).toString('base64')} with transit/keys/app failed: ${Buffer.from(`${CANARY}${CANARY}`).toString('base64')}\u0007`,
    );
    expect(said).toContain('transit/keys/app');
    expect(said).toContain('[redacted ciphertext]');
    expect(said).not.toContain(Buffer.from(CANARY).toString('base64').slice(0, 16));
    expect(said).not.toMatch(/[^\x20-\x7e]/);
  });
});

// A scripted HTTP endpoint: only for what a real OpenBao cannot be made to answer on
// demand (429, 5xx, scripted messages). Everything else is tested against a real OpenBao
// in test/e2e/vault-transit.test.ts.
interface Scripted {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

let server: Server | undefined;
const seen: { path: string; token: string | undefined; body: Record<string, unknown> }[] = [];

async function fakeVault(answer: (request: IncomingMessage, body: Record<string, unknown>) => Scripted): Promise<string> {
  seen.length = 0;
  server = createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
    request.on('end', () => {
      const body = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
      seen.push({ path: request.url ?? '', token: request.headers['x-vault-token'] as string | undefined, body });
      const { status, body: out, headers } = answer(request, body);
      response.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      response.end(JSON.stringify(out));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server!.close(resolve));
    server = undefined;
  }
});

const ciphertext = Buffer.from(`vault:v1:${Buffer.alloc(60, 7).toString('base64')}`).toString('base64');
const recipient = { provider: 'vault-transit', keyId: 'transit/keys/app', encryptedKey: ciphertext };

async function unwrapError(address: string, options: { maxAttempts?: number; signal?: AbortSignal } = {}): Promise<ProviderError> {
  const provider = createVaultTransitProvider({ address, token: TOKEN, maxAttempts: options.maxAttempts ?? 1, requestTimeoutMs: 5_000 });
  const error = await provider.unwrap({ recipient, encryptionContext: CONTEXT, signal: options.signal }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderError);
  const e = error as ProviderError;
  expect(e.message).not.toContain(TOKEN);
  expect(e.message).not.toContain(CANARY);
  expect(JSON.stringify(e.cause)).not.toContain(TOKEN);
  expect(String((e.cause as Error | undefined)?.message)).not.toContain(CANARY);
  return e;
}

describe('vault-transit errors (scripted endpoint)', () => {
  it.each<[number, string, string, boolean]>([
    [403, '1 error occurred:\n\t* permission denied\n\n', 'AccessDenied', false],
    [404, '', 'KeyNotFound', false],
    [400, 'encryption key not found', 'KeyNotFound', false],
    [400, 'cipher: message authentication failed', 'InvalidCiphertext', true],
    [400, 'invalid ciphertext length', 'InvalidCiphertext', false],
    [429, 'request rate limit exceeded', 'Throttled', false],
    [503, 'Vault is sealed', 'Unavailable', false],
    [500, 'internal error', 'Unavailable', false],
    [307, '', 'Unavailable', false],
  ])('HTTP %i %j -> %s', async (status, said, code, contextBound) => {
    const address = await fakeVault(() => ({ status, body: { errors: said === '' ? [] : [`${said} ${Buffer.from(CANARY).toString('base64')}`] } }));
    const error = await unwrapError(address);
    expect(error.code).toBe(code);
    expect(error.contextBound).toBe(contextBound);
    expect(error.message).toContain('transit/keys/app');
    expect(error.message).toContain(`HTTP ${status}`);
    expect(error.retryable).toBe(code === 'Throttled' || code === 'Unavailable');
  });

  it('retries 429 and 5xx up to maxAttempts, then reports the last answer', async () => {
    const address = await fakeVault(() => ({ status: 429, body: { errors: ['rate limited'] } }));
    const error = await unwrapError(address, { maxAttempts: 3 });
    expect(error.code).toBe('Throttled');
    expect(seen).toHaveLength(3);
  });

  it('does not follow a redirect, which would carry the token to another address', async () => {
    const address = await fakeVault((request) =>
      request.url === '/elsewhere'
        ? { status: 200, body: { data: { plaintext: Buffer.alloc(32).toString('base64') } } }
        : { status: 307, body: {}, headers: { Location: '/elsewhere' } },
    );
    const error = await unwrapError(address);
    expect(error.code).toBe('Unavailable');
    expect(error.message).toMatch(/redirect/);
    expect(seen.map((s) => s.path)).toEqual(['/v1/transit/decrypt/app']);
  });

  it('an unreachable Vault is Unavailable, naming the address', async () => {
    const address = await fakeVault(() => ({ status: 200, body: {} }));
    server!.close();
    server!.closeAllConnections();
    await once(server!, 'close');
    server = undefined;
    const error = await unwrapError(address);
    expect(error.code).toBe('Unavailable');
    expect(error.message).toContain(address);
  });

  it('an aborted call rejects with the abort reason', async () => {
    const address = await fakeVault(() => ({ status: 429, body: {} }));
    const controller = new AbortController();
    const reason = new Error('stop now');
    controller.abort(reason);
    const provider = createVaultTransitProvider({ address, token: TOKEN });
    await expect(provider.unwrap({ recipient, encryptionContext: CONTEXT, signal: controller.signal })).rejects.toBe(reason);
    expect(seen).toHaveLength(0);
  });

  it('an abort while waiting to retry rejects with the abort reason, with no further call', async () => {
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const address = await fakeVault(() => {
      setImmediate(() => controller.abort(reason));
      return { status: 503, body: { errors: ['sealed'] } };
    });
    const provider = createVaultTransitProvider({ address, token: TOKEN, maxAttempts: 20 });
    await expect(provider.unwrap({ recipient, encryptionContext: CONTEXT, signal: controller.signal })).rejects.toBe(reason);
    expect(seen.length).toBeLessThan(20);
  });

  it('refuses an encryptedKey that is not a transit ciphertext without calling Vault', async () => {
    const address = await fakeVault(() => ({ status: 200, body: {} }));
    const provider = createVaultTransitProvider({ address, token: TOKEN });
    await expect(
      provider.unwrap({ recipient: { ...recipient, encryptedKey: Buffer.from('not-vault').toString('base64') }, encryptionContext: CONTEXT }),
    ).rejects.toMatchObject({ code: 'InvalidCiphertext' });
    expect(seen).toHaveLength(0);
  });

  it('can unwrap only with an address and a token or Kubernetes auth', () => {
    expect(createVaultTransitProvider({}).canUnwrap(recipient)).toBe(false);
    expect(createVaultTransitProvider({ address: 'http://127.0.0.1:1' }).canUnwrap(recipient)).toBe(false);
    expect(createVaultTransitProvider({ address: 'http://127.0.0.1:1', token: TOKEN }).canUnwrap(recipient)).toBe(true);
    expect(createVaultTransitProvider({ address: 'http://127.0.0.1:1', kubernetesAuth: { role: 'r' } }).canUnwrap(recipient)).toBe(true);
  });
});

describe('vault-transit Kubernetes auth (scripted endpoint)', () => {
  it('logs in with the ServiceAccount token once, reuses the Vault token, and logs in again after a 403', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envseal-vault-unit-'));
    try {
      const tokenPath = join(dir, 'token');
      await writeFile(tokenPath, 'sa-jwt-1\n');
      let logins = 0;
      let revoked = false;
      const address = await fakeVault((request, body) => {
        if (request.url === '/v1/auth/k8s/login') {
          logins++;
          revoked = false;
          return { status: 200, body: { auth: { client_token: `vault-token-${logins}`, lease_duration: 3600 } } };
        }
        if (revoked) return { status: 403, body: { errors: ['permission denied'] } };
        return { status: 200, body: { data: { plaintext: Buffer.alloc(32, 1).toString('base64'), ciphertext: 'vault:v1:AAAA', echo: body } } };
      });
      const provider = createVaultTransitProvider({ address, kubernetesAuth: { role: 'envseal', mount: 'k8s', tokenPath } });
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      expect(logins).toBe(1);
      expect(seen[0]).toMatchObject({ path: '/v1/auth/k8s/login', body: { role: 'envseal', jwt: 'sa-jwt-1' } });
      expect(seen.slice(1).map((s) => s.token)).toEqual(['vault-token-1', 'vault-token-1']);
      expect(seen[1]!.body).toEqual({ ciphertext: `vault:v1:${Buffer.alloc(60, 7).toString('base64')}`, context: transitContext(CONTEXT) });

      revoked = true;
      await writeFile(tokenPath, 'sa-jwt-2\n');
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      expect(logins).toBe(2);
      expect(seen.at(-2)).toMatchObject({ path: '/v1/auth/k8s/login', body: { jwt: 'sa-jwt-2' } });
      expect(seen.at(-1)!.token).toBe('vault-token-2');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('logs in again once two thirds of the Vault token lease have passed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'envseal-vault-unit-'));
    try {
      const tokenPath = join(dir, 'token');
      await writeFile(tokenPath, 'sa-jwt\n');
      let logins = 0;
      const address = await fakeVault((request) => {
        if (request.url === '/v1/auth/kubernetes/login')
          return { status: 200, body: { auth: { client_token: `vault-token-${++logins}`, lease_duration: 300 } } };
        return { status: 200, body: { data: { plaintext: Buffer.alloc(32, 1).toString('base64') } } };
      });
      let clock = 1_000_000;
      const provider = createVaultTransitProvider({ address, kubernetesAuth: { role: 'envseal', tokenPath }, now: () => clock });
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      clock += 199_000;
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      expect(logins).toBe(1);
      clock += 1_000;
      await provider.unwrap({ recipient, encryptionContext: CONTEXT });
      expect(logins).toBe(2);
      expect(seen.at(-1)!.token).toBe('vault-token-2');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a missing ServiceAccount token file is AccessDenied naming the file, with no call to Vault', async () => {
    const address = await fakeVault(() => ({ status: 200, body: {} }));
    const provider = createVaultTransitProvider({ address, kubernetesAuth: { role: 'envseal', tokenPath: '/nonexistent/envseal/token' } });
    await expect(provider.unwrap({ recipient, encryptionContext: CONTEXT })).rejects.toMatchObject({
      code: 'AccessDenied',
      message: expect.stringContaining('/nonexistent/envseal/token'),
    });
    expect(seen).toHaveLength(0);
  });
});

describe('vault-transit CA bundle (--vault-ca-cert, VAULT_CACERT, BAO_CACERT)', () => {
  // A real certificate: the first of the CAs Node.js ships.
  const pem = rootCertificates[0]!;

  function source(values: Record<string, string>, env: Record<string, string>, files: Record<string, string>): ProviderSettingsSource {
    return {
      values,
      env,
      role: 'controller',
      unwrap: true,
      warn: () => {},
      // As the controller's reader: a missing file is the file system's own error.
      readFile: async (path) => {
        if (!Object.hasOwn(files, path))
          throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT', syscall: 'open' });
        return Buffer.from(files[path]!);
      },
    };
  }
  const resolve = (values: Record<string, string>, env: Record<string, string>, files: Record<string, string> = {}) =>
    vaultTransitProvider.settings!.resolve(source(values, env, files)) as Promise<{ caCert?: string; address?: string }>;

  it('reads the flag, else VAULT_CACERT, else BAO_CACERT, keeping the certificates only', async () => {
    const files = { 'flag.pem': `# a comment\n${pem}`, 'vault.pem': pem, 'bao.pem': `${pem}\n${pem}` };
    const address = { VAULT_ADDR: 'https://vault.example:8200' };
    expect((await resolve({ 'vault-ca-cert': 'flag.pem' }, { ...address, VAULT_CACERT: 'vault.pem' }, files)).caCert).toBe(`${pem.trim()}\n`);
    expect((await resolve({}, { ...address, VAULT_CACERT: 'vault.pem', BAO_CACERT: 'bao.pem' }, files)).caCert).toBe(`${pem.trim()}\n`);
    expect((await resolve({}, { ...address, BAO_CACERT: 'bao.pem' }, files)).caCert).toBe(`${pem.trim()}\n${pem.trim()}\n`);
    expect((await resolve({}, address, files)).caCert).toBeUndefined();
  });

  it.each([
    ['a missing file', { 'vault-ca-cert': 'nope.pem' }, {}, /Vault CA bundle "nope.pem" \(from --vault-ca-cert\) cannot be read \(ENOENT\)/],
    ['a file without a certificate', {}, { VAULT_CACERT: 'junk.pem' }, /Vault CA bundle "junk.pem" \(from VAULT_CACERT\) holds no PEM certificate/],
    [
      'a broken certificate',
      {},
      { BAO_CACERT: 'broken.pem' },
      /Vault CA bundle "broken.pem" \(from BAO_CACERT\): certificate #1 of 1 is not a valid X.509 certificate/,
    ],
  ])('refuses %s, naming it', async (_what, values, env, message) => {
    const files = { 'junk.pem': 'not a certificate\n', 'broken.pem': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' };
    const error = await resolve(values, { VAULT_ADDR: 'https://vault.example:8200', ...env }, files).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe('InvalidConfiguration');
    expect((error as ProviderError).message).toMatch(message);
  });

  it('refuses a CA with a plain-HTTP address, in the settings and in the provider', async () => {
    const error = await resolve({ 'vault-ca-cert': 'ca.pem' }, { VAULT_ADDR: 'http://vault.example:8200' }, { 'ca.pem': pem }).catch((e: unknown) => e);
    expect((error as ProviderError).message).toMatch(/--vault-ca-cert is set, but the Vault address "http:\/\/vault.example:8200" is not https:\/\//);
    expect(() => createVaultTransitProvider({ address: 'http://vault.example:8200', token: TOKEN, caCert: pem })).toThrow(/not https:\/\//);
  });

  it('a certificate the CA did not sign fails the TLS check once, naming the problem and the code', async () => {
    // A TLS server whose certificate Node.js does not trust (a self-signed one, made by openssl).
    const dir = await mkdtemp(join(tmpdir(), 'envseal-vault-tls-unit-'));
    try {
      await promisify(execFile)('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ]);
      let connections = 0;
      const tlsServer = createHttpsServer({ key: await readFile(join(dir, 'key.pem')), cert: await readFile(join(dir, 'cert.pem')) }, (_request, response) =>
        response.end('{}'),
      );
      tlsServer.on('connection', () => connections++);
      tlsServer.listen(0, '127.0.0.1');
      await once(tlsServer, 'listening');
      try {
        const address = `https://127.0.0.1:${(tlsServer.address() as AddressInfo).port}`;
        const provider = createVaultTransitProvider({ address, token: TOKEN, caCert: pem, maxAttempts: 3 });
        const error = await provider.generateDataKey({ target: 'app', encryptionContext: CONTEXT }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ProviderError);
        expect((error as ProviderError).code).toBe('Unavailable');
        expect((error as ProviderError).message).toBe(
          `vault-transit read key with key transit/keys/app failed: TLS with Vault at ${address} failed: Vault's certificate is self-signed and not trusted: check that --vault-ca-cert (VAULT_CACERT) holds the CA that signed it (DEPTH_ZERO_SELF_SIGNED_CERT)`,
        );
        // One TCP connection: a failed verification is not retried (maxAttempts 3).
        expect(connections).toBe(1);
      } finally {
        tlsServer.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('vault-transit controller settings: Kubernetes auth', () => {
  const source = (values: Record<string, string>, env: Record<string, string>): ProviderSettingsSource => ({
    values,
    env,
    role: 'controller',
    unwrap: true,
    warn: () => {},
    readFile: async () => Buffer.alloc(0),
  });
  const resolve = (values: Record<string, string>, env: Record<string, string> = {}) =>
    vaultTransitProvider.settings!.resolve(source(values, { VAULT_ADDR: 'https://vault.example:8200', ...env }));

  it('takes a token file of its own (a projected token with Vault audience), by flag or VAULT_AUTH_TOKEN_FILE', async () => {
    expect(await resolve({ 'vault-auth-role': 'envseal', 'vault-auth-token-file': '/var/run/secrets/envseal/vault/token' })).toMatchObject({
      kubernetesAuth: { role: 'envseal', tokenPath: '/var/run/secrets/envseal/vault/token' },
    });
    expect(await resolve({}, { VAULT_AUTH_ROLE: 'envseal', VAULT_AUTH_TOKEN_FILE: '/t' })).toMatchObject({
      kubernetesAuth: { role: 'envseal', tokenPath: '/t' },
    });
    expect(((await resolve({ 'vault-auth-role': 'envseal' })) as { kubernetesAuth: { tokenPath?: string } }).kubernetesAuth.tokenPath).toBeUndefined();
  });

  it('refuses a token file without a Kubernetes auth role', async () => {
    const error = await resolve({ 'vault-auth-token-file': '/t' }, { VAULT_TOKEN: TOKEN }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe('InvalidConfiguration');
    expect((error as ProviderError).message).toMatch(/give --vault-auth-role too/);
  });
});
