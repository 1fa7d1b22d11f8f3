/**
 * Between the message format and the key providers: a recipient's wrapped data key as
 * an encrypted data key (EDK) of the header, and back.
 *
 * - aws-kms: provider id "aws-kms", provider info = the key ARN (UTF-8), ciphertext =
 *   the KMS CiphertextBlob: exactly what the AWS Encryption SDK's KMS keyring writes,
 *   so either side decrypts the other's messages.
 * - age: provider id "envseal-age" (envseal's own; other SDKs skip it), provider info =
 *   the age recipient (age1..., public), ciphertext = the binary age file holding the
 *   32-byte data key.
 *
 * The KMS encryption context is the message's whole encryption context, including
 * aws-crypto-public-key for the signed suite, as the SDK's default CMM passes it.
 */
import type { Recipient } from '../api/types.ts';
import { type RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError, type ProviderErrorCode } from '../providers/types.ts';
import type { RecipientTarget } from '../sealing/targets.ts';
import { FileFormatError } from './errors.ts';
import type { EncryptedDataKey, MessageHeader } from './header.ts';
import { DATA_KEY_LENGTH } from './suites.ts';

export const AWS_KMS_PROVIDER_ID = 'aws-kms';
export const AGE_PROVIDER_ID = 'envseal-age';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A provider's recipient as an EDK. */
export function edkOfRecipient(recipient: Recipient): EncryptedDataKey {
  const ciphertext = Buffer.from(recipient.encryptedKey, 'base64');
  switch (recipient.provider) {
    case 'aws-kms':
      if (!recipient.keyId) throw new FileFormatError('InvalidArgument', 'an aws-kms recipient without its key ARN');
      return { providerId: AWS_KMS_PROVIDER_ID, providerInfo: Buffer.from(recipient.keyId, 'utf8'), ciphertext };
    case 'age':
      return { providerId: AGE_PROVIDER_ID, providerInfo: Buffer.from(recipient.recipient ?? '', 'utf8'), ciphertext };
    default:
      throw new FileFormatError('InvalidArgument', `provider ${JSON.stringify(recipient.provider)} cannot wrap the data key of a file`);
  }
}

/** An EDK as the recipient its provider unwraps; undefined for another writer's provider id. */
export function recipientOfEdk(edk: EncryptedDataKey): Recipient | undefined {
  let info: string;
  try {
    info = utf8.decode(edk.providerInfo);
  } catch {
    return undefined;
  }
  const encryptedKey = Buffer.from(edk.ciphertext).toString('base64');
  switch (edk.providerId) {
    case AWS_KMS_PROVIDER_ID:
      return { provider: 'aws-kms', keyId: info, encryptedKey };
    case AGE_PROVIDER_ID:
      return { provider: 'age', ...(info === '' ? {} : { recipient: info }), encryptedKey };
    default:
      return undefined;
  }
}

export interface DataKeyMaterials {
  /** 32 bytes; the caller zeroes it when done. */
  dataKey: Uint8Array;
  encryptedDataKeys: EncryptedDataKey[];
}

/**
 * Generates the data key and wraps it for every target. The first aws-kms target
 * generates it (KMS GenerateDataKey), the others wrap it (KMS Encrypt, age); with no
 * aws-kms target, it comes from `random`. Every KMS call gets `encryptionContext`.
 */
export async function generateDataKeyMaterials(options: {
  targets: readonly RecipientTarget[];
  providers: ProviderRegistry;
  encryptionContext: Record<string, string>;
  random: RandomSource;
  signal?: AbortSignal;
}): Promise<DataKeyMaterials> {
  const { targets, providers, encryptionContext, signal } = options;
  if (targets.length === 0) throw new FileFormatError('InvalidArgument', 'no recipient');
  for (const target of targets) (await providers.get(target.provider)).parseTarget(target.target);
  const op = { encryptionContext, ...(signal ? { signal } : {}) };
  let dataKey: Uint8Array | undefined;
  const edks: EncryptedDataKey[] = new Array<EncryptedDataKey>(targets.length);
  try {
    let generatorIndex = -1;
    for (const [index, target] of targets.entries()) {
      const provider = await providers.get(target.provider);
      if (provider.generateDataKey) {
        const generated = await provider.generateDataKey({ ...op, target: target.target });
        dataKey = generated.dataKey;
        edks[index] = edkOfRecipient(generated.recipient);
        generatorIndex = index;
        break;
      }
    }
    if (dataKey === undefined) {
      dataKey = Uint8Array.from(options.random(DATA_KEY_LENGTH));
      if (dataKey.length !== DATA_KEY_LENGTH) throw new FileFormatError('InvalidArgument', 'the random source returned a short data key');
    }
    for (const [index, target] of targets.entries()) {
      if (index === generatorIndex) continue;
      const provider = await providers.get(target.provider);
      edks[index] = edkOfRecipient(await provider.wrap({ ...op, target: target.target, dataKey }));
    }
    return { dataKey, encryptedDataKeys: edks };
  } catch (error) {
    dataKey?.fill(0);
    throw error;
  }
}

/** Human-readable, non-secret name of an EDK for messages. */
export function describeEdk(edk: EncryptedDataKey): string {
  const recipient = recipientOfEdk(edk);
  if (recipient === undefined) return `provider ${JSON.stringify(edk.providerId.slice(0, 40))}`;
  if (recipient.provider === 'aws-kms') return `aws-kms ${recipient.keyId ?? ''}`;
  const r = recipient.recipient ?? '(recipient not recorded)';
  return `age ${r.length > 40 ? `${r.slice(0, 20)}…${r.slice(-8)}` : r}`;
}

/**
 * Unwraps the data key from the first EDK that a configured provider opens, trying
 * them in header order (aws-kms EDKs with the key ARN they name, like the SDK's
 * discovery mode; age EDKs only when an identity is configured). When none opens, the
 * error lists what was tried and why each failed (never key material).
 */
export async function unwrapDataKey(options: { header: MessageHeader; providers: ProviderRegistry; signal?: AbortSignal }): Promise<Uint8Array> {
  const { header, providers, signal } = options;
  const failures: { edk: EncryptedDataKey; error: unknown }[] = [];
  let skipped = 0;
  for (const edk of header.encryptedDataKeys) {
    signal?.throwIfAborted();
    const recipient = recipientOfEdk(edk);
    if (recipient === undefined) {
      skipped++;
      continue;
    }
    try {
      const provider = await providers.get(recipient.provider);
      if (!provider.canUnwrap(recipient)) {
        failures.push({ edk, error: new ProviderError('NoIdentity', `${provider.describe(recipient)}: not configured to unwrap it`, { provider: recipient.provider }) });
        continue;
      }
      const dataKey = await provider.unwrap({ recipient, encryptionContext: header.encryptionContext, ...(signal ? { signal } : {}) });
      if (dataKey.length !== DATA_KEY_LENGTH) {
        dataKey.fill(0);
        throw new ProviderError('InvalidCiphertext', 'the unwrapped data key has the wrong length', { provider: recipient.provider });
      }
      return dataKey;
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      failures.push({ edk, error });
    }
  }
  const lines = failures.map(({ edk, error }) => `  ${describeEdk(edk)}: ${error instanceof ProviderError ? error.message : error instanceof Error ? error.name : 'failed'}`);
  if (skipped > 0) lines.push(`  ${skipped} encrypted data key${skipped === 1 ? '' : 's'} of other key providers skipped`);
  const summary = `no encrypted data key of the message could be decrypted (${header.encryptedDataKeys.length} in the header)${lines.length > 0 ? `:\n${lines.join('\n')}` : ''}`;
  // A provider's failure (access denied, unreachable KMS) keeps its code and exit status.
  const providerFailure = failures.map((f) => f.error).find((e): e is ProviderError => e instanceof ProviderError && e.code !== 'NoIdentity');
  if (providerFailure) {
    throw new ProviderError(providerFailure.code as ProviderErrorCode, summary, { provider: providerFailure.provider, ...(providerFailure.serviceCode ? { serviceCode: providerFailure.serviceCode } : {}), cause: providerFailure });
  }
  throw new FileFormatError('NoDecryptableKey', summary, failures.length > 0 ? { cause: failures[0]!.error } : undefined);
}
