/** The alibaba-kms provider's flags and environment. */

import { ProviderError, type ProviderSettingsSource } from '../types.ts';

import { REGION } from './targets.ts';
import { ALIBABA_KMS, type AlibabaKmsCredentials, type AlibabaKmsProviderOptions } from './types.ts';
import { quoteTarget } from '../types.ts';

// ---------------------------------------------------------------------------------
// Settings: flags and environment

export const ALIBABA_KMS_OPTIONS = {
  'alibaba-kms-region': {
    type: 'string',
    value: 'REGION',
    help: 'Alibaba Cloud region of bare alibaba-kms key ids and aliases (default: ALIBABA_CLOUD_REGION_ID)',
  },
  'alibaba-kms-endpoint': {
    type: 'string',
    value: 'URL',
    help: 'Alibaba Cloud KMS endpoint instead of kms.REGION.aliyuncs.com, e.g. a VPC endpoint (default: ALIBABA_CLOUD_KMS_ENDPOINT)',
  },
} as const;

export function stringValue(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Options from flags and environment: region and endpoint; credentials from
 * ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET (+ _SECURITY_TOKEN), else RRSA
 * (ALIBABA_CLOUD_ROLE_ARN, _OIDC_PROVIDER_ARN, _OIDC_TOKEN_FILE).
 */
export function resolveAlibabaKmsOptions(source: Pick<ProviderSettingsSource, 'values' | 'env'>): AlibabaKmsProviderOptions {
  const env = source.env;
  const region = stringValue(source.values['alibaba-kms-region']) ?? stringValue(env.ALIBABA_CLOUD_REGION_ID);
  const endpoint = stringValue(source.values['alibaba-kms-endpoint']) ?? stringValue(env.ALIBABA_CLOUD_KMS_ENDPOINT);
  if (region !== undefined && !REGION.test(region)) {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms region ${quoteTarget(region)} is not a region id such as cn-hangzhou`, {
      provider: ALIBABA_KMS,
    });
  }
  if (endpoint !== undefined) checkEndpoint(endpoint);
  let credentials: AlibabaKmsCredentials | undefined;
  const accessKeyId = stringValue(env.ALIBABA_CLOUD_ACCESS_KEY_ID);
  const accessKeySecret = stringValue(env.ALIBABA_CLOUD_ACCESS_KEY_SECRET);
  const roleArn = stringValue(env.ALIBABA_CLOUD_ROLE_ARN);
  const oidcProviderArn = stringValue(env.ALIBABA_CLOUD_OIDC_PROVIDER_ARN);
  const oidcTokenFile = stringValue(env.ALIBABA_CLOUD_OIDC_TOKEN_FILE);
  if (accessKeyId !== undefined || accessKeySecret !== undefined) {
    if (accessKeyId === undefined || accessKeySecret === undefined) {
      throw new ProviderError(
        'InvalidConfiguration',
        'alibaba-kms: set both ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET (one of them is missing)',
        { provider: ALIBABA_KMS },
      );
    }
    const securityToken = stringValue(env.ALIBABA_CLOUD_SECURITY_TOKEN);
    credentials = { kind: 'access-key', accessKeyId, accessKeySecret, securityToken };
  } else if (roleArn !== undefined || oidcProviderArn !== undefined || oidcTokenFile !== undefined) {
    if (roleArn === undefined || oidcProviderArn === undefined || oidcTokenFile === undefined) {
      throw new ProviderError(
        'InvalidConfiguration',
        'alibaba-kms RRSA needs ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE together (set by ACK for a ServiceAccount with RRSA)',
        { provider: ALIBABA_KMS },
      );
    }
    const roleSessionName = stringValue(env.ALIBABA_CLOUD_ROLE_SESSION_NAME);
    // What ack-pod-identity-webhook 0.4+ also injects: the STS endpoint to use.
    const stsEndpoint = stringValue(env.ALIBABA_CLOUD_STS_ENDPOINT);
    const stsRegion = stringValue(env.ALIBABA_CLOUD_STS_REGION);
    const stsVpcEndpoint = stringValue(env.ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED)?.toLowerCase() === 'true';
    credentials = {
      kind: 'rrsa',
      roleArn,
      oidcProviderArn,
      oidcTokenFile,
      roleSessionName,
      stsEndpoint,
      stsRegion,
      ...(stsVpcEndpoint ? { stsVpcEndpoint } : {}),
    };
  }
  return {
    region,
    endpoint,
    credentials,
  };
}

export function checkEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new ProviderError(
      'InvalidConfiguration',
      `alibaba-kms endpoint ${quoteTarget(endpoint)} is not a URL (e.g. https://kms-vpc.cn-hangzhou.aliyuncs.com)`,
      {
        provider: ALIBABA_KMS,
      },
    );
  }
  if (
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.username !== '' ||
    url.password !== '' ||
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search !== ''
  ) {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms endpoint ${quoteTarget(endpoint)} must be http(s)://HOST[:PORT] without path, query or user`, {
      provider: ALIBABA_KMS,
    });
  }
  return url;
}
