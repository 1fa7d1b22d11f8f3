/** The provider over @aws-sdk/client-kms: one client per region, every call with context and signal. */
import type { KMSClient } from '@aws-sdk/client-kms';
import type { Recipient } from '../types.ts';
import { commonJsExports } from '../../util/modules.ts';
import { isStandardBase64 } from '../../envelope/base64.ts';
import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../../envelope/kdf.ts';
import { type GenerateDataKeyRequest, type GeneratedDataKey, ProviderError, type RewrapRequest, type UnwrapRequest, type WrapRequest } from '../types.ts';
import { AWS_KMS, type AwsKmsProvider, type AwsKmsProviderOptions, type CreatedKey, type CreateKeyRequest } from './types.ts';
import { KEY_ARN, invalidTarget, parseKmsTarget } from './targets.ts';
import { mapError } from './errors.ts';
import { quoteTarget } from '../types.ts';

type KmsSdk = typeof import('@aws-sdk/client-kms');

const DEFAULT_MAX_ATTEMPTS = 5;
const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------
// The provider

function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** KMS clients kept at once, one per region in use. */
export const MAX_REGION_CLIENTS = 8;

export function createAwsKmsProvider(options: AwsKmsProviderOptions = {}): AwsKmsProvider {
  const clients = new Map<string, KMSClient>();
  // The SDK is loaded on the first call: checking or describing never loads it.
  let sdkLoading: Promise<KmsSdk> | undefined;
  const loadSdk = (): Promise<KmsSdk> => (sdkLoading ??= import('@aws-sdk/client-kms').then(commonJsExports));
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('Internal', `aws-kms maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, { provider: AWS_KMS });
  }

  /** The client for `region`; undefined: options.region or the SDK's default region. */
  function client(sdk: KmsSdk, region: string | undefined): KMSClient {
    const chosen = region ?? options.region;
    const cacheKey = chosen ?? '';
    let kms = clients.get(cacheKey);
    if (kms !== undefined) {
      // Most recently used last: the first entry is the one to drop.
      clients.delete(cacheKey);
      clients.set(cacheKey, kms);
    } else {
      kms = new sdk.KMSClient({
        ...(chosen === undefined ? {} : { region: chosen }),
        ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
        ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
        maxAttempts,
        retryMode: options.retryMode ?? 'adaptive',
        requestHandler: {
          connectionTimeout: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
          requestTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
          throwOnRequestTimeout: true,
        },
      });
      clients.set(cacheKey, kms);
      // Regions come from key ARNs in manifests, which tenants write: keep a few clients
      // (each holds sockets and credentials), not one per region string ever seen.
      for (const [oldKey, old] of clients) {
        if (clients.size <= MAX_REGION_CLIENTS) break;
        clients.delete(oldKey);
        old.destroy();
      }
    }
    return kms;
  }

  function where(region: string | undefined): string {
    const chosen = region ?? options.region;
    return options.endpoint ?? (chosen === undefined ? 'the default region' : `region ${chosen}`);
  }

  /** Runs one KMS call with uniform abort and error handling. */
  async function call<T>(
    operation: string,
    key: string | undefined,
    region: string | undefined,
    signal: AbortSignal | undefined,
    run: (kms: KMSClient, sdk: KmsSdk) => Promise<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    const sdk = await loadSdk();
    const kms = client(sdk, region);
    if (region === undefined && options.region === undefined) await requireRegion(kms, operation, key);
    try {
      return await run(kms, sdk);
    } catch (error) {
      throw mapError(error, { operation, key, where: where(region), signal });
    }
  }

  function requireKeyArn(operation: string, keyId: string | undefined, target: string): string {
    if (keyId === undefined || !KEY_ARN.test(keyId)) {
      throw new ProviderError('Internal', `aws-kms ${operation} with key ${target}: the KMS answered without a valid key ARN`, {
        provider: AWS_KMS,
        serviceCode: 'InvalidResponse',
      });
    }
    return keyId;
  }

  function recipientKeyId(recipient: Recipient, operation: string): { keyId: string; region: string | undefined } {
    if (recipient.provider !== AWS_KMS) {
      throw new ProviderError(
        'InvalidRecipient',
        `aws-kms ${operation}: the recipient is for provider ${quoteTarget(String(recipient.provider))}, not aws-kms`,
        {
          provider: AWS_KMS,
        },
      );
    }
    if (typeof recipient.keyId !== 'string' || recipient.keyId === '') {
      throw new ProviderError('InvalidRecipient', `aws-kms ${operation}: the recipient has no keyId`, { provider: AWS_KMS });
    }
    return { keyId: recipient.keyId, region: parseKmsTarget(recipient.keyId).region };
  }

  function ciphertextOf(recipient: Recipient, keyId: string, operation: string): Uint8Array {
    if (typeof recipient.encryptedKey !== 'string' || recipient.encryptedKey === '' || !isStandardBase64(recipient.encryptedKey)) {
      throw new ProviderError('InvalidCiphertext', `aws-kms ${operation} with key ${keyId}: the recipient's encryptedKey is not standard padded base64`, {
        provider: AWS_KMS,
      });
    }
    return Buffer.from(recipient.encryptedKey, 'base64');
  }

  function checkDataKey(operation: string, key: string, dataKey: Uint8Array | undefined): Uint8Array {
    if (!(dataKey instanceof Uint8Array) || dataKey.byteLength !== DATA_KEY_BYTES) {
      const length = dataKey instanceof Uint8Array ? dataKey.byteLength : 0;
      zero(dataKey);
      throw new ProviderError('Internal', `aws-kms ${operation} with key ${key}: the data key is ${length} bytes, expected ${DATA_KEY_BYTES}`, {
        provider: AWS_KMS,
        serviceCode: 'InvalidDataKeyLength',
      });
    }
    // A private copy: the SDK's buffer may be a slice of a shared pool.
    const copy = new Uint8Array(DATA_KEY_BYTES);
    copy.set(dataKey);
    zero(dataKey);
    return copy;
  }

  async function unwrap(request: UnwrapRequest, operation = 'Decrypt'): Promise<Uint8Array> {
    const { keyId, region } = recipientKeyId(request.recipient, operation);
    const ciphertext = ciphertextOf(request.recipient, keyId, operation);
    const out = await call(operation, keyId, region, request.signal, (kms, k) =>
      kms.send(
        new k.DecryptCommand({
          CiphertextBlob: ciphertext,
          KeyId: keyId,
          EncryptionContext: request.encryptionContext,
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        }),
        { abortSignal: request.signal },
      ),
    );
    return checkDataKey(operation, keyId, out.Plaintext);
  }

  async function wrap(request: WrapRequest): Promise<Recipient> {
    const { region } = parseKmsTarget(request.target);
    if (!(request.dataKey instanceof Uint8Array) || request.dataKey.byteLength !== DATA_KEY_BYTES) {
      throw new ProviderError('Internal', `aws-kms Encrypt with key ${request.target}: the data key must be ${DATA_KEY_BYTES} bytes`, { provider: AWS_KMS });
    }
    const out = await call('Encrypt', request.target, region, request.signal, (kms, k) =>
      kms.send(
        new k.EncryptCommand({
          KeyId: request.target,
          Plaintext: request.dataKey,
          EncryptionContext: request.encryptionContext,
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        }),
        { abortSignal: request.signal },
      ),
    );
    const keyId = requireKeyArn('Encrypt', out.KeyId, request.target);
    if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
      throw new ProviderError('Internal', `aws-kms Encrypt with key ${keyId}: the KMS answered without a ciphertext`, {
        provider: AWS_KMS,
        serviceCode: 'InvalidResponse',
      });
    }
    return { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) };
  }

  /** A bare alias or key id needs a region from somewhere: the SDK's chain (AWS_REGION, a profile) must give one. */
  async function requireRegion(kms: KMSClient, operation: string, key: string | undefined): Promise<void> {
    try {
      await kms.config.region();
    } catch {
      throw new ProviderError(
        'InvalidRecipient',
        `aws-kms ${operation}${key === undefined ? '' : ` with ${key}`} failed: no AWS region is configured for a bare alias or key id: use a full ARN, or set the region (--region, AWS_REGION)`,
        {
          provider: AWS_KMS,
          serviceCode: 'RegionMissing',
        },
      );
    }
  }

  async function resolvedRegion(region: string | undefined): Promise<string | undefined> {
    if (region !== undefined) return region;
    if (options.region !== undefined) return options.region;
    try {
      return await client(await loadSdk(), undefined).config.region();
    } catch {
      return undefined;
    }
  }

  const provider: AwsKmsProvider = {
    name: AWS_KMS,

    parseTarget(target: string): void {
      parseKmsTarget(target);
    },

    async generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey> {
      const { region } = parseKmsTarget(request.target);
      const out = await call('GenerateDataKey', request.target, region, request.signal, (kms, k) =>
        kms.send(
          new k.GenerateDataKeyCommand({
            KeyId: request.target,
            KeySpec: 'AES_256',
            EncryptionContext: request.encryptionContext,
          }),
          { abortSignal: request.signal },
        ),
      );
      let dataKey: Uint8Array | undefined;
      try {
        const keyId = requireKeyArn('GenerateDataKey', out.KeyId, request.target);
        dataKey = checkDataKey('GenerateDataKey', keyId, out.Plaintext);
        if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
          throw new ProviderError('Internal', `aws-kms GenerateDataKey with key ${keyId}: the KMS answered without a ciphertext`, {
            provider: AWS_KMS,
            serviceCode: 'InvalidResponse',
          });
        }
        return { dataKey, recipient: { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) } };
      } catch (error) {
        zero(dataKey);
        zero(out.Plaintext);
        throw error;
      }
    },

    wrap,

    unwrap: (request) => unwrap(request),

    /**
     * ReEncrypt when both keys are in one region: the data key never leaves the KMS.
     * KMS keys are regional, so for a key in another region this is Decrypt in the
     * source region and Encrypt in the destination region, and the data key is in
     * this process's memory for the moment between (zeroed right after).
     */
    async rewrap(request: RewrapRequest): Promise<Recipient> {
      const { keyId: sourceKeyId, region: sourceRegion } = recipientKeyId(request.from, 'ReEncrypt');
      const { region: destinationRegion } = parseKmsTarget(request.target);
      const ciphertext = ciphertextOf(request.from, sourceKeyId, 'ReEncrypt');
      const [from, to] = await Promise.all([resolvedRegion(sourceRegion), resolvedRegion(destinationRegion)]);
      if (from !== undefined && to !== undefined && from !== to) {
        const dataKey = await unwrap({ recipient: request.from, encryptionContext: request.encryptionContext, signal: request.signal }, 'ReEncrypt (Decrypt)');
        try {
          return await wrap({
            target: request.target,
            dataKey,
            encryptionContext: request.encryptionContext,
            signal: request.signal,
          });
        } finally {
          zero(dataKey);
        }
      }
      const out = await call('ReEncrypt', `${sourceKeyId} -> ${request.target}`, destinationRegion ?? sourceRegion, request.signal, (kms, k) =>
        kms.send(
          new k.ReEncryptCommand({
            CiphertextBlob: ciphertext,
            SourceKeyId: sourceKeyId,
            SourceEncryptionContext: request.encryptionContext,
            SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
            DestinationKeyId: request.target,
            DestinationEncryptionContext: request.encryptionContext,
            DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          }),
          { abortSignal: request.signal },
        ),
      );
      const keyId = requireKeyArn('ReEncrypt', out.KeyId, request.target);
      if (out.CiphertextBlob === undefined || out.CiphertextBlob.byteLength === 0) {
        throw new ProviderError('Internal', `aws-kms ReEncrypt with key ${keyId}: the KMS answered without a ciphertext`, {
          provider: AWS_KMS,
          serviceCode: 'InvalidResponse',
        });
      }
      return { provider: AWS_KMS, keyId, encryptedKey: toBase64(out.CiphertextBlob) };
    },

    canUnwrap(recipient: Recipient): boolean {
      return recipient.provider === AWS_KMS && typeof recipient.keyId === 'string' && recipient.keyId !== '';
    },

    describe(recipient: Recipient): string {
      return `aws-kms ${recipient.keyId ?? '(no keyId)'}`;
    },

    targetOf(recipient: Recipient): string {
      return recipient.keyId ?? '';
    },

    async canonicalTarget(target: string, signal?: AbortSignal): Promise<string> {
      const parsed = parseKmsTarget(target);
      if (parsed.kind === 'key-arn') return target;
      const out = await call('DescribeKey', target, parsed.region, signal, (kms, k) =>
        kms.send(new k.DescribeKeyCommand({ KeyId: target }), { abortSignal: signal }),
      );
      return requireKeyArn('DescribeKey', out.KeyMetadata?.Arn, target);
    },

    async createKey(request: CreateKeyRequest): Promise<CreatedKey> {
      const parsed = parseKmsTarget(request.alias);
      if (parsed.kind !== 'alias' && parsed.kind !== 'alias-arn') {
        throw invalidTarget(request.alias, 'is not an alias: expected alias/NAME or an alias ARN');
      }
      const aliasName = request.alias.slice(request.alias.indexOf('alias/'));
      if (aliasName.startsWith('alias/aws/')) {
        throw invalidTarget(request.alias, 'uses the prefix alias/aws/, which AWS reserves for AWS managed keys');
      }
      const region = parsed.region;
      const created = await call('CreateKey', undefined, region, request.signal, (kms, k) =>
        kms.send(
          new k.CreateKeyCommand({
            KeySpec: 'SYMMETRIC_DEFAULT',
            KeyUsage: 'ENCRYPT_DECRYPT',
            Description: request.description ?? `envseal envelope key ${aliasName}`,
          }),
          { abortSignal: request.signal },
        ),
      );
      const keyArn = requireKeyArn('CreateKey', created.KeyMetadata?.Arn, aliasName);
      try {
        await call('CreateAlias', aliasName, region, request.signal, (kms, k) =>
          kms.send(new k.CreateAliasCommand({ AliasName: aliasName, TargetKeyId: keyArn }), { abortSignal: request.signal }),
        );
      } catch (error) {
        let cleanup: string;
        try {
          // Not under the caller's signal: the orphan must go even after an abort. The
          // bare key id (same account and region as this client): moto 5.2.5 fails
          // ScheduleKeyDeletion given an ARN.
          const keyId = keyArn.slice(keyArn.indexOf(':key/') + 5);
          const sdk = await loadSdk();
          await client(sdk, region).send(new sdk.ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: 7 }));
          cleanup = `the new key ${keyArn} was scheduled for deletion`;
        } catch {
          cleanup = `the new key ${keyArn} could not be scheduled for deletion: delete it by hand`;
        }
        if (error instanceof ProviderError) {
          throw new ProviderError(error.code, `${error.message}; ${cleanup}`, {
            provider: AWS_KMS,
            serviceCode: error.serviceCode,
            cause: error.cause,
          });
        }
        throw error;
      }
      const arnPrefix = keyArn.slice(0, keyArn.indexOf(':key/'));
      return { keyArn, alias: aliasName, aliasArn: `${arnPrefix}:${aliasName}` };
    },

    openRegions(): string[] {
      return [...clients.keys()];
    },
    close(): void {
      for (const kms of clients.values()) kms.destroy();
      clients.clear();
    },
  };
  return provider;
}

/** CreateKey + CreateAlias with a one-off provider: `envseal keys create --provider aws-kms --alias alias/NAME`. */
export function createAwsKmsKey(options: AwsKmsProviderOptions, request: CreateKeyRequest): Promise<CreatedKey> {
  return createAwsKmsProvider(options).createKey(request);
}
