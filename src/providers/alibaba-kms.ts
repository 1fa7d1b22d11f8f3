/**
 * The alibaba-kms key provider: envelope data keys wrapped by an Alibaba Cloud KMS key
 * (API 2016-01-20), through the official SDK `@alicloud/kms20160120` and credentials from
 * `@alicloud/credentials`, both loaded only when the provider is created.
 *
 * - Target: `alibaba-kms:KEY-ID`, `alibaba-kms:alias/NAME` (in the configured region),
 *   or a key or alias ARN `alibaba-kms:acs:kms:REGION:ACCOUNT:key/KEY-ID` /
 *   `...:alias/NAME` (its own region). The recipient's keyId is always the key's ARN
 *   (from DescribeKey), so it names the region whose endpoint the controller calls; the
 *   encryptedKey is the CiphertextBlob (base64, as the service returns it).
 * - Binding: every GenerateDataKey, Encrypt and Decrypt passes envseal's encryption
 *   context (scope, namespace, name) as the EncryptionContext JSON; the service refuses
 *   a Decrypt with another one, so a refused ciphertext most likely moved.
 * - Credentials, in this order: AccessKey from the options; ALIBABA_CLOUD_ACCESS_KEY_ID /
 *   _SECRET (and _SECURITY_TOKEN for STS) for the CLI; RRSA on ACK for the controller
 *   (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE,
 *   which ACK's pod-identity webhook injects; exchanged with STS AssumeRoleWithOIDC by
 *   @alicloud/credentials). Nothing else: no ECS metadata probe, no config file.
 * - Calls: one SDK client per region; each attempt has a time limit and the caller's
 *   AbortSignal (the SDK takes none: the call is abandoned, its socket closes at the SDK's
 *   read timeout); throttling, 5xx and network failures are retried with backoff,
 *   `maxAttempts` attempts in all.
 * - Errors: a ProviderError naming the operation, the key and the service's error code
 *   and request id; the service's message only sanitized (printable ASCII, long base64
 *   or hex runs redacted). The SDK's error is never the cause (it holds the response).
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../envelope/kdf.ts';
import { clip, quoted } from '../util/message.ts';
import {
  type CreatedProviderKey,
  type GenerateDataKeyRequest,
  type GeneratedDataKey,
  type KeyProvider,
  type ProviderDefinition,
  ProviderError,
  type ProviderErrorCode,
  type ProviderSettingsSource,
  type Recipient,
  type RecipientProblem,
  type UnwrapRequest,
  type WrapRequest,
} from './types.ts';

export const ALIBABA_KMS = 'alibaba-kms';
/** The provider id of its encrypted data keys in the file format (envseal's own). */
export const ALIBABA_KMS_PROVIDER_ID = 'envseal-alibaba-kms';
/** The largest CiphertextBlob (decoded) a manifest may hold. */
export const MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES = 6144;

const DEFAULT_MAX_ATTEMPTS = 4;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const PENDING_WINDOW_DAYS = 7;

export type AlibabaKmsCredentials =
  | { kind: 'access-key'; accessKeyId: string; accessKeySecret: string; securityToken?: string }
  /** RRSA: a RAM role assumed with the pod's OIDC token (ACK). */
  | { kind: 'rrsa'; roleArn: string; oidcProviderArn: string; oidcTokenFile: string; roleSessionName?: string; stsEndpoint?: string; stsRegion?: string; stsVpcEndpoint?: boolean };

export interface AlibabaKmsProviderOptions {
  /** Region of bare key ids and aliases (CLI: --alibaba-kms-region, ALIBABA_CLOUD_REGION_ID). ARNs carry their own. */
  region?: string;
  /**
   * Endpoint for every region instead of kms.REGION.aliyuncs.com, e.g. an emulator's
   * http://127.0.0.1:PORT or a VPC endpoint (--alibaba-kms-endpoint, ALIBABA_CLOUD_KMS_ENDPOINT).
   */
  endpoint?: string;
  /** Default: none, and every call fails with AccessDenied saying what to set. */
  credentials?: AlibabaKmsCredentials;
  /** Attempts per call, the first included (default 4). */
  maxAttempts?: number;
  /** Time limit of one attempt (default 30000 ms). */
  requestTimeoutMs?: number;
}

// ---------------------------------------------------------------------------------
// Targets

export interface ParsedAlibabaTarget {
  kind: 'key-arn' | 'alias-arn' | 'alias' | 'key-id';
  /** From the ARN; undefined for a bare key id or alias. */
  region: string | undefined;
  /** What KeyId takes in calls: the key id or the alias name (alias/NAME). */
  keyRef: string;
}

const KEY_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|key-[a-z0-9]{8,64})$/;
const ALIAS_NAME = /^alias\/[A-Za-z0-9:/_-]{1,255}$/;
const REGION = /^[a-z]{2,}(?:-[a-z0-9]+)+$/;
const ACCOUNT = /^\d{1,32}$/;
const KEY_ARN = /^acs:kms:([a-z]{2,}(?:-[a-z0-9]+)+):(\d{1,32}):key\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|key-[a-z0-9]{8,64})$/;
const TARGET_FORMS = 'a key id, alias/NAME, or an ARN acs:kms:REGION:ACCOUNT:key/KEY-ID or :alias/NAME';

function quote(text: string): string {
  return quoted(text, 200);
}

function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `alibaba-kms target ${quote(target)} ${problem}`, { provider: ALIBABA_KMS });
}

/** Parses a target, or throws InvalidRecipient naming the problem. No I/O. */
export function parseAlibabaTarget(target: string): ParsedAlibabaTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `alibaba-kms target is empty: expected ${TARGET_FORMS}`, { provider: ALIBABA_KMS });
  }
  if (target.trim() !== target) throw invalidTarget(target, 'has leading or trailing white space');
  if (target.startsWith('acs:')) {
    const parts = target.split(':');
    if (parts.length < 5 || parts[1] !== 'kms') throw invalidTarget(target, 'is not a KMS ARN: expected acs:kms:REGION:ACCOUNT:key/KEY-ID or :alias/NAME');
    const [, , region = '', account = '', ...rest] = parts;
    const resource = rest.join(':');
    if (!REGION.test(region)) throw invalidTarget(target, `has no valid region (got ${quote(region)})`);
    if (!ACCOUNT.test(account)) throw invalidTarget(target, `has no valid account id (got ${quote(account)})`);
    if (resource.startsWith('key/')) {
      if (!KEY_ID.test(resource.slice(4))) throw invalidTarget(target, 'has an invalid key id: expected a UUID or key- followed by 8-64 of a-z 0-9');
      return { kind: 'key-arn', region, keyRef: resource.slice(4) };
    }
    if (resource.startsWith('alias/')) {
      if (!ALIAS_NAME.test(resource)) throw invalidTarget(target, 'has an invalid alias: alias/ followed by 1-255 of A-Z a-z 0-9 : / _ -');
      return { kind: 'alias-arn', region, keyRef: resource };
    }
    throw invalidTarget(target, 'names neither a key (key/KEY-ID) nor an alias (alias/NAME)');
  }
  if (target.startsWith('alias/')) {
    if (!ALIAS_NAME.test(target)) throw invalidTarget(target, 'is not a valid alias: alias/ followed by 1-255 of A-Z a-z 0-9 : / _ -');
    return { kind: 'alias', region: undefined, keyRef: target };
  }
  if (KEY_ID.test(target)) return { kind: 'key-id', region: undefined, keyRef: target };
  if (/^[A-Za-z0-9_-]+$/.test(target)) throw invalidTarget(target, `is not ${TARGET_FORMS} (an alias needs the alias/ prefix: alias/${target}?)`);
  throw invalidTarget(target, `is not ${TARGET_FORMS}`);
}

/** The region and key id of a key ARN (a recipient's keyId), or undefined. */
export function parseKeyArn(arn: unknown): { region: string; account: string; keyId: string } | undefined {
  if (typeof arn !== 'string') return undefined;
  const m = KEY_ARN.exec(arn);
  return m === null ? undefined : { region: m[1]!, account: m[2]!, keyId: m[3]! };
}

/** Problems with a manifest recipient's own fields (the controller and `envseal verify`). */
export function checkAlibabaRecipient(recipient: Readonly<Record<string, unknown>>, encryptedKey: Uint8Array | undefined): RecipientProblem[] {
  const problems: RecipientProblem[] = [];
  if (parseKeyArn(recipient.keyId) === undefined) {
    problems.push({ field: 'keyId', check: 'structure', message: 'an alibaba-kms recipient needs keyId, the key ARN acs:kms:REGION:ACCOUNT:key/KEY-ID' });
  }
  if (encryptedKey !== undefined) {
    if (encryptedKey.byteLength === 0) problems.push({ field: 'encryptedKey', check: 'structure', message: 'an alibaba-kms encryptedKey is a KMS CiphertextBlob and cannot be empty' });
    if (encryptedKey.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
      problems.push({ field: 'encryptedKey', check: 'size', message: `an alibaba-kms encryptedKey is a KMS CiphertextBlob: at most ${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes` });
    }
  }
  return problems;
}

/** The EncryptionContext parameter: the service takes the map as one JSON string. */
export function encryptionContextJson(context: Record<string, string>): string {
  return JSON.stringify(Object.fromEntries(Object.keys(context).sort().map((k) => [k, context[k]])));
}

// ---------------------------------------------------------------------------------
// Errors

/** A sanitized copy of a failed call's error, used as a ProviderError's cause. */
export class AlibabaKmsCallError extends Error {
  /** The service's error code (e.g. `Forbidden.KeyNotFound`) or the network error's code. */
  readonly serviceCode: string;
  readonly httpStatusCode: number | undefined;
  readonly requestId: string | undefined;

  constructor(message: string, details: { serviceCode: string; httpStatusCode?: number; requestId?: string }) {
    super(message);
    this.name = 'AlibabaKmsCallError';
    this.serviceCode = details.serviceCode;
    this.httpStatusCode = details.httpStatusCode;
    this.requestId = details.requestId;
  }
}

/**
 * The service's message made safe to show: printable ASCII only, runs that look like
 * base64 or hex redacted (key ARNs, key ids and aliases kept), at most 240 characters.
 */
export function sanitizeAlibabaMessage(message: string): string {
  const safe = message
    .replace(/[^\x20-\x7e]+/g, ' ')
    .split(/([\s'"`,;()[\]{}<>]+)/)
    .map((token) => (KEY_ARN.test(token) || ALIAS_NAME.test(token) || KEY_ID.test(token) ? token : token.replace(/[A-Za-z0-9+/_-]{20,}={0,2}/g, '[redacted]')))
    .join('')
    .replace(/\s+/g, ' ')
    .trim();
  return clip(safe, 240);
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN', 'ESOCKETTIMEDOUT']);

const ACCESS_DENIED = /^(?:InvalidAccessKeyId(?:\..+)?|SignatureDoesNotMatch|IncompleteSignature|Forbidden\.(?:RAM|NoPermission|AccessDenied|Unauthorized|RiskControl|Uninitialized)|NoPermission|InvalidSecurityToken(?:\..+)?|AccessDenied|Forbidden)$/;
const KEY_NOT_FOUND = /^(?:Forbidden\.KeyNotFound|Forbidden\.AliasNotFound|Forbidden\.ResourceNotFound|EntityNotExist\..+)$/;
const KEY_UNAVAILABLE = /^Rejected\.(?:Disabled|PendingDeletion|PendingImport|StateModifiedFailed|Unavailable)$/;
const THROTTLED = /^(?:Throttling(?:\..+)?|Rejected\.Throttling|ServiceUnavailable\.Throttling)$/;
const UNAVAILABLE = /^(?:InternalFailure|InternalError|ServiceUnavailable(?:Temporary)?|SerivceUnavailableTemporary|Timeout|Unavailable)$/;

export interface ClassifiedAlibabaError {
  code: ProviderErrorCode;
  explanation: string;
  contextBound: boolean;
}

/** What a service error code (with its HTTP status and the operation) means. */
export function classifyAlibabaError(serviceCode: string, status: number | undefined, operation: string): ClassifiedAlibabaError {
  const no = { contextBound: false };
  if (THROTTLED.test(serviceCode) || status === 429) return { code: 'Throttled', explanation: 'the KMS throttled the request (retried with backoff, still throttled)', ...no };
  if (serviceCode === 'SignatureDoesNotMatch' || serviceCode === 'IncompleteSignature') {
    return { code: 'AccessDenied', explanation: 'the KMS refused the request signature: check the AccessKey secret', ...no };
  }
  if (/^InvalidAccessKeyId/.test(serviceCode)) return { code: 'AccessDenied', explanation: 'the KMS does not know this AccessKey id (or it is disabled)', ...no };
  if (ACCESS_DENIED.test(serviceCode) || status === 403) {
    return { code: 'AccessDenied', explanation: 'access denied: check the credentials and that the RAM policy allows this operation on this key', ...no };
  }
  if (KEY_NOT_FOUND.test(serviceCode) || (status === 404 && serviceCode !== 'InvalidAction.NotFound')) {
    return { code: 'KeyNotFound', explanation: 'the KMS key or alias does not exist (in this account and region)', ...no };
  }
  if (KEY_UNAVAILABLE.test(serviceCode)) {
    const state = serviceCode === 'Rejected.Disabled' ? 'disabled' : serviceCode === 'Rejected.PendingDeletion' ? 'pending deletion' : serviceCode === 'Rejected.PendingImport' ? 'waiting for its key material (PendingImport)' : 'not in a state that allows this';
    return { code: 'KeyUnavailable', explanation: `the KMS key is ${state}`, ...no };
  }
  if (UNAVAILABLE.test(serviceCode) || (status !== undefined && status >= 500)) return { code: 'Unavailable', explanation: 'the KMS failed or is unavailable', ...no };
  if (operation === 'Decrypt' && (/^InvalidCiphertext/.test(serviceCode) || serviceCode === 'InvalidParameter' || serviceCode === 'Rejected.ValidateFailed')) {
    return { code: 'InvalidCiphertext', explanation: 'the KMS refused the encrypted key: it was sealed for another namespace/name/scope (encryption context), or it is corrupt', contextBound: true };
  }
  if (serviceCode === 'InvalidTimeStamp.Expired' || serviceCode === 'RequestTimeTooSkewed') {
    return { code: 'Internal', explanation: "the KMS refused the request's time stamp: this machine's clock is more than 15 minutes off", ...no };
  }
  return { code: 'Internal', explanation: 'the KMS rejected the request', ...no };
}

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  data?: unknown;
  cause?: unknown;
}

function networkCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 5) return undefined;
  const code = (error as ErrorLike).code;
  if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
  const name = (error as ErrorLike).name;
  if (typeof name === 'string' && /Timeout/i.test(name)) return 'Timeout';
  return networkCode((error as ErrorLike).cause, depth + 1);
}

/** The service's answer in an SDK error: code, HTTP status, request id, message. */
function serviceAnswer(error: unknown): { serviceCode: string; status: number | undefined; requestId: string | undefined; message: string } | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const data = (error as ErrorLike).data;
  if (typeof data !== 'object' || data === null) return undefined;
  const body = data as Record<string, unknown>;
  const code = body.Code ?? body.code;
  if (typeof code !== 'string' || code === '') return undefined;
  const sdkMessage = typeof (error as ErrorLike).message === 'string' ? ((error as ErrorLike).message as string) : '';
  const statusMatch = /code: (\d{3}),/.exec(sdkMessage);
  const status = typeof body.HttpStatus === 'number' ? body.HttpStatus : statusMatch ? Number(statusMatch[1]) : undefined;
  const requestId = body.RequestId ?? body.requestId;
  const message = body.Message ?? body.message;
  return { serviceCode: code, status, requestId: typeof requestId === 'string' ? requestId : undefined, message: typeof message === 'string' ? message : '' };
}

// ---------------------------------------------------------------------------------
// Settings: flags and environment

export const ALIBABA_KMS_OPTIONS = {
  'alibaba-kms-region': { type: 'string', value: 'REGION', help: 'Alibaba Cloud region of bare alibaba-kms key ids and aliases (default: ALIBABA_CLOUD_REGION_ID)' },
  'alibaba-kms-endpoint': { type: 'string', value: 'URL', help: 'Alibaba Cloud KMS endpoint instead of kms.REGION.aliyuncs.com, e.g. a VPC endpoint (default: ALIBABA_CLOUD_KMS_ENDPOINT)' },
} as const;

function stringValue(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Options from flags and environment: region and endpoint; credentials from
 * ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (+ _SECURITY_TOKEN), else RRSA
 * (ALIBABA_CLOUD_ROLE_ARN, _OIDC_PROVIDER_ARN, _OIDC_TOKEN_FILE).
 */
export function resolveAlibabaKmsOptions(source: Pick<ProviderSettingsSource, 'values' | 'env'>): AlibabaKmsProviderOptions {
  const env = source.env;
  const region = stringValue(source.values['alibaba-kms-region']) ?? stringValue(env.ALIBABA_CLOUD_REGION_ID);
  const endpoint = stringValue(source.values['alibaba-kms-endpoint']) ?? stringValue(env.ALIBABA_CLOUD_KMS_ENDPOINT);
  if (region !== undefined && !REGION.test(region)) {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms region ${quote(region)} is not a region id such as cn-hangzhou`, { provider: ALIBABA_KMS });
  }
  if (endpoint !== undefined) checkEndpoint(endpoint);
  let credentials: AlibabaKmsCredentials | undefined;
  const accessKeyId = stringValue(env.ALIBABA_CLOUD_ACCESS_KEY_ID);
  const accessKeySecret = stringValue(env.ALIBABA_CLOUD_ACCESS_KEY_SECRET);
  const roleArn = stringValue(env.ALIBABA_CLOUD_ROLE_ARN);
  const oidcProviderArn = stringValue(env.ALIBABA_CLOUD_OIDC_PROVIDER_ARN);
  const oidcTokenFile = stringValue(env.ALIBABA_CLOUD_OIDC_TOKEN_FILE);
  if (accessKeyId !== undefined || accessKeySecret !== undefined) {
    if (accessKeyId === undefined || accessKeySecret === undefined) {
      throw new ProviderError('InvalidConfiguration', 'alibaba-kms: set both ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (one of them is missing)', { provider: ALIBABA_KMS });
    }
    const securityToken = stringValue(env.ALIBABA_CLOUD_SECURITY_TOKEN);
    credentials = { kind: 'access-key', accessKeyId, accessKeySecret, ...(securityToken === undefined ? {} : { securityToken }) };
  } else if (roleArn !== undefined || oidcProviderArn !== undefined || oidcTokenFile !== undefined) {
    if (roleArn === undefined || oidcProviderArn === undefined || oidcTokenFile === undefined) {
      throw new ProviderError('InvalidConfiguration', 'alibaba-kms RRSA needs ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE together (set by ACK for a ServiceAccount with RRSA)', { provider: ALIBABA_KMS });
    }
    const roleSessionName = stringValue(env.ALIBABA_CLOUD_ROLE_SESSION_NAME);
    // What ack-pod-identity-webhook 0.4+ also injects: the STS endpoint to use.
    const stsEndpoint = stringValue(env.ALIBABA_CLOUD_STS_ENDPOINT);
    const stsRegion = stringValue(env.ALIBABA_CLOUD_STS_REGION);
    const stsVpcEndpoint = stringValue(env.ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED)?.toLowerCase() === 'true';
    credentials = {
      kind: 'rrsa',
      roleArn,
      oidcProviderArn,
      oidcTokenFile,
      ...(roleSessionName === undefined ? {} : { roleSessionName }),
      ...(stsEndpoint === undefined ? {} : { stsEndpoint }),
      ...(stsRegion === undefined ? {} : { stsRegion }),
      ...(stsVpcEndpoint ? { stsVpcEndpoint } : {}),
    };
  }
  return { ...(region === undefined ? {} : { region }), ...(endpoint === undefined ? {} : { endpoint }), ...(credentials === undefined ? {} : { credentials }) };
}

function checkEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms endpoint ${quote(endpoint)} is not a URL (e.g. https://kms-vpc.cn-hangzhou.aliyuncs.com)`, { provider: ALIBABA_KMS });
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '') {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms endpoint ${quote(endpoint)} must be http(s)://HOST[:PORT] without path, query or user`, { provider: ALIBABA_KMS });
  }
  return url;
}

// ---------------------------------------------------------------------------------
// The provider

/** The parts of the SDK used here (its classes are loaded with import()). */
interface KmsClient {
  generateDataKeyEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; plaintext?: string; ciphertextBlob?: string }>;
  encryptEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; ciphertextBlob?: string }>;
  decryptEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; plaintext?: string }>;
  describeKeyEx(request: unknown, runtime: unknown): Promise<{ keyMetadata?: { keyId?: string; arn?: string; keyState?: string } }>;
  createKeyEx(request: unknown, runtime: unknown): Promise<{ keyMetadata?: { keyId?: string; arn?: string } }>;
  createAliasEx(request: unknown, runtime: unknown): Promise<unknown>;
  scheduleKeyDeletionEx(request: unknown, runtime: unknown): Promise<unknown>;
}

type ModelClass = new (map: Record<string, unknown>) => unknown;

interface Sdk {
  Client: new (config: unknown) => KmsClient;
  models: Record<'GenerateDataKeyRequest' | 'EncryptRequest' | 'DecryptRequest' | 'DescribeKeyRequest' | 'CreateKeyRequest' | 'CreateAliasRequest' | 'ScheduleKeyDeletionRequest', ModelClass>;
  Credential: new (config: unknown) => unknown;
  CredentialConfig: ModelClass;
}

async function loadSdk(): Promise<Sdk> {
  const [kms, credentials] = await Promise.all([import('@alicloud/kms20160120'), import('@alicloud/credentials')]);
  // CommonJS modules: what holds the exports differs between Node's and bundlers' interop
  // (the namespace, its `default`, or `default.default`): take the first that has it.
  const layers = (mod: unknown): Record<string, unknown>[] => {
    const out: Record<string, unknown>[] = [];
    let at: unknown = mod;
    for (let i = 0; i < 3 && (typeof at === 'object' || typeof at === 'function') && at !== null; i++) {
      out.push(at as Record<string, unknown>);
      at = (at as { default?: unknown }).default;
    }
    return out;
  };
  const find = <T>(mod: unknown, what: string, test: (value: unknown) => boolean): T => {
    for (const layer of layers(mod)) if (test(layer)) return layer as T;
    throw new ProviderError('Internal', `alibaba-kms: the SDK has no ${what} (an incompatible version?)`, { provider: ALIBABA_KMS });
  };
  const hasMethod = (method: string) => (value: unknown) => typeof value === 'function' && typeof (value as { prototype?: Record<string, unknown> }).prototype?.[method] === 'function';
  const names = ['GenerateDataKeyRequest', 'EncryptRequest', 'DecryptRequest', 'DescribeKeyRequest', 'CreateKeyRequest', 'CreateAliasRequest', 'ScheduleKeyDeletionRequest'] as const;
  const kmsExports = find<Record<string, unknown>>(kms, 'request models', (value) => names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function'));
  const credentialExports = find<Record<string, unknown>>(credentials, 'credential Config', (value) => typeof (value as Record<string, unknown>).Config === 'function');
  const models = {} as Sdk['models'];
  for (const name of names) models[name] = kmsExports[name] as ModelClass;
  return {
    Client: find<Sdk['Client']>(kms, 'KMS client', hasMethod('decryptEx')),
    models,
    Credential: find<Sdk['Credential']>(credentials, 'Credential class', hasMethod('getAccessKeyId')),
    CredentialConfig: credentialExports.Config as ModelClass,
  };
}

interface Call {
  operation: string;
  /** The key, alias or ARN the call is about. */
  key: string;
  region: string;
  signal: AbortSignal | undefined;
}

export interface AlibabaKmsProvider extends KeyProvider {
  readonly name: typeof ALIBABA_KMS;
  generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey>;
  canonicalTarget(target: string, signal?: AbortSignal): Promise<string>;
  /** CreateKey then CreateAlias `alias/NAME`; when the alias fails the key is scheduled for deletion (7 days). */
  createKey(request: { name: string; description?: string; signal?: AbortSignal }): Promise<{ keyArn: string; alias: string }>;
}

function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}

export async function createAlibabaKmsProvider(options: AlibabaKmsProviderOptions = {}): Promise<AlibabaKmsProvider> {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, { provider: ALIBABA_KMS });
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const endpoint = options.endpoint === undefined ? undefined : checkEndpoint(options.endpoint);
  const sdk = await loadSdk();
  const clients = new Map<string, KmsClient>();
  let credential: unknown;
  /** Target (as given, with its region) → key ARN, from DescribeKey. */
  const arns = new Map<string, string>();

  function where(region: string): string {
    return endpoint === undefined ? `kms.${region}.aliyuncs.com` : endpoint.host;
  }

  function clientFor(call: Call): KmsClient {
    let client = clients.get(call.region);
    if (client !== undefined) return client;
    const creds = options.credentials;
    if (creds === undefined) {
      throw new ProviderError('AccessDenied', `alibaba-kms ${call.operation} with ${call.key} failed: no Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE)`, { provider: ALIBABA_KMS, serviceCode: 'NoCredentials' });
    }
    credential ??=
      creds.kind === 'access-key'
        ? new sdk.Credential(new sdk.CredentialConfig({ type: creds.securityToken === undefined ? 'access_key' : 'sts', accessKeyId: creds.accessKeyId, accessKeySecret: creds.accessKeySecret, ...(creds.securityToken === undefined ? {} : { securityToken: creds.securityToken }) }))
        : new sdk.Credential(new sdk.CredentialConfig({ type: 'oidc_role_arn', roleArn: creds.roleArn, oidcProviderArn: creds.oidcProviderArn, oidcTokenFilePath: creds.oidcTokenFile, roleSessionName: creds.roleSessionName ?? 'envseal', ...(creds.stsEndpoint === undefined ? {} : { stsEndpoint: creds.stsEndpoint }), ...(creds.stsRegion === undefined ? {} : { stsRegionId: creds.stsRegion }), ...(creds.stsVpcEndpoint ? { enableVpc: true } : {}) }));
    client = new sdk.Client({
      credential,
      regionId: call.region,
      readTimeout: requestTimeoutMs,
      connectTimeout: Math.min(DEFAULT_CONNECT_TIMEOUT_MS, requestTimeoutMs),
      ...(endpoint === undefined ? {} : { endpoint: endpoint.host, protocol: endpoint.protocol.slice(0, -1) }),
    });
    clients.set(call.region, client);
    return client;
  }

  function regionOf(parsed: { region: string | undefined }, target: string): string {
    const region = parsed.region ?? options.region;
    if (region === undefined) {
      throw invalidTarget(target, 'names no region: use a key ARN (acs:kms:REGION:...), or set the region (--alibaba-kms-region or ALIBABA_CLOUD_REGION_ID)');
    }
    return region;
  }

  function failure(call: Call, error: unknown): unknown {
    if (call.signal?.aborted) return call.signal.reason;
    if (error instanceof ProviderError) return error;
    const answer = serviceAnswer(error);
    let code: ProviderErrorCode;
    let explanation: string;
    let contextBound = false;
    let serviceCode: string;
    let said = '';
    const sts = stsFailure(error);
    if (sts !== undefined) {
      code = 'AccessDenied';
      serviceCode = sts.serviceCode;
      explanation = sts.explanation;
    } else if (answer !== undefined) {
      ({ code, explanation, contextBound } = classifyAlibabaError(answer.serviceCode, answer.status, call.operation));
      serviceCode = answer.serviceCode;
      said = answer.message === '' ? '' : sanitizeAlibabaMessage(answer.message);
    } else if ((error as ErrorLike).name === 'SyntaxError') {
      // The SDK reads every answer as JSON: this one was not the KMS's (a proxy's or
      // gateway's error page). Its text is not shown.
      serviceCode = 'NotJson';
      code = 'Unavailable';
      explanation = `the endpoint ${where(call.region)} answered with something other than the KMS's JSON (a proxy or gateway error?)`;
    } else {
      const net = networkCode(error);
      serviceCode = net ?? 'Error';
      code = net === undefined ? 'Internal' : 'Unavailable';
      explanation = net === undefined ? 'unexpected error' : net === 'Timeout' || net === 'ETIMEDOUT' ? `the KMS at ${where(call.region)} did not answer in time` : `the KMS at ${where(call.region)} could not be reached`;
    }
    const details = [serviceCode, answer?.status === undefined ? undefined : `HTTP ${answer.status}`, answer?.requestId === undefined ? undefined : `request id ${answer.requestId}`].filter((p) => p !== undefined).join(', ');
    const message = `alibaba-kms ${call.operation} with ${call.key} failed: ${explanation} (${details})${said === '' ? '' : `; KMS said: ${said}`}`;
    const cause = new AlibabaKmsCallError(said === '' ? serviceCode : said, {
      serviceCode,
      ...(answer?.status === undefined ? {} : { httpStatusCode: answer.status }),
      ...(answer?.requestId === undefined ? {} : { requestId: answer.requestId }),
    });
    return new ProviderError(code, message, { provider: ALIBABA_KMS, serviceCode, cause, ...(contextBound ? { contextBound: true } : {}) });
  }

  /** A failure to get RRSA credentials (the OIDC token file, STS AssumeRoleWithOIDC), or undefined. */
  function stsFailure(error: unknown): { serviceCode: string; explanation: string } | undefined {
    const creds = options.credentials;
    if (creds?.kind !== 'rrsa' || typeof error !== 'object' || error === null) return undefined;
    const e = error as ErrorLike & { path?: unknown };
    if (typeof e.code === 'string' && /^E(NOENT|ACCES|ISDIR|PERM)$/.test(e.code) && e.path === creds.oidcTokenFile) {
      return { serviceCode: e.code, explanation: `RRSA: cannot read the OIDC token file ${quote(creds.oidcTokenFile)} (ALIBABA_CLOUD_OIDC_TOKEN_FILE)` };
    }
    const message = typeof e.message === 'string' ? e.message : '';
    if (!message.startsWith('get sts token failed')) return undefined;
    // The library quotes STS's JSON answer: take its error code only.
    const code = /"Code"\s*:\s*"([A-Za-z0-9.]{1,80})"/.exec(message)?.[1] ?? 'AssumeRoleWithOIDC';
    return { serviceCode: code, explanation: `RRSA: STS refused AssumeRoleWithOIDC for role ${creds.roleArn}: check that the role trusts the OIDC provider ${creds.oidcProviderArn} and this ServiceAccount` };
  }

  /** One SDK call with retries, a time limit per attempt and the caller's signal. */
  async function invoke<T>(call: Call, run: (client: KmsClient, runtime: unknown) => Promise<T>): Promise<T> {
    const client = clientFor(call);
    for (let attempt = 1; ; attempt++) {
      call.signal?.throwIfAborted();
      const limit = AbortSignal.timeout(requestTimeoutMs);
      const signal = call.signal ? AbortSignal.any([call.signal, limit]) : limit;
      const runtime = { autoretry: false, readTimeout: requestTimeoutMs, connectTimeout: Math.min(DEFAULT_CONNECT_TIMEOUT_MS, requestTimeoutMs) };
      let error: unknown;
      try {
        return await new Promise<T>((resolve, reject) => {
          const onAbort = () => reject(call.signal?.aborted ? call.signal.reason : Object.assign(new Error('the attempt took too long'), { name: 'TimeoutError' }));
          signal.addEventListener('abort', onAbort, { once: true });
          run(client, runtime).then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
        });
      } catch (caught) {
        error = failure(call, caught);
      }
      if (error instanceof ProviderError && error.retryable && attempt < maxAttempts) {
        try {
          // Full jitter on 100 ms, 200 ms, 400 ms...
          await sleep(Math.random() * 100 * 2 ** (attempt - 1), undefined, call.signal ? { signal: call.signal } : {});
        } catch {
          throw call.signal?.reason;
        }
        continue;
      }
      throw error;
    }
  }

  function dataKeyOf(call: Call, plaintext: unknown): Uint8Array {
    // The service's Plaintext is the base64 text of the data key.
    const bytes = typeof plaintext === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(plaintext) ? Buffer.from(plaintext, 'base64') : undefined;
    if (bytes === undefined || bytes.byteLength !== DATA_KEY_BYTES) {
      zero(bytes);
      throw new ProviderError('Internal', `alibaba-kms ${call.operation} with ${call.key}: the KMS answered with a data key that is not ${DATA_KEY_BYTES} bytes`, { provider: ALIBABA_KMS });
    }
    const copy = new Uint8Array(DATA_KEY_BYTES);
    copy.set(bytes);
    zero(bytes);
    return copy;
  }

  function recipientOf(call: Call, keyArn: string, blob: unknown, keyId: unknown): Recipient {
    const arn = parseKeyArn(keyArn);
    if (typeof blob !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || Buffer.from(blob, 'base64').byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
      throw new ProviderError('Internal', `alibaba-kms ${call.operation} with ${call.key}: the KMS answered without a CiphertextBlob`, { provider: ALIBABA_KMS });
    }
    if (arn === undefined || keyId !== arn.keyId) {
      throw new ProviderError('Internal', `alibaba-kms ${call.operation} with ${call.key}: the KMS answered for another key than ${keyArn}`, { provider: ALIBABA_KMS });
    }
    return { provider: ALIBABA_KMS, keyId: keyArn, encryptedKey: Buffer.from(blob, 'base64').toString('base64') };
  }

  /** The key ARN a target names (DescribeKey, once per target and region). */
  async function keyArnOf(target: string, signal: AbortSignal | undefined): Promise<{ arn: string; region: string; keyRef: string }> {
    const parsed = parseAlibabaTarget(target);
    const region = regionOf(parsed, target);
    const cacheKey = `${region}\n${parsed.keyRef}`;
    const cached = arns.get(cacheKey);
    if (cached !== undefined) return { arn: cached, region, keyRef: parsed.keyRef };
    const call: Call = { operation: 'DescribeKey', key: target, region, signal };
    const out = await invoke(call, (client, runtime) => client.describeKeyEx(new sdk.models.DescribeKeyRequest({ keyId: parsed.keyRef }), runtime));
    const arn = out.keyMetadata?.arn;
    const found = parseKeyArn(arn);
    if (found === undefined || found.region !== region) {
      throw new ProviderError('Internal', `alibaba-kms DescribeKey with ${target}: the KMS answered without the key's ARN in ${region}`, { provider: ALIBABA_KMS });
    }
    if (parsed.kind === 'key-arn' && arn !== target) {
      throw invalidTarget(target, `names a key whose ARN is ${arn} (another account?)`);
    }
    arns.set(cacheKey, arn!);
    return { arn: arn!, region, keyRef: parsed.keyRef };
  }

  function recipientKey(recipient: Recipient, operation: string): { region: string; keyId: string; arn: string } {
    if (recipient.provider !== ALIBABA_KMS) {
      throw new ProviderError('InvalidRecipient', `alibaba-kms ${operation}: the recipient is for provider ${quote(String(recipient.provider))}, not alibaba-kms`, { provider: ALIBABA_KMS });
    }
    const arn = parseKeyArn(recipient.keyId);
    if (arn === undefined) {
      throw new ProviderError('InvalidRecipient', `alibaba-kms ${operation}: the recipient has no keyId acs:kms:REGION:ACCOUNT:key/KEY-ID`, { provider: ALIBABA_KMS });
    }
    return { region: arn.region, keyId: arn.keyId, arn: recipient.keyId! };
  }

  const provider: AlibabaKmsProvider = {
    name: ALIBABA_KMS,

    parseTarget(target: string): void {
      parseAlibabaTarget(target);
    },

    async generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey> {
      const { arn, region } = await keyArnOf(request.target, request.signal);
      const call: Call = { operation: 'GenerateDataKey', key: arn, region, signal: request.signal };
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) => client.generateDataKeyEx(new sdk.models.GenerateDataKeyRequest({ keyId: arn, numberOfBytes: DATA_KEY_BYTES, encryptionContext: context }), runtime));
      const dataKey = dataKeyOf(call, out.plaintext);
      try {
        return { dataKey, recipient: recipientOf(call, arn, out.ciphertextBlob, out.keyId) };
      } catch (error) {
        zero(dataKey);
        throw error;
      }
    },

    async wrap(request: WrapRequest): Promise<Recipient> {
      if (!(request.dataKey instanceof Uint8Array) || request.dataKey.byteLength !== DATA_KEY_BYTES) {
        throw new ProviderError('Internal', `alibaba-kms Encrypt with ${request.target}: the data key must be ${DATA_KEY_BYTES} bytes`, { provider: ALIBABA_KMS });
      }
      const { arn, region } = await keyArnOf(request.target, request.signal);
      const call: Call = { operation: 'Encrypt', key: arn, region, signal: request.signal };
      // As GenerateDataKey's blobs hold it: the base64 text of the data key.
      const plaintext = Buffer.from(request.dataKey.buffer, request.dataKey.byteOffset, request.dataKey.byteLength).toString('base64');
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) => client.encryptEx(new sdk.models.EncryptRequest({ keyId: arn, plaintext, encryptionContext: context }), runtime));
      return recipientOf(call, arn, out.ciphertextBlob, out.keyId);
    },

    async unwrap(request: UnwrapRequest): Promise<Uint8Array> {
      const key = recipientKey(request.recipient, 'Decrypt');
      const call: Call = { operation: 'Decrypt', key: key.arn, region: key.region, signal: request.signal };
      const blob = request.recipient.encryptedKey;
      const bytes = typeof blob === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(blob) ? Buffer.from(blob, 'base64') : undefined;
      if (bytes === undefined || bytes.byteLength === 0 || bytes.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
        throw new ProviderError('InvalidCiphertext', `alibaba-kms Decrypt with ${key.arn}: the recipient's encryptedKey is not a base64 CiphertextBlob of 1-${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes`, { provider: ALIBABA_KMS });
      }
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) => client.decryptEx(new sdk.models.DecryptRequest({ ciphertextBlob: bytes.toString('base64'), encryptionContext: context }), runtime));
      const dataKey = dataKeyOf(call, out.plaintext);
      // The blob names its key; one of another key is not this recipient's.
      if (out.keyId !== key.keyId) {
        zero(dataKey);
        throw new ProviderError('InvalidCiphertext', `alibaba-kms Decrypt with ${key.arn}: the encrypted key was sealed with another KMS key`, { provider: ALIBABA_KMS, serviceCode: 'IncorrectKey' });
      }
      return dataKey;
    },

    canUnwrap(recipient: Recipient): boolean {
      return recipient.provider === ALIBABA_KMS && parseKeyArn(recipient.keyId) !== undefined && options.credentials !== undefined;
    },

    describe: describeAlibabaRecipient,
    targetOf: (recipient) => recipient.keyId ?? '',

    async canonicalTarget(target: string, signal?: AbortSignal): Promise<string> {
      return (await keyArnOf(target, signal)).arn;
    },

    async createKey(request) {
      const alias = request.name.startsWith('alias/') ? request.name : `alias/${request.name}`;
      if (!ALIAS_NAME.test(alias)) throw invalidTarget(alias, 'is not a valid alias: 1-255 of A-Z a-z 0-9 : / _ -');
      const region = regionOf({ region: undefined }, alias);
      const call: Call = { operation: 'CreateKey', key: alias, region, signal: request.signal };
      const created = await invoke(call, (client, runtime) =>
        client.createKeyEx(new sdk.models.CreateKeyRequest({ keySpec: 'Aliyun_AES_256', keyUsage: 'ENCRYPT/DECRYPT', description: request.description ?? `envseal ${alias}` }), runtime),
      );
      const keyArn = created.keyMetadata?.arn;
      const keyId = created.keyMetadata?.keyId;
      if (parseKeyArn(keyArn) === undefined || typeof keyId !== 'string') {
        throw new ProviderError('Internal', `alibaba-kms CreateKey for ${alias}: the KMS answered without the new key's ARN`, { provider: ALIBABA_KMS });
      }
      try {
        await invoke({ ...call, operation: 'CreateAlias' }, (client, runtime) => client.createAliasEx(new sdk.models.CreateAliasRequest({ keyId, aliasName: alias }), runtime));
      } catch (error) {
        // Leave no unnamed key behind: schedule it for deletion (the shortest window).
        const scheduled = await invoke({ ...call, operation: 'ScheduleKeyDeletion', key: keyArn! }, (client, runtime) =>
          client.scheduleKeyDeletionEx(new sdk.models.ScheduleKeyDeletionRequest({ keyId, pendingWindowInDays: PENDING_WINDOW_DAYS }), runtime),
        ).then(
          () => true,
          () => false,
        );
        const what = scheduled ? `the new key ${keyArn} was scheduled for deletion in ${PENDING_WINDOW_DAYS} days` : `the new key ${keyArn} could not be scheduled for deletion: delete it yourself`;
        const message = error instanceof Error ? error.message : String(error);
        throw new ProviderError(error instanceof ProviderError ? error.code : 'Internal', `${message}; ${what}`, { provider: ALIBABA_KMS, ...(error instanceof ProviderError && error.serviceCode ? { serviceCode: error.serviceCode } : {}), cause: error });
      }
      arns.set(`${region}\n${alias}`, keyArn!);
      return { keyArn: keyArn!, alias };
    },
  };
  return provider;
}

function describeAlibabaRecipient(recipient: Recipient): string {
  return `alibaba-kms ${recipient.keyId ?? '(no keyId)'}`;
}

// ---------------------------------------------------------------------------------
// The definition the registry lists

export const alibabaKmsProvider: ProviderDefinition = {
  name: ALIBABA_KMS,
  targetHint: 'alias/NAME-or-KEY-ID-or-ARN',
  parseTarget(target: string): void {
    parseAlibabaTarget(target);
  },
  checkRecipient: checkAlibabaRecipient,
  maxEncryptedKeyBytes: MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES,
  crdRules: [
    { rule: "self.provider != 'alibaba-kms' || (has(self.keyId) && self.keyId.startsWith('acs:kms:') && self.keyId.contains(':key/'))", message: 'an alibaba-kms recipient needs keyId, the key ARN acs:kms:REGION:ACCOUNT:key/KEY-ID' },
    {
      rule: `self.provider != 'alibaba-kms' || size(self.encryptedKey) <= ${4 * Math.ceil(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES / 3)}`,
      message: `an alibaba-kms encryptedKey is a KMS CiphertextBlob: at most ${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes (${4 * Math.ceil(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES / 3)} base64 characters)`,
    },
  ],
  describe: describeAlibabaRecipient,
  targetOf: (recipient) => recipient.keyId ?? '',
  edk: {
    providerId: ALIBABA_KMS_PROVIDER_ID,
    encode(recipient: Recipient) {
      if (parseKeyArn(recipient.keyId) === undefined) {
        throw new ProviderError('InvalidRecipient', 'an alibaba-kms recipient without its key ARN', { provider: ALIBABA_KMS });
      }
      return { providerInfo: Buffer.from(recipient.keyId!, 'utf8'), ciphertext: Buffer.from(recipient.encryptedKey, 'base64') };
    },
    decode(edk) {
      const keyId = Buffer.from(edk.providerInfo).toString('utf8');
      if (parseKeyArn(keyId) === undefined || edk.ciphertext.byteLength === 0 || edk.ciphertext.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) return undefined;
      return { provider: ALIBABA_KMS, keyId, encryptedKey: Buffer.from(edk.ciphertext).toString('base64') };
    },
  },
  settings: {
    cliOptions: ALIBABA_KMS_OPTIONS,
    controllerOptions: ALIBABA_KMS_OPTIONS,
    async resolve(source) {
      return resolveAlibabaKmsOptions(source);
    },
  },
  async create(options: unknown): Promise<KeyProvider> {
    return createAlibabaKmsProvider((options ?? {}) as AlibabaKmsProviderOptions);
  },
  async createKey(request): Promise<CreatedProviderKey> {
    const provider = await createAlibabaKmsProvider((request.options ?? {}) as AlibabaKmsProviderOptions);
    const created = await provider.createKey({ name: request.name, ...(request.description === undefined ? {} : { description: request.description }), ...(request.signal === undefined ? {} : { signal: request.signal }) });
    return { target: created.alias, keyId: created.keyArn, summary: `created Alibaba Cloud KMS key ${created.keyArn} with alias ${created.alias}` };
  },
};
