/** The vault-transit provider's names, limits, options and operations. */

import type { GenerateDataKeyRequest, GeneratedDataKey, KeyProvider } from '../types.ts';

export const VAULT_TRANSIT = 'vault-transit';
export const DEFAULT_TRANSIT_MOUNT = 'transit';

/** The largest encryptedKey (decoded: Vault's ciphertext string) a manifest may hold. */
export const MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES = 1024;

export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_K8S_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';
/** Prefix of the transit context bytes: keeps them non-empty and envseal's own. */
export const CONTEXT_PREFIX = Buffer.from('envseal-vault-transit:1\n', 'utf8');

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
  /**
   * PEM bundle of the CAs that Vault's TLS certificate is verified against, instead of
   * the ones Node.js trusts (--vault-ca-cert, VAULT_CACERT, BAO_CACERT).
   */
  caCert?: string;
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
