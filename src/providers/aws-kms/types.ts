/** The aws-kms provider's options and the operations it adds to KeyProvider. */
import type { KMSClientConfig } from '@aws-sdk/client-kms';
import type { Recipient } from '../types.ts';
import type { GenerateDataKeyRequest, GeneratedDataKey, KeyProvider, RewrapRequest } from '../types.ts';

export const AWS_KMS = 'aws-kms';

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
