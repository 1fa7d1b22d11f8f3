/** The provider over Vault's HTTP API: token or Kubernetes login, retries, time limits, the context on every call. */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import { commonJsExports } from '../../util/modules.ts';

import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../../envelope/kdf.ts';
import {
  type GenerateDataKeyRequest,
  type GeneratedDataKey,
  ProviderError,
  type ProviderErrorCode,
  type Recipient,
  type UnwrapRequest,
  type WrapRequest,
} from '../types.ts';

import { VaultCallError, classifyVaultError, networkCode, parseCaBundle, sanitizeVaultMessage, tlsCode, tlsExplanation } from './errors.ts';
import { parseTransitTarget, transitContext } from './targets.ts';
import {
  DEFAULT_K8S_TOKEN_PATH,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES,
  type ParsedTransitTarget,
  VAULT_TRANSIT,
  type VaultKubernetesAuth,
  type VaultTransitProvider,
  type VaultTransitProviderOptions,
} from './types.ts';
import { type CallTarget, isRetryableStatus, shownAddress, type VaultResponse, zero } from './http.ts';
import { quoteTarget } from '../types.ts';

// ---------------------------------------------------------------------------------
// The provider

export function createVaultTransitProvider(options: VaultTransitProviderOptions = {}): VaultTransitProvider {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('Internal', `vault-transit maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, {
      provider: VAULT_TRANSIT,
    });
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const address = options.address?.replace(/\/+$/, '');
  if (address !== undefined && !URL.canParse(address)) {
    throw new ProviderError('Internal', `vault-transit address ${quoteTarget(shownAddress(address))} is not a URL`, { provider: VAULT_TRANSIT });
  }
  const where = address === undefined ? '' : shownAddress(address);
  const now = options.now ?? Date.now;
  if (options.caCert !== undefined && address !== undefined && !address.startsWith('https://')) {
    throw new ProviderError(
      'InvalidConfiguration',
      `vault-transit: a CA bundle (--vault-ca-cert) is given, but the Vault address ${quoteTarget(where)} is not https://`,
      { provider: VAULT_TRANSIT },
    );
  }
  // Trusts only the given CAs for Vault's connections; other connections keep Node's.
  const caBundle = options.caCert === undefined ? undefined : parseCaBundle(options.caCert, 'the vault-transit CA bundle');
  // undici (its fetch takes the dispatcher with the private CA) is loaded on the first
  // call: commands that never call Vault never load it.
  let http: Promise<{ fetch: typeof import('undici')['fetch']; dispatcher: Agent | undefined }> | undefined;
  const loadHttp = () =>
    (http ??= import('undici')
      .then(commonJsExports)
      .then((undici) => ({ fetch: undici.fetch, dispatcher: caBundle === undefined ? undefined : new undici.Agent({ connect: { ca: caBundle } }) })));

  /** The Kubernetes-auth token and when to log in again. */
  let session: { token: string; renewAt: number } | undefined;
  let login: Promise<string> | undefined;

  function failure(
    target: CallTarget,
    code: ProviderErrorCode,
    explanation: string,
    details: { status?: number; netCode?: string; said?: string; contextBound?: boolean },
  ): ProviderError {
    const parts = [details.status === undefined ? undefined : `HTTP ${details.status}`, details.netCode].filter((p) => p !== undefined).join(', ');
    const said = details.said ? `; Vault said: ${details.said}` : '';
    const message = `vault-transit ${target.operation} with key ${target.key} failed: ${explanation}${parts === '' ? '' : ` (${parts})`}${said}`;
    const cause = new VaultCallError(details.said || explanation, {
      ...(details.status === undefined ? {} : { httpStatusCode: details.status }),
      ...(details.netCode === undefined ? {} : { code: details.netCode }),
    });
    return new ProviderError(code, message, {
      provider: VAULT_TRANSIT,
      serviceCode: details.status === undefined ? (details.netCode ?? 'Network') : `HTTP${details.status}`,
      cause,
      ...(details.contextBound ? { contextBound: true } : {}),
    });
  }

  /** One API call with retries; returns the parsed body of a 2xx answer. */
  async function request(target: CallTarget, path: string, body: unknown, token: string | undefined, method = 'POST'): Promise<VaultResponse> {
    if (address === undefined) {
      throw new ProviderError(
        'Internal',
        `vault-transit ${target.operation} with key ${target.key}: no Vault address is configured (--vault-addr, VAULT_ADDR or BAO_ADDR)`,
        { provider: VAULT_TRANSIT },
      );
    }
    const { fetch, dispatcher } = await loadHttp();
    for (let attempt = 1; ; attempt++) {
      target.signal?.throwIfAborted();
      const signal = target.signal ? AbortSignal.any([target.signal, AbortSignal.timeout(requestTimeoutMs)]) : AbortSignal.timeout(requestTimeoutMs);
      let status: number;
      let text: string;
      try {
        const response = await fetch(`${address}/v1/${path}`, {
          method,
          headers: {
            ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
            ...(token === undefined ? {} : { 'X-Vault-Token': token }),
            ...(options.namespace ? { 'X-Vault-Namespace': options.namespace } : {}),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal,
          // A redirect (an HA standby without request forwarding) is not followed: it would
          // carry the token to another address.
          redirect: 'manual',
          ...(dispatcher === undefined ? {} : { dispatcher }),
        });
        status = response.status;
        text = await response.text();
      } catch (error) {
        if (target.signal?.aborted) throw target.signal.reason;
        const timedOut = signal.aborted;
        const tls = timedOut ? undefined : tlsCode(error);
        if (tls !== undefined) {
          // A certificate that failed verification fails again: no retry.
          throw failure(target, 'Unavailable', tlsExplanation(tls, where, options.caCert !== undefined), { netCode: tls });
        }
        const netCode = timedOut ? 'Timeout' : networkCode(error);
        if (attempt < maxAttempts) {
          await pause(attempt, target.signal);
          continue;
        }
        throw failure(target, 'Unavailable', timedOut ? `Vault at ${where} did not answer in time` : `Vault at ${where} could not be reached`, {
          netCode,
        });
      }
      if (status >= 200 && status < 300) {
        try {
          return (text === '' ? {} : JSON.parse(text)) as VaultResponse;
        } catch {
          throw failure(target, 'Internal', 'Vault answered with a body that is not JSON', { status });
        }
      }
      if (isRetryableStatus(status) && attempt < maxAttempts) {
        await pause(attempt, target.signal);
        continue;
      }
      let vaultMessage = '';
      try {
        const errors = (JSON.parse(text) as { errors?: unknown }).errors;
        if (Array.isArray(errors)) vaultMessage = errors.filter((e): e is string => typeof e === 'string').join('; ');
      } catch {
        // Not Vault's JSON (a proxy's page): only the status is shown.
      }
      const { code, explanation, contextBound } = classifyVaultError(status, vaultMessage);
      const said = vaultMessage === '' ? '' : sanitizeVaultMessage(vaultMessage);
      throw failure(target, code, explanation, { status, said, contextBound });
    }
  }

  /** Waits before a retry; an abort rejects with the signal's reason, as fetch does. */
  async function pause(attempt: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      await sleep(backoff(attempt), undefined, signal ? { signal } : {});
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      throw error;
    }
  }

  function backoff(attempt: number): number {
    // Full jitter on 100 ms, 200 ms, 400 ms...
    return Math.random() * 100 * 2 ** (attempt - 1);
  }

  async function kubernetesLogin(auth: VaultKubernetesAuth, signal: AbortSignal | undefined): Promise<string> {
    const mount = auth.mount ?? 'kubernetes';
    const tokenPath = auth.tokenPath ?? DEFAULT_K8S_TOKEN_PATH;
    let jwt: string;
    try {
      jwt = (await readFile(tokenPath, { encoding: 'utf8', signal })).trim();
    } catch (cause) {
      throw new ProviderError(
        'AccessDenied',
        `vault-transit Kubernetes login (role ${quoteTarget(auth.role)}): cannot read the ServiceAccount token file ${quoteTarget(tokenPath)}`,
        { provider: VAULT_TRANSIT, cause: new VaultCallError((cause as NodeJS.ErrnoException).code ?? 'read failed', {}) },
      );
    }
    const started = now();
    const out = await request(
      { operation: 'login', key: `auth/${mount} role ${auth.role}`, signal },
      `auth/${mount}/login`,
      { role: auth.role, jwt },
      undefined,
    );
    const token = out.auth?.client_token;
    const lease = typeof out.auth?.lease_duration === 'number' ? out.auth.lease_duration : 0;
    if (typeof token !== 'string' || token === '') {
      throw new ProviderError('Internal', `vault-transit Kubernetes login (role ${quoteTarget(auth.role)}): Vault answered without a token`, {
        provider: VAULT_TRANSIT,
      });
    }
    // Log in again at two thirds of the lease; a lease of 0 means no expiry.
    session = { token, renewAt: lease > 0 ? started + (lease * 1000 * 2) / 3 : Number.POSITIVE_INFINITY };
    return token;
  }

  async function currentToken(signal: AbortSignal | undefined): Promise<string | undefined> {
    const auth = options.kubernetesAuth;
    if (auth === undefined) return options.token;
    if (session !== undefined && now() < session.renewAt) return session.token;
    login ??= kubernetesLogin(auth, signal).finally(() => {
      login = undefined;
    });
    return login;
  }

  /** A transit call with the current token; with Kubernetes auth, a 403 logs in again once. */
  async function transit(target: CallTarget, path: string, body: unknown, method = 'POST'): Promise<VaultResponse> {
    const token = await currentToken(target.signal);
    try {
      return await request(target, path, body, token, method);
    } catch (error) {
      if (options.kubernetesAuth === undefined || !(error instanceof ProviderError) || error.code !== 'AccessDenied' || session?.token !== token) throw error;
      session = undefined;
      return request(target, path, body, await currentToken(target.signal), method);
    }
  }

  /** Keys seen to be derived; a key's derivation cannot be turned off, so once is enough. */
  const derivedKeys = new Set<string>();

  /**
   * Before sealing for a key: it must exist (encrypt would create a missing key) and be
   * derived (else Vault ignores the context and nothing binds the ciphertext to it).
   * Reads the key's settings (no key material): sealers need `read` on MOUNT/keys/NAME.
   */
  async function requireDerivedKey(parsed: ParsedTransitTarget, signal: AbortSignal | undefined): Promise<void> {
    if (derivedKeys.has(parsed.keyId)) return;
    const out = await transit({ operation: 'read key', key: parsed.keyId, signal }, `${parsed.mount}/keys/${parsed.name}`, undefined, 'GET');
    if (out.data?.derived !== true) {
      throw new ProviderError(
        'KeyUnavailable',
        `vault-transit key ${parsed.keyId} is not derived, so Vault would not bind the encryption context: create it with derived=true (envseal keys create --provider vault-transit)`,
        { provider: VAULT_TRANSIT },
      );
    }
    if (out.data.supports_encryption === false) {
      throw new ProviderError(
        'KeyUnavailable',
        `vault-transit key ${parsed.keyId} does not support encryption (key type ${quoteTarget(String(out.data.type))})`,
        {
          provider: VAULT_TRANSIT,
        },
      );
    }
    derivedKeys.add(parsed.keyId);
  }

  function dataKeyOf(target: CallTarget, plaintext: unknown): Uint8Array {
    const bytes = typeof plaintext === 'string' ? Buffer.from(plaintext, 'base64') : undefined;
    if (bytes === undefined || bytes.byteLength !== DATA_KEY_BYTES) {
      zero(bytes);
      throw failure(target, 'Internal', `Vault answered with a data key that is not ${DATA_KEY_BYTES} bytes`, {});
    }
    const copy = new Uint8Array(DATA_KEY_BYTES);
    copy.set(bytes);
    zero(bytes);
    return copy;
  }

  function recipientOf(target: CallTarget, parsed: ParsedTransitTarget, ciphertext: unknown): Recipient {
    if (typeof ciphertext !== 'string' || !/^vault:v\d+:/.test(ciphertext) || ciphertext.length > MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES) {
      throw failure(target, 'Internal', 'Vault answered without a transit ciphertext', {});
    }
    return { provider: VAULT_TRANSIT, keyId: parsed.keyId, encryptedKey: Buffer.from(ciphertext, 'utf8').toString('base64') };
  }

  function parsedRecipient(recipient: Recipient, operation: string): ParsedTransitTarget {
    if (recipient.provider !== VAULT_TRANSIT) {
      throw new ProviderError(
        'InvalidRecipient',
        `vault-transit ${operation}: the recipient is for provider ${quoteTarget(String(recipient.provider))}, not vault-transit`,
        { provider: VAULT_TRANSIT },
      );
    }
    if (typeof recipient.keyId !== 'string' || !recipient.keyId.includes('/keys/')) {
      throw new ProviderError('InvalidRecipient', `vault-transit ${operation}: the recipient has no keyId MOUNT/keys/NAME`, { provider: VAULT_TRANSIT });
    }
    return parseTransitTarget(recipient.keyId);
  }

  const provider: VaultTransitProvider = {
    name: VAULT_TRANSIT,

    parseTarget(target: string): void {
      parseTransitTarget(target);
    },

    async generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey> {
      const parsed = parseTransitTarget(request.target);
      const call = { operation: 'datakey', key: parsed.keyId, signal: request.signal };
      await requireDerivedKey(parsed, request.signal);
      const out = await transit(call, `${parsed.mount}/datakey/plaintext/${parsed.name}`, {
        context: transitContext(request.encryptionContext),
        bits: DATA_KEY_BYTES * 8,
      });
      const dataKey = dataKeyOf(call, out.data?.plaintext);
      try {
        return { dataKey, recipient: recipientOf(call, parsed, out.data?.ciphertext) };
      } catch (error) {
        zero(dataKey);
        throw error;
      }
    },

    async wrap(request: WrapRequest): Promise<Recipient> {
      const parsed = parseTransitTarget(request.target);
      if (!(request.dataKey instanceof Uint8Array) || request.dataKey.byteLength !== DATA_KEY_BYTES) {
        throw new ProviderError('Internal', `vault-transit encrypt with key ${parsed.keyId}: the data key must be ${DATA_KEY_BYTES} bytes`, {
          provider: VAULT_TRANSIT,
        });
      }
      const call = { operation: 'encrypt', key: parsed.keyId, signal: request.signal };
      await requireDerivedKey(parsed, request.signal);
      const plaintext = Buffer.from(request.dataKey.buffer, request.dataKey.byteOffset, request.dataKey.byteLength).toString('base64');
      const out = await transit(call, `${parsed.mount}/encrypt/${parsed.name}`, { plaintext, context: transitContext(request.encryptionContext) });
      return recipientOf(call, parsed, out.data?.ciphertext);
    },

    async unwrap(request: UnwrapRequest): Promise<Uint8Array> {
      const parsed = parsedRecipient(request.recipient, 'decrypt');
      const call = { operation: 'decrypt', key: parsed.keyId, signal: request.signal };
      const encoded = request.recipient.encryptedKey;
      const ciphertext = typeof encoded === 'string' ? Buffer.from(encoded, 'base64').toString('latin1') : '';
      if (!/^vault:v\d+:[A-Za-z0-9+/=]+$/.test(ciphertext) || ciphertext.length > MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES) {
        throw new ProviderError(
          'InvalidCiphertext',
          `vault-transit decrypt with key ${parsed.keyId}: the recipient's encryptedKey is not the base64 of a transit ciphertext (vault:vN:...)`,
          { provider: VAULT_TRANSIT },
        );
      }
      const out = await transit(call, `${parsed.mount}/decrypt/${parsed.name}`, { ciphertext, context: transitContext(request.encryptionContext) });
      return dataKeyOf(call, out.data?.plaintext);
    },

    canUnwrap(recipient: Recipient): boolean {
      return (
        recipient.provider === VAULT_TRANSIT &&
        typeof recipient.keyId === 'string' &&
        recipient.keyId !== '' &&
        address !== undefined &&
        (options.token !== undefined || options.kubernetesAuth !== undefined)
      );
    },

    describe(recipient: Recipient): string {
      return `vault-transit ${recipient.keyId ?? '(no keyId)'}`;
    },

    targetOf(recipient: Recipient): string {
      return recipient.keyId ?? '';
    },

    async canonicalTarget(target: string): Promise<string> {
      return parseTransitTarget(target).keyId;
    },

    async createKey(request: { target: string; signal?: AbortSignal }): Promise<ParsedTransitTarget> {
      const parsed = parseTransitTarget(request.target);
      const call = { operation: 'create key', key: parsed.keyId, signal: request.signal };
      // Vault answers a create of an existing key with success and changes nothing: look first.
      const existing = await transit({ ...call, operation: 'read key' }, `${parsed.mount}/keys/${parsed.name}`, undefined, 'GET').then(
        () => true,
        (error: unknown) => {
          if (error instanceof ProviderError && error.code === 'KeyNotFound') return false;
          throw error;
        },
      );
      if (existing) {
        throw new ProviderError('InvalidRecipient', `vault-transit create key ${parsed.keyId}: the key already exists (left unchanged)`, {
          provider: VAULT_TRANSIT,
          serviceCode: 'AlreadyExists',
        });
      }
      await transit(call, `${parsed.mount}/keys/${parsed.name}`, { type: 'aes256-gcm96', derived: true });
      await requireDerivedKey(parsed, request.signal);
      return parsed;
    },
  };
  return provider;
}
