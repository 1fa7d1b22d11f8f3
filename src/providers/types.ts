/** One wrapping of an envelope's data key. Fields besides these depend on the provider. */
export interface Recipient {
  provider: string;
  /** aws-kms: the full key ARN. */
  keyId?: string;
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
  | 'Internal';

const RETRYABLE: ReadonlySet<ProviderErrorCode> = new Set(['Throttled', 'Unavailable']);

export class ProviderError extends Error {
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

  constructor(
    code: ProviderErrorCode,
    message: string,
    options: { provider: string; serviceCode?: string; cause?: unknown; contextBound?: boolean },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.code = code;
    this.provider = options.provider;
    this.serviceCode = options.serviceCode;
    this.contextBound = options.contextBound ?? false;
  }

  get retryable(): boolean {
    return RETRYABLE.has(this.code);
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
