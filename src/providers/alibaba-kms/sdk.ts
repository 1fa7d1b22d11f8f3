/** The parts of Alibaba Cloud's SDK the provider uses, loaded with import() on first use, and the shape of one call. */
import { ProviderError } from '../types.ts';
import { ALIBABA_KMS } from './types.ts';

/** The parts of the SDK used here (its classes are loaded with import()). */
export interface KmsClient {
  generateDataKeyEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; plaintext?: string; ciphertextBlob?: string }>;
  encryptEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; ciphertextBlob?: string }>;
  decryptEx(request: unknown, runtime: unknown): Promise<{ keyId?: string; plaintext?: string }>;
  describeKeyEx(request: unknown, runtime: unknown): Promise<{ keyMetadata?: { keyId?: string; arn?: string; keyState?: string } }>;
  createKeyEx(request: unknown, runtime: unknown): Promise<{ keyMetadata?: { keyId?: string; arn?: string } }>;
  createAliasEx(request: unknown, runtime: unknown): Promise<unknown>;
  scheduleKeyDeletionEx(request: unknown, runtime: unknown): Promise<unknown>;
}

export type ModelClass = new (map: Record<string, unknown>) => unknown;

export interface Sdk {
  Client: new (config: unknown) => KmsClient;
  models: Record<
    | 'GenerateDataKeyRequest'
    | 'EncryptRequest'
    | 'DecryptRequest'
    | 'DescribeKeyRequest'
    | 'CreateKeyRequest'
    | 'CreateAliasRequest'
    | 'ScheduleKeyDeletionRequest',
    ModelClass
  >;
  Credential: new (config: unknown) => AlibabaCredential;
  CredentialConfig: ModelClass;
}

/** The credential chain's client: `getCredential` runs (and caches) the STS exchange for RRSA. */
export interface AlibabaCredential {
  getCredential(): Promise<unknown>;
}

export async function loadSdk(): Promise<Sdk> {
  const [kms, credentials] = await Promise.all([import('@alicloud/kms20160120'), import('@alicloud/credentials')]);
  // CommonJS modules: what holds the exports differs between Node's and bundlers' interop
  // (the namespace, its `default`, or `default.default`): take the first that has it.
  const layers = (mod: unknown): Record<string, unknown>[] => {
    const out: Record<string, unknown>[] = [];
    let at: unknown = mod;
    for (let i = 0; i < 3 && (typeof at === 'object' || typeof at === 'function') && at !== null; i++) {
      out.push(at as Record<string, unknown>);
      at = (at as { default?: unknown }).default;
    }
    return out;
  };
  const find = <T>(mod: unknown, what: string, test: (value: unknown) => boolean): T => {
    for (const layer of layers(mod)) if (test(layer)) return layer as T;
    throw new ProviderError('Internal', `alibaba-kms: the SDK has no ${what} (an incompatible version?)`, { provider: ALIBABA_KMS });
  };
  const hasMethod = (method: string) => (value: unknown) =>
    typeof value === 'function' && typeof (value as { prototype?: Record<string, unknown> }).prototype?.[method] === 'function';
  const names = [
    'GenerateDataKeyRequest',
    'EncryptRequest',
    'DecryptRequest',
    'DescribeKeyRequest',
    'CreateKeyRequest',
    'CreateAliasRequest',
    'ScheduleKeyDeletionRequest',
  ] as const;
  const kmsExports = find<Record<string, unknown>>(kms, 'request models', (value) =>
    names.every((n) => typeof (value as Record<string, unknown>)[n] === 'function'),
  );
  const credentialExports = find<Record<string, unknown>>(
    credentials,
    'credential Config',
    (value) => typeof (value as Record<string, unknown>).Config === 'function',
  );
  const models = {} as Sdk['models'];
  for (const name of names) models[name] = kmsExports[name] as ModelClass;
  return {
    Client: find<Sdk['Client']>(kms, 'KMS client', hasMethod('decryptEx')),
    models,
    Credential: find<Sdk['Credential']>(credentials, 'Credential class', hasMethod('getCredential')),
    CredentialConfig: credentialExports.Config as ModelClass,
  };
}

export interface Call {
  operation: string;
  /** The key, alias or ARN the call is about. */
  key: string;
  region: string;
  signal: AbortSignal | undefined;
}

export function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}
