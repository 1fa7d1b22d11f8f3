// The per-provider set-up the e2e files share, one small function per provider and use:
// the provider options for an emulator or OpenBao the harness started, the environment the
// CLI reads to reach it, keys, and sealer tokens. Starting the servers stays in
// kms-emulators.ts, alibaba-kms.ts and openbao.ts.
import { randomUUID } from 'node:crypto';
import tls from 'node:tls';
import type { AlibabaKmsProviderOptions } from '../../src/providers/alibaba-kms/index.ts';
import { type AwsKmsProviderOptions, createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { type AlibabaKms, startAlibabaKms } from './alibaba-kms.ts';
import type { KmsEmulator } from './kms-emulators.ts';
import { kubectlOk } from './kube.ts';
import type { OpenBao } from './openbao.ts';

/** aws-kms provider options for an emulator (local-kms or moto); `overrides` win. */
export function awsKmsOptions(emulator: KmsEmulator, overrides: Partial<AwsKmsProviderOptions> = {}): AwsKmsProviderOptions {
  return { endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials, ...overrides };
}

/** The environment the CLI reads for aws-kms: the emulator's credentials, and with `endpoint` (default) its endpoint and region. */
export function awsKmsEnv(emulator: KmsEmulator, options: { endpoint?: boolean } = {}): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
    ...(options.endpoint === false ? {} : { AWS_ENDPOINT_URL_KMS: emulator.endpoint, AWS_REGION: emulator.region }),
  };
}

/** Creates a key on the emulator with an alias `${aliasPrefix}-RANDOM`; its ARN. */
export async function createAwsKmsKey(emulator: KmsEmulator, options: { aliasPrefix: string }): Promise<string> {
  const admin = createAwsKmsProvider(awsKmsOptions(emulator));
  try {
    return (await admin.createKey({ alias: `${options.aliasPrefix}-${randomUUID().slice(0, 8)}` })).keyArn;
  } finally {
    admin.close();
  }
}

/** alibaba-kms provider options with the emulator's AccessKey pair; `overrides` win. */
export function alibabaKmsOptions(kms: AlibabaKms, overrides: Partial<AlibabaKmsProviderOptions> = {}): AlibabaKmsProviderOptions {
  return {
    region: kms.region,
    endpoint: kms.endpoint,
    credentials: { kind: 'access-key', accessKeyId: kms.accessKeyId, accessKeySecret: kms.accessKeySecret },
    ...overrides,
  };
}

/**
 * The Alibaba Cloud KMS emulator with STS, as on ACK with RRSA: AssumeRoleWithOIDC takes
 * ServiceAccount tokens of the shared API server (its issuer and JWKS) and lets
 * namespace/serviceAccount assume `roleArn`. The STS's certificate is self-signed: this
 * process trusts it until stop().
 */
export async function startAlibabaKmsForRrsa(options: { roleArn: string; namespace: string; serviceAccount: string }): Promise<AlibabaKms> {
  const issuer = (JSON.parse(await kubectlOk(['get', '--raw', '/.well-known/openid-configuration'])) as { issuer: string }).issuer;
  const jwks = JSON.parse(await kubectlOk(['get', '--raw', '/openid/v1/jwks'])) as { keys: [] };
  const kms = await startAlibabaKms({
    sts: { issuer, jwks, roles: { [options.roleArn]: [`system:serviceaccount:${options.namespace}:${options.serviceAccount}`] } },
  });
  const originalCAs = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...originalCAs, kms.sts!.caCert]);
  return {
    ...kms,
    async stop() {
      tls.setDefaultCACertificates(originalCAs);
      await kms.stop();
    },
  };
}

/** The environment the CLI reads for alibaba-kms: the AccessKey pair, and with `endpoint` (default) the endpoint and region. */
export function alibabaKmsEnv(kms: AlibabaKms, options: { endpoint?: boolean } = {}): Record<string, string> {
  return {
    ALIBABA_CLOUD_ACCESS_KEY_ID: kms.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: kms.accessKeySecret,
    ...(options.endpoint === false ? {} : { ALIBABA_CLOUD_KMS_ENDPOINT: kms.endpoint, ALIBABA_CLOUD_REGION_ID: kms.region }),
  };
}

/**
 * A token for sealing with one transit key, as docs/helm.md gives sealers: read the key's
 * settings and make data keys, with `encrypt` also wrap given ones; never decrypt.
 */
export function vaultTransitSealerToken(bao: OpenBao, options: { key: string; encrypt?: boolean; name?: string }): Promise<string> {
  const { key } = options;
  const policy = [
    `path "transit/keys/${key}" { capabilities = ["read"] }`,
    ...(options.encrypt ? [`path "transit/encrypt/${key}" { capabilities = ["update"] }`] : []),
    `path "transit/datakey/plaintext/${key}" { capabilities = ["update"] }`,
  ].join('\n');
  return bao.tokenWithPolicy(options.name ?? `sealer-${key}`, policy);
}

/** The ProviderError a provider call fails with; fails the test if it succeeds or throws anything else. */
export async function providerFailure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof ProviderError)) throw error;
    return error;
  }
  throw new Error('expected the call to fail with a ProviderError');
}
