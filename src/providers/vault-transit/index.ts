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
 * - TLS: an https:// address is verified against the CAs Node.js trusts, or only against
 *   the PEM bundle of --vault-ca-cert / VAULT_CACERT / BAO_CACERT (a private CA), as the
 *   vault and bao CLIs do. A failed verification is not retried (it would fail again)
 *   and its message names the TLS problem and the certificate error code.
 * - Errors: a ProviderError naming the operation, the key and the HTTP status, with
 *   Vault's own message sanitized (printable ASCII, long base64/hex runs and `vault:v`
 *   ciphertexts redacted). Never a token, a data key or a ciphertext.
 *
 * No client library: node-vault (the most used) has no per-call AbortSignal, carries
 * axios, mustache and tv4, and has no transit datakey types; the four endpoints used
 * here are a small typed client over fetch.
 */

import { keyIdEdkCodec, type ProviderDefinition, type RecipientProblem } from '../types.ts';

import { createVaultTransitProvider } from './client.ts';
import { resolveSettings } from './settings.ts';
import { TRANSIT_CIPHERTEXT, base64Length, isTransitKeyPath, parseTransitTarget } from './targets.ts';
import { MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES, VAULT_TRANSIT, type VaultTransitProviderOptions } from './types.ts';

export const vaultTransitProvider: ProviderDefinition = {
  name: VAULT_TRANSIT,
  targetHint: 'NAME-or-MOUNT/keys/NAME',
  parseTarget: (target) => void parseTransitTarget(target),
  checkRecipient(recipient, encryptedKey) {
    const problems: RecipientProblem[] = [];
    if (!isTransitKeyPath(recipient.keyId)) problems.push({ field: 'keyId', check: 'structure', message: 'must be the transit key path MOUNT/keys/NAME' });
    if (encryptedKey !== undefined) {
      if (encryptedKey.length > MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES) {
        problems.push({
          field: 'encryptedKey',
          check: 'size',
          message: `is ${encryptedKey.length} bytes; a vault-transit encryptedKey is at most ${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES}`,
        });
      } else if (!TRANSIT_CIPHERTEXT.test(Buffer.from(encryptedKey.buffer, encryptedKey.byteOffset, encryptedKey.byteLength).toString('latin1'))) {
        problems.push({ field: 'encryptedKey', check: 'structure', message: 'is not the base64 of a transit ciphertext (vault:vN:...)' });
      }
    }
    return problems;
  },
  maxEncryptedKeyBytes: MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES,
  bindsEncryptionContext: true,
  crdRules: [
    {
      rule: "self.provider != 'vault-transit' || (has(self.keyId) && self.keyId.contains('/keys/'))",
      message: 'a vault-transit recipient needs keyId, the transit key path MOUNT/keys/NAME',
    },
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
      'vault-addr': {
        type: 'string',
        value: 'URL',
        help: 'Vault/OpenBao address for vault-transit (default: VAULT_ADDR, BAO_ADDR; token from VAULT_TOKEN, BAO_TOKEN or ~/.vault-token)',
      },
      'vault-ca-cert': {
        type: 'string',
        value: 'FILE',
        help: "PEM bundle of the CA(s) that signed Vault's TLS certificate, trusted instead of the system's (default: VAULT_CACERT, BAO_CACERT)",
      },
    },
    controllerOptions: {
      'vault-addr': { type: 'string', value: 'URL', help: 'Vault/OpenBao address for vault-transit recipients (env VAULT_ADDR)' },
      'vault-auth-role': {
        type: 'string',
        value: 'ROLE',
        help: "Vault Kubernetes auth role to log in with the pod's ServiceAccount token (env VAULT_AUTH_ROLE; else the token in VAULT_TOKEN)",
      },
      'vault-auth-mount': { type: 'string', value: 'PATH', help: 'mount path of the Vault Kubernetes auth method (env VAULT_AUTH_MOUNT; default kubernetes)' },
      'vault-auth-token-file': {
        type: 'string',
        value: 'FILE',
        help: "ServiceAccount token sent at each Kubernetes auth login, e.g. a projected token with Vault's audience (env VAULT_AUTH_TOKEN_FILE; default the pod's own token)",
      },
      'vault-ca-cert': {
        type: 'string',
        value: 'FILE',
        help: "PEM bundle of the CA(s) that signed Vault's TLS certificate (env VAULT_CACERT; the chart mounts providers.vaultTransit.caCert)",
      },
    },
    resolve: resolveSettings,
  },
  create: async (options) => createVaultTransitProvider((options ?? {}) as VaultTransitProviderOptions),
  async createKey(request) {
    const created = await createVaultTransitProvider((request.options ?? {}) as VaultTransitProviderOptions).createKey({
      target: request.name,
      signal: request.signal,
    });
    return { target: created.keyId, keyId: created.keyId, summary: `created transit key ${created.keyId} (derived)` };
  },
};

export * from './types.ts';
export * from './targets.ts';
export * from './errors.ts';
export * from './client.ts';
export * from './settings.ts';
