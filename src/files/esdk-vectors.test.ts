/**
 * AWS's own decrypt test vectors (test/vectors/aws-encryption-sdk, see its README): every
 * message of the committing suites (0x0478, 0x0578) wrapped with raw AES or raw RSA keys,
 * decrypted through src/files exactly as `envseal decrypt` to stdout does (pumpDecrypt
 * into a HeldSink, committed only on success; the data key from materials.ts
 * unwrapDataKey), with the raw keyrings of test/harness/raw-keyrings.ts as the
 * registry's only providers. Each vector must open to exactly its plaintext, or be
 * refused with nothing released where AWS's own runner expects a failure.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rawAesProviderDefinition, rawKeyRegistry, rawRsaProviderDefinition } from '../../test/harness/raw-keyrings.ts';
import type { ProviderDefinition } from '../providers/types.ts';
import { MessageDecryptor } from './decrypt.ts';
import { FileFormatError } from './errors.ts';
import { pumpDecrypt } from './pump.ts';
import { HeldSink } from './sinks.ts';
import { fileSource } from './sources.ts';
import { unwrapDataKey } from './materials.ts';

const ROOT = new URL('../../test/vectors/aws-encryption-sdk/', import.meta.url).pathname;

/**
 * The sets kept, what AWS's runner (TestVectors/dafny/TestVectors/test/RunMain.dfy of
 * aws/aws-encryption-sdk) expects of them without the .NET-only retry, and how many
 * vectors each holds: a vector added, dropped or left unclassified fails the count test.
 */
const SETS = {
  // TestNetRetryFlagVectorsExpectSuccess
  'valid-Net-4.0.0': { expect: 'manifest', count: 2 },
  // TestNet401ValidTestVectorsExpectSuccess
  'v4-Net-4.0.1': { expect: 'manifest', count: 18 },
  // TestNetInvalidTestVectorsExpectFailure: ESDK .NET 4.0.0 wrote a wrong header tag;
  // with retries forbidden (every SDK but .NET) each one must fail at the header tag.
  'invalid-Net-4.0.0': { expect: 'header-refused', count: 4 },
} as const;

interface MasterKey {
  type: string;
  key: string;
  'provider-id'?: string;
  'encryption-algorithm'?: string;
  'padding-algorithm'?: 'pkcs1' | 'oaep-mgf1';
  'padding-hash'?: 'sha1' | 'sha256' | 'sha384' | 'sha512';
}

interface Vector {
  set: keyof typeof SETS;
  id: string;
  ciphertext: string;
  masterKeys: MasterKey[];
  encryptionContext: Record<string, string>;
  /** The plaintext file, or undefined when the manifest expects an error. */
  plaintext: string | undefined;
  manifestError: string | undefined;
}

interface KeyEntry {
  type: string;
  algorithm: string;
  'key-id'?: string;
  encoding: string;
  material: string;
}

const file = (set: string, uri: string): string => {
  if (!uri.startsWith('file://')) throw new Error(`not a file:// URI: ${uri}`);
  return join(ROOT, set, uri.slice('file://'.length));
};

function loadSet(set: keyof typeof SETS): { vectors: Vector[]; keys: Record<string, KeyEntry> } {
  const manifest = JSON.parse(readFileSync(join(ROOT, set, 'manifest.json'), 'utf8'));
  if (manifest.manifest?.type !== 'awses-decrypt') throw new Error(`${set}: not an awses-decrypt manifest`);
  const keys = JSON.parse(readFileSync(file(set, manifest.keys), 'utf8')).keys as Record<string, KeyEntry>;
  const vectors = Object.entries<Record<string, unknown>>(manifest.tests).map(([id, test]): Vector => {
    const result = test.result as { output?: { plaintext: string }; error?: { 'error-description'?: string } };
    return {
      set,
      id,
      ciphertext: file(set, test.ciphertext as string),
      masterKeys: test['master-keys'] as MasterKey[],
      encryptionContext: (test['encryption-context'] as Record<string, string> | undefined) ?? {},
      plaintext: result.output === undefined ? undefined : file(set, result.output.plaintext),
      manifestError: result.error === undefined ? undefined : (result.error['error-description'] ?? 'error'),
    };
  });
  return { vectors, keys };
}

/** The keyrings a vector's master keys name (each provider under a name of its own). */
function keyringsOf(vector: Vector, keys: Record<string, KeyEntry>): ProviderDefinition[] {
  return vector.masterKeys.map((master, index) => {
    const entry = keys[master.key];
    if (entry === undefined || master.type !== 'raw' || master['provider-id'] === undefined)
      throw new Error(`${vector.id}: unsupported master key ${JSON.stringify(master)}`);
    const name = entry['key-id'] ?? master.key;
    if (master['encryption-algorithm'] === 'aes' && entry.encoding === 'base64') {
      return rawAesProviderDefinition(
        { namespace: master['provider-id'], name, key: Buffer.from(entry.material, 'base64') },
        { providerName: `raw-aes-${index}` },
      );
    }
    if (master['encryption-algorithm'] === 'rsa' && entry.encoding === 'pem' && master['padding-algorithm'] !== undefined) {
      return rawRsaProviderDefinition(
        {
          namespace: master['provider-id'],
          name,
          pem: entry.material,
          padding: master['padding-algorithm'],
          ...(master['padding-hash'] ? { hash: master['padding-hash'] } : {}),
        },
        { providerName: `raw-rsa-${index}` },
      );
    }
    throw new Error(`${vector.id}: unsupported master key ${JSON.stringify(master)}`);
  });
}

/** Decrypts as `envseal decrypt` to stdout: everything held until the message authenticated. */
async function decryptVector(vector: Vector, keys: Record<string, KeyEntry>): Promise<{ released: Buffer; error: unknown }> {
  const providers = rawKeyRegistry(keyringsOf(vector, keys));
  const released: Buffer[] = [];
  const sink = new HeldSink({ write: (chunk: Uint8Array) => released.push(Buffer.from(chunk)) });
  const decryptor = new MessageDecryptor();
  try {
    await pumpDecrypt(fileSource(vector.ciphertext), decryptor, (header) => unwrapDataKey({ header, providers }), sink, {
      reproducedContext: vector.encryptionContext,
    });
    await sink.commit();
    return { released: Buffer.concat(released), error: undefined };
  } catch (error) {
    decryptor.destroy();
    await sink.abort();
    return { released: Buffer.concat(released), error };
  }
}

const loaded = (Object.keys(SETS) as (keyof typeof SETS)[]).map((set) => ({ set, ...loadSet(set) }));

describe('AWS Encryption SDK decrypt test vectors (message format 2, committing suites, raw AES and RSA keys)', () => {
  it('holds every vector kept, and only committing-suite messages with raw keys', () => {
    for (const { set, vectors } of loaded) {
      expect(vectors.length, set).toBe(SETS[set].count);
      for (const vector of vectors) {
        const bytes = readFileSync(vector.ciphertext);
        expect(bytes[0], `${vector.id}: message format version`).toBe(0x02);
        expect([0x0478, 0x0578], `${vector.id}: suite`).toContain(bytes.readUInt16BE(1));
        expect(
          vector.masterKeys.every((k) => k.type === 'raw'),
          vector.id,
        ).toBe(true);
      }
    }
    const all = loaded.flatMap((l) => l.vectors);
    expect(all.length).toBe(24);
    // Both suites, both key types and both of AWS's CMMs are covered.
    expect(new Set(all.map((v) => v.id.slice(0, 4)))).toEqual(new Set(['0478', '0578']));
    expect(new Set(all.flatMap((v) => v.masterKeys.map((k) => k['encryption-algorithm'])))).toEqual(new Set(['aes', 'rsa']));
    expect(all.filter((v) => v.id.includes('cmm_RequiredEncryptionContext')).length).toBe(8);
  });

  for (const { set, vectors, keys } of loaded) {
    describe(set, () => {
      for (const vector of vectors) {
        const refusal = SETS[set].expect === 'header-refused' || vector.plaintext === undefined;
        it(`${vector.id}: ${refusal ? 'refused, nothing released' : 'opens to its plaintext'}`, async () => {
          const { released, error } = await decryptVector(vector, keys);
          if (!refusal) {
            expect(error).toBeUndefined();
            expect(released.equals(readFileSync(vector.plaintext!)), 'the plaintext, byte for byte').toBe(true);
            return;
          }
          expect(error).toBeInstanceOf(FileFormatError);
          if (SETS[set].expect === 'header-refused') expect((error as FileFormatError).code).toBe('HeaderAuthenticationFailed');
          expect(released.length).toBe(0);
        });
      }
    });
  }

  it('refuses a RequiredEncryptionContext vector when the reproduced context is missing or differs', async () => {
    const { vectors, keys } = loaded.find((l) => l.set === 'v4-Net-4.0.1')!;
    const vector = vectors.find(
      (v) => v.id.startsWith('0478') && v.id.includes('cmm_RequiredEncryptionContext') && v.masterKeys[0]!['encryption-algorithm'] === 'aes',
    )!;
    expect(vector).toBeDefined();
    for (const encryptionContext of [{}, { ...vector.encryptionContext, key2: 'other' }]) {
      const { released, error } = await decryptVector({ ...vector, encryptionContext }, keys);
      expect(error).toBeDefined();
      expect(released.length).toBe(0);
    }
    // With RSA the keyring binds no context: the header tag alone refuses a wrong reproduced pair.
    const rsa = vectors.find(
      (v) => v.id.startsWith('0578') && v.id.includes('cmm_RequiredEncryptionContext') && v.masterKeys[0]!['encryption-algorithm'] === 'rsa',
    )!;
    const wrong = await decryptVector({ ...rsa, encryptionContext: { ...rsa.encryptionContext, key1: 'other' } }, keys);
    expect((wrong.error as FileFormatError).code).toBe('HeaderAuthenticationFailed');
    expect(wrong.released.length).toBe(0);
  });

  it('refuses a stored pair that the reproduced context contradicts, before any key is unwrapped', async () => {
    const { vectors, keys } = loaded.find((l) => l.set === 'v4-Net-4.0.1')!;
    const vector = vectors.find((v) => v.id.includes('ec_len_2-cmm_Default'))!;
    const { released, error } = await decryptVector({ ...vector, encryptionContext: { ...vector.encryptionContext, key1: 'other' } }, keys);
    expect((error as FileFormatError).code).toBe('ContextMismatch');
    expect(released.length).toBe(0);
  });
});
