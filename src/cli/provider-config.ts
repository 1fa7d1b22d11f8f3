import { stat } from 'node:fs/promises';
import { quoteName } from '../api/names.ts';
import { type ProviderConfig, providerOptions, ProviderRegistry, resolveProviderConfig as resolveFromProviders } from '../providers/registry.ts';
import type { ProviderSettingsSource } from '../providers/types.ts';
import type { OptionSpecs, OptionValues } from './args.ts';
import { CliError } from './errors.ts';
import { fileError, readInputFile, resolvePath } from './files.ts';
import type { CliIo } from './io.ts';

/** The key providers' options of every command that seals (region, endpoints, addresses). */
export const PROVIDER_OPTIONS: OptionSpecs = providerOptions('cli', false);

/** The key providers' options that only commands which unwrap take (identity files). */
export const IDENTITY_OPTIONS: OptionSpecs = providerOptions('cli', 'only');

export interface ProviderSettings {
  /** The command may unwrap: load private identities. */
  identities: boolean;
}

/** What a provider may read while its options are resolved: flags, environment, files the user named. */
export function cliSettingsSource(
  values: OptionValues,
  io: Pick<CliIo, 'env' | 'cwd' | 'stderr'>,
  settings: ProviderSettings,
  signal?: AbortSignal,
): ProviderSettingsSource {
  return {
    values,
    env: io.env,
    role: 'cli',
    unwrap: settings.identities,
    warn: (message) => void io.stderr.write(`warning: ${message}\n`),
    signal,
    async readFile(file, options) {
      let bytes: Buffer;
      try {
        bytes = await readInputFile(file, { cwd: io.cwd, maxBytes: options.maxBytes, what: `read ${options.what}` });
      } catch (error) {
        if (error instanceof CliError && error.code === 'FileNotFound') {
          throw new CliError('IdentityNotFound', `${options.what} ${quoteName(file)} (from ${options.origin}) does not exist`, { cause: error });
        }
        throw error;
      }
      if (options.private === true && process.platform !== 'win32') {
        let mode: number;
        try {
          mode = (await stat(resolvePath(io.cwd, file))).mode;
        } catch (error) {
          throw fileError(error, `read ${options.what}`, file);
        }
        if ((mode & 0o077) !== 0) {
          io.stderr.write(
            `warning: ${options.what} ${quoteName(file)} is readable by others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it\n`,
          );
        }
      }
      return bytes;
    },
  };
}

/** The provider configuration of one run, from flags and environment. */
export async function resolveProviderConfig(values: OptionValues, io: CliIo, settings: ProviderSettings): Promise<ProviderConfig> {
  return resolveFromProviders(cliSettingsSource(values, io, settings));
}

export function createRegistry(config: ProviderConfig, io: CliIo): ProviderRegistry {
  return io.createProviders ? io.createProviders(config) : new ProviderRegistry(config);
}
