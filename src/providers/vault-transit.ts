/**
 * The vault-transit key provider: envelope data keys wrapped by a HashiCorp Vault or
 * OpenBao transit key, over Vault's HTTP API.
 *
 * - Target: `vault-transit:NAME` (the key NAME on the mount `transit`) or
 *   `vault-transit:MOUNT/keys/NAME` (any mount path). The recipient's keyId is always
 *   the full form MOUNT/keys/NAME; its encryptedKey is the base64 of Vault's ciphertext
 *   string (`vault:v1:...`).
 * - Binding: the transit key must be created with `derived: true`; every call passes
 *   envseal's encryption context (scope, namespace, name) as the transit `context`, so
 *   Vault derives a key per context and refuses a ciphertext moved to another one.
 * - Calls: datakey/plaintext (the key is born in Vault), encrypt, decrypt; before the
 *   first seal for a key, a read of its settings (it must exist and be derived). Each has a
 *   time limit and the caller's AbortSignal; 429, 5xx and network failures are retried
 *   with backoff, `maxAttempts` attempts in all.
 * - Authentication: a token (VAULT_TOKEN / BAO_TOKEN for the CLI), or Vault's
 *   Kubernetes auth method (the controller's ServiceAccount token, read from its file
 *   at each login, exchanged for a Vault token that is renewed by logging in again
 *   before it expires, and at once after a 403).
 * - Errors: a ProviderError naming the operation, the key and the HTTP status, with
 *   Vault's own message sanitized (printable ASCII, long base64/hex runs and `vault:v`
 *   ciphertexts redacted). Never a token, a data key or a ciphertext.
 *
 * No client library: node-vault (the most used) has no per-call AbortSignal, carries
 * axios, mustache and tv4, and has no transit datakey types; the four endpoints used
 * here are a small typed client over fetch.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

import { encodeContext } from '../envelope/context.ts';
import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../envelope/kdf.ts';
import {
  checkedUrl,
  envSetting,
  keyIdEdkCodec,
  type ProviderDefinition,
  type ProviderSettingsSource,
  type RecipientProblem,
  stringSetting,
  type GenerateDataKeyRequest,
  type GeneratedDataKey,
  type KeyProvider,
  ProviderError,
  type ProviderErrorCode,
  type Recipient,
  type UnwrapRequest,
  type WrapRequest,
} from './types.ts';
import { clip, quoted } from '../util/message.ts';

export const VAULT_TRANSIT = 'vault-transit';
export const DEFAULT_TRANSIT_MOUNT = 'transit';

/** The largest encryptedKey (decoded: Vault's ciphertext string) a manifest may hold. */
export const MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES = 1024;

const DEFAULT_MAX_ATTEMPTS = 3;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_K8S_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** Prefix of the transit context bytes: keeps them non-empty and envseal's own. */
const CONTEXT_PREFIX = Buffer.from('envseal-vault-transit:1\n', 'utf8');

export interface VaultKubernetesAuth {
  /** The Vault role bound to the controller's ServiceAccount. */
  role: string;
  /** Mount path of the kubernetes auth method (default `kubernetes`). */
  mount?: string;
  /** The ServiceAccount token file (default the projected in-cluster path); read at each login. */
  tokenPath?: string;
}

export interface VaultTransitProviderOptions {
  /** Vault's address, e.g. https://vault.example:8200 (CLI: --vault-addr, VAULT_ADDR, BAO_ADDR). */
  address?: string;
  /** A Vault token (CLI: VAULT_TOKEN, BAO_TOKEN). */
  token?: string;
  /** Log in with the Kubernetes auth method instead of a static token (the controller). */
  kubernetesAuth?: VaultKubernetesAuth;
  /** Vault Enterprise / OpenBao namespace (X-Vault-Namespace). */
  namespace?: string;
  /** Attempts per call, the first included (default 3); 429, 5xx and network errors are retried. */
  maxAttempts?: number;
  /** Time limit of one attempt (default 30000 ms). */
  requestTimeoutMs?: number;
  /** The clock for the Vault token's lease (tests); default Date.now. */
  now?: () => number;
}

export interface ParsedTransitTarget {
  mount: string;
  name: string;
  /** MOUNT/keys/NAME: the recipient's keyId. */
  keyId: string;
}

export interface VaultTransitProvider extends KeyProvider {
  readonly name: typeof VAULT_TRANSIT;
  generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey>;
  /** Creates an aes256-gcm96 transit key with `derived: true` (`envseal keys create`). */
  createKey(request: { target: string; signal?: AbortSignal }): Promise<ParsedTransitTarget>;
}

// ---------------------------------------------------------------------------------
// Targets

const SEGMENT = /^[A-Za-z0-9_.-]{1,128}$/;
const TARGET_FORMS = 'NAME (on the mount transit) or MOUNT/keys/NAME';

function quote(text: string): string {
  return quoted(text, 200);
}

function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `vault-transit target ${quote(target)} ${problem}`, { provider: VAULT_TRANSIT });
}

/** Parses `NAME` or `MOUNT/keys/NAME`, or throws InvalidRecipient naming the problem. */
export function parseTransitTarget(target: string): ParsedTransitTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `vault-transit target is empty: expected ${TARGET_FORMS}`, { provider: VAULT_TRANSIT });
  }
  const at = target.lastIndexOf('/keys/');
  const mount = at < 0 ? DEFAULT_TRANSIT_MOUNT : target.slice(0, at);
  const name = at < 0 ? target : target.slice(at + '/keys/'.length);
  if (at < 0 && target.includes('/')) throw invalidTarget(target, `is not ${TARGET_FORMS}`);
  if (!SEGMENT.test(name) || name === '.' || name === '..') {
    throw invalidTarget(target, 'has an invalid key name: 1-128 of A-Z a-z 0-9 _ . -');
  }
  const segments = mount.split('/');
  if (segments.some((s) => !SEGMENT.test(s) || s === '.' || s === '..')) {
    throw invalidTarget(target, 'has an invalid mount path: segments of A-Z a-z 0-9 _ . - separated by /');
  }
  return { mount, name, keyId: `${mount}/keys/${name}` };
}

/** The transit `context`: base64 of the prefix and envseal's canonical encoding of the encryption context. */
export function transitContext(encryptionContext: Record<string, string>): string {
  return Buffer.concat([CONTEXT_PREFIX, encodeContext(encryptionContext)]).toString('base64');
}

// ---------------------------------------------------------------------------------
// Errors

/** A failed Vault call, sanitized: used as a ProviderError's cause. */
export class VaultCallError extends Error {
  readonly httpStatusCode: number | undefined;
  /** Node's network error code, when it is one. */
  readonly code: string | undefined;

  constructor(message: string, details: { httpStatusCode?: number; code?: string }) {
    super(message);
    this.name = 'VaultCallError';
    this.httpStatusCode = details.httpStatusCode;
    this.code = details.code;
  }
}

/**
 * Vault's message made safe to show: printable ASCII only, ciphertexts and long base64
 * or hex runs redacted (key paths kept), at most 240 characters.
 */
export function sanitizeVaultMessage(message: string): string {
  const safe = message
    .replace(/[^\x20-\x7e]+/g, ' ')
    .replace(/vault:v\d+:[A-Za-z0-9+/=:_-]*/g, '[redacted ciphertext]')
    // Key paths (MOUNT/keys/NAME) are kept; any other long run may be key material.
    .replace(/[A-Za-z0-9+/_.-]{20,}={0,2}/g, (run) => (/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*\/keys\/[A-Za-z0-9_.-]+$/.test(run) ? run : '[redacted]'))
    .replace(/\s+/g, ' ')
    .trim();
  return clip(safe, 240);
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function networkCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 5) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  return networkCode((error as { cause?: unknown }).cause, depth + 1);
}

/** What a Vault answer means, from its HTTP status and error text. */
export function classifyVaultError(status: number, vaultMessage: string): { code: ProviderErrorCode; explanation: string; contextBound: boolean } {
  const text = vaultMessage.toLowerCase();
  if (status >= 300 && status < 400) {
    return { code: 'Unavailable', explanation: 'Vault answered with a redirect, which envseal does not follow (it would send the token elsewhere): use the address of the active node or of the load balancer', contextBound: false };
  }
  if (status === 429) return { code: 'Throttled', explanation: 'Vault rate-limited the request (retried with backoff, still limited)', contextBound: false };
  if (status === 403 || status === 401 || text.includes('permission denied') || text.includes('missing client token')) {
    return { code: 'AccessDenied', explanation: 'access denied: check the token or Kubernetes auth role and that its policy allows this operation on this key', contextBound: false };
  }
  if (status >= 500) {
    return { code: 'Unavailable', explanation: text.includes('sealed') ? 'Vault is sealed' : 'Vault failed or is unavailable', contextBound: false };
  }
  if (status === 404 || /key not found|no existing key|encryption key not found/.test(text)) {
    return { code: 'KeyNotFound', explanation: 'the transit key does not exist (on this Vault, mount and namespace)', contextBound: false };
  }
  if (text.includes('message authentication failed')) {
    return { code: 'InvalidCiphertext', explanation: 'Vault refused the encrypted key: it was sealed for another namespace/name/scope (transit context), or it is corrupt', contextBound: true };
  }
  if (/invalid ciphertext|ciphertext|unable to decrypt|invalid key version|decode/.test(text)) {
    return { code: 'InvalidCiphertext', explanation: 'Vault refused the encrypted key as malformed', contextBound: false };
  }
  if (/context|derived|deriv/.test(text)) {
    return { code: 'KeyUnavailable', explanation: 'the transit key cannot bind the context: create it with derived=true', contextBound: false };
  }
  if (/disabled|deletion|not allowed|unsupported/.test(text)) {
    return { code: 'KeyUnavailable', explanation: 'the transit key cannot be used for this operation', contextBound: false };
  }
  return { code: 'Internal', explanation: 'Vault rejected the request', contextBound: false };
}

// ---------------------------------------------------------------------------------
// The provider

interface CallTarget {
  operation: string;
  /** The key path the call is about. */
  key: string;
  signal: AbortSignal | undefined;
}

interface VaultResponse {
  data?: Record<string, unknown>;
  auth?: { client_token?: unknown; lease_duration?: unknown };
}

function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}

/** The address without credentials or query, for messages. */
function shownAddress(address: string): string {
  try {
    const url = new URL(address);
    return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return '(invalid address)';
  }
}

export function createVaultTransitProvider(options: VaultTransitProviderOptions = {}): VaultTransitProvider {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('Internal', `vault-transit maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, { provider: VAULT_TRANSIT });
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const address = options.address?.replace(/\/+$/, '');
  if (address !== undefined && !URL.canParse(address)) {
    throw new ProviderError('Internal', `vault-transit address ${quote(shownAddress(address))} is not a URL`, { provider: VAULT_TRANSIT });
  }
  const where = address === undefined ? '' : shownAddress(address);
  const now = options.now ?? Date.now;

  /** The Kubernetes-auth token and when to log in again. */
  let session: { token: string; renewAt: number } | undefined;
  let login: Promise<string> | undefined;

  function failure(target: CallTarget, code: ProviderErrorCode, explanation: string, details: { status?: number; netCode?: string; said?: string; contextBound?: boolean }): ProviderError {
    const parts = [details.status === undefined ? undefined : `HTTP ${details.status}`, details.netCode].filter((p) => p !== undefined).join(', ');
    const said = details.said ? `; Vault said: ${details.said}` : '';
    const message = `vault-transit ${target.operation} with key ${target.key} failed: ${explanation}${parts === '' ? '' : ` (${parts})`}${said}`;
    const cause = new VaultCallError(details.said || explanation, { ...(details.status === undefined ? {} : { httpStatusCode: details.status }), ...(details.netCode === undefined ? {} : { code: details.netCode }) });
    return new ProviderError(code, message, { provider: VAULT_TRANSIT, serviceCode: details.status === undefined ? (details.netCode ?? 'Network') : `HTTP${details.status}`, cause, ...(details.contextBound ? { contextBound: true } : {}) });
  }

  /** One API call with retries; returns the parsed body of a 2xx answer. */
  async function request(target: CallTarget, path: string, body: unknown, token: string | undefined, method = 'POST'): Promise<VaultResponse> {
    if (address === undefined) {
      throw new ProviderError('Internal', `vault-transit ${target.operation} with key ${target.key}: no Vault address is configured (--vault-addr, VAULT_ADDR or BAO_ADDR)`, { provider: VAULT_TRANSIT });
    }
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
        });
        status = response.status;
        text = await response.text();
      } catch (error) {
        if (target.signal?.aborted) throw target.signal.reason;
        const timedOut = signal.aborted;
        const netCode = timedOut ? 'Timeout' : networkCode(error);
        if (attempt < maxAttempts) {
          await pause(attempt, target.signal);
          continue;
        }
        throw failure(target, 'Unavailable', timedOut ? `Vault at ${where} did not answer in time` : `Vault at ${where} could not be reached`, { ...(netCode === undefined ? {} : { netCode }) });
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
      jwt = (await readFile(tokenPath, { encoding: 'utf8', ...(signal ? { signal } : {}) })).trim();
    } catch (cause) {
      throw new ProviderError('AccessDenied', `vault-transit Kubernetes login (role ${quote(auth.role)}): cannot read the ServiceAccount token file ${quote(tokenPath)}`, { provider: VAULT_TRANSIT, cause: new VaultCallError((cause as NodeJS.ErrnoException).code ?? 'read failed', {}) });
    }
    const started = now();
    const out = await request({ operation: 'login', key: `auth/${mount} role ${auth.role}`, signal }, `auth/${mount}/login`, { role: auth.role, jwt }, undefined);
    const token = out.auth?.client_token;
    const lease = typeof out.auth?.lease_duration === 'number' ? out.auth.lease_duration : 0;
    if (typeof token !== 'string' || token === '') {
      throw new ProviderError('Internal', `vault-transit Kubernetes login (role ${quote(auth.role)}): Vault answered without a token`, { provider: VAULT_TRANSIT });
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
      throw new ProviderError('KeyUnavailable', `vault-transit key ${parsed.keyId} is not derived, so Vault would not bind the encryption context: create it with derived=true (envseal keys create --provider vault-transit)`, { provider: VAULT_TRANSIT });
    }
    if (out.data.supports_encryption === false) {
      throw new ProviderError('KeyUnavailable', `vault-transit key ${parsed.keyId} does not support encryption (key type ${quote(String(out.data.type))})`, { provider: VAULT_TRANSIT });
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
      throw new ProviderError('InvalidRecipient', `vault-transit ${operation}: the recipient is for provider ${quote(String(recipient.provider))}, not vault-transit`, { provider: VAULT_TRANSIT });
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
      const out = await transit(call, `${parsed.mount}/datakey/plaintext/${parsed.name}`, { context: transitContext(request.encryptionContext), bits: DATA_KEY_BYTES * 8 });
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
        throw new ProviderError('Internal', `vault-transit encrypt with key ${parsed.keyId}: the data key must be ${DATA_KEY_BYTES} bytes`, { provider: VAULT_TRANSIT });
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
        throw new ProviderError('InvalidCiphertext', `vault-transit decrypt with key ${parsed.keyId}: the recipient's encryptedKey is not the base64 of a transit ciphertext (vault:vN:...)`, { provider: VAULT_TRANSIT });
      }
      const out = await transit(call, `${parsed.mount}/decrypt/${parsed.name}`, { ciphertext, context: transitContext(request.encryptionContext) });
      return dataKeyOf(call, out.data?.plaintext);
    },

    canUnwrap(recipient: Recipient): boolean {
      return recipient.provider === VAULT_TRANSIT && typeof recipient.keyId === 'string' && recipient.keyId !== '' && address !== undefined && (options.token !== undefined || options.kubernetesAuth !== undefined);
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
        throw new ProviderError('InvalidRecipient', `vault-transit create key ${parsed.keyId}: the key already exists (left unchanged)`, { provider: VAULT_TRANSIT, serviceCode: 'AlreadyExists' });
      }
      await transit(call, `${parsed.mount}/keys/${parsed.name}`, { type: 'aes256-gcm96', derived: true });
      await requireDerivedKey(parsed, request.signal);
      return parsed;
    },
  };
  return provider;
}

// ---------------------------------------------------------------------------------
// The provider as a whole

const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);
const TRANSIT_CIPHERTEXT = /^vault:v\d+:[A-Za-z0-9+/=]+$/;

function isTransitKeyPath(keyId: unknown): boolean {
  if (typeof keyId !== 'string' || !keyId.includes('/keys/')) return false;
  try {
    return parseTransitTarget(keyId).keyId === keyId;
  } catch {
    return false;
  }
}

/**
 * The token `vault login` / `bao login` left in ~/.vault-token (Vault's default token
 * helper), used when neither VAULT_TOKEN nor BAO_TOKEN is set.
 */
async function tokenHelperFile(home: string | undefined): Promise<string | undefined> {
  if (!home) return undefined;
  try {
    const token = (await readFile(`${home.replace(/\/+$/, '')}/.vault-token`, 'utf8')).trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

async function resolveSettings(source: ProviderSettingsSource): Promise<VaultTransitProviderOptions> {
  const address = checkedUrl(stringSetting(source, 'vault-addr') ?? envSetting(source, 'VAULT_ADDR', 'BAO_ADDR'), 'Vault address', VAULT_TRANSIT);
  const namespace = envSetting(source, 'VAULT_NAMESPACE', 'BAO_NAMESPACE');
  const options: VaultTransitProviderOptions = { ...(address === undefined ? {} : { address }), ...(namespace === undefined ? {} : { namespace }) };
  const role = source.role === 'controller' ? (stringSetting(source, 'vault-auth-role') ?? envSetting(source, 'VAULT_AUTH_ROLE')) : undefined;
  if (role !== undefined) {
    const mount = stringSetting(source, 'vault-auth-mount') ?? envSetting(source, 'VAULT_AUTH_MOUNT');
    options.kubernetesAuth = { role, ...(mount === undefined ? {} : { mount }) };
    return options;
  }
  const token = envSetting(source, 'VAULT_TOKEN', 'BAO_TOKEN') ?? (source.role === 'cli' && address !== undefined ? await tokenHelperFile(source.env.HOME) : undefined);
  if (token !== undefined) options.token = token;
  return options;
}

/** The vault-transit provider: see the top of this file. */
export const vaultTransitProvider: ProviderDefinition = {
  name: VAULT_TRANSIT,
  targetHint: 'NAME-or-MOUNT/keys/NAME',
  parseTarget: (target) => void parseTransitTarget(target),
  checkRecipient(recipient, encryptedKey) {
    const problems: RecipientProblem[] = [];
    if (!isTransitKeyPath(recipient.keyId)) problems.push({ field: 'keyId', check: 'structure', message: 'must be the transit key path MOUNT/keys/NAME' });
    if (encryptedKey !== undefined) {
      if (encryptedKey.length > MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES) {
        problems.push({ field: 'encryptedKey', check: 'size', message: `is ${encryptedKey.length} bytes; a vault-transit encryptedKey is at most ${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES}` });
      } else if (!TRANSIT_CIPHERTEXT.test(Buffer.from(encryptedKey.buffer, encryptedKey.byteOffset, encryptedKey.byteLength).toString('latin1'))) {
        problems.push({ field: 'encryptedKey', check: 'structure', message: 'is not the base64 of a transit ciphertext (vault:vN:...)' });
      }
    }
    return problems;
  },
  maxEncryptedKeyBytes: MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES,
  crdRules: [
    { rule: "self.provider != 'vault-transit' || (has(self.keyId) && self.keyId.contains('/keys/'))", message: 'a vault-transit recipient needs keyId, the transit key path MOUNT/keys/NAME' },
    {
      rule: `self.provider != 'vault-transit' || (self.encryptedKey.startsWith('${Buffer.from('vault:').toString('base64')}') && size(self.encryptedKey) <= ${base64Length(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES)})`,
      message: `a vault-transit encryptedKey is a transit ciphertext (vault:vN:...): at most ${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES)} base64 characters)`,
    },
  ],
  describe: (recipient) => `vault-transit ${recipient.keyId ?? '(no keyId)'}`,
  targetOf: (recipient) => recipient.keyId ?? '',
  // envseal's own provider id; provider info = MOUNT/keys/NAME, ciphertext = Vault's
  // ciphertext string (ASCII), whose context derives from the file's encryption context.
  edk: keyIdEdkCodec(VAULT_TRANSIT, 'envseal-vault-transit'),
  settings: {
    cliOptions: {
      'vault-addr': { type: 'string', value: 'URL', help: 'Vault/OpenBao address for vault-transit (default: VAULT_ADDR, BAO_ADDR; token from VAULT_TOKEN, BAO_TOKEN or ~/.vault-token)' },
    },
    controllerOptions: {
      'vault-addr': { type: 'string', value: 'URL', help: 'Vault/OpenBao address for vault-transit recipients (env VAULT_ADDR)' },
      'vault-auth-role': { type: 'string', value: 'ROLE', help: "Vault Kubernetes auth role to log in with the pod's ServiceAccount token (env VAULT_AUTH_ROLE; else the token in VAULT_TOKEN)" },
      'vault-auth-mount': { type: 'string', value: 'PATH', help: 'mount path of the Vault Kubernetes auth method (env VAULT_AUTH_MOUNT; default kubernetes)' },
    },
    resolve: resolveSettings,
  },
  create: async (options) => createVaultTransitProvider((options ?? {}) as VaultTransitProviderOptions),
  async createKey(request) {
    const created = await createVaultTransitProvider((request.options ?? {}) as VaultTransitProviderOptions).createKey({ target: request.name, ...(request.signal ? { signal: request.signal } : {}) });
    return { target: created.keyId, keyId: created.keyId, summary: `created transit key ${created.keyId} (derived)` };
  },
};
