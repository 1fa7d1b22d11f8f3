/** The vault-transit provider's flags and environment: address, token, Kubernetes auth, CA bundle. */
import { readFile } from 'node:fs/promises';

import { checkedUrl, envSetting, type ProviderSettingsSource, stringSetting, ProviderError } from '../types.ts';

import { shownAddress } from './http.ts';
import { parseCaBundle } from './errors.ts';
import { VAULT_TRANSIT, type VaultTransitProviderOptions } from './types.ts';
import { quoteTarget } from '../types.ts';

/**
 * The token `vault login` / `bao login` left in ~/.vault-token (Vault's default token
 * helper), used when neither VAULT_TOKEN nor BAO_TOKEN is set.
 */
export async function tokenHelperFile(home: string | undefined): Promise<string | undefined> {
  if (!home) return undefined;
  try {
    const token = (await readFile(`${home.replace(/\/+$/, '')}/.vault-token`, 'utf8')).trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** The largest CA bundle read (a few certificates are a few KiB; system bundles are ~200 KiB). */
export const MAX_CA_BUNDLE_BYTES = 1024 * 1024;

/** --vault-ca-cert, else VAULT_CACERT / BAO_CACERT: the PEM text, checked. */
export async function caBundleSetting(source: ProviderSettingsSource, address: string | undefined): Promise<string | undefined> {
  const flag = stringSetting(source, 'vault-ca-cert');
  const file = flag ?? envSetting(source, 'VAULT_CACERT', 'BAO_CACERT');
  if (file === undefined) return undefined;
  const origin = flag !== undefined ? '--vault-ca-cert' : source.env.VAULT_CACERT ? 'VAULT_CACERT' : 'BAO_CACERT';
  if (address !== undefined && !address.startsWith('https://')) {
    throw new ProviderError(
      'InvalidConfiguration',
      `${origin} is set, but the Vault address ${quoteTarget(shownAddress(address))} is not https://: the CA verifies Vault's TLS certificate`,
      { provider: VAULT_TRANSIT },
    );
  }
  let bytes: Buffer;
  try {
    bytes = await source.readFile(file, { maxBytes: MAX_CA_BUNDLE_BYTES, what: 'Vault CA bundle', origin });
  } catch (error) {
    // A file-system error (the controller's reader passes them on): name the file.
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && (error as NodeJS.ErrnoException).syscall !== undefined) {
      throw new ProviderError('InvalidConfiguration', `Vault CA bundle ${quoteTarget(file)} (from ${origin}) cannot be read (${code})`, {
        provider: VAULT_TRANSIT,
        cause: error,
      });
    }
    throw error;
  }
  return parseCaBundle(bytes.toString('utf8'), `Vault CA bundle ${quoteTarget(file)} (from ${origin})`);
}

export async function resolveSettings(source: ProviderSettingsSource): Promise<VaultTransitProviderOptions> {
  const address = checkedUrl(stringSetting(source, 'vault-addr') ?? envSetting(source, 'VAULT_ADDR', 'BAO_ADDR'), 'Vault address', VAULT_TRANSIT);
  const namespace = envSetting(source, 'VAULT_NAMESPACE', 'BAO_NAMESPACE');
  const caCert = await caBundleSetting(source, address);
  const options: VaultTransitProviderOptions = {
    address,
    namespace,
    caCert,
  };
  const role = source.role === 'controller' ? (stringSetting(source, 'vault-auth-role') ?? envSetting(source, 'VAULT_AUTH_ROLE')) : undefined;
  // A token of its own for Vault (a projected token with Vault's audience), else the pod's.
  const tokenPath = source.role === 'controller' ? (stringSetting(source, 'vault-auth-token-file') ?? envSetting(source, 'VAULT_AUTH_TOKEN_FILE')) : undefined;
  if (tokenPath !== undefined && role === undefined) {
    throw new ProviderError(
      'InvalidConfiguration',
      'vault-transit: --vault-auth-token-file (VAULT_AUTH_TOKEN_FILE) is for the Kubernetes auth method: give --vault-auth-role too',
      { provider: VAULT_TRANSIT },
    );
  }
  if (role !== undefined) {
    const mount = stringSetting(source, 'vault-auth-mount') ?? envSetting(source, 'VAULT_AUTH_MOUNT');
    options.kubernetesAuth = { role, mount, tokenPath };
    return options;
  }
  const token =
    envSetting(source, 'VAULT_TOKEN', 'BAO_TOKEN') ?? (source.role === 'cli' && address !== undefined ? await tokenHelperFile(source.env.HOME) : undefined);
  if (token !== undefined) options.token = token;
  return options;
}

/** The vault-transit provider: see the top of this file. */
