/**
 * The aws-kms key provider: envelope data keys wrapped by an AWS KMS customer master
 * key (CMK), through @aws-sdk/client-kms.
 *
 * - Credentials: the SDK's default chain (IRSA web identity, EKS Pod Identity, env,
 *   shared profile, IMDS) unless `options.credentials` is given (tests).
 * - Region: taken from the key or alias ARN; a bare `alias/NAME` or key id uses
 *   `options.region`, else the SDK's default region chain (AWS_REGION, profile).
 *   One KMSClient per region, created on first use.
 * - Every call passes the encryption context and `abortSignal`; Decrypt always passes
 *   KeyId. Retries: the SDK's adaptive retry mode (exponential backoff with jitter,
 *   client-side rate limiting after throttling), `maxAttempts` attempts in all.
 * - Errors: every failure is a ProviderError whose message names the operation, the
 *   key and the KMS error code, and whose `serviceCode` is the KMS error name. The
 *   `cause` is a sanitized copy of the SDK's error (KmsCallError), never the SDK error
 *   itself: that one can hold the raw HTTP response. No message ever holds plaintext,
 *   a data key or ciphertext bytes: the KMS's own message is quoted only for error
 *   codes whose messages name keys and aliases, and even then with long base64 or hex
 *   runs redacted. An aborted call rejects with `signal.reason`, as fetch does.
 *
 * Creating a CMK (step 1 of the envelope flow) is the method `createKey` of the object
 * that createAwsKmsProvider returns (type AwsKmsProvider), and also the standalone
 * function createAwsKmsKey.
 */
import type { KMSClient, KMSClientConfig } from '@aws-sdk/client-kms';

import type { Recipient } from './types.ts';
import { isStandardBase64 } from '../envelope/base64.ts';
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
  type RewrapRequest,
  type UnwrapRequest,
  type WrapRequest,
} from './types.ts';
import { clip, quoted } from '../util/message.ts';

export const AWS_KMS = 'aws-kms';

type KmsSdk = typeof import('@aws-sdk/client-kms');

/**
 * The exports of a CommonJS package loaded with import(): Node gives them as named
 * exports and as `default`; the bundle's lazily loaded chunk (scripts/bundle.ts) only as
 * `default`.
 */
function commonJsExports<T extends object>(module: T): T {
  const exports = (module as { default?: T }).default;
  return exports !== undefined && typeof exports === 'object' ? exports : module;
}

const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

export interface AwsKmsProviderOptions {
  /** Region for a bare `alias/NAME` or key id; default: the SDK's chain (AWS_REGION, profile). ARNs carry their own. */
  region?: string;
  /** Endpoint override, e.g. an emulator's `http://127.0.0.1:PORT`. Default: the regional KMS endpoint. */
  endpoint?: string;
  /** Static credentials or a provider (tests). Default: the SDK's default credential chain. */
  credentials?: KMSClientConfig['credentials'];
  /** Attempts per call, the first included (default 5); throttling and network errors are retried with backoff. */
  maxAttempts?: number;
  /** The SDK's retry mode (default `adaptive`: standard backoff plus client-side rate limiting). */
  retryMode?: 'standard' | 'adaptive';
  /** TCP connect timeout per attempt (default 5000 ms). */
  connectionTimeoutMs?: number;
  /** Time limit of one attempt, connecting included (default 30000 ms); then it fails as Unavailable (and is retried). */
  requestTimeoutMs?: number;
}

export interface CreateKeyRequest {
  /** `alias/NAME`, or an alias ARN (which also names the region). */
  alias: string;
  description?: string;
  signal?: AbortSignal;
}

export interface CreatedKey {
  /** The new CMK's full key ARN: use it (or the alias) as an aws-kms recipient. */
  keyArn: string;
  /** The alias name, `alias/NAME`. */
  alias: string;
  /** The alias's full ARN. */
  aliasArn: string;
}

export interface AwsKmsProvider extends KeyProvider {
  readonly name: typeof AWS_KMS;
  generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey>;
  rewrap(request: RewrapRequest): Promise<Recipient>;
  /**
   * CreateKey (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) then CreateAlias. When the alias
   * cannot be created, the new key is scheduled for deletion (7 days) and the error
   * says so.
   */
  createKey(request: CreateKeyRequest): Promise<CreatedKey>;
  /** Closes the KMS clients' connections (graceful shutdown, tests). Calls after it open new ones. */
  close(): void;
  /** The regions that have a client now, least recently used first (at most MAX_REGION_CLIENTS). */
  openRegions(): string[];
}

// ---------------------------------------------------------------------------------
// Targets

/** What a target string names, and the region it names if any. */
export interface ParsedKmsTarget {
  kind: 'key-arn' | 'alias-arn' | 'alias' | 'key-id';
  /** From the ARN; undefined for a bare alias or key id. */
  region: string | undefined;
}

const KEY_ID = /^(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
const ALIAS_NAME = /^alias\/[A-Za-z0-9/_-]{1,250}$/;
const ARN = /^arn:([^:]*):([^:]*):([^:]*):([^:]*):(.*)$/;
const PARTITION = /^aws(?:-[a-z]+)*$/;
const REGION = /^[a-z]{2,}(?:-[a-z0-9]+)*-\d+$/;
const ACCOUNT = /^\d{12}$/;
const KEY_ARN = /^arn:aws(?:-[a-z]+)*:kms:[a-z]{2,}(?:-[a-z0-9]+)*-\d+:\d{12}:key\/(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

const TARGET_FORMS = 'a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), an alias ARN, alias/NAME or a key id';

function quote(text: string): string {
  return quoted(text, 200);
}

function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `aws-kms target ${quote(target)} ${problem}`, { provider: AWS_KMS });
}

/** Parses a target, or throws InvalidRecipient naming the problem. */
export function parseKmsTarget(target: string): ParsedKmsTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `aws-kms target is empty: expected ${TARGET_FORMS}`, { provider: AWS_KMS });
  }
  if (target.trim() !== target) throw invalidTarget(target, 'has leading or trailing white space');
  if (target.startsWith('arn:')) {
    const m = ARN.exec(target);
    if (m === null) throw invalidTarget(target, 'is not an ARN: expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME');
    const [, partition = '', service = '', region = '', account = '', resource = ''] = m;
    if (!PARTITION.test(partition)) throw invalidTarget(target, `has an unknown partition ${quote(partition)}`);
    if (service !== 'kms') throw invalidTarget(target, `is an ARN of service ${quote(service)}, not kms`);
    if (!REGION.test(region)) throw invalidTarget(target, `has no valid region (got ${quote(region)})`);
    if (!ACCOUNT.test(account)) throw invalidTarget(target, `has no valid 12-digit account id (got ${quote(account)})`);
    if (resource.startsWith('key/')) {
      if (!KEY_ID.test(resource.slice(4))) {
        throw invalidTarget(target, 'has an invalid key id: expected a UUID or mrk- followed by 32 hex digits');
      }
      return { kind: 'key-arn', region };
    }
    if (resource.startsWith('alias/')) {
      if (!ALIAS_NAME.test(resource)) {
        throw invalidTarget(target, 'has an invalid alias name: alias/ followed by 1-250 of A-Z a-z 0-9 / _ -');
      }
      return { kind: 'alias-arn', region };
    }
    throw invalidTarget(target, 'names neither a key (key/ID) nor an alias (alias/NAME)');
  }
  if (target.startsWith('alias/')) {
    if (!ALIAS_NAME.test(target)) {
      throw invalidTarget(target, 'is not a valid alias: alias/ followed by 1-250 of A-Z a-z 0-9 / _ -');
    }
    return { kind: 'alias', region: undefined };
  }
  if (KEY_ID.test(target)) return { kind: 'key-id', region: undefined };
  if (/^[A-Za-z0-9/_-]+$/.test(target)) {
    throw invalidTarget(target, `is not ${TARGET_FORMS} (an alias needs the alias/ prefix: alias/${target}?)`);
  }
  throw invalidTarget(target, `is not ${TARGET_FORMS}`);
}

// ---------------------------------------------------------------------------------
// Errors

/**
 * A sanitized copy of a failed KMS call's error, used as a ProviderError's `cause`:
 * the SDK error's name, the KMS request id, HTTP status and network error code, and
 * its message only where that is known to name keys and aliases alone.
 */
export class KmsCallError extends Error {
  /** KMS error name (e.g. `NotFoundException`) or the network error's code. */
  readonly serviceCode: string;
  readonly httpStatusCode: number | undefined;
  readonly requestId: string | undefined;
  readonly attempts: number | undefined;
  /** Node's network error code (ECONNREFUSED, ...), when it is one. */
  readonly code: string | undefined;

  constructor(name: string, message: string, details: { serviceCode: string; httpStatusCode?: number; requestId?: string; attempts?: number; code?: string; stack?: string }) {
    super(message);
    this.name = name;
    this.serviceCode = details.serviceCode;
    this.httpStatusCode = details.httpStatusCode;
    this.requestId = details.requestId;
    this.attempts = details.attempts;
    this.code = details.code;
    if (details.stack !== undefined) this.stack = details.stack;
  }
}

const ACCESS_DENIED = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'ExpiredTokenException',
  'IncorrectKeyException',
  'InvalidGrantTokenException',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'MissingAuthenticationToken',
  'NotAuthorizedException',
  'CredentialsProviderError',
]);
const KEY_UNAVAILABLE = new Set(['DisabledException', 'KeyUnavailableException', 'KMSInvalidStateException']);
const THROTTLED = new Set(['ThrottlingException', 'LimitExceededException', 'TooManyRequestsException', 'Throttling']);
const UNAVAILABLE = new Set([
  'KMSInternalException',
  'DependencyTimeoutException',
  'InternalFailureException',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
]);
/** KMS error codes whose messages name only keys, aliases and principals: safe to quote. */
const QUOTABLE = new Set([
  'AccessDeniedException',
  'NotFoundException',
  'DisabledException',
  'KeyUnavailableException',
  'KMSInvalidStateException',
  'AlreadyExistsException',
  'IncorrectKeyException',
  'LimitExceededException',
  'ThrottlingException',
  'UnrecognizedClientException',
  'ExpiredTokenException',
  'InvalidKeyUsageException',
  'CredentialsProviderError',
  'TimeoutError',
]);

/**
 * The KMS's message, made safe to show: control characters and anything outside
 * printable ASCII removed, runs that look like base64 or hex redacted (ARNs and alias
 * names kept), and cut to 240 characters.
 */
export function sanitizeServiceMessage(message: string): string {
  const printable = message.replace(/[^\x20-\x7e]+/g, ' ');
  const safe = printable
    .split(/([\s'"`,;()[\]{}<>]+)/)
    .map((token) => {
      if (/^arn:[A-Za-z0-9:/_.-]+$/.test(token) || ALIAS_NAME.test(token) || KEY_ID.test(token.replace(/^key\//, ''))) {
        return token;
      }
      return token.replace(/[A-Za-z0-9+/_-]{20,}={0,2}/g, '[redacted]');
    })
    .join('')
    .trim();
  return clip(safe, 240);
}

interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  stack?: unknown;
  cause?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown; attempts?: unknown };
}

function networkCode(error: ErrorLike, depth = 0): string | undefined {
  if (typeof error.code === 'string' && NETWORK_CODES.has(error.code)) return error.code;
  if (depth < 5 && typeof error.cause === 'object' && error.cause !== null) return networkCode(error.cause as ErrorLike, depth + 1);
  // An AggregateError (happy eyeballs) holds the per-address errors.
  const errors = (error as { errors?: unknown }).errors;
  if (depth < 5 && Array.isArray(errors)) {
    for (const inner of errors) {
      if (typeof inner === 'object' && inner !== null) {
        const code = networkCode(inner as ErrorLike, depth + 1);
        if (code !== undefined) return code;
      }
    }
  }
  return undefined;
}

interface CallContext {
  operation: string;
  /** The key, alias or target the call is about. */
  key: string | undefined;
  /** For unreachable endpoints: where the call went. */
  where: string;
  signal: AbortSignal | undefined;
}

/** Maps whatever a KMS call threw to a ProviderError, or to the abort reason. */
function mapError(error: unknown, call: CallContext): unknown {
  if (call.signal?.aborted) return call.signal.reason;
  if (error instanceof ProviderError) return error;
  const e: ErrorLike = typeof error === 'object' && error !== null ? (error as ErrorLike) : { message: String(error) };
  const name = typeof e.name === 'string' && e.name !== '' ? e.name : 'Error';
  const rawMessage = typeof e.message === 'string' ? e.message : '';
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const requestId = typeof e.$metadata?.requestId === 'string' ? e.$metadata.requestId : undefined;
  const attempts = typeof e.$metadata?.attempts === 'number' ? e.$metadata.attempts : undefined;
  const netCode = networkCode(e);
  const isService = e.$fault === 'client' || e.$fault === 'server' || status !== undefined;

  let code: ProviderErrorCode;
  let explanation: string;
  let serviceCode = name;
  if (name === 'AbortError') {
    // Aborted without our signal (e.g. the SDK's own timeout): the KMS did not answer in time.
    code = 'Unavailable';
    explanation = 'the request was aborted before the KMS answered';
  } else if (netCode !== undefined || (!isService && UNAVAILABLE.has(name))) {
    serviceCode = netCode ?? name;
    code = 'Unavailable';
    explanation =
      name === 'TimeoutError' || netCode === 'ETIMEDOUT'
        ? `the KMS at ${call.where} did not answer in time`
        : `the KMS at ${call.where} could not be reached`;
  } else if (name === 'InvalidCiphertextException') {
    code = 'InvalidCiphertext';
    explanation =
      'the KMS refused the encrypted key: it was sealed for another namespace/name/scope (encryption context), or it is corrupt';
  } else if (ACCESS_DENIED.has(name)) {
    code = 'AccessDenied';
    explanation =
      name === 'IncorrectKeyException'
        ? 'the encrypted key was not sealed with this KMS key'
        : name === 'CredentialsProviderError'
          ? 'no AWS credentials were found (IRSA, Pod Identity, environment, profile)'
          : 'access denied: check the credentials and that the key policy or IAM allows this operation with this encryption context';
  } else if (KEY_UNAVAILABLE.has(name)) {
    code = 'KeyUnavailable';
    explanation =
      name === 'DisabledException'
        ? 'the KMS key is disabled'
        : name === 'KMSInvalidStateException'
          ? 'the KMS key is not in a usable state (pending deletion or import?)'
          : 'the KMS key is unavailable';
  } else if (name === 'NotFoundException') {
    code = 'KeyNotFound';
    explanation = 'the KMS key or alias does not exist (in this account and region)';
  } else if (THROTTLED.has(name) || status === 429) {
    code = 'Throttled';
    explanation = 'the KMS throttled the request (retried with backoff, still throttled)';
  } else if (UNAVAILABLE.has(name) || e.$fault === 'server' || (status !== undefined && status >= 500)) {
    code = 'Unavailable';
    explanation = 'the KMS failed or is unavailable';
  } else {
    code = 'Internal';
    explanation =
      name === 'AlreadyExistsException'
        ? 'it already exists'
        : name === 'InvalidKeyUsageException'
          ? 'the KMS key cannot be used for this operation (not a symmetric ENCRYPT_DECRYPT key?)'
          : isService
            ? 'the KMS rejected the request'
            : 'unexpected error';
  }

  const quotable = QUOTABLE.has(name);
  const serviceMessage = quotable && rawMessage !== '' ? sanitizeServiceMessage(rawMessage) : '';
  const details = [serviceCode, status === undefined ? undefined : `HTTP ${status}`, requestId === undefined ? undefined : `request id ${requestId}`]
    .filter((part) => part !== undefined)
    .join(', ');
  const about = call.key === undefined ? '' : ` with ${/(^|:)alias\//.test(call.key) ? 'alias' : 'key'} ${call.key}`;
  const said = serviceMessage === '' ? '' : `; KMS said: ${serviceMessage}`;
  const message = `aws-kms ${call.operation}${about} failed: ${explanation} (${details})${said}`;

  const causeMessage = serviceMessage !== '' ? serviceMessage : quotable || rawMessage === '' ? name : `${name} (message withheld)`;
  let stack: string | undefined;
  if (typeof e.stack === 'string') {
    // Keep the frames, not the first line (it holds the original message).
    const frames = e.stack.split('\n').filter((line) => /^\s+at /.test(line));
    stack = [`${name}: ${causeMessage}`, ...frames].join('\n');
  }
  const cause = new KmsCallError(name, causeMessage, {
    serviceCode,
    ...(status === undefined ? {} : { httpStatusCode: status }),
    ...(requestId === undefined ? {} : { requestId }),
    ...(attempts === undefined ? {} : { attempts }),
    ...(netCode === undefined ? {} : { code: netCode }),
    ...(stack === undefined ? {} : { stack }),
  });
  // The KMS checks the encryption context: a refused ciphertext most likely moved.
  return new ProviderError(code, message, { provider: AWS_KMS, serviceCode, cause, ...(code === 'InvalidCiphertext' ? { contextBound: true } : {}) });
}

// ---------------------------------------------------------------------------------
// The provider

function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** KMS clients kept at once, one per region in use. */
export const MAX_REGION_CLIENTS = 8;

export function createAwsKmsProvider(options: AwsKmsProviderOptions = {}): AwsKmsProvider {
  const clients = new Map<string, KMSClient>();
  // The SDK is loaded on the first call: checking or describing never loads it.
  let sdkLoading: Promise<KmsSdk> | undefined;
  const loadSdk = (): Promise<KmsSdk> => (sdkLoading ??= import('@aws-sdk/client-kms').then(commonJsExports));
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('Internal', `aws-kms maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, { provider: AWS_KMS });
  }

  /** The client for `region`; undefined: options.region or the SDK's default region. */
  function client(sdk: KmsSdk, region: string | undefined): KMSClient {
    const chosen = region ?? options.region;
    const cacheKey = chosen ?? '';
    let kms = clients.get(cacheKey);
    if (kms !== undefined) {
      // Most recently used last: the first entry is the one to drop.
      clients.delete(cacheKey);
      clients.set(cacheKey, kms);
    } else {
      kms = new sdk.KMSClient({
        ...(chosen === undefined ? {} : { region: chosen }),
        ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
        ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
        maxAttempts,
        retryMode: options.retryMode ?? 'adaptive',
        requestHandler: {
          connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
          requestTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
          throwOnRequestTimeout: true,
        },
      });
      clients.set(cacheKey, kms);
      // Regions come from key ARNs in manifests, which tenants write: keep a few clients
      // (each holds sockets and credentials), not one per region string ever seen.
      for (const [oldKey, old] of clients) {
        if (clients.size <= MAX_REGION_CLIENTS) break;
        clients.delete(oldKey);
        old.destroy();
      }
    }
    return kms;
  }

  function where(region: string | undefined): string {
    const chosen = region ?? options.region;
    return options.endpoint ?? (chosen === undefined ? 'the default region' : `region ${chosen}`);
  }

  /** Runs one KMS call with uniform abort and error handling. */
  async function call<T>(operation: string, key: string | undefined, region: string | undefined, signal: AbortSignal | undefined, run: (kms: KMSClient, sdk: KmsSdk) => Promise<T>): Promise<T> {
    signal?.throwIfAborted();
    const sdk = await loadSdk();
    const kms = client(sdk, region);
    if (region === undefined && options.region === undefined) await requireRegion(kms, operation, key);
    try {
      return await run(kms, sdk);
    } catch (error) {
      throw mapError(error, { operation, key, where: where(region), signal });
    }
  }

  function requireKeyArn(operation: string, keyId: string | undefined, target: string): string {
    if (keyId === undefined || !KEY_ARN.test(keyId)) {
      throw new ProviderError('Internal', `aws-kms ${operation} with key ${target}: the KMS answered without a valid key ARN`, { provider: AWS_KMS, serviceCode: 'InvalidResponse' });
    }
    return keyId;
  }

  function recipientKeyId(recipient: Recipient, operation: string): { keyId: string; region: string | undefined } {
    if (recipient.provider !== AWS_KMS) {
      throw new ProviderError('InvalidRecipient', `aws-kms ${operation}: the recipient is for provider ${quote(String(recipient.provider))}, not aws-kms`, { provider: AWS_KMS });
    }
    if (typeof recipient.keyId !== 'string' || recipient.keyId === '') {
      throw new ProviderError('InvalidRecipient', `aws-kms ${operation}: the recipient has no keyId`, { provider: AWS_KMS });
    }
    return { keyId: recipient.keyId, region: parseKmsTarget(recipient.keyId).region };
  }

  function ciphertextOf(recipient: Recipient, keyId: string, operation: string): Uint8Array {
    if (typeof recipient.encryptedKey !== 'string' || recipient.encryptedKey === '' || !isStandardBase64(recipient.encryptedKey)) {
      throw new ProviderError('InvalidCiphertext', `aws-kms ${operation} with key ${keyId}: the recipient's encryptedKey is not standard padded base64`, { provider: AWS_KMS });
    }
    return Buffer.from(recipient.encryptedKey, 'base64');
  }

  function checkDataKey(operation: string, key: string, dataKey: Uint8Array | undefined): Uint8Array {
    if (!(dataKey instanceof Uint8Array) || dataKey.byteLength !== DATA_KEY_BYTES) {
      const length = dataKey instanceof Uint8Array ? dataKey.byteLength : 0;
      zero(dataKey);
      throw new ProviderError('Internal', `aws-kms ${operation} with key ${key}: the data key is ${length} bytes, expected ${DATA_KEY_BYTES}`, { provider: AWS_KMS, serviceCode: 'InvalidDataKeyLength' });
    }
    // A private copy: the SDK's buffer may be a slice of a shared pool.
    const copy = new Uint8Array(DATA_KEY_BYTES);
    copy.set(dataKey);
    zero(dataKey);
    return copy;
  }

  async function unwrap(request: UnwrapRequest, operation = 'Decrypt'): Promise<Uint8Array> {
    const { keyId, region } = recipientKeyId(request.recipient, operation);
    const ciphertext = ciphertextOf(request.recipient, keyId, operation);
    const out = await call(operation, keyId, region, request.signal, (kms, k) =>
      kms.send(
        new k.DecryptCommand({
          CiphertextBlob: ciphertext,
          KeyId: keyId,
          EncryptionContext: request.encryptionContext,
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        }),
        { abortSignal: request.signal },
      ),
    );
    return checkDataKey(operation, keyId, out.Plaintext);
  }

  async function wrap(request: WrapRequest): Promise<Recipient> {
    const { region } = parseKmsTarget(request.target);
    if (!(request.dataKey instanceof Uint8Array) || request.dataKey.byteLength !== DATA_KEY_BYTES) {
      throw new ProviderError('Internal', `aws-kms Encrypt with key ${request.target}: the data key must be ${DATA_KEY_BYTES} bytes`, { provider: AWS_KMS });
    }
    const out = await call('Encrypt', request.target, region, request.signal, (kms, k) =>
      kms.send(
        new k.EncryptCommand({
          KeyId: request.target,
          Plaintext: request.dataKey,
          EncryptionContext: request.encryptionContext,
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        }),
        { abortSignal: request.signal },
      ),
    );
    const keyId = requireKeyArn('Encrypt', out.KeyId, request.target);
    if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
      throw new ProviderError('Internal', `aws-kms Encrypt with key ${keyId}: the KMS answered without a ciphertext`, { provider: AWS_KMS, serviceCode: 'InvalidResponse' });
    }
    return { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) };
  }

  /** A bare alias or key id needs a region from somewhere: the SDK's chain (AWS_REGION, a profile) must give one. */
  async function requireRegion(kms: KMSClient, operation: string, key: string | undefined): Promise<void> {
    try {
      await kms.config.region();
    } catch {
      throw new ProviderError('InvalidRecipient', `aws-kms ${operation}${key === undefined ? '' : ` with ${key}`} failed: no AWS region is configured for a bare alias or key id: use a full ARN, or set the region (--region, AWS_REGION)`, {
        provider: AWS_KMS,
        serviceCode: 'RegionMissing',
      });
    }
  }

  async function resolvedRegion(region: string | undefined): Promise<string | undefined> {
    if (region !== undefined) return region;
    if (options.region !== undefined) return options.region;
    try {
      return await client(await loadSdk(), undefined).config.region();
    } catch {
      return undefined;
    }
  }

  const provider: AwsKmsProvider = {
    name: AWS_KMS,

    parseTarget(target: string): void {
      parseKmsTarget(target);
    },

    async generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey> {
      const { region } = parseKmsTarget(request.target);
      const out = await call('GenerateDataKey', request.target, region, request.signal, (kms, k) =>
        kms.send(
          new k.GenerateDataKeyCommand({
            KeyId: request.target,
            KeySpec: 'AES_256',
            EncryptionContext: request.encryptionContext,
          }),
          { abortSignal: request.signal },
        ),
      );
      let dataKey: Uint8Array | undefined;
      try {
        const keyId = requireKeyArn('GenerateDataKey', out.KeyId, request.target);
        dataKey = checkDataKey('GenerateDataKey', keyId, out.Plaintext);
        if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
          throw new ProviderError('Internal', `aws-kms GenerateDataKey with key ${keyId}: the KMS answered without a ciphertext`, { provider: AWS_KMS, serviceCode: 'InvalidResponse' });
        }
        return { dataKey, recipient: { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) } };
      } catch (error) {
        zero(dataKey);
        zero(out.Plaintext);
        throw error;
      }
    },

    wrap,

    unwrap: (request) => unwrap(request),

    /**
     * ReEncrypt when both keys are in one region: the data key never leaves the KMS.
     * KMS keys are regional, so for a key in another region this is Decrypt in the
     * source region and Encrypt in the destination region, and the data key is in
     * this process's memory for the moment between (zeroed right after).
     */
    async rewrap(request: RewrapRequest): Promise<Recipient> {
      const { keyId: sourceKeyId, region: sourceRegion } = recipientKeyId(request.from, 'ReEncrypt');
      const { region: destinationRegion } = parseKmsTarget(request.target);
      const ciphertext = ciphertextOf(request.from, sourceKeyId, 'ReEncrypt');
      const [from, to] = await Promise.all([resolvedRegion(sourceRegion), resolvedRegion(destinationRegion)]);
      if (from !== undefined && to !== undefined && from !== to) {
        const dataKey = await unwrap({ recipient: request.from, encryptionContext: request.encryptionContext, ...(request.signal === undefined ? {} : { signal: request.signal }) }, 'ReEncrypt (Decrypt)');
        try {
          return await wrap({ target: request.target, dataKey, encryptionContext: request.encryptionContext, ...(request.signal === undefined ? {} : { signal: request.signal }) });
        } finally {
          zero(dataKey);
        }
      }
      const out = await call('ReEncrypt', `${sourceKeyId} -> ${request.target}`, destinationRegion ?? sourceRegion, request.signal, (kms, k) =>
        kms.send(
          new k.ReEncryptCommand({
            CiphertextBlob: ciphertext,
            SourceKeyId: sourceKeyId,
            SourceEncryptionContext: request.encryptionContext,
            SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
            DestinationKeyId: request.target,
            DestinationEncryptionContext: request.encryptionContext,
            DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          }),
          { abortSignal: request.signal },
        ),
      );
      const keyId = requireKeyArn('ReEncrypt', out.KeyId, request.target);
      if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
        throw new ProviderError('Internal', `aws-kms ReEncrypt with key ${keyId}: the KMS answered without a ciphertext`, { provider: AWS_KMS, serviceCode: 'InvalidResponse' });
      }
      return { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) };
    },

    canUnwrap(recipient: Recipient): boolean {
      return recipient.provider === AWS_KMS && typeof recipient.keyId === 'string' && recipient.keyId !== '';
    },

    describe(recipient: Recipient): string {
      return `aws-kms ${recipient.keyId ?? '(no keyId)'}`;
    },

    targetOf(recipient: Recipient): string {
      return recipient.keyId ?? '';
    },

    async canonicalTarget(target: string, signal?: AbortSignal): Promise<string> {
      const parsed = parseKmsTarget(target);
      if (parsed.kind === 'key-arn') return target;
      const out = await call('DescribeKey', target, parsed.region, signal, (kms, k) => kms.send(new k.DescribeKeyCommand({ KeyId: target }), { abortSignal: signal }));
      return requireKeyArn('DescribeKey', out.KeyMetadata?.Arn, target);
    },

    async createKey(request: CreateKeyRequest): Promise<CreatedKey> {
      const parsed = parseKmsTarget(request.alias);
      if (parsed.kind !== 'alias' && parsed.kind !== 'alias-arn') {
        throw invalidTarget(request.alias, 'is not an alias: expected alias/NAME or an alias ARN');
      }
      const aliasName = request.alias.slice(request.alias.indexOf('alias/'));
      if (aliasName.startsWith('alias/aws/')) {
        throw invalidTarget(request.alias, 'uses the prefix alias/aws/, which AWS reserves for AWS managed keys');
      }
      const region = parsed.region;
      const created = await call('CreateKey', undefined, region, request.signal, (kms, k) =>
        kms.send(
          new k.CreateKeyCommand({
            KeySpec: 'SYMMETRIC_DEFAULT',
            KeyUsage: 'ENCRYPT_DECRYPT',
            Description: request.description ?? `envseal envelope key ${aliasName}`,
          }),
          { abortSignal: request.signal },
        ),
      );
      const keyArn = requireKeyArn('CreateKey', created.KeyMetadata?.Arn, aliasName);
      try {
        await call('CreateAlias', aliasName, region, request.signal, (kms, k) =>
          kms.send(new k.CreateAliasCommand({ AliasName: aliasName, TargetKeyId: keyArn }), { abortSignal: request.signal }),
        );
      } catch (error) {
        let cleanup: string;
        try {
          // Not under the caller's signal: the orphan must go even after an abort. The
          // bare key id (same account and region as this client): moto 5.2.5 fails
          // ScheduleKeyDeletion given an ARN.
          const keyId = keyArn.slice(keyArn.indexOf(':key/') + 5);
          const sdk = await loadSdk();
          await client(sdk, region).send(new sdk.ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
          cleanup = `the new key ${keyArn} was scheduled for deletion`;
        } catch {
          cleanup = `the new key ${keyArn} could not be scheduled for deletion: delete it by hand`;
        }
        if (error instanceof ProviderError) {
          throw new ProviderError(error.code, `${error.message}; ${cleanup}`, { provider: AWS_KMS, ...(error.serviceCode === undefined ? {} : { serviceCode: error.serviceCode }), cause: error.cause });
        }
        throw error;
      }
      const arnPrefix = keyArn.slice(0, keyArn.indexOf(':key/'));
      return { keyArn, alias: aliasName, aliasArn: `${arnPrefix}:${aliasName}` };
    },

    openRegions(): string[] {
      return [...clients.keys()];
    },
    close(): void {
      for (const kms of clients.values()) kms.destroy();
      clients.clear();
    },
  };
  return provider;
}

/** CreateKey + CreateAlias with a one-off provider: `envseal keys create --provider aws-kms --alias alias/NAME`. */
export function createAwsKmsKey(options: AwsKmsProviderOptions, request: CreateKeyRequest): Promise<CreatedKey> {
  return createAwsKmsProvider(options).createKey(request);
}

// ---------------------------------------------------------------------------------
// The provider as a whole

const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);
/** An AWS KMS CiphertextBlob is at most 6144 bytes (the Decrypt API's bound). */
export const MAX_AWS_KMS_ENCRYPTED_KEY_BYTES = 6144;

async function resolveSettings(source: ProviderSettingsSource): Promise<AwsKmsProviderOptions> {
  const region = stringSetting(source, 'region') ?? envSetting(source, 'AWS_REGION', 'AWS_DEFAULT_REGION');
  const endpoint = checkedUrl(stringSetting(source, 'kms-endpoint') ?? envSetting(source, 'AWS_ENDPOINT_URL_KMS'), 'KMS endpoint', AWS_KMS);
  const options: AwsKmsProviderOptions = {};
  if (region !== undefined) options.region = region;
  if (endpoint !== undefined) options.endpoint = endpoint;
  if (source.role === 'cli') {
    // Static credentials from the injected environment, as the SDK's chain would take
    // them from process.env first; otherwise the default chain (IRSA, Pod Identity, ...).
    const accessKeyId = source.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = source.env.AWS_SECRET_ACCESS_KEY;
    if (accessKeyId && secretAccessKey) {
      options.credentials = { accessKeyId, secretAccessKey, ...(source.env.AWS_SESSION_TOKEN ? { sessionToken: source.env.AWS_SESSION_TOKEN } : {}) };
    }
  }
  return options;
}

/** The aws-kms provider: see the top of this file. */
export const awsKmsProvider: ProviderDefinition = {
  name: AWS_KMS,
  targetHint: 'ARN-or-alias',
  parseTarget: (target) => void parseKmsTarget(target),
  checkRecipient(recipient, encryptedKey) {
    const problems: RecipientProblem[] = [];
    if (typeof recipient.keyId !== 'string' || !recipient.keyId.startsWith('arn:')) problems.push({ field: 'keyId', check: 'structure', message: 'must be the full key ARN' });
    if (encryptedKey !== undefined && encryptedKey.length > MAX_AWS_KMS_ENCRYPTED_KEY_BYTES) {
      problems.push({ field: 'encryptedKey', check: 'size', message: `is ${encryptedKey.length} bytes; an aws-kms encryptedKey is at most ${MAX_AWS_KMS_ENCRYPTED_KEY_BYTES}` });
    }
    return problems;
  },
  maxEncryptedKeyBytes: MAX_AWS_KMS_ENCRYPTED_KEY_BYTES,
  crdRules: [
    { rule: "self.provider != 'aws-kms' || (has(self.keyId) && self.keyId.startsWith('arn:'))", message: 'an aws-kms recipient needs keyId, the full key ARN' },
    {
      rule: `self.provider != 'aws-kms' || size(self.encryptedKey) <= ${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)}`,
      message: `an aws-kms encryptedKey is a KMS ciphertext blob: at most ${MAX_AWS_KMS_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)} base64 characters)`,
    },
  ],
  describe: (recipient) => `aws-kms ${recipient.keyId ?? '(no keyId)'}`,
  targetOf: (recipient) => recipient.keyId ?? '',
  // Exactly what the AWS Encryption SDK's KMS keyring writes: either side decrypts the
  // other's files.
  edk: keyIdEdkCodec(AWS_KMS, 'aws-kms'),
  settings: {
    cliOptions: {
      region: { type: 'string', value: 'REGION', help: 'AWS region for aws-kms aliases and key creation (default: AWS_REGION, AWS_DEFAULT_REGION; a key ARN names its own region)' },
      'kms-endpoint': { type: 'string', value: 'URL', help: 'AWS KMS endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL_KMS)' },
    },
    controllerOptions: {
      region: { type: 'string', value: 'REGION', help: 'AWS region for aws-kms keys named without an ARN (env AWS_REGION)' },
      'kms-endpoint': { type: 'string', value: 'URL', help: 'AWS KMS endpoint override, e.g. an emulator (env AWS_ENDPOINT_URL_KMS)' },
    },
    resolve: resolveSettings,
  },
  create: async (options) => createAwsKmsProvider((options ?? {}) as AwsKmsProviderOptions),
  async createKey(request) {
    const created = await createAwsKmsKey((request.options ?? {}) as AwsKmsProviderOptions, {
      alias: request.name.startsWith('alias/') || request.name.startsWith('arn:') ? request.name : `alias/${request.name}`,
      ...(request.description !== undefined ? { description: request.description } : {}),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    return { target: created.alias, keyId: created.keyArn, summary: `created ${created.alias} (${created.aliasArn})` };
  },
};
