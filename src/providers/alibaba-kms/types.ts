/** The alibaba-kms provider's names, limits, options and operations. */

import type { GenerateDataKeyRequest, GeneratedDataKey, KeyProvider } from '../types.ts';

export const ALIBABA_KMS = 'alibaba-kms';
/** The provider id of its encrypted data keys in the file format (envseal's own). */
export const ALIBABA_KMS_PROVIDER_ID = 'envseal-alibaba-kms';
/** The largest CiphertextBlob (decoded) a manifest may hold. */
export const MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES = 6144;

export const DEFAULT_MAX_ATTEMPTS = 4;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
export const PENDING_WINDOW_DAYS = 7;

export type AlibabaKmsCredentials =
  | { kind: 'access-key'; accessKeyId: string; accessKeySecret: string; securityToken?: string }
  /** RRSA: a RAM role assumed with the pod's OIDC token (ACK). */
  | {
      kind: 'rrsa';
      roleArn: string;
      oidcProviderArn: string;
      oidcTokenFile: string;
      roleSessionName?: string;
      stsEndpoint?: string;
      stsRegion?: string;
      stsVpcEndpoint?: boolean;
    };

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

export interface AlibabaKmsProvider extends KeyProvider {
  readonly name: typeof ALIBABA_KMS;
  generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey>;
  canonicalTarget(target: string, signal?: AbortSignal): Promise<string>;
  /** CreateKey then CreateAlias `alias/NAME`; when the alias fails the key is scheduled for deletion (7 days). */
  createKey(request: { name: string; description?: string; signal?: AbortSignal }): Promise<{ keyArn: string; alias: string }>;
}
