import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { quoteName } from '../api/names.ts';
import { parseAgeIdentityFile } from '../providers/age.ts';
import { type ProviderConfig, ProviderRegistry } from '../providers/registry.ts';
import { type OptionSpecs, type OptionValues, stringList, stringOption } from './args.ts';
import { CliError, usageError } from './errors.ts';
import { fileError, readInputFile, resolvePath } from './files.ts';
import type { CliIo } from './io.ts';

/** Options of every command that talks to AWS KMS. */
export const KMS_OPTIONS: OptionSpecs = {
  region: { type: 'string', value: 'REGION', help: 'AWS region for aws-kms aliases and key creation (default: AWS_REGION, AWS_DEFAULT_REGION; a key ARN names its own region)' },
  'kms-endpoint': { type: 'string', value: 'URL', help: 'AWS KMS endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL_KMS)' },
  'vault-addr': { type: 'string', value: 'URL', help: 'Vault/OpenBao address for vault-transit (default: VAULT_ADDR, BAO_ADDR; token from VAULT_TOKEN, BAO_TOKEN or ~/.vault-token)' },
};

/** Options of every command that may unwrap a data key. */
export const IDENTITY_OPTIONS: OptionSpecs = {
  identity: { type: 'string', short: 'i', multiple: true, value: 'FILE', help: 'age identity file (default: ENVSEAL_AGE_IDENTITY)' },
};

const IDENTITY_PREFIX = 'AGE-SECRET-KEY-';
const MAX_IDENTITY_FILE_BYTES = 1024 * 1024;

/**
 * Reads the age identities named by --identity, else ENVSEAL_AGE_IDENTITY (the path of
 * an identity file, or for CI the identity itself). None configured is not an error
 * here: unwrapping then names what is missing. Never quotes the file's content.
 */
export async function loadAgeIdentities(files: readonly string[], io: Pick<CliIo, 'env' | 'cwd' | 'stderr'>): Promise<string[]> {
  const fromEnv = io.env.ENVSEAL_AGE_IDENTITY;
  if (files.length === 0 && fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.trimStart().startsWith(IDENTITY_PREFIX)) return parseAgeIdentityFile(fromEnv, 'ENVSEAL_AGE_IDENTITY');
    return readIdentityFile(fromEnv, 'ENVSEAL_AGE_IDENTITY', io);
  }
  const identities: string[] = [];
  for (const file of files) identities.push(...(await readIdentityFile(file, '--identity', io)));
  return identities;
}

async function readIdentityFile(file: string, origin: string, io: Pick<CliIo, 'cwd' | 'stderr'>): Promise<string[]> {
  let bytes: Buffer;
  try {
    bytes = await readInputFile(file, { cwd: io.cwd, maxBytes: MAX_IDENTITY_FILE_BYTES, what: 'read age identity file' });
  } catch (error) {
    if (error instanceof CliError && error.code === 'FileNotFound') {
      throw new CliError('IdentityNotFound', `age identity file ${quoteName(file)} (from ${origin}) does not exist`, { cause: error });
    }
    throw error;
  }
  try {
    const mode = (await stat(resolvePath(io.cwd, file))).mode;
    if ((mode & 0o077) !== 0 && process.platform !== 'win32') {
      io.stderr.write(`warning: age identity file ${quoteName(file)} is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it\n`);
    }
  } catch (error) {
    throw fileError(error, 'read age identity file', file);
  }
  return parseAgeIdentityFile(bytes.toString('utf8'), quoteName(file));
}

export interface ProviderSettings {
  /** Load age identities (commands that unwrap). */
  identities: boolean;
}

/** The aws-kms options from flags, then the environment (parsed once per run). */
export function awsKmsOptions(values: OptionValues, env: CliIo['env']): NonNullable<ProviderConfig['aws-kms']> {
  const region = stringOption(values, 'region') ?? (env.AWS_REGION || undefined) ?? (env.AWS_DEFAULT_REGION || undefined);
  const endpoint = stringOption(values, 'kms-endpoint') ?? (env.AWS_ENDPOINT_URL_KMS || undefined);
  if (endpoint !== undefined && !URL.canParse(endpoint)) throw usageError(`KMS endpoint ${quoteName(endpoint)} is not a URL`);
  const options: NonNullable<ProviderConfig['aws-kms']> = {};
  if (region !== undefined) options.region = region;
  if (endpoint !== undefined) options.endpoint = endpoint;
  // Static credentials from the injected environment, as the SDK's chain would take them
  // from process.env first; otherwise the default chain (IRSA, Pod Identity, profile, ...).
  const accessKeyId = env.AWS_ACCESS_KEY_ID;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY;
  if (accessKeyId && secretAccessKey) {
    options.credentials = { accessKeyId, secretAccessKey, ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}) };
  }
  return options;
}

/** The vault-transit options from --vault-addr, then VAULT_* / BAO_* in the environment. */
export function vaultTransitOptions(values: OptionValues, env: CliIo['env']): NonNullable<ProviderConfig['vault-transit']> {
  const address = stringOption(values, 'vault-addr') ?? (env.VAULT_ADDR || undefined) ?? (env.BAO_ADDR || undefined);
  if (address !== undefined && !URL.canParse(address)) throw usageError(`Vault address ${quoteName(address)} is not a URL`);
  const token = (env.VAULT_TOKEN || undefined) ?? (env.BAO_TOKEN || undefined);
  const namespace = (env.VAULT_NAMESPACE || undefined) ?? (env.BAO_NAMESPACE || undefined);
  return { ...(address === undefined ? {} : { address }), ...(token === undefined ? {} : { token }), ...(namespace === undefined ? {} : { namespace }) };
}

/**
 * The token `vault login` / `bao login` left in ~/.vault-token (Vault's default token
 * helper), used when neither VAULT_TOKEN nor BAO_TOKEN is set.
 */
async function vaultTokenFile(env: CliIo['env']): Promise<string | undefined> {
  if (!env.HOME) return undefined;
  try {
    const token = (await readFile(join(env.HOME, '.vault-token'), 'utf8')).trim();
    return token === '' ? undefined : token;
  } catch {
    return undefined;
  }
}

/** The provider configuration of one run, from flags and environment. */
export async function resolveProviderConfig(values: OptionValues, io: CliIo, settings: ProviderSettings): Promise<ProviderConfig> {
  const vault = vaultTransitOptions(values, io.env);
  if (vault.address !== undefined && vault.token === undefined) {
    const token = await vaultTokenFile(io.env);
    if (token !== undefined) vault.token = token;
  }
  const config: ProviderConfig = { 'aws-kms': awsKmsOptions(values, io.env), 'vault-transit': vault };
  if (settings.identities) config.age = { identities: await loadAgeIdentities(stringList(values, 'identity'), io) };
  return config;
}

export function createRegistry(config: ProviderConfig, io: CliIo): ProviderRegistry {
  return io.createProviders ? io.createProviders(config) : new ProviderRegistry(config);
}
