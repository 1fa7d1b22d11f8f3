/** One wrapping of an envelope's data key. Fields besides these depend on the provider. */
import { quoted } from '../util/message.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';
export interface Recipient {
  provider: string;
  /** aws-kms: the full key ARN. */
  keyId?: string;
  /** Scope `namespaces`, providers that bind the context: the namespace this wrapping is for. */
  namespace?: string;
  /** age: the public recipient (age1...), kept for inventory. */
  recipient?: string;
  /** base64 of the provider's wrapped data key. */
  encryptedKey: string;
}

/** A recipient to seal for, as the user names it: `aws-kms:ARN-or-alias`, `age:age1...`. */
export interface RecipientTarget {
  provider: string;
  target: string;
}

/**
 * Codes of key-provider errors. `retryable` ones (Throttled, Unavailable) are worth a
 * retry with backoff; the rest are terminal until the input or the permissions change.
 */
export type ProviderErrorCode =
  | 'AccessDenied'
  | 'InvalidCiphertext'
  | 'KeyUnavailable'
  | 'KeyNotFound'
  | 'Throttled'
  | 'Unavailable'
  | 'InvalidRecipient'
  | 'NoIdentity'
  | 'UnknownProvider'
  /** A provider flag or environment variable holds something unusable (not a URL...). */
  | 'InvalidConfiguration'
  | 'Internal';

const RETRYABLE: ReadonlySet<ProviderErrorCode> = new Set(['Throttled', 'Unavailable']);

export class ProviderError extends EnvsealError {
  readonly code: ProviderErrorCode;
  readonly provider: string;
  /** The service's own error name (e.g. KMS `AccessDeniedException`), for messages. */
  readonly serviceCode: string | undefined;
  /**
   * The provider's service checks the binding itself (a KMS encryption context): an
   * InvalidCiphertext from it means the object was moved to another namespace, name or
   * scope, not that its bytes were altered.
   */
  readonly contextBound: boolean;

  constructor(code: ProviderErrorCode, message: string, options: { provider: string; serviceCode?: string; cause?: unknown; contextBound?: boolean }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.code = code;
    this.provider = options.provider;
    this.serviceCode = options.serviceCode;
    this.contextBound = options.contextBound ?? false;
  }

  override get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }

  /**
   * A flag that names something unusable is a usage error; a wrapped key that does not
   * open (altered, or moved to another scope, namespace or name: a KMS context mismatch)
   * or a malformed recipient is a problem of the input; the rest is the key service's.
   */
  override get exitClass(): ExitClass {
    if (this.code === 'InvalidConfiguration') return 'usage';
    if (this.code === 'InvalidRecipient' || this.code === 'UnknownProvider' || this.code === 'InvalidCiphertext') return 'invalidInput';
    return 'provider';
  }
}

/** What every key operation gets: the encryption context and a way to cancel. */
export interface KeyOperation {
  /** envseal's KMS encryption context (scope, namespace, name); providers that cannot bind it ignore it. */
  encryptionContext: Record<string, string>;
  signal?: AbortSignal;
}

export interface GenerateDataKeyRequest extends KeyOperation {
  /** Provider-specific target: a key ARN or alias, an age recipient. */
  target: string;
}

export interface WrapRequest extends KeyOperation {
  target: string;
  dataKey: Uint8Array;
}

export interface UnwrapRequest extends KeyOperation {
  recipient: Recipient;
}

export interface RewrapRequest extends KeyOperation {
  from: Recipient;
  target: string;
}

export interface GeneratedDataKey {
  /** 32 bytes; the caller zeroes it when done. */
  dataKey: Uint8Array;
  recipient: Recipient;
}

/**
 * A key provider wraps and unwraps envelope data keys. One file per provider, listed in
 * registry.ts.
 */
export interface KeyProvider {
  readonly name: string;
  /** Throws InvalidRecipient when `target` is not a valid target for this provider. */
  parseTarget(target: string): void;
  /** Has the key service generate the data key (aws-kms GenerateDataKey); absent: local random. */
  generateDataKey?(request: GenerateDataKeyRequest): Promise<GeneratedDataKey>;
  wrap(request: WrapRequest): Promise<Recipient>;
  /** Returns the 32-byte data key; the caller zeroes it when done. */
  unwrap(request: UnwrapRequest): Promise<Uint8Array>;
  /** Wraps for another target; within one KMS region the data key never leaves the service (ReEncrypt). */
  rewrap?(request: RewrapRequest): Promise<Recipient>;
  /** Whether this provider, as configured, holds what unwrapping this recipient needs. */
  canUnwrap(recipient: Recipient): boolean;
  /** A short, non-secret name of a recipient for messages, e.g. "aws-kms arn:aws:kms:...". */
  describe(recipient: Recipient): string;
  /** The recipient's target, comparable with a parsed target (key ARN, age recipient). */
  targetOf(recipient: Recipient): string;
  /**
   * The form of `target` that targetOf reports, when the user may name it otherwise
   * (aws-kms: an alias or key id resolved to its key ARN with DescribeKey).
   */
  canonicalTarget?(target: string, signal?: AbortSignal): Promise<string>;
}

/**
 * A copy of `provider` with every method bound to it, optional ones included: the base
 * for wrappers that replace some operations (the controller's metrics, the tests'
 * data-key recorder), so that a method added to KeyProvider reaches them all.
 */
export function boundProvider(provider: KeyProvider): KeyProvider {
  return {
    ...provider,
    parseTarget: provider.parseTarget.bind(provider),
    wrap: provider.wrap.bind(provider),
    unwrap: provider.unwrap.bind(provider),
    canUnwrap: provider.canUnwrap.bind(provider),
    describe: provider.describe.bind(provider),
    targetOf: provider.targetOf.bind(provider),
    ...(provider.generateDataKey ? { generateDataKey: provider.generateDataKey.bind(provider) } : {}),
    ...(provider.rewrap ? { rewrap: provider.rewrap.bind(provider) } : {}),
    ...(provider.canonicalTarget ? { canonicalTarget: provider.canonicalTarget.bind(provider) } : {}),
  };
}

/** A problem with one field of a manifest recipient, for `envseal verify` and the controller. */
export interface RecipientProblem {
  /** The recipient's field, e.g. `keyId`, `encryptedKey`. */
  field: string;
  check: 'structure' | 'size';
  message: string;
}

/** A command-line option a provider adds (the shape of src/cli/args.ts OptionSpec). */
export interface ProviderOption {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  value?: string;
  help: string;
  /** Only for commands that unwrap (an identity file): not offered by commands that only seal. */
  unwrapOnly?: boolean;
}

/** What a provider's configuration may read while it is resolved, once, in main. */
export interface ProviderSettingsSource {
  /** Parsed flag values, by option name. */
  values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  env: Readonly<Record<string, string | undefined>>;
  /** `cli`: a command run by a person or CI; `controller`: the in-cluster controller. */
  role: 'cli' | 'controller';
  /** Whether the command may unwrap (load private identities only then). */
  unwrap: boolean;
  /**
   * Reads a file the user named (relative to the working directory), at most `maxBytes`;
   * `what` and `origin` name it in errors (`age identity file`, `--identity`); a
   * `private` file readable by others gets a warning.
   */
  readFile(path: string, options: { maxBytes: number; what: string; origin: string; private?: boolean }): Promise<Buffer>;
  /** A warning for the user (stderr for the CLI, the log for the controller). */
  warn(message: string): void;
  signal?: AbortSignal;
}

/** A new key created by `envseal keys create --provider NAME`. */
export interface CreatedProviderKey {
  /** The target to seal for, as `--recipient` takes it (without the provider prefix). */
  target: string;
  /** The key's full id in the service (key ARN, transit key path): printed on stdout. */
  keyId: string;
  /** One line for the user: what was created. */
  summary: string;
}

/** A generated key pair of a provider with local identities. */
export interface GeneratedIdentity {
  /** The private identity: never logged, written only to a private file or Secret. */
  identity: string;
  recipient: string;
}

export interface LocalIdentitySupport {
  /** Kinds of key pair `generate` makes; the first is the default. */
  readonly kinds: readonly string[];
  generate(kind?: string): Promise<GeneratedIdentity>;
  recipientOf(identity: string): Promise<string>;
  /** The identities of an identity file's text; `source` names it in errors (never its content). */
  parseFile(text: string, source: string): string[];
  formatFile(generated: GeneratedIdentity, createdAt: Date): string;
  /** The options of `create` that unwrap with these identities. */
  options(identities: readonly string[]): unknown;
  /** The identities in options `settings.resolve` returned. */
  identitiesOf(options: unknown): readonly string[];
}

/**
 * A key provider as a whole: what is known without loading its SDK (target syntax, the
 * manifest and file forms of its recipients, its flags) and how to create it. One file
 * per provider exports one; src/providers/registry.ts lists them. Nothing outside
 * src/providers names a provider: it goes through these.
 */
export interface ProviderDefinition {
  readonly name: string;
  /** What follows `NAME:` in `--recipient`, for help texts: `ARN-or-alias`, `age1...`. */
  readonly targetHint: string;
  /** Throws InvalidRecipient when `target` cannot name a key of this provider (no I/O). */
  parseTarget(target: string): void;
  /**
   * Problems with a manifest recipient's own fields: everything but `provider` and the
   * base64 form of `encryptedKey`, which the caller checks (`encryptedKey` is its bytes,
   * or undefined when it is not valid base64).
   */
  checkRecipient(recipient: Readonly<Record<string, unknown>>, encryptedKey: Uint8Array | undefined): RecipientProblem[];
  /** The largest encryptedKey in bytes: bounds the CRD and the manifest check. */
  readonly maxEncryptedKeyBytes: number;
  /**
   * The key service binds the encryption context (the KMS refuses a wrapping under another
   * context): with scope `namespaces` it wraps once per listed namespace. Absent: the
   * provider ignores the context (age), one wrapping serves every namespace.
   */
  readonly bindsEncryptionContext?: boolean;
  /**
   * The CRD's CEL rules for this provider's recipients (each guarded by
   * `self.provider != NAME ||`), so the API server refuses them at apply time; a test
   * checks that crds/ states exactly these.
   */
  readonly crdRules: readonly { rule: string; message: string }[];
  /** A short, non-secret name of a recipient for messages, e.g. "aws-kms arn:aws:kms:...". */
  describe(recipient: Recipient): string;
  /** The recipient's target, comparable with a parsed target (key ARN, age recipient). */
  targetOf(recipient: Recipient): string;
  /**
   * The encrypted data key of the file format (the AWS Encryption SDK message): provider
   * id (aws-kms for AWS's own, `envseal-*` for ours), provider info and ciphertext.
   */
  readonly edk: {
    readonly providerId: string;
    encode(recipient: Recipient): { providerInfo: Uint8Array; ciphertext: Uint8Array };
    /** Undefined when the EDK is not one this provider wrote. */
    decode(edk: { providerInfo: Uint8Array; ciphertext: Uint8Array }): Recipient | undefined;
  };
  /** Flags for the CLI and the controller, and the options they resolve to. */
  readonly settings?: {
    readonly cliOptions: Readonly<Record<string, ProviderOption>>;
    readonly controllerOptions: Readonly<Record<string, ProviderOption>>;
    resolve(source: ProviderSettingsSource): Promise<unknown>;
  };
  /** Creates the provider with the options `settings.resolve` returned (or undefined). */
  create(options: unknown): Promise<KeyProvider>;
  /**
   * Providers whose private keys are held as text by the user or the cluster (age): new
   * key pairs for `keys create`, the controller's cluster identity, and the recipient
   * the controller publishes.
   */
  readonly localIdentity?: LocalIdentitySupport;
  /**
   * `envseal keys create --provider NAME --name NAME`: creates a key in the service and
   * returns the target to seal for. Absent: the provider cannot create keys.
   */
  createKey?(request: { options: unknown; name: string; description?: string; signal?: AbortSignal }): Promise<CreatedProviderKey>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The EDK codec of providers whose recipient is named by `keyId` (a key ARN, a transit
 * key path): provider info = keyId in UTF-8, ciphertext = the service's ciphertext.
 */
export function keyIdEdkCodec(provider: string, providerId: string): ProviderDefinition['edk'] {
  return {
    providerId,
    encode(recipient) {
      if (!recipient.keyId) throw new ProviderError('InvalidRecipient', `a ${provider} recipient without its keyId cannot be written to a file`, { provider });
      return { providerInfo: Buffer.from(recipient.keyId, 'utf8'), ciphertext: Buffer.from(recipient.encryptedKey, 'base64') };
    },
    decode(edk) {
      let keyId: string;
      try {
        keyId = utf8.decode(edk.providerInfo);
      } catch {
        return undefined;
      }
      return { provider, keyId, encryptedKey: Buffer.from(edk.ciphertext.buffer, edk.ciphertext.byteOffset, edk.ciphertext.byteLength).toString('base64') };
    },
  };
}

/** `text` for a message: JSON-quoted, at most `max` characters of it. */
export function quoteTarget(text: string, max = 200): string {
  return quoted(text, max);
}

/** One string flag's value: the last given. */
export function stringSetting(source: Pick<ProviderSettingsSource, 'values'>, name: string): string | undefined {
  const value = source.values[name];
  const last = Array.isArray(value) ? value[value.length - 1] : value;
  return typeof last === 'string' ? last : undefined;
}

/** The first of `names` set to a non-empty value in the environment. */
export function envSetting(source: Pick<ProviderSettingsSource, 'env'>, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = source.env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

/** `value` when it parses as a URL; InvalidConfiguration naming `what` and where it came from otherwise. */
export function checkedUrl(value: string | undefined, what: string, provider: string): string | undefined {
  if (value !== undefined && !URL.canParse(value)) {
    throw new ProviderError('InvalidConfiguration', `${what} ${quoteTarget(value, 80)} is not a URL`, { provider });
  }
  return value;
}
