/**
 * The aws-kms key provider: envelope data keys wrapped by an AWS KMS customer master
 * key (CMK), through @aws-sdk/client-kms.
 *
 * - Credentials: the SDK's default chain (IRSA web identity, EKS Pod Identity, env,
 *   shared profile, IMDS) unless `options.credentials` is given (tests).
 * - Region: taken from the key or alias ARN; a bare `alias/NAME` or key id uses
 *   `options.region`, else the SDK's default region chain (AWS_REGION, profile).
 *   One KMSClient per region, created on first use.
 * - Every call passes the encryption context and `abortSignal`; Decrypt always passes
 *   KeyId. Retries: the SDK's adaptive retry mode (exponential backoff with jitter,
 *   client-side rate limiting after throttling), `maxAttempts` attempts in all.
 * - Errors: every failure is a ProviderError whose message names the operation, the
 *   key and the KMS error code, and whose `serviceCode` is the KMS error name. The
 *   `cause` is a sanitized copy of the SDK's error (KmsCallError), never the SDK error
 *   itself: that one can hold the raw HTTP response. No message ever holds plaintext,
 *   a data key or ciphertext bytes: the KMS's own message is quoted only for error
 *   codes whose messages name keys and aliases, and even then with long base64 or hex
 *   runs redacted. An aborted call rejects with `signal.reason`, as fetch does.
 *
 * Creating a CMK (step 1 of the envelope flow) is the method `createKey` of the object
 * that createAwsKmsProvider returns (type AwsKmsProvider), and also the standalone
 * function createAwsKmsKey.
 */
import { checkedUrl, envSetting, keyIdEdkCodec, type ProviderDefinition, type ProviderSettingsSource, type RecipientProblem, stringSetting } from '../types.ts';
import { AWS_KMS, type AwsKmsProviderOptions } from './types.ts';
import { parseKmsTarget } from './targets.ts';
import { createAwsKmsKey, createAwsKmsProvider } from './client.ts';

export { AWS_KMS, type AwsKmsProvider, type AwsKmsProviderOptions, type CreatedKey, type CreateKeyRequest } from './types.ts';
export { parseKmsTarget, type ParsedKmsTarget } from './targets.ts';
export { KmsCallError, sanitizeServiceMessage } from './errors.ts';
export { createAwsKmsKey, createAwsKmsProvider, MAX_REGION_CLIENTS } from './client.ts';

// ---------------------------------------------------------------------------------
// The provider as a whole

const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);
/** An AWS KMS CiphertextBlob is at most 6144 bytes (the Decrypt API's bound). */
export const MAX_AWS_KMS_ENCRYPTED_KEY_BYTES = 6144;

async function resolveSettings(source: ProviderSettingsSource): Promise<AwsKmsProviderOptions> {
  const region = stringSetting(source, 'region') ?? envSetting(source, 'AWS_REGION', 'AWS_DEFAULT_REGION');
  const endpoint = checkedUrl(stringSetting(source, 'kms-endpoint') ?? envSetting(source, 'AWS_ENDPOINT_URL_KMS'), 'KMS endpoint', AWS_KMS);
  const options: AwsKmsProviderOptions = {};
  if (region !== undefined) options.region = region;
  if (endpoint !== undefined) options.endpoint = endpoint;
  if (source.role === 'cli') {
    // Static credentials from the injected environment, as the SDK's chain would take
    // them from process.env first; otherwise the default chain (IRSA, Pod Identity, ...).
    const accessKeyId = source.env.AWS_ACCESS_KEY_ID;
    const secretAccessKey = source.env.AWS_SECRET_ACCESS_KEY;
    if (accessKeyId && secretAccessKey) {
      options.credentials = { accessKeyId, secretAccessKey, ...(source.env.AWS_SESSION_TOKEN ? { sessionToken: source.env.AWS_SESSION_TOKEN } : {}) };
    }
  }
  return options;
}

/** The aws-kms provider: see the top of this file. */
export const awsKmsProvider: ProviderDefinition = {
  name: AWS_KMS,
  targetHint: 'ARN-or-alias',
  parseTarget: (target) => void parseKmsTarget(target),
  checkRecipient(recipient, encryptedKey) {
    const problems: RecipientProblem[] = [];
    if (typeof recipient.keyId !== 'string' || !recipient.keyId.startsWith('arn:'))
      problems.push({ field: 'keyId', check: 'structure', message: 'must be the full key ARN' });
    if (encryptedKey !== undefined && encryptedKey.length > MAX_AWS_KMS_ENCRYPTED_KEY_BYTES) {
      problems.push({
        field: 'encryptedKey',
        check: 'size',
        message: `is ${encryptedKey.length} bytes; an aws-kms encryptedKey is at most ${MAX_AWS_KMS_ENCRYPTED_KEY_BYTES}`,
      });
    }
    return problems;
  },
  maxEncryptedKeyBytes: MAX_AWS_KMS_ENCRYPTED_KEY_BYTES,
  bindsEncryptionContext: true,
  crdRules: [
    { rule: "self.provider != 'aws-kms' || (has(self.keyId) && self.keyId.startsWith('arn:'))", message: 'an aws-kms recipient needs keyId, the full key ARN' },
    {
      rule: `self.provider != 'aws-kms' || size(self.encryptedKey) <= ${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)}`,
      message: `an aws-kms encryptedKey is a KMS ciphertext blob: at most ${MAX_AWS_KMS_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)} base64 characters)`,
    },
  ],
  describe: (recipient) => `aws-kms ${recipient.keyId ?? '(no keyId)'}`,
  targetOf: (recipient) => recipient.keyId ?? '',
  // Exactly what the AWS Encryption SDK's KMS keyring writes: either side decrypts the
  // other's files.
  edk: keyIdEdkCodec(AWS_KMS, 'aws-kms'),
  settings: {
    cliOptions: {
      region: {
        type: 'string',
        value: 'REGION',
        help: 'AWS region for aws-kms aliases and key creation (default: AWS_REGION, AWS_DEFAULT_REGION; a key ARN names its own region)',
      },
      'kms-endpoint': { type: 'string', value: 'URL', help: 'AWS KMS endpoint, e.g. an emulator (default: AWS_ENDPOINT_URL_KMS)' },
    },
    controllerOptions: {
      region: { type: 'string', value: 'REGION', help: 'AWS region for aws-kms keys named without an ARN (env AWS_REGION)' },
      'kms-endpoint': { type: 'string', value: 'URL', help: 'AWS KMS endpoint override, e.g. an emulator (env AWS_ENDPOINT_URL_KMS)' },
    },
    resolve: resolveSettings,
  },
  create: async (options) => createAwsKmsProvider((options ?? {}) as AwsKmsProviderOptions),
  async createKey(request) {
    const created = await createAwsKmsKey((request.options ?? {}) as AwsKmsProviderOptions, {
      alias: request.name.startsWith('alias/') || request.name.startsWith('arn:') ? request.name : `alias/${request.name}`,
      description: request.description,
      signal: request.signal,
    });
    return { target: created.alias, keyId: created.keyArn, summary: `created ${created.alias} (${created.aliasArn})` };
  },
};
