import { ageProvider } from './age.ts';
import { alibabaKmsProvider } from './alibaba-kms/index.ts';
import { awsKmsProvider } from './aws-kms/index.ts';
import { vaultTransitProvider } from './vault-transit/index.ts';
import {
  type CreatedProviderKey,
  type KeyProvider,
  type LocalIdentitySupport,
  type ProviderDefinition,
  ProviderError,
  type ProviderOption,
  type ProviderSettingsSource,
  type Recipient,
  type RecipientTarget,
} from './types.ts';

/**
 * Every key provider envseal knows, one line each. A provider's file exports its
 * definition; nothing outside src/providers names one (src/providers/boundaries.test.ts).
 * Each loads its SDK on first use, so listing them costs nothing.
 */
export const PROVIDERS: readonly ProviderDefinition[] = Object.freeze([awsKmsProvider, ageProvider, vaultTransitProvider, alibabaKmsProvider]);

/** Each provider's options, under the provider's name (what `settings.resolve` returned). Parsed once, in main. */
export type ProviderConfig = Readonly<Record<string, unknown>>;

export const PROVIDER_NAMES: readonly string[] = PROVIDERS.map((p) => p.name);

function byName(definitions: readonly ProviderDefinition[], name: string): ProviderDefinition | undefined {
  return definitions.find((d) => d.name === name);
}

export function isKnownProvider(name: string): boolean {
  return byName(PROVIDERS, name) !== undefined;
}

/** The definition of provider `name`; UnknownProvider naming the known ones otherwise. */
export function providerDefinition(name: string, definitions: readonly ProviderDefinition[] = PROVIDERS): ProviderDefinition {
  const found = byName(definitions, name);
  if (found === undefined) {
    throw new ProviderError(
      'UnknownProvider',
      `unknown key provider ${JSON.stringify(name.slice(0, 80))} (known: ${definitions.map((d) => d.name).join(', ')})`,
      { provider: name.slice(0, 80) },
    );
  }
  return found;
}

/** The provider whose private keys are held locally (the cluster's own identity). */
export function localIdentityProvider(definitions: readonly ProviderDefinition[] = PROVIDERS): ProviderDefinition & { localIdentity: LocalIdentitySupport } {
  const found = definitions.find((d) => d.localIdentity !== undefined);
  if (found === undefined) throw new ProviderError('UnknownProvider', 'no key provider with local identities is registered', { provider: 'none' });
  return found as ProviderDefinition & { localIdentity: LocalIdentitySupport };
}

/** `aws-kms:ARN-or-alias, age:age1...`: the recipient forms, for help texts. */
export function recipientForms(definitions: readonly ProviderDefinition[] = PROVIDERS): string {
  return definitions.map((d) => `${d.name}:${d.targetHint}`).join(', ');
}

/**
 * The flags every provider adds, for the CLI (`cli`) or the controller; `unwrap`: the
 * command may unwrap (offer identity files), or not, or only those flags (`only`).
 */
export function providerOptions(
  role: ProviderSettingsSource['role'],
  unwrap: boolean | 'only',
  definitions: readonly ProviderDefinition[] = PROVIDERS,
): Record<string, ProviderOption> {
  const options: Record<string, ProviderOption> = {};
  for (const definition of definitions) {
    const own = role === 'cli' ? definition.settings?.cliOptions : definition.settings?.controllerOptions;
    for (const [name, option] of Object.entries(own ?? {})) {
      const wanted = unwrap === 'only' ? option.unwrapOnly === true : unwrap || option.unwrapOnly !== true;
      if (wanted) options[name] = option;
    }
  }
  return options;
}

/** Every provider's options from flags and environment, once, in main. */
export async function resolveProviderConfig(source: ProviderSettingsSource, definitions: readonly ProviderDefinition[] = PROVIDERS): Promise<ProviderConfig> {
  const config: Record<string, unknown> = {};
  for (const definition of definitions) {
    if (definition.settings) config[definition.name] = await definition.settings.resolve(source);
  }
  return config;
}

export interface EncryptedDataKeyForm {
  providerId: string;
  providerInfo: Uint8Array;
  ciphertext: Uint8Array;
}

/** The configured providers, each created once on first use. */
export class ProviderRegistry {
  readonly #config: ProviderConfig;
  readonly #decorate: (provider: KeyProvider) => KeyProvider;
  readonly #instances = new Map<string, Promise<KeyProvider>>();
  readonly definitions: readonly ProviderDefinition[];

  /**
   * `decorate` wraps each provider once it is created (the controller counts calls);
   * `definitions` replaces the registered providers (tests: a keyring of raw keys).
   */
  constructor(config: ProviderConfig = {}, options: { decorate?: (provider: KeyProvider) => KeyProvider; definitions?: readonly ProviderDefinition[] } = {}) {
    this.#config = config;
    this.#decorate = options.decorate ?? ((provider) => provider);
    this.definitions = options.definitions ?? PROVIDERS;
  }

  /** Uses `provider` for its name instead of creating one (tests, custom providers). */
  static of(providers: readonly KeyProvider[], config: ProviderConfig = {}): ProviderRegistry {
    const registry = new ProviderRegistry(config);
    for (const provider of providers) registry.#instances.set(provider.name, Promise.resolve(registry.#decorate(provider)));
    return registry;
  }

  definition(name: string): ProviderDefinition {
    return providerDefinition(name, this.definitions);
  }

  get(name: string): Promise<KeyProvider> {
    let instance = this.#instances.get(name);
    if (instance === undefined) {
      let definition: ProviderDefinition;
      try {
        definition = this.definition(name);
      } catch (error) {
        return Promise.reject(error);
      }
      instance = definition.create(this.#config[name]).then(this.#decorate);
      this.#instances.set(name, instance);
    }
    return instance;
  }

  /** `envseal keys create --provider NAME`: a new key in the provider's service, with this run's options. */
  createKey(provider: string, request: { name: string; description?: string; signal?: AbortSignal }): Promise<CreatedProviderKey> {
    const definition = this.definition(provider);
    if (definition.createKey === undefined) {
      return Promise.reject(new ProviderError('InvalidConfiguration', `the ${definition.name} provider cannot create keys`, { provider: definition.name }));
    }
    return definition.createKey({ ...request, options: this.#config[provider] });
  }

  /** A recipient as an encrypted data key of the file format. */
  edkOf(recipient: Recipient): EncryptedDataKeyForm {
    const definition = this.definition(recipient.provider);
    return { providerId: definition.edk.providerId, ...definition.edk.encode(recipient) };
  }

  /** An encrypted data key as the recipient its provider unwraps; undefined for another writer's provider id. */
  recipientOf(edk: EncryptedDataKeyForm): Recipient | undefined {
    // Several definitions may share a provider id (raw keyrings share a key namespace):
    // the first that decodes the EDK takes it.
    for (const definition of this.definitions) {
      if (definition.edk.providerId !== edk.providerId) continue;
      const recipient = definition.edk.decode(edk);
      if (recipient !== undefined) return recipient;
    }
    return undefined;
  }

  /** A short, non-secret name of a recipient for messages. */
  describe(recipient: Recipient): string {
    const definition = byName(this.definitions, recipient.provider);
    return definition ? definition.describe(recipient) : `provider ${JSON.stringify(recipient.provider.slice(0, 40))}`;
  }
}

/** Parses `PROVIDER:TARGET` (`aws-kms:alias/app`, `age:age1...`) as the user writes a recipient. */
export function parseRecipientTarget(text: string): RecipientTarget {
  const colon = text.indexOf(':');
  const provider = colon > 0 ? text.slice(0, colon) : '';
  const target = colon > 0 ? text.slice(colon + 1) : '';
  if (provider === '' || target === '') {
    const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
    throw new ProviderError('InvalidRecipient', `recipient ${shown} must be PROVIDER:TARGET, e.g. ${recipientForms()}`, { provider: provider || 'unknown' });
  }
  return { provider, target };
}

/** Whether `text` starts like a recipient (`NAME:` of a registered provider): a path given where a recipient was meant. */
export function looksLikeRecipient(text: string): boolean {
  const colon = text.indexOf(':');
  return colon > 0 && colon < text.length - 1 && isKnownProvider(text.slice(0, colon));
}
