/**
 * Between the message format and the key providers: a recipient's wrapped data key as
 * an encrypted data key (EDK) of the header, and back, in the form each provider
 * defines (src/providers: `edk` of its definition; docs/format.md lists them). The KMS
 * encryption context is the message's whole encryption context, including
 * aws-crypto-public-key for the signed suite, as the SDK's default CMM passes it.
 */
import type { Recipient } from '../providers/types.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { generateDataKey, unwrapAny } from '../providers/keyring.ts';
import { ProviderError } from '../providers/types.ts';
import type { RecipientTarget } from '../providers/types.ts';
import { FileFormatError } from './errors.ts';
import type { EncryptedDataKey, MessageHeader } from './header.ts';

export interface DataKeyMaterials {
  /** 32 bytes; the caller zeroes it when done. */
  dataKey: Uint8Array;
  encryptedDataKeys: EncryptedDataKey[];
}

/**
 * Generates the data key and wraps it for every target, through the keyring: the first
 * target whose provider has a key service generates it (KMS GenerateDataKey), the others
 * wrap it; with none, it comes from `random`. Every KMS call gets `encryptionContext`.
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
    return { dataKey, encryptedDataKeys: recipients.map((recipient) => edkOf(options.providers, recipient)) };
  } catch (error) {
    dataKey.fill(0);
    throw error;
  }
}

function edkOf(providers: ProviderRegistry, recipient: Recipient): EncryptedDataKey {
  try {
    return providers.edkOf(recipient);
  } catch (error) {
    throw new FileFormatError('InvalidArgument', `provider ${JSON.stringify(recipient.provider.slice(0, 40))} cannot wrap the data key of a file`, {
      cause: error,
    });
  }
}

/**
 * Unwraps the data key through the keyring, trying the EDKs in header order (KMS EDKs
 * with the key they name, like the SDK's discovery mode; identity-based ones only when
 * an identity is configured; EDKs of other writers' providers are skipped). When none
 * opens, the error lists what was tried and why each failed (never key material); a
 * provider's failure (access denied, unreachable KMS) keeps its code and exit status.
 */
export async function unwrapDataKey(options: { header: MessageHeader; providers: ProviderRegistry; signal?: AbortSignal }): Promise<Uint8Array> {
  const { header, providers, signal } = options;
  const recipients: Recipient[] = [];
  for (const edk of header.encryptedDataKeys) {
    const recipient = providers.recipientOf(edk);
    if (recipient !== undefined) recipients.push(recipient);
  }
  const skipped = header.encryptedDataKeys.length - recipients.length;
  const count = header.encryptedDataKeys.length;
  try {
    const { dataKey } = await unwrapAny({
      recipients,
      providers,
      encryptionContext: header.encryptionContext,
      what: `the message (${count} encrypted data key${count === 1 ? '' : 's'} in the header)`,
      signal,
    });
    return dataKey;
  } catch (error) {
    if (!(error instanceof ProviderError) || error.code !== 'NoIdentity') throw error;
    const others = skipped > 0 ? `; ${skipped} encrypted data key${skipped === 1 ? '' : 's'} of other key providers skipped` : '';
    throw new FileFormatError('NoDecryptableKey', `no encrypted data key of the message could be decrypted: ${error.message}${others}`, { cause: error });
  }
}
