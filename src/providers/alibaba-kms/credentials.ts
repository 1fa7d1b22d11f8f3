/** Alibaba Cloud credentials: the SDK's credential client, and what a failed RRSA exchange means. */
import { type ProviderErrorCode, quoteTarget } from '../types.ts';
import { type ErrorLike, networkCode } from './errors.ts';
import type { AlibabaCredential, Sdk } from './sdk.ts';
import type { AlibabaKmsProviderOptions } from './types.ts';

type Credentials = NonNullable<AlibabaKmsProviderOptions['credentials']>;
export type RrsaCredentials = Extract<Credentials, { kind: 'rrsa' }>;

/** A failure of the credential exchange itself, told apart from the KMS call by where it happened. */
export class CredentialExchangeError extends Error {
  constructor(cause: unknown) {
    super('the RRSA credential exchange failed', { cause });
  }
}

/** The SDK's credential client for an AccessKey (optionally with an STS token) or RRSA. */
export function makeCredential(sdk: Sdk, creds: Credentials): AlibabaCredential {
  return creds.kind === 'access-key'
    ? new sdk.Credential(
        new sdk.CredentialConfig({
          type: creds.securityToken === undefined ? 'access_key' : 'sts',
          accessKeyId: creds.accessKeyId,
          accessKeySecret: creds.accessKeySecret,
          ...(creds.securityToken === undefined ? {} : { securityToken: creds.securityToken }),
        }),
      )
    : new sdk.Credential(
        new sdk.CredentialConfig({
          type: 'oidc_role_arn',
          roleArn: creds.roleArn,
          oidcProviderArn: creds.oidcProviderArn,
          oidcTokenFilePath: creds.oidcTokenFile,
          roleSessionName: creds.roleSessionName ?? 'envseal',
          ...(creds.stsEndpoint === undefined ? {} : { stsEndpoint: creds.stsEndpoint }),
          ...(creds.stsRegion === undefined ? {} : { stsRegionId: creds.stsRegion }),
          ...(creds.stsVpcEndpoint ? { enableVpc: true } : {}),
        }),
      );
}

/**
 * What a failure of the RRSA exchange (reading the OIDC token file, STS
 * AssumeRoleWithOIDC) means. It is known by where it happened (credentialsReady), not by
 * the library's message, which only quotes STS's answer.
 */
export function stsFailure(error: unknown, creds: RrsaCredentials): { code: ProviderErrorCode; serviceCode: string; explanation: string } {
  const e = (typeof error === 'object' && error !== null ? error : {}) as ErrorLike & { path?: unknown };
  if (typeof e.code === 'string' && e.path === creds.oidcTokenFile) {
    return {
      code: 'AccessDenied',
      serviceCode: e.code,
      explanation: `RRSA: cannot read the OIDC token file ${quoteTarget(creds.oidcTokenFile)} (ALIBABA_CLOUD_OIDC_TOKEN_FILE)`,
    };
  }
  const net = networkCode(error);
  if (net !== undefined) return { code: 'Unavailable', serviceCode: net, explanation: 'RRSA: the STS endpoint could not be reached' };
  // Shown, never decided on: STS's error code, when the library quoted its JSON answer.
  const message = typeof e.message === 'string' ? e.message : '';
  const serviceCode = /"Code"\s*:\s*"([A-Za-z0-9.]{1,80})"/.exec(message)?.[1] ?? 'AssumeRoleWithOIDC';
  return {
    code: 'AccessDenied',
    serviceCode,
    explanation: `RRSA: STS refused AssumeRoleWithOIDC for role ${creds.roleArn}: check that the role trusts the OIDC provider ${creds.oidcProviderArn} and this ServiceAccount`,
  };
}
