import type { AgeProviderOptions } from './age.ts';
import type { AwsKmsProviderOptions } from './aws-kms.ts';
import { type KeyProvider, ProviderError, type RecipientTarget } from './types.ts';

/** Each provider's options, under the provider's name. Parsed once, in main. */
export interface ProviderConfig {
  'aws-kms'?: AwsKmsProviderOptions;
  age?: AgeProviderOptions;
}

type ProviderFactory = (config: ProviderConfig) => Promise<KeyProvider>;

// Loaded on first use, so that sealing for age never loads the AWS SDK.
const FACTORIES: Readonly<Record<string, ProviderFactory>> = {
  'aws-kms': async (config) => (await import('./aws-kms.ts')).createAwsKmsProvider(config['aws-kms'] ?? {}),
  age: async (config) => (await import('./age.ts')).createAgeProvider(config.age ?? {}),
};

export const PROVIDER_NAMES: readonly string[] = Object.keys(FACTORIES);

export function isKnownProvider(name: string): boolean {
  return Object.hasOwn(FACTORIES, name);
}

/** The configured providers, each created once on first use. */
export class ProviderRegistry {
  readonly #config: ProviderConfig;
  readonly #decorate: (provider: KeyProvider) => KeyProvider;
  readonly #instances = new Map<string, Promise<KeyProvider>>();

  /** `decorate` wraps each provider once it is created (the controller counts calls). */
  constructor(config: ProviderConfig = {}, options: { decorate?: (provider: KeyProvider) => KeyProvider } = {}) {
    this.#config = config;
    this.#decorate = options.decorate ?? ((provider) => provider);
  }

  /** Uses `provider` for its name instead of creating one (tests, custom providers). */
  static of(providers: readonly KeyProvider[], config: ProviderConfig = {}): ProviderRegistry {
    const registry = new ProviderRegistry(config);
    for (const provider of providers) registry.#instances.set(provider.name, Promise.resolve(registry.#decorate(provider)));
    return registry;
  }

  get(name: string): Promise<KeyProvider> {
    let instance = this.#instances.get(name);
    if (instance === undefined) {
      const factory = FACTORIES[name];
      if (factory === undefined || !Object.hasOwn(FACTORIES, name)) {
        return Promise.reject(
          new ProviderError('UnknownProvider', `unknown key provider "${name}" (known: ${PROVIDER_NAMES.join(', ')})`, { provider: name }),
        );
      }
      instance = factory(this.#config).then(this.#decorate);
      this.#instances.set(name, instance);
    }
    return instance;
  }
}

/** Parses `PROVIDER:TARGET` (`aws-kms:alias/app`, `age:age1...`) as the user writes a recipient. */
export function parseRecipientTarget(text: string): RecipientTarget {
  const colon = text.indexOf(':');
  const provider = colon > 0 ? text.slice(0, colon) : '';
  const target = colon > 0 ? text.slice(colon + 1) : '';
  if (provider === '' || target === '') {
    const shown = JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
    throw new ProviderError('InvalidRecipient', `recipient ${shown} must be PROVIDER:TARGET, e.g. aws-kms:alias/app or age:age1... (providers: ${PROVIDER_NAMES.join(', ')})`, { provider: provider || 'unknown' });
  }
  return { provider, target };
}
