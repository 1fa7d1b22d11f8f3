/**
 * Raw AES and raw RSA keyrings for tests only: the wrapping key is given as bytes (PEM),
 * as the AWS Encryption SDK's raw keyrings take it, so that AWS's test vectors
 * (src/files/esdk-vectors.test.ts), the SDK itself (src/files/esdk-interop.test.ts)
 * and bench/files/esdk-compare.ts can run against src/files without a KMS. Never
 * registered for users: a wrapping key in a file or a flag is not a key service.
 *
 * The raw AES encrypted data key, as the SDK specification's raw AES keyring writes it:
 * - provider id: the key namespace (UTF-8);
 * - provider info: key name (UTF-8) || authentication tag length in bits (UInt32 BE,
 *   128) || IV length in bytes (UInt32 BE, 12) || IV;
 * - ciphertext: the AES-GCM encryption of the data key || its 16-byte tag, under the
 *   wrapping key, with the serialized encryption context as AAD.
 * As a Recipient: keyId = the key name, encryptedKey = base64(IV || ciphertext || tag).
 * The raw RSA one is below (rawRsaProviderDefinition).
 */
import { constants, createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, privateDecrypt, publicEncrypt, randomBytes } from 'node:crypto';
import { serializeEncryptionContext } from '../../src/files/header.ts';
import type { KeyProvider, ProviderDefinition, Recipient, UnwrapRequest, WrapRequest } from '../../src/providers/types.ts';
import { ProviderError } from '../../src/providers/types.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';

const TAG_BITS = 128;
const TAG_BYTES = TAG_BITS / 8;
const IV_BYTES = 12;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export interface RawAesWrappingKey {
  /** The provider id of its EDKs. */
  namespace: string;
  /** The key name at the start of its EDKs' provider info. */
  name: string;
  /** 16, 24 or 32 bytes. */
  key: Uint8Array;
}

export interface RawAesOptions {
  /** The provider name in recipients and in the registry (default `raw-aes`). */
  providerName?: string;
  /** IVs of wrap(); default node:crypto's. */
  random?: (n: number) => Uint8Array;
}

function cipherName(key: Uint8Array): 'aes-128-gcm' | 'aes-192-gcm' | 'aes-256-gcm' {
  switch (key.byteLength) {
    case 16:
      return 'aes-128-gcm';
    case 24:
      return 'aes-192-gcm';
    case 32:
      return 'aes-256-gcm';
    default:
      throw new Error(`a raw AES wrapping key must be 16, 24 or 32 bytes (got ${key.byteLength})`);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** The provider definition of one raw AES wrapping key (its namespace is the EDKs' provider id). */
export function rawAesProviderDefinition(wrappingKey: RawAesWrappingKey, options: RawAesOptions = {}): ProviderDefinition {
  const name = options.providerName ?? 'raw-aes';
  const cipher = cipherName(wrappingKey.key);
  const keyName = Buffer.from(wrappingKey.name, 'utf8');
  const describe = (recipient: Recipient) => `${name} ${wrappingKey.namespace}/${recipient.keyId ?? ''}`;
  const parseTarget = (target: string) => {
    if (target !== wrappingKey.name)
      throw new ProviderError('InvalidRecipient', `${name}: no wrapping key named ${JSON.stringify(target.slice(0, 60))}`, { provider: name });
  };

  const provider: KeyProvider = {
    name,
    parseTarget,
    async wrap(request: WrapRequest): Promise<Recipient> {
      request.signal?.throwIfAborted();
      parseTarget(request.target);
      const iv = Buffer.from((options.random ?? randomBytes)(IV_BYTES));
      const gcm = createCipheriv(cipher, wrappingKey.key, iv, { authTagLength: TAG_BYTES });
      gcm.setAAD(serializeEncryptionContext(request.encryptionContext));
      const sealed = Buffer.concat([iv, gcm.update(request.dataKey), gcm.final(), gcm.getAuthTag()]);
      return { provider: name, keyId: wrappingKey.name, encryptedKey: sealed.toString('base64') };
    },
    async unwrap(request: UnwrapRequest): Promise<Uint8Array> {
      request.signal?.throwIfAborted();
      const { recipient } = request;
      if (recipient.keyId !== wrappingKey.name) throw new ProviderError('NoIdentity', `${describe(recipient)}: not this keyring's key`, { provider: name });
      const sealed = Buffer.from(recipient.encryptedKey, 'base64');
      if (sealed.length <= IV_BYTES + TAG_BYTES)
        throw new ProviderError('InvalidCiphertext', `${describe(recipient)}: the wrapped key is too short`, { provider: name });
      const gcm = createDecipheriv(cipher, wrappingKey.key, sealed.subarray(0, IV_BYTES), { authTagLength: TAG_BYTES });
      gcm.setAAD(serializeEncryptionContext(request.encryptionContext));
      gcm.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      const dataKey = gcm.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES));
      try {
        gcm.final();
      } catch (cause) {
        dataKey.fill(0);
        // Tampered wrapped key, another wrapping key of the same name, or another encryption context.
        throw new ProviderError('InvalidCiphertext', `${describe(recipient)}: the wrapped data key did not authenticate`, { provider: name, cause });
      }
      return new Uint8Array(dataKey.buffer, dataKey.byteOffset, dataKey.byteLength);
    },
    canUnwrap: (recipient) => recipient.provider === name && recipient.keyId === wrappingKey.name,
    describe,
    targetOf: (recipient) => recipient.keyId ?? '',
  };

  return {
    name,
    targetHint: 'KEY-NAME',
    parseTarget,
    checkRecipient: (recipient) =>
      recipient.keyId === wrappingKey.name ? [] : [{ field: 'keyId', check: 'structure', message: `not the key ${wrappingKey.name}` }],
    maxEncryptedKeyBytes: IV_BYTES + 32 + TAG_BYTES,
    crdRules: [],
    describe,
    targetOf: provider.targetOf,
    edk: {
      providerId: wrappingKey.namespace,
      encode(recipient) {
        const sealed = Buffer.from(recipient.encryptedKey, 'base64');
        const providerInfo = Buffer.concat([Buffer.from(recipient.keyId ?? '', 'utf8'), u32(TAG_BITS), u32(IV_BYTES), sealed.subarray(0, IV_BYTES)]);
        return { providerInfo, ciphertext: sealed.subarray(IV_BYTES) };
      },
      decode(edk) {
        // The specification's conditions: this key's name, a 128-bit tag, a 12-byte IV,
        // nothing more in the provider info; anything else is another keyring's EDK.
        const info = Buffer.from(edk.providerInfo);
        if (info.length !== keyName.length + 8 + IV_BYTES || !info.subarray(0, keyName.length).equals(keyName)) return undefined;
        if (info.readUInt32BE(keyName.length) !== TAG_BITS || info.readUInt32BE(keyName.length + 4) !== IV_BYTES) return undefined;
        if (edk.ciphertext.byteLength <= TAG_BYTES) return undefined;
        try {
          utf8.decode(info.subarray(0, keyName.length));
        } catch {
          return undefined;
        }
        const sealed = Buffer.concat([info.subarray(keyName.length + 8), edk.ciphertext]);
        return { provider: name, keyId: wrappingKey.name, encryptedKey: sealed.toString('base64') };
      },
    },
    create: async () => provider,
  };
}

/**
 * A registry whose only providers are `definitions` (the registry's hook for tests), for
 * src/files/materials.ts generateDataKeyMaterials and unwrapDataKey: the same path as
 * `envseal encrypt`/`decrypt`, with raw keys instead of a key service.
 */
export function rawKeyRegistry(definitions: readonly ProviderDefinition[]): ProviderRegistry {
  return new ProviderRegistry({}, { definitions });
}

export interface RawRsaWrappingKey {
  /** The provider id of its EDKs. */
  namespace: string;
  /** The provider info of its EDKs. */
  name: string;
  /** PEM; a private key unwraps, a public one only wraps. */
  pem: string;
  padding: 'pkcs1' | 'oaep-mgf1';
  /** OAEP's hash (and MGF1's: the same, as the SDK specification's raw RSA keyring uses it). */
  hash?: 'sha1' | 'sha256' | 'sha384' | 'sha512';
}

/**
 * The raw RSA keyring of the SDK specification, for AWS's test vectors: provider id = key
 * namespace, provider info = key name, ciphertext = RSA encryption of the data key (the
 * encryption context is not bound). As a Recipient: keyId = key name, encryptedKey =
 * base64 of the RSA ciphertext.
 */
export function rawRsaProviderDefinition(wrappingKey: RawRsaWrappingKey, options: { providerName?: string } = {}): ProviderDefinition {
  const name = options.providerName ?? 'raw-rsa';
  const isPrivate = /-----BEGIN (RSA )?PRIVATE KEY-----/.test(wrappingKey.pem);
  const key = isPrivate ? createPrivateKey(wrappingKey.pem) : createPublicKey(wrappingKey.pem);
  const padding = wrappingKey.padding === 'pkcs1' ? constants.RSA_PKCS1_PADDING : constants.RSA_PKCS1_OAEP_PADDING;
  const rsaOptions = { key, padding, ...(wrappingKey.padding === 'oaep-mgf1' ? { oaepHash: wrappingKey.hash ?? 'sha1' } : {}) };
  const describe = (recipient: Recipient) => `${name} ${wrappingKey.namespace}/${recipient.keyId ?? ''}`;
  const parseTarget = (target: string) => {
    if (target !== wrappingKey.name)
      throw new ProviderError('InvalidRecipient', `${name}: no wrapping key named ${JSON.stringify(target.slice(0, 60))}`, { provider: name });
  };
  const provider: KeyProvider = {
    name,
    parseTarget,
    async wrap(request) {
      parseTarget(request.target);
      return { provider: name, keyId: wrappingKey.name, encryptedKey: publicEncrypt(rsaOptions, request.dataKey).toString('base64') };
    },
    async unwrap(request) {
      request.signal?.throwIfAborted();
      if (!isPrivate) throw new ProviderError('NoIdentity', `${describe(request.recipient)}: a public key cannot unwrap`, { provider: name });
      try {
        return new Uint8Array(privateDecrypt(rsaOptions, Buffer.from(request.recipient.encryptedKey, 'base64')));
      } catch (cause) {
        throw new ProviderError('InvalidCiphertext', `${describe(request.recipient)}: the wrapped data key did not decrypt`, { provider: name, cause });
      }
    },
    canUnwrap: (recipient) => isPrivate && recipient.provider === name && recipient.keyId === wrappingKey.name,
    describe,
    targetOf: (recipient) => recipient.keyId ?? '',
  };
  return {
    name,
    targetHint: 'KEY-NAME',
    parseTarget,
    checkRecipient: () => [],
    maxEncryptedKeyBytes: 1024,
    crdRules: [],
    describe,
    targetOf: provider.targetOf,
    edk: {
      providerId: wrappingKey.namespace,
      encode: (recipient) => ({ providerInfo: Buffer.from(recipient.keyId ?? '', 'utf8'), ciphertext: Buffer.from(recipient.encryptedKey, 'base64') }),
      decode(edk) {
        if (!Buffer.from(edk.providerInfo).equals(Buffer.from(wrappingKey.name, 'utf8'))) return undefined;
        return { provider: name, keyId: wrappingKey.name, encryptedKey: Buffer.from(edk.ciphertext).toString('base64') };
      },
    },
    create: async () => provider,
  };
}
