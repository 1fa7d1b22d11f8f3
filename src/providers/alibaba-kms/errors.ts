/** Alibaba Cloud KMS failures as ProviderErrors, with the service's message sanitized. */

import { clip } from '../../util/message.ts';
import type { ProviderErrorCode } from '../types.ts';

import { ALIAS_NAME, KEY_ARN, KEY_ID } from './targets.ts';
import { findInCauses, SOCKET_ERROR_CODES } from '../causes.ts';

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

export const NETWORK_CODES = new Set([...SOCKET_ERROR_CODES, 'ESOCKETTIMEDOUT']);

export const ACCESS_DENIED =
  /^(?:InvalidAccessKeyId(?:\..+)?|SignatureDoesNotMatch|IncompleteSignature|Forbidden\.(?:RAM|NoPermission|AccessDenied|Unauthorized|RiskControl|Uninitialized)|NoPermission|InvalidSecurityToken(?:\..+)?|AccessDenied|Forbidden)$/;
export const KEY_NOT_FOUND = /^(?:Forbidden\.KeyNotFound|Forbidden\.AliasNotFound|Forbidden\.ResourceNotFound|EntityNotExist\..+)$/;
export const KEY_UNAVAILABLE = /^Rejected\.(?:Disabled|PendingDeletion|PendingImport|StateModifiedFailed|Unavailable)$/;
export const THROTTLED = /^(?:Throttling(?:\..+)?|Rejected\.Throttling|ServiceUnavailable\.Throttling)$/;
export const UNAVAILABLE = /^(?:InternalFailure|InternalError|ServiceUnavailable(?:Temporary)?|SerivceUnavailableTemporary|Timeout|Unavailable)$/;

export interface ClassifiedAlibabaError {
  code: ProviderErrorCode;
  explanation: string;
  contextBound: boolean;
}

/** What a service error code (with its HTTP status and the operation) means. */
export function classifyAlibabaError(serviceCode: string, status: number | undefined, operation: string): ClassifiedAlibabaError {
  const no = { contextBound: false };
  if (THROTTLED.test(serviceCode) || status === 429)
    return { code: 'Throttled', explanation: 'the KMS throttled the request (retried with backoff, still throttled)', ...no };
  if (serviceCode === 'SignatureDoesNotMatch' || serviceCode === 'IncompleteSignature') {
    return { code: 'AccessDenied', explanation: 'the KMS refused the request signature: check the AccessKey secret', ...no };
  }
  if (/^InvalidAccessKeyId/.test(serviceCode))
    return { code: 'AccessDenied', explanation: 'the KMS does not know this AccessKey id (or it is disabled)', ...no };
  if (ACCESS_DENIED.test(serviceCode) || status === 403) {
    return { code: 'AccessDenied', explanation: 'access denied: check the credentials and that the RAM policy allows this operation on this key', ...no };
  }
  if (KEY_NOT_FOUND.test(serviceCode) || (status === 404 && serviceCode !== 'InvalidAction.NotFound')) {
    return { code: 'KeyNotFound', explanation: 'the KMS key or alias does not exist (in this account and region)', ...no };
  }
  if (KEY_UNAVAILABLE.test(serviceCode)) {
    const state =
      serviceCode === 'Rejected.Disabled'
        ? 'disabled'
        : serviceCode === 'Rejected.PendingDeletion'
          ? 'pending deletion'
          : serviceCode === 'Rejected.PendingImport'
            ? 'waiting for its key material (PendingImport)'
            : 'not in a state that allows this';
    return { code: 'KeyUnavailable', explanation: `the KMS key is ${state}`, ...no };
  }
  if (UNAVAILABLE.test(serviceCode) || (status !== undefined && status >= 500))
    return { code: 'Unavailable', explanation: 'the KMS failed or is unavailable', ...no };
  if (operation === 'Decrypt' && (/^InvalidCiphertext/.test(serviceCode) || serviceCode === 'InvalidParameter' || serviceCode === 'Rejected.ValidateFailed')) {
    return {
      code: 'InvalidCiphertext',
      explanation: 'the KMS refused the encrypted key: it was sealed for another namespace/name/scope (encryption context), or it is corrupt',
      contextBound: true,
    };
  }
  if (serviceCode === 'InvalidTimeStamp.Expired' || serviceCode === 'RequestTimeTooSkewed') {
    return { code: 'Internal', explanation: "the KMS refused the request's time stamp: this machine's clock is more than 15 minutes off", ...no };
  }
  return { code: 'Internal', explanation: 'the KMS rejected the request', ...no };
}

export interface ErrorLike {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  data?: unknown;
  cause?: unknown;
}

export function networkCode(error: unknown): string | undefined {
  return findInCauses(error, ({ code, name }) => {
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    return typeof name === 'string' && /Timeout/i.test(name) ? 'Timeout' : undefined;
  });
}

/** The service's answer in an SDK error: code, HTTP status, request id, message. */
export function serviceAnswer(error: unknown): { serviceCode: string; status: number | undefined; requestId: string | undefined; message: string } | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const data = (error as ErrorLike).data;
  if (typeof data !== 'object' || data === null) return undefined;
  const body = data as Record<string, unknown>;
  const code = body.Code ?? body.code;
  if (typeof code !== 'string' || code === '') return undefined;
  const sdkMessage = typeof (error as ErrorLike).message === 'string' ? ((error as ErrorLike).message as string) : '';
  // @alicloud/rpc-client keeps the HTTP status nowhere but in its message template
  // (`code: ${status}, ...`); it is read from there only when the answer's body lacks
  // HttpStatus, and only refines a service code that classifyAlibabaError does not know.
  const statusMatch = /^[^:]{0,200}: code: (\d{3}),/.exec(sdkMessage);
  const status = typeof body.HttpStatus === 'number' ? body.HttpStatus : statusMatch ? Number(statusMatch[1]) : undefined;
  const requestId = body.RequestId ?? body.requestId;
  const message = body.Message ?? body.message;
  return { serviceCode: code, status, requestId: typeof requestId === 'string' ? requestId : undefined, message: typeof message === 'string' ? message : '' };
}
