/** Vault answers and TLS failures as ProviderErrors, with Vault's message sanitized. */
import { X509Certificate } from 'node:crypto';

import { ProviderError, type ProviderErrorCode } from '../types.ts';
import { clip } from '../../util/message.ts';

import { VAULT_TRANSIT } from './types.ts';
import { codeInCauses, findInCauses, SOCKET_ERROR_CODES } from '../causes.ts';

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

export const NETWORK_CODES = new Set([...SOCKET_ERROR_CODES, 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export function networkCode(error: unknown): string | undefined {
  return codeInCauses(error, NETWORK_CODES);
}

/** Certificate and handshake errors: what each means for the user. */
export const TLS_PROBLEMS: Readonly<Record<string, string>> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "Vault's certificate is not signed by a trusted CA",
  UNABLE_TO_GET_ISSUER_CERT: "Vault's certificate is not signed by a trusted CA",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "Vault's certificate is not signed by a trusted CA",
  SELF_SIGNED_CERT_IN_CHAIN: "Vault's certificate is not signed by a trusted CA",
  DEPTH_ZERO_SELF_SIGNED_CERT: "Vault's certificate is self-signed and not trusted",
  CERT_UNTRUSTED: "Vault's certificate is not signed by a trusted CA",
  CERT_SIGNATURE_FAILURE: "the signature of Vault's certificate is invalid",
  CERT_HAS_EXPIRED: "Vault's certificate has expired",
  CERT_NOT_YET_VALID: "Vault's certificate is not valid yet",
  ERR_TLS_CERT_ALTNAME_INVALID: "Vault's certificate does not name the host of the address",
  ERR_SSL_WRONG_VERSION_NUMBER: 'the server does not speak TLS on that port (an http:// server?)',
};

/** The TLS error code in an error's cause chain, if any. */
export function tlsCode(error: unknown): string | undefined {
  return findInCauses(error, ({ code }) =>
    typeof code === 'string' && (Object.hasOwn(TLS_PROBLEMS, code) || /^ERR_(SSL|TLS)_/.test(code)) ? code : undefined,
  );
}

/** The message of a failed TLS check, with what to do about an untrusted CA. */
export function tlsExplanation(code: string, where: string, customCa: boolean): string {
  const problem = TLS_PROBLEMS[code] ?? 'the TLS handshake failed';
  const untrusted = /not signed by a trusted CA|self-signed/.test(problem);
  const hint = untrusted
    ? customCa
      ? ': check that --vault-ca-cert (VAULT_CACERT) holds the CA that signed it'
      : ': give its CA bundle with --vault-ca-cert (VAULT_CACERT, BAO_CACERT)'
    : '';
  return `TLS with Vault at ${where} failed: ${problem}${hint}`;
}

/**
 * The certificates of a PEM bundle, each checked to parse; InvalidConfiguration naming
 * `what` when there is none or one is broken.
 */
export function parseCaBundle(pem: string, what: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw new ProviderError('InvalidConfiguration', `${what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, { provider: VAULT_TRANSIT });
  }
  blocks.forEach((block, index) => {
    try {
      new X509Certificate(block);
    } catch (cause) {
      throw new ProviderError('InvalidConfiguration', `${what}: certificate #${index + 1} of ${blocks.length} is not a valid X.509 certificate`, {
        provider: VAULT_TRANSIT,
        cause,
      });
    }
  });
  return `${blocks.join('\n')}\n`;
}

/** What a Vault answer means, from its HTTP status and error text. */
export function classifyVaultError(status: number, vaultMessage: string): { code: ProviderErrorCode; explanation: string; contextBound: boolean } {
  const text = vaultMessage.toLowerCase();
  if (status >= 300 && status < 400) {
    return {
      code: 'Unavailable',
      explanation:
        'Vault answered with a redirect, which envseal does not follow (it would send the token elsewhere): use the address of the active node or of the load balancer',
      contextBound: false,
    };
  }
  if (status === 429) return { code: 'Throttled', explanation: 'Vault rate-limited the request (retried with backoff, still limited)', contextBound: false };
  if (status === 403 || status === 401 || text.includes('permission denied') || text.includes('missing client token')) {
    return {
      code: 'AccessDenied',
      explanation: 'access denied: check the token or Kubernetes auth role and that its policy allows this operation on this key',
      contextBound: false,
    };
  }
  if (status >= 500) {
    return { code: 'Unavailable', explanation: text.includes('sealed') ? 'Vault is sealed' : 'Vault failed or is unavailable', contextBound: false };
  }
  if (status === 404 || /key not found|no existing key|encryption key not found/.test(text)) {
    return { code: 'KeyNotFound', explanation: 'the transit key does not exist (on this Vault, mount and namespace)', contextBound: false };
  }
  if (text.includes('message authentication failed')) {
    return {
      code: 'InvalidCiphertext',
      explanation: 'Vault refused the encrypted key: it was sealed for another namespace/name/scope (transit context), or it is corrupt',
      contextBound: true,
    };
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
