/** The provider over the official SDK: one client per region, retries, time limits, the context on every call. */
import { setTimeout as sleep } from 'node:timers/promises';

import { DATA_KEY_LENGTH as DATA_KEY_BYTES } from '../../envelope/kdf.ts';
import {
  type GenerateDataKeyRequest,
  type GeneratedDataKey,
  ProviderError,
  type ProviderErrorCode,
  type Recipient,
  type UnwrapRequest,
  type WrapRequest,
} from '../types.ts';
import { AlibabaKmsCallError, type ErrorLike, classifyAlibabaError, networkCode, sanitizeAlibabaMessage, serviceAnswer } from './errors.ts';
import { checkEndpoint } from './settings.ts';
import { ALIAS_NAME, describeAlibabaRecipient, encryptionContextJson, invalidTarget, parseAlibabaTarget, parseKeyArn } from './targets.ts';
import {
  ALIBABA_KMS,
  type AlibabaKmsProvider,
  type AlibabaKmsProviderOptions,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES,
  PENDING_WINDOW_DAYS,
} from './types.ts';
import { CredentialExchangeError, type RrsaCredentials, makeCredential, stsFailure } from './credentials.ts';
import { type AlibabaCredential, type Call, type KmsClient, loadSdk, zero } from './sdk.ts';
import { quoteTarget } from '../types.ts';

export async function createAlibabaKmsProvider(options: AlibabaKmsProviderOptions = {}): Promise<AlibabaKmsProvider> {
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ProviderError('InvalidConfiguration', `alibaba-kms maxAttempts must be a whole number >= 1 (got ${String(options.maxAttempts)})`, {
      provider: ALIBABA_KMS,
    });
  }
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const endpoint = options.endpoint === undefined ? undefined : checkEndpoint(options.endpoint);
  const sdk = await loadSdk();
  const clients = new Map<string, KmsClient>();
  let credential: AlibabaCredential | undefined;
  /** Target (as given, with its region) → key ARN, from DescribeKey. */
  const arns = new Map<string, string>();

  function where(region: string): string {
    return endpoint === undefined ? `kms.${region}.aliyuncs.com` : endpoint.host;
  }

  function clientFor(call: Call): KmsClient {
    let client = clients.get(call.region);
    if (client !== undefined) return client;
    const creds = options.credentials;
    if (creds === undefined) {
      throw new ProviderError(
        'AccessDenied',
        `alibaba-kms ${call.operation} with ${call.key} failed: no Alibaba Cloud credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, or RRSA (ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE)`,
        { provider: ALIBABA_KMS, serviceCode: 'NoCredentials' },
      );
    }
    credential ??= makeCredential(sdk, creds);
    client = new sdk.Client({
      credential,
      regionId: call.region,
      readTimeout: requestTimeoutMs,
      connectTimeout: Math.min(DEFAULT_CONNECT_TIMEOUT_MS, requestTimeoutMs),
      ...(endpoint === undefined ? {} : { endpoint: endpoint.host, protocol: endpoint.protocol.slice(0, -1) }),
    });
    clients.set(call.region, client);
    return client;
  }

  function regionOf(parsed: { region: string | undefined }, target: string): string {
    const region = parsed.region ?? options.region;
    if (region === undefined) {
      throw invalidTarget(target, 'names no region: use a key ARN (acs:kms:REGION:...), or set the region (--alibaba-kms-region or ALIBABA_CLOUD_REGION_ID)');
    }
    return region;
  }

  function failure(call: Call, error: unknown): unknown {
    if (call.signal?.aborted) return call.signal.reason;
    if (error instanceof ProviderError) return error;
    const answer = serviceAnswer(error);
    let code: ProviderErrorCode;
    let explanation: string;
    let contextBound = false;
    let serviceCode: string;
    let said = '';
    if (error instanceof CredentialExchangeError) {
      ({ code, serviceCode, explanation } = stsFailure(error.cause, options.credentials as RrsaCredentials));
    } else if (answer !== undefined) {
      ({ code, explanation, contextBound } = classifyAlibabaError(answer.serviceCode, answer.status, call.operation));
      serviceCode = answer.serviceCode;
      said = answer.message === '' ? '' : sanitizeAlibabaMessage(answer.message);
    } else if ((error as ErrorLike).name === 'SyntaxError') {
      // The SDK reads every answer as JSON: this one was not the KMS's (a proxy's or
      // gateway's error page). Its text is not shown.
      serviceCode = 'NotJson';
      code = 'Unavailable';
      explanation = `the endpoint ${where(call.region)} answered with something other than the KMS's JSON (a proxy or gateway error?)`;
    } else {
      const net = networkCode(error);
      serviceCode = net ?? 'Error';
      code = net === undefined ? 'Internal' : 'Unavailable';
      explanation =
        net === undefined
          ? 'unexpected error'
          : net === 'Timeout' || net === 'ETIMEDOUT'
            ? `the KMS at ${where(call.region)} did not answer in time`
            : `the KMS at ${where(call.region)} could not be reached`;
    }
    const details = [
      serviceCode,
      answer?.status === undefined ? undefined : `HTTP ${answer.status}`,
      answer?.requestId === undefined ? undefined : `request id ${answer.requestId}`,
    ]
      .filter((p) => p !== undefined)
      .join(', ');
    const message = `alibaba-kms ${call.operation} with ${call.key} failed: ${explanation} (${details})${said === '' ? '' : `; KMS said: ${said}`}`;
    const cause = new AlibabaKmsCallError(said === '' ? serviceCode : said, {
      serviceCode,
      ...(answer?.status === undefined ? {} : { httpStatusCode: answer.status }),
      ...(answer?.requestId === undefined ? {} : { requestId: answer.requestId }),
    });
    return new ProviderError(code, message, { provider: ALIBABA_KMS, serviceCode, cause, ...(contextBound ? { contextBound: true } : {}) });
  }

  /** RRSA credentials fetched before the call (cached by the library until they near expiry). */
  async function credentialsReady(): Promise<void> {
    if (options.credentials?.kind !== 'rrsa' || credential === undefined) return;
    try {
      await credential.getCredential();
    } catch (error) {
      throw new CredentialExchangeError(error);
    }
  }

  /** One SDK call with retries, a time limit per attempt and the caller's signal. */
  async function invoke<T>(call: Call, run: (client: KmsClient, runtime: unknown) => Promise<T>): Promise<T> {
    const client = clientFor(call);
    for (let attempt = 1; ; attempt++) {
      call.signal?.throwIfAborted();
      const limit = AbortSignal.timeout(requestTimeoutMs);
      const signal = call.signal ? AbortSignal.any([call.signal, limit]) : limit;
      const runtime = { autoretry: false, readTimeout: requestTimeoutMs, connectTimeout: Math.min(DEFAULT_CONNECT_TIMEOUT_MS, requestTimeoutMs) };
      let error: unknown;
      try {
        return await new Promise<T>((resolve, reject) => {
          const onAbort = () =>
            reject(call.signal?.aborted ? call.signal.reason : Object.assign(new Error('the attempt took too long'), { name: 'TimeoutError' }));
          signal.addEventListener('abort', onAbort, { once: true });
          credentialsReady()
            .then(() => run(client, runtime))
            .then(resolve, reject)
            .finally(() => signal.removeEventListener('abort', onAbort));
        });
      } catch (caught) {
        error = failure(call, caught);
      }
      if (error instanceof ProviderError && error.retryable && attempt < maxAttempts) {
        try {
          // Full jitter on 100 ms, 200 ms, 400 ms...
          await sleep(Math.random() * 100 * 2 ** (attempt - 1), undefined, call.signal ? { signal: call.signal } : {});
        } catch {
          throw call.signal?.reason;
        }
        continue;
      }
      throw error;
    }
  }

  function dataKeyOf(call: Call, plaintext: unknown): Uint8Array {
    // The service's Plaintext is the base64 text of the data key.
    const bytes = typeof plaintext === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(plaintext) ? Buffer.from(plaintext, 'base64') : undefined;
    if (bytes === undefined || bytes.byteLength !== DATA_KEY_BYTES) {
      zero(bytes);
      throw new ProviderError(
        'Internal',
        `alibaba-kms ${call.operation} with ${call.key}: the KMS answered with a data key that is not ${DATA_KEY_BYTES} bytes`,
        { provider: ALIBABA_KMS },
      );
    }
    const copy = new Uint8Array(DATA_KEY_BYTES);
    copy.set(bytes);
    zero(bytes);
    return copy;
  }

  function recipientOf(call: Call, keyArn: string, blob: unknown, keyId: unknown): Recipient {
    const arn = parseKeyArn(keyArn);
    if (typeof blob !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || Buffer.from(blob, 'base64').byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
      throw new ProviderError('Internal', `alibaba-kms ${call.operation} with ${call.key}: the KMS answered without a CiphertextBlob`, {
        provider: ALIBABA_KMS,
      });
    }
    if (arn === undefined || keyId !== arn.keyId) {
      throw new ProviderError('Internal', `alibaba-kms ${call.operation} with ${call.key}: the KMS answered for another key than ${keyArn}`, {
        provider: ALIBABA_KMS,
      });
    }
    return { provider: ALIBABA_KMS, keyId: keyArn, encryptedKey: Buffer.from(blob, 'base64').toString('base64') };
  }

  /** The key ARN a target names (DescribeKey, once per target and region). */
  async function keyArnOf(target: string, signal: AbortSignal | undefined): Promise<{ arn: string; region: string; keyRef: string }> {
    const parsed = parseAlibabaTarget(target);
    const region = regionOf(parsed, target);
    const cacheKey = `${region}\n${parsed.keyRef}`;
    const cached = arns.get(cacheKey);
    if (cached !== undefined) return { arn: cached, region, keyRef: parsed.keyRef };
    const call: Call = { operation: 'DescribeKey', key: target, region, signal };
    const out = await invoke(call, (client, runtime) => client.describeKeyEx(new sdk.models.DescribeKeyRequest({ keyId: parsed.keyRef }), runtime));
    const arn = out.keyMetadata?.arn;
    const found = parseKeyArn(arn);
    if (found === undefined || found.region !== region) {
      throw new ProviderError('Internal', `alibaba-kms DescribeKey with ${target}: the KMS answered without the key's ARN in ${region}`, {
        provider: ALIBABA_KMS,
      });
    }
    if (parsed.kind === 'key-arn' && arn !== target) {
      throw invalidTarget(target, `names a key whose ARN is ${arn} (another account?)`);
    }
    arns.set(cacheKey, arn!);
    return { arn: arn!, region, keyRef: parsed.keyRef };
  }

  function recipientKey(recipient: Recipient, operation: string): { region: string; keyId: string; arn: string } {
    if (recipient.provider !== ALIBABA_KMS) {
      throw new ProviderError(
        'InvalidRecipient',
        `alibaba-kms ${operation}: the recipient is for provider ${quoteTarget(String(recipient.provider))}, not alibaba-kms`,
        { provider: ALIBABA_KMS },
      );
    }
    const arn = parseKeyArn(recipient.keyId);
    if (arn === undefined) {
      throw new ProviderError('InvalidRecipient', `alibaba-kms ${operation}: the recipient has no keyId acs:kms:REGION:ACCOUNT:key/KEY-ID`, {
        provider: ALIBABA_KMS,
      });
    }
    return { region: arn.region, keyId: arn.keyId, arn: recipient.keyId! };
  }

  const provider: AlibabaKmsProvider = {
    name: ALIBABA_KMS,

    parseTarget(target: string): void {
      parseAlibabaTarget(target);
    },

    async generateDataKey(request: GenerateDataKeyRequest): Promise<GeneratedDataKey> {
      const { arn, region } = await keyArnOf(request.target, request.signal);
      const call: Call = { operation: 'GenerateDataKey', key: arn, region, signal: request.signal };
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) =>
        client.generateDataKeyEx(new sdk.models.GenerateDataKeyRequest({ keyId: arn, numberOfBytes: DATA_KEY_BYTES, encryptionContext: context }), runtime),
      );
      const dataKey = dataKeyOf(call, out.plaintext);
      try {
        return { dataKey, recipient: recipientOf(call, arn, out.ciphertextBlob, out.keyId) };
      } catch (error) {
        zero(dataKey);
        throw error;
      }
    },

    async wrap(request: WrapRequest): Promise<Recipient> {
      if (!(request.dataKey instanceof Uint8Array) || request.dataKey.byteLength !== DATA_KEY_BYTES) {
        throw new ProviderError('Internal', `alibaba-kms Encrypt with ${request.target}: the data key must be ${DATA_KEY_BYTES} bytes`, {
          provider: ALIBABA_KMS,
        });
      }
      const { arn, region } = await keyArnOf(request.target, request.signal);
      const call: Call = { operation: 'Encrypt', key: arn, region, signal: request.signal };
      // As GenerateDataKey's blobs hold it: the base64 text of the data key.
      const plaintext = Buffer.from(request.dataKey.buffer, request.dataKey.byteOffset, request.dataKey.byteLength).toString('base64');
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) =>
        client.encryptEx(new sdk.models.EncryptRequest({ keyId: arn, plaintext, encryptionContext: context }), runtime),
      );
      return recipientOf(call, arn, out.ciphertextBlob, out.keyId);
    },

    async unwrap(request: UnwrapRequest): Promise<Uint8Array> {
      const key = recipientKey(request.recipient, 'Decrypt');
      const call: Call = { operation: 'Decrypt', key: key.arn, region: key.region, signal: request.signal };
      const blob = request.recipient.encryptedKey;
      const bytes = typeof blob === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(blob) ? Buffer.from(blob, 'base64') : undefined;
      if (bytes === undefined || bytes.byteLength === 0 || bytes.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
        throw new ProviderError(
          'InvalidCiphertext',
          `alibaba-kms Decrypt with ${key.arn}: the recipient's encryptedKey is not a base64 CiphertextBlob of 1-${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes`,
          { provider: ALIBABA_KMS },
        );
      }
      const context = encryptionContextJson(request.encryptionContext);
      const out = await invoke(call, (client, runtime) =>
        client.decryptEx(new sdk.models.DecryptRequest({ ciphertextBlob: bytes.toString('base64'), encryptionContext: context }), runtime),
      );
      const dataKey = dataKeyOf(call, out.plaintext);
      // The blob names its key; one of another key is not this recipient's.
      if (out.keyId !== key.keyId) {
        zero(dataKey);
        throw new ProviderError('InvalidCiphertext', `alibaba-kms Decrypt with ${key.arn}: the encrypted key was sealed with another KMS key`, {
          provider: ALIBABA_KMS,
          serviceCode: 'IncorrectKey',
        });
      }
      return dataKey;
    },

    canUnwrap(recipient: Recipient): boolean {
      return recipient.provider === ALIBABA_KMS && parseKeyArn(recipient.keyId) !== undefined && options.credentials !== undefined;
    },

    describe: describeAlibabaRecipient,
    targetOf: (recipient) => recipient.keyId ?? '',

    async canonicalTarget(target: string, signal?: AbortSignal): Promise<string> {
      return (await keyArnOf(target, signal)).arn;
    },

    async createKey(request) {
      const alias = request.name.startsWith('alias/') ? request.name : `alias/${request.name}`;
      if (!ALIAS_NAME.test(alias)) throw invalidTarget(alias, 'is not a valid alias: 1-255 of A-Z a-z 0-9 : / _ -');
      const region = regionOf({ region: undefined }, alias);
      const call: Call = { operation: 'CreateKey', key: alias, region, signal: request.signal };
      const created = await invoke(call, (client, runtime) =>
        client.createKeyEx(
          new sdk.models.CreateKeyRequest({ keySpec: 'Aliyun_AES_256', keyUsage: 'ENCRYPT/DECRYPT', description: request.description ?? `envseal ${alias}` }),
          runtime,
        ),
      );
      const keyArn = created.keyMetadata?.arn;
      const keyId = created.keyMetadata?.keyId;
      if (parseKeyArn(keyArn) === undefined || typeof keyId !== 'string') {
        throw new ProviderError('Internal', `alibaba-kms CreateKey for ${alias}: the KMS answered without the new key's ARN`, { provider: ALIBABA_KMS });
      }
      try {
        await invoke({ ...call, operation: 'CreateAlias' }, (client, runtime) =>
          client.createAliasEx(new sdk.models.CreateAliasRequest({ keyId, aliasName: alias }), runtime),
        );
      } catch (error) {
        // Leave no unnamed key behind: schedule it for deletion (the shortest window).
        const scheduled = await invoke({ ...call, operation: 'ScheduleKeyDeletion', key: keyArn! }, (client, runtime) =>
          client.scheduleKeyDeletionEx(new sdk.models.ScheduleKeyDeletionRequest({ keyId, pendingWindowInDays: PENDING_WINDOW_DAYS }), runtime),
        ).then(
          () => true,
          () => false,
        );
        const what = scheduled
          ? `the new key ${keyArn} was scheduled for deletion in ${PENDING_WINDOW_DAYS} days`
          : `the new key ${keyArn} could not be scheduled for deletion: delete it yourself`;
        const message = error instanceof Error ? error.message : String(error);
        throw new ProviderError(error instanceof ProviderError ? error.code : 'Internal', `${message}; ${what}`, {
          provider: ALIBABA_KMS,
          ...(error instanceof ProviderError && error.serviceCode ? { serviceCode: error.serviceCode } : {}),
          cause: error,
        });
      }
      arns.set(`${region}\n${alias}`, keyArn!);
      return { keyArn: keyArn!, alias };
    },
  };
  return provider;
}
