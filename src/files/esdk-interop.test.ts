/**
 * src/files against AWS's Encryption SDK for JavaScript (@aws-crypto/client-node, a
 * devDependency measured in bench/files/esdk-compare.ts) with the same raw AES wrapping
 * key: each opens the other's messages in both committing suites, and a message of the
 * SDK altered anywhere is refused by src/files with nothing released.
 */
import { randomBytes } from 'node:crypto';
import { buildClient, CommitmentPolicy, RawAesKeyringNode, RawAesWrappingSuiteIdentifier } from '@aws-crypto/client-node';
import { describe, expect, it } from 'vitest';
import { rawAesProviderDefinition, rawKeyRegistry } from '../../test/harness/raw-keyrings.ts';
import { MessageDecryptor } from './decrypt.ts';
import { encryptBuffer, prepareMessage } from './encrypt.ts';
import { FileFormatError } from './errors.ts';
import { pumpDecrypt } from './pump.ts';
import { HeldSink } from './sinks.ts';
import { generateDataKeyMaterials, unwrapDataKey } from './materials.ts';
import { SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384 } from './suites.ts';

const NAMESPACE = 'envseal-interop';
const KEY_NAME = 'wrapping-key-1';
const wrappingKey = randomBytes(32);
const providers = rawKeyRegistry([rawAesProviderDefinition({ namespace: NAMESPACE, name: KEY_NAME, key: wrappingKey })]);
const keyring = new RawAesKeyringNode({
  keyNamespace: NAMESPACE,
  keyName: KEY_NAME,
  unencryptedMasterKey: new Uint8Array(wrappingKey),
  wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
});
const client = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
const context = { tenant: 'a', purpose: 'interop' };

async function oursEncrypt(plaintext: Buffer, suite: typeof SUITE_COMMIT, frameLength: number): Promise<Buffer> {
  const prepared = prepareMessage({ suite, encryptionContext: context, random: randomBytes });
  const { dataKey, encryptedDataKeys } = await generateDataKeyMaterials({
    targets: [{ provider: 'raw-aes', target: KEY_NAME }],
    providers,
    encryptionContext: prepared.encryptionContext,
    random: randomBytes,
  });
  try {
    return encryptBuffer(plaintext, { ...prepared, dataKey, encryptedDataKeys, frameLength });
  } finally {
    dataKey.fill(0);
  }
}

async function oursDecrypt(message: Buffer): Promise<{ plaintext: Buffer; error: unknown }> {
  const released: Buffer[] = [];
  const sink = new HeldSink({ write: (chunk: Uint8Array) => released.push(Buffer.from(chunk)) });
  const decryptor = new MessageDecryptor();
  async function* source() {
    yield message;
  }
  try {
    await pumpDecrypt(source(), decryptor, (header) => unwrapDataKey({ header, providers }), sink);
    await sink.commit();
    return { plaintext: Buffer.concat(released), error: undefined };
  } catch (error) {
    decryptor.destroy();
    await sink.abort();
    return { plaintext: Buffer.concat(released), error };
  }
}

describe('src/files and the AWS Encryption SDK for JavaScript, same raw AES key', () => {
  for (const suite of [SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384]) {
    const id = `0x0${suite.id.toString(16)}`;
    it(`${id}: the SDK opens envseal's messages (empty, one frame, frames and a partial final frame)`, async () => {
      for (const length of [0, 100, 4096 * 3 + 17]) {
        const plaintext = randomBytes(length);
        const message = await oursEncrypt(plaintext, suite, 4096);
        const { plaintext: opened, messageHeader } = await client.decrypt(keyring, message);
        expect(Buffer.from(opened).equals(plaintext)).toBe(true);
        expect(messageHeader.suiteId).toBe(suite.id);
        expect(messageHeader.encryptionContext).toMatchObject(context);
      }
    });

    it(`${id}: envseal opens the SDK's messages`, async () => {
      for (const length of [0, 100, 4096 * 3 + 17]) {
        const plaintext = randomBytes(length);
        const { result } = await client.encrypt(keyring, plaintext, { suiteId: suite.id, encryptionContext: context, frameLength: 4096 });
        const { plaintext: opened, error } = await oursDecrypt(Buffer.from(result));
        expect(error).toBeUndefined();
        expect(opened.equals(plaintext)).toBe(true);
      }
    });

    it(`${id}: envseal refuses an SDK message altered anywhere, releasing nothing`, async () => {
      const plaintext = randomBytes(4096 * 3 + 17);
      const { result } = await client.encrypt(keyring, plaintext, { suiteId: suite.id, encryptionContext: context, frameLength: 4096 });
      const message = Buffer.from(result);
      // A byte in the header, in the EDK, in each frame and at the very end (tag or signature).
      for (const at of [5, 60, Math.floor(message.length / 3), Math.floor(message.length / 2), message.length - 1]) {
        const altered = Buffer.from(message);
        altered[at] = altered[at]! ^ 0x40;
        const { plaintext: released, error } = await oursDecrypt(altered);
        expect(error, `byte ${at}`).toBeDefined();
        expect(error instanceof FileFormatError || (error as Error).name === 'ProviderError', `byte ${at}: ${String(error)}`).toBe(true);
        expect(released.length, `byte ${at}`).toBe(0);
      }
    });
  }
});
