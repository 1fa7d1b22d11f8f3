import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';

import {
  ALIBABA_KMS_PROVIDER_ID,
  alibabaKmsProvider as alibabaKms,
  checkAlibabaRecipient,
  classifyAlibabaError,
  createAlibabaKmsProvider,
  encryptionContextJson,
  MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES,
  parseAlibabaTarget,
  parseKeyArn,
  resolveAlibabaKmsOptions,
  sanitizeAlibabaMessage,
} from './alibaba-kms/index.ts';
import { ProviderError } from './types.ts';

const KEY_ID = '0b3c8f7e-1a2b-4c3d-9e8f-0123456789ab';
const ARN = `acs:kms:cn-hangzhou:1234567890123456:key/${KEY_ID}`;

function thrown(fn: () => unknown): ProviderError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ProviderError) return error;
    throw error;
  }
  throw new Error('expected a ProviderError');
}

describe('alibaba-kms targets', () => {
  it('takes key ids, aliases and key or alias ARNs, with the region only from ARNs', () => {
    expect(parseAlibabaTarget(KEY_ID)).toEqual({ kind: 'key-id', region: undefined, keyRef: KEY_ID });
    expect(parseAlibabaTarget('key-hzz630494463ejqjx1234')).toEqual({ kind: 'key-id', region: undefined, keyRef: 'key-hzz630494463ejqjx1234' });
    expect(parseAlibabaTarget('alias/team/app')).toEqual({ kind: 'alias', region: undefined, keyRef: 'alias/team/app' });
    expect(parseAlibabaTarget(ARN)).toEqual({ kind: 'key-arn', region: 'cn-hangzhou', keyRef: KEY_ID });
    expect(parseAlibabaTarget('acs:kms:ap-southeast-1:1234567890123456:alias/app')).toEqual({
      kind: 'alias-arn',
      region: 'ap-southeast-1',
      keyRef: 'alias/app',
    });
  });

  it('refuses malformed targets with a message naming the problem', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      [' alias/app', /white space/],
      ['app', /alias\/app\?/],
      ['alias/', /not a valid alias/],
      ['alias/bad name', /not a valid alias/],
      ['acs:ecs:cn-hangzhou:1234567890123456:key/x', /not a KMS ARN/],
      [`acs:kms:Hangzhou:1234567890123456:key/${KEY_ID}`, /region/],
      [`acs:kms:cn-hangzhou:acct:key/${KEY_ID}`, /account/],
      ['acs:kms:cn-hangzhou:1234567890123456:key/not-a-key', /invalid key id/],
      ['acs:kms:cn-hangzhou:1234567890123456:secret/x', /neither a key/],
      [`arn:aws:kms:eu-west-1:111122223333:key/${KEY_ID}`, /is not/],
    ];
    for (const [target, message] of cases) {
      const error = thrown(() => alibabaKms.parseTarget(target));
      expect(error.code, target).toBe('InvalidRecipient');
      expect(error.message, target).toMatch(message);
    }
  });

  it('reads region, account and key id from a key ARN only', () => {
    expect(parseKeyArn(ARN)).toEqual({ region: 'cn-hangzhou', account: '1234567890123456', keyId: KEY_ID });
    expect(parseKeyArn('acs:kms:cn-hangzhou:1234567890123456:alias/app')).toBeUndefined();
    expect(parseKeyArn(KEY_ID)).toBeUndefined();
    expect(parseKeyArn(undefined)).toBeUndefined();
  });
});

describe('alibaba-kms manifest recipients', () => {
  it('needs keyId as a key ARN and a CiphertextBlob of 1-6144 bytes', () => {
    expect(checkAlibabaRecipient({ provider: 'alibaba-kms', keyId: ARN }, randomBytes(120))).toEqual([]);
    expect(checkAlibabaRecipient({ provider: 'alibaba-kms', keyId: 'alias/app' }, randomBytes(120)).map((p) => p.field)).toEqual(['keyId']);
    expect(checkAlibabaRecipient({ provider: 'alibaba-kms' }, randomBytes(120))[0]?.message).toMatch(/key ARN/);
    expect(checkAlibabaRecipient({ provider: 'alibaba-kms', keyId: ARN }, new Uint8Array(0))).toMatchObject([{ field: 'encryptedKey', check: 'structure' }]);
    expect(checkAlibabaRecipient({ provider: 'alibaba-kms', keyId: ARN }, new Uint8Array(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES + 1))).toMatchObject([
      { field: 'encryptedKey', check: 'size' },
    ]);
    expect(alibabaKms.maxEncryptedKeyBytes).toBe(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES);
  });

  it('describes a recipient by its key ARN, which is also its target', () => {
    const recipient = { provider: 'alibaba-kms', keyId: ARN, encryptedKey: 'AAAA' };
    expect(alibabaKms.describe(recipient)).toBe(`alibaba-kms ${ARN}`);
    expect(alibabaKms.targetOf(recipient)).toBe(ARN);
  });
});

describe('alibaba-kms file-format EDK', () => {
  it('round-trips under provider id envseal-alibaba-kms with the key ARN as provider info', () => {
    const blob = randomBytes(140);
    const recipient = { provider: 'alibaba-kms', keyId: ARN, encryptedKey: blob.toString('base64') };
    const edk = alibabaKms.edk.encode(recipient);
    expect(alibabaKms.edk.providerId).toBe(ALIBABA_KMS_PROVIDER_ID);
    expect(ALIBABA_KMS_PROVIDER_ID).toBe('envseal-alibaba-kms');
    expect(Buffer.from(edk.providerInfo).toString('utf8')).toBe(ARN);
    expect(Buffer.from(edk.ciphertext).equals(blob)).toBe(true);
    expect(alibabaKms.edk.decode(edk)).toEqual(recipient);
  });

  it('does not decode an EDK that is not one it wrote', () => {
    const ciphertext = randomBytes(100);
    expect(alibabaKms.edk.decode({ providerInfo: Buffer.from('alias/app'), ciphertext })).toBeUndefined();
    expect(alibabaKms.edk.decode({ providerInfo: Buffer.from(ARN), ciphertext: new Uint8Array(0) })).toBeUndefined();
    expect(alibabaKms.edk.decode({ providerInfo: Buffer.from(ARN), ciphertext: new Uint8Array(MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES + 1) })).toBeUndefined();
    expect(() => alibabaKms.edk.encode({ provider: 'alibaba-kms', encryptedKey: 'AAAA' })).toThrow(/key ARN/);
  });
});

describe('alibaba-kms EncryptionContext', () => {
  it('is one JSON string, the same whatever the order of the keys', () => {
    const a = encryptionContextJson({ scope: 'strict', namespace: 'prod', name: 'db' });
    const b = encryptionContextJson({ name: 'db', scope: 'strict', namespace: 'prod' });
    expect(a).toBe(b);
    expect(JSON.parse(a)).toEqual({ scope: 'strict', namespace: 'prod', name: 'db' });
  });
});

describe('alibaba-kms error classification', () => {
  const cases: [string, number | undefined, string, string, boolean][] = [
    ['SignatureDoesNotMatch', 400, 'Decrypt', 'AccessDenied', false],
    ['InvalidAccessKeyId.NotFound', 404, 'Decrypt', 'AccessDenied', false],
    ['Forbidden.RAM', 403, 'GenerateDataKey', 'AccessDenied', false],
    ['Forbidden.KeyNotFound', 404, 'Decrypt', 'KeyNotFound', false],
    ['Rejected.Disabled', 409, 'Decrypt', 'KeyUnavailable', false],
    ['Rejected.PendingDeletion', 409, 'Encrypt', 'KeyUnavailable', false],
    ['Throttling.User', 400, 'Decrypt', 'Throttled', false],
    ['Throttling', 503, 'Decrypt', 'Throttled', false],
    ['ServiceUnavailableTemporary', 503, 'Decrypt', 'Unavailable', false],
    ['InternalFailure', 500, 'GenerateDataKey', 'Unavailable', false],
    ['InvalidParameter', 400, 'Decrypt', 'InvalidCiphertext', true],
    ['InvalidParameter', 400, 'GenerateDataKey', 'Internal', false],
    ['InvalidTimeStamp.Expired', 400, 'Decrypt', 'Internal', false],
  ];
  it.each(cases)('%s (HTTP %s) on %s is %s', (serviceCode, status, operation, code, contextBound) => {
    const classified = classifyAlibabaError(serviceCode, status, operation);
    expect(classified.code).toBe(code);
    expect(classified.contextBound).toBe(contextBound);
  });

  it('names the key state and the signature problem in the explanation', () => {
    expect(classifyAlibabaError('Rejected.Disabled', 409, 'Decrypt').explanation).toMatch(/disabled/);
    expect(classifyAlibabaError('Rejected.PendingDeletion', 409, 'Decrypt').explanation).toMatch(/pending deletion/);
    expect(classifyAlibabaError('SignatureDoesNotMatch', 400, 'Decrypt').explanation).toMatch(/AccessKey secret/);
    expect(classifyAlibabaError('InvalidTimeStamp.Expired', 400, 'Decrypt').explanation).toMatch(/clock/);
  });
});

describe('alibaba-kms message sanitizing', () => {
  it('redacts base64 and hex runs (a data key, a blob, a canary) and keeps key ARNs, ids and aliases', () => {
    const dataKey = randomBytes(32);
    const canary = Buffer.from('CANARY-alibaba-secret-value-0123456789').toString('base64');
    const text = `key ${ARN} alias/app id ${KEY_ID} plaintext ${dataKey.toString('base64')} hex ${dataKey.toString('hex')} blob ${canary}\u0000\u001b[31m`;
    const safe = sanitizeAlibabaMessage(text);
    expect(safe).toContain(ARN);
    expect(safe).toContain('alias/app');
    expect(safe).toContain(KEY_ID);
    expect(safe).not.toContain(dataKey.toString('base64'));
    expect(safe).not.toContain(dataKey.toString('hex'));
    expect(safe).not.toContain(canary);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the sanitized message must hold no control character
    expect(safe).not.toMatch(/[\u0000-\u001f]/);
    expect(sanitizeAlibabaMessage('x '.repeat(400)).length).toBeLessThanOrEqual(243);
  });
});

describe('alibaba-kms settings', () => {
  const values = {};
  it('takes region and endpoint from flags before the environment, and the AccessKey from the environment', () => {
    const options = resolveAlibabaKmsOptions({
      values: { 'alibaba-kms-region': 'cn-shanghai', 'alibaba-kms-endpoint': 'http://127.0.0.1:8080' },
      env: {
        ALIBABA_CLOUD_REGION_ID: 'cn-beijing',
        ALIBABA_CLOUD_KMS_ENDPOINT: 'https://kms.example',
        ALIBABA_CLOUD_ACCESS_KEY_ID: 'LTAIid',
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'secret',
      },
    });
    expect(options).toEqual({
      region: 'cn-shanghai',
      endpoint: 'http://127.0.0.1:8080',
      credentials: { kind: 'access-key', accessKeyId: 'LTAIid', accessKeySecret: 'secret' },
    });
    expect(resolveAlibabaKmsOptions({ values, env: { ALIBABA_CLOUD_REGION_ID: 'cn-beijing', ALIBABA_CLOUD_KMS_ENDPOINT: 'https://kms.example' } })).toEqual({
      region: 'cn-beijing',
      endpoint: 'https://kms.example',
    });
    expect(
      resolveAlibabaKmsOptions({
        values,
        env: { ALIBABA_CLOUD_ACCESS_KEY_ID: 'id', ALIBABA_CLOUD_ACCESS_KEY_SECRET: 's', ALIBABA_CLOUD_SECURITY_TOKEN: 'sts' },
      }).credentials,
    ).toEqual({ kind: 'access-key', accessKeyId: 'id', accessKeySecret: 's', securityToken: 'sts' });
  });

  it('uses RRSA (what ACK injects for a ServiceAccount with a RAM role) when no AccessKey is set', () => {
    const env = {
      ALIBABA_CLOUD_ROLE_ARN: 'acs:ram::1234567890123456:role/envseal',
      ALIBABA_CLOUD_OIDC_PROVIDER_ARN: 'acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1',
      ALIBABA_CLOUD_OIDC_TOKEN_FILE: '/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token',
    };
    expect(resolveAlibabaKmsOptions({ values, env }).credentials).toEqual({
      kind: 'rrsa',
      roleArn: env.ALIBABA_CLOUD_ROLE_ARN,
      oidcProviderArn: env.ALIBABA_CLOUD_OIDC_PROVIDER_ARN,
      oidcTokenFile: env.ALIBABA_CLOUD_OIDC_TOKEN_FILE,
    });
    expect(
      resolveAlibabaKmsOptions({ values, env: { ...env, ALIBABA_CLOUD_STS_REGION: 'cn-hangzhou', ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED: 'true' } }).credentials,
    ).toMatchObject({ kind: 'rrsa', stsRegion: 'cn-hangzhou', stsVpcEndpoint: true });
    expect(() => resolveAlibabaKmsOptions({ values, env: { ALIBABA_CLOUD_ROLE_ARN: env.ALIBABA_CLOUD_ROLE_ARN } })).toThrow(
      /ALIBABA_CLOUD_OIDC_PROVIDER_ARN and ALIBABA_CLOUD_OIDC_TOKEN_FILE together/,
    );
  });

  it('refuses half an AccessKey, a bad region and a bad endpoint, naming the problem and not the secret', () => {
    const half = thrown(() => resolveAlibabaKmsOptions({ values, env: { ALIBABA_CLOUD_ACCESS_KEY_SECRET: 'CANARY-secret' } }));
    expect(half.message).toMatch(/ALIBABA_CLOUD_ACCESS_KEY_ID/);
    expect(half.message).not.toContain('CANARY-secret');
    expect(() => resolveAlibabaKmsOptions({ values: { 'alibaba-kms-region': 'Hangzhou' }, env: {} })).toThrow(/not a region id/);
    expect(() => resolveAlibabaKmsOptions({ values: { 'alibaba-kms-endpoint': 'kms.cn-hangzhou.aliyuncs.com' }, env: {} })).toThrow(/not a URL/);
    expect(() => resolveAlibabaKmsOptions({ values: { 'alibaba-kms-endpoint': 'https://user:pw@kms.example/path' }, env: {} })).toThrow(
      /without path, query or user/,
    );
  });

  it('offers the same flags to the CLI and the controller', () => {
    expect(Object.keys(alibabaKms.settings!.cliOptions)).toEqual(['alibaba-kms-region', 'alibaba-kms-endpoint']);
    expect(alibabaKms.settings!.controllerOptions).toEqual(alibabaKms.settings!.cliOptions);
  });
});

describe('alibaba-kms provider without a service', () => {
  it('without credentials, refuses to unwrap and says what to set, without calling anything', async () => {
    const provider = await createAlibabaKmsProvider({ region: 'cn-hangzhou', endpoint: 'http://127.0.0.1:9' });
    const recipient = { provider: 'alibaba-kms', keyId: ARN, encryptedKey: randomBytes(100).toString('base64') };
    expect(provider.canUnwrap(recipient)).toBe(false);
    const error = await provider.unwrap({ recipient, encryptionContext: { scope: 'cluster' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).code).toBe('AccessDenied');
    expect((error as ProviderError).message).toMatch(/ALIBABA_CLOUD_ACCESS_KEY_ID.*ALIBABA_CLOUD_ROLE_ARN/);
  });

  it('refuses a bare key id when no region is configured, before any call', async () => {
    const provider = await createAlibabaKmsProvider({ credentials: { kind: 'access-key', accessKeyId: 'id', accessKeySecret: 'CANARY-s' } });
    const error = (await provider.generateDataKey({ target: KEY_ID, encryptionContext: {} }).catch((e: unknown) => e)) as ProviderError;
    expect(error.code).toBe('InvalidRecipient');
    expect(error.message).toMatch(/names no region/);
    expect(inspect(error, { depth: 5 })).not.toContain('CANARY-s');
  });

  it('refuses an encryptedKey that is not a base64 blob as InvalidCiphertext, and a recipient of another provider', async () => {
    const provider = await createAlibabaKmsProvider({
      credentials: { kind: 'access-key', accessKeyId: 'id', accessKeySecret: 's' },
      endpoint: 'http://127.0.0.1:9',
      maxAttempts: 1,
    });
    await expect(provider.unwrap({ recipient: { provider: 'alibaba-kms', keyId: ARN, encryptedKey: '***' }, encryptionContext: {} })).rejects.toMatchObject({
      code: 'InvalidCiphertext',
    });
    await expect(provider.unwrap({ recipient: { provider: 'aws-kms', keyId: ARN, encryptedKey: 'AAAA' }, encryptionContext: {} })).rejects.toMatchObject({
      code: 'InvalidRecipient',
    });
    await expect(
      provider.unwrap({ recipient: { provider: 'alibaba-kms', keyId: 'alias/app', encryptedKey: 'AAAA' }, encryptionContext: {} }),
    ).rejects.toMatchObject({ code: 'InvalidRecipient' });
  });

  it('an endpoint that does not answer is Unavailable, naming where it went', async () => {
    const provider = await createAlibabaKmsProvider({
      credentials: { kind: 'access-key', accessKeyId: 'id', accessKeySecret: 's' },
      endpoint: 'http://127.0.0.1:9',
      maxAttempts: 2,
    });
    const error = (await provider
      .unwrap({ recipient: { provider: 'alibaba-kms', keyId: ARN, encryptedKey: randomBytes(90).toString('base64') }, encryptionContext: {} })
      .catch((e: unknown) => e)) as ProviderError;
    expect(error.code).toBe('Unavailable');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/127\.0\.0\.1:9 could not be reached/);
  });
});

describe('alibaba-kms SDK loading', () => {
  it('loads the Alibaba SDK only when the provider is created, not when the registry is imported', () => {
    const registry = fileURLToPath(new URL('./registry.ts', import.meta.url));
    const script = `
      import { createRequire } from 'node:module';
      const { providerDefinition } = await import(${JSON.stringify(registry)});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((f) => f.includes('@alicloud')).length;
      const before = loaded();
      await providerDefinition('alibaba-kms').create({ region: 'cn-hangzhou' });
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { before: number; after: number };
    expect(out.before).toBe(0);
    expect(out.after).toBeGreaterThan(0);
  });
});

describe('alibaba-kms against a scripted endpoint (what the emulator cannot be made to answer)', () => {
  it('a gateway page instead of JSON (502 HTML) is Unavailable, retried, its text not shown', async () => {
    let requests = 0;
    const server = createServer((_req, res) => {
      requests++;
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html>CANARY-gateway-page</html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const provider = await createAlibabaKmsProvider({
        endpoint: `http://127.0.0.1:${port}`,
        credentials: { kind: 'access-key', accessKeyId: 'id', accessKeySecret: 's' },
        maxAttempts: 3,
      });
      const error = (await provider
        .unwrap({ recipient: { provider: 'alibaba-kms', keyId: ARN, encryptedKey: randomBytes(90).toString('base64') }, encryptionContext: {} })
        .catch((e: unknown) => e)) as ProviderError;
      expect([error.code, error.serviceCode, error.retryable]).toEqual(['Unavailable', 'NotJson', true]);
      expect(error.message).toMatch(/something other than the KMS's JSON/);
      expect(inspect(error, { depth: 10 })).not.toContain('CANARY-');
      expect(requests).toBe(3);
    } finally {
      server.close();
    }
  });
});
