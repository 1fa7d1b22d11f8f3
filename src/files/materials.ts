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
import type { Recipient } from '../providers/types.ts';
import { type RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { generateDataKey, unwrapAny } from '../providers/keyring.ts';
import { ProviderError } from '../providers/types.ts';
import type { RecipientTarget } from '../providers/types.ts';
import { FileFormatError } from './errors.ts';
import type { EncryptedDataKey, MessageHeader } from './header.ts';

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
 * Generates the data key and wraps it for every target, through the keyring: the first
 * aws-kms target generates it (KMS GenerateDataKey), the others wrap it (KMS Encrypt,
 * age); with no aws-kms target, it comes from `random`. Every KMS call gets
 * `encryptionContext`.
 */
export async function generateDataKeyMaterials(options: {
  targets: readonly RecipientTarget[];
  providers: ProviderRegistry;
  encryptionContext: Record<string, string>;
  random: RandomSource;
  signal?: AbortSignal;
}): Promise<DataKeyMaterials> {
  if (options.targets.length === 0) throw new FileFormatError('InvalidArgument', 'no recipient');
  const { dataKey, recipients } = await generateDataKey(options);
  try {
    return { dataKey, encryptedDataKeys: recipients.map(edkOfRecipient) };
  } catch (error) {
    dataKey.fill(0);
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
 * Unwraps the data key through the keyring, trying the EDKs in header order (aws-kms EDKs
 * with the key ARN they name, like the SDK's discovery mode; age EDKs only when an
 * identity is configured; EDKs of other writers' providers are skipped). When none
 * opens, the error lists what was tried and why each failed (never key material); a
 * provider's failure (access denied, unreachable KMS) keeps its code and exit status.
 */
export async function unwrapDataKey(options: { header: MessageHeader; providers: ProviderRegistry; signal?: AbortSignal }): Promise<Uint8Array> {
  const { header, providers, signal } = options;
  const recipients: Recipient[] = [];
  for (const edk of header.encryptedDataKeys) {
    const recipient = recipientOfEdk(edk);
    if (recipient !== undefined) recipients.push(recipient);
  }
  const skipped = header.encryptedDataKeys.length - recipients.length;
  const count = header.encryptedDataKeys.length;
  try {
    const { dataKey } = await unwrapAny({ recipients, providers, encryptionContext: header.encryptionContext, what: `the message (${count} encrypted data key${count === 1 ? '' : 's'} in the header)`, ...(signal ? { signal } : {}) });
    return dataKey;
  } catch (error) {
    if (!(error instanceof ProviderError) || error.code !== 'NoIdentity') throw error;
    const others = skipped > 0 ? `; ${skipped} encrypted data key${skipped === 1 ? '' : 's'} of other key providers skipped` : '';
    throw new FileFormatError('NoDecryptableKey', `no encrypted data key of the message could be decrypted: ${error.message}${others}`, { cause: error });
  }
}
