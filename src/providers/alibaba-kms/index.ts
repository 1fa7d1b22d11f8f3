/**
 * The alibaba-kms key provider: envelope data keys wrapped by an Alibaba Cloud KMS key
 * (API 2016-01-20), through the official SDK `@alicloud/kms20160120` and credentials from
 * `@alicloud/credentials`, both loaded only when the provider is created.
 *
 * - Target: `alibaba-kms:KEY-ID`, `alibaba-kms:alias/NAME` (in the configured region),
 *   or a key or alias ARN `alibaba-kms:acs:kms:REGION:ACCOUNT:key/KEY-ID` /
 *   `...:alias/NAME` (its own region). The recipient's keyId is always the key's ARN
 *   (from DescribeKey), so it names the region whose endpoint the controller calls; the
 *   encryptedKey is the CiphertextBlob (base64, as the service returns it).
 * - Binding: every GenerateDataKey, Encrypt and Decrypt passes envseal's encryption
 *   context (scope, namespace, name) as the EncryptionContext JSON; the service refuses
 *   a Decrypt with another one, so a refused ciphertext most likely moved.
 * - Credentials, in this order: AccessKey from the options; ALIBABA_CLOUD_ACCESS_KEY_ID /
 *   _SECRET (and _SECURITY_TOKEN for STS) for the CLI; RRSA on ACK for the controller
 *   (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE,
 *   which ACK's pod-identity webhook injects; exchanged with STS AssumeRoleWithOIDC by
 *   @alicloud/credentials). Nothing else: no ECS metadata probe, no config file.
 * - Calls: one SDK client per region; each attempt has a time limit and the caller's
 *   AbortSignal (the SDK takes none: the call is abandoned, its socket closes at the SDK's
 *   read timeout); throttling, 5xx and network failures are retried with backoff,
 *   `maxAttempts` attempts in all.
 * - Errors: a ProviderError naming the operation, the key and the service's error code
 *   and request id; the service's message only sanitized (printable ASCII, long base64
 *   or hex runs redacted). The SDK's error is never the cause (it holds the response).
 */

import { type CreatedProviderKey, type KeyProvider, type ProviderDefinition, ProviderError, type Recipient } from '../types.ts';

import { createAlibabaKmsProvider } from './client.ts';
import { describeAlibabaRecipient } from './targets.ts';
import { ALIBABA_KMS_OPTIONS, resolveAlibabaKmsOptions } from './settings.ts';
import { checkAlibabaRecipient, parseAlibabaTarget, parseKeyArn } from './targets.ts';
import { ALIBABA_KMS, ALIBABA_KMS_PROVIDER_ID, type AlibabaKmsProviderOptions, MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES } from './types.ts';

// ---------------------------------------------------------------------------------
// The definition the registry lists

export const alibabaKmsProvider: ProviderDefinition = {
  name: ALIBABA_KMS,
  targetHint: 'alias/NAME-or-KEY-ID-or-ARN',
  parseTarget(target: string): void {
    parseAlibabaTarget(target);
  },
  checkRecipient: checkAlibabaRecipient,
  maxEncryptedKeyBytes: MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES,
  bindsEncryptionContext: true,
  crdRules: [
    {
      rule: "self.provider != 'alibaba-kms' || (has(self.keyId) && self.keyId.startsWith('acs:kms:') && self.keyId.contains(':key/'))",
      message: 'an alibaba-kms recipient needs keyId, the key ARN acs:kms:REGION:ACCOUNT:key/KEY-ID',
    },
    {
      rule: `self.provider != 'alibaba-kms' || size(self.encryptedKey) <= ${4 * Math.ceil(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES / 3)}`,
      message: `an alibaba-kms encryptedKey is a KMS CiphertextBlob: at most ${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes (${4 * Math.ceil(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES / 3)} base64 characters)`,
    },
  ],
  describe: describeAlibabaRecipient,
  targetOf: (recipient) => recipient.keyId ?? '',
  edk: {
    providerId: ALIBABA_KMS_PROVIDER_ID,
    encode(recipient: Recipient) {
      if (parseKeyArn(recipient.keyId) === undefined) {
        throw new ProviderError('InvalidRecipient', 'an alibaba-kms recipient without its key ARN', { provider: ALIBABA_KMS });
      }
      return { providerInfo: Buffer.from(recipient.keyId!, 'utf8'), ciphertext: Buffer.from(recipient.encryptedKey, 'base64') };
    },
    decode(edk) {
      const keyId = Buffer.from(edk.providerInfo).toString('utf8');
      if (parseKeyArn(keyId) === undefined || edk.ciphertext.byteLength === 0 || edk.ciphertext.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES)
        return undefined;
      return { provider: ALIBABA_KMS, keyId, encryptedKey: Buffer.from(edk.ciphertext).toString('base64') };
    },
  },
  settings: {
    cliOptions: ALIBABA_KMS_OPTIONS,
    controllerOptions: ALIBABA_KMS_OPTIONS,
    async resolve(source) {
      return resolveAlibabaKmsOptions(source);
    },
  },
  async create(options: unknown): Promise<KeyProvider> {
    return createAlibabaKmsProvider((options ?? {}) as AlibabaKmsProviderOptions);
  },
  async createKey(request): Promise<CreatedProviderKey> {
    const provider = await createAlibabaKmsProvider((request.options ?? {}) as AlibabaKmsProviderOptions);
    const created = await provider.createKey({
      name: request.name,
      description: request.description,
      signal: request.signal,
    });
    return { target: created.alias, keyId: created.keyArn, summary: `created Alibaba Cloud KMS key ${created.keyArn} with alias ${created.alias}` };
  },
};

export * from './types.ts';
export * from './targets.ts';
export * from './errors.ts';
export * from './settings.ts';
export * from './client.ts';
