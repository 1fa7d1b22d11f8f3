/** KMS failures as ProviderErrors, with the service's message sanitized. */
import { ProviderError, type ProviderErrorCode } from '../types.ts';
import { clip } from '../../util/message.ts';
import { AWS_KMS } from './types.ts';
import { ALIAS_NAME, KEY_ID } from './targets.ts';
import { codeInCauses, SOCKET_ERROR_CODES } from '../causes.ts';

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

  constructor(
    name: string,
    message: string,
    details: { serviceCode: string; httpStatusCode?: number; requestId?: string; attempts?: number; code?: string; stack?: string },
  ) {
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
const NETWORK_CODES = new Set([...SOCKET_ERROR_CODES, 'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_SESSION_ERROR']);
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

function networkCode(error: ErrorLike): string | undefined {
  return codeInCauses(error, NETWORK_CODES);
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
export function mapError(error: unknown, call: CallContext): unknown {
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
      name === 'TimeoutError' || netCode === 'ETIMEDOUT' ? `the KMS at ${call.where} did not answer in time` : `the KMS at ${call.where} could not be reached`;
  } else if (name === 'InvalidCiphertextException') {
    code = 'InvalidCiphertext';
    explanation = 'the KMS refused the encrypted key: it was sealed for another namespace/name/scope (encryption context), or it is corrupt';
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
    requestId,
    attempts,
    ...(netCode === undefined ? {} : { code: netCode }),
    stack,
  });
  // The KMS checks the encryption context: a refused ciphertext most likely moved.
  return new ProviderError(code, message, { provider: AWS_KMS, serviceCode, cause, ...(code === 'InvalidCiphertext' ? { contextBound: true } : {}) });
}
