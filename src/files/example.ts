/**
 * The example message of docs/format.md ("File format"): deterministic (seeded random,
 * fixed data key), annotated field by field. example.test.ts checks the document.
 */
import { seededRandom } from '../envelope/random.ts';
import { encryptBuffer, prepareMessage } from './encrypt.ts';
import { parseHeader } from './header.ts';
import { SUITE_COMMIT } from './suites.ts';

export const EXAMPLE = {
  seed: 'envseal file format example',
  /** The data key: bytes 0x00 to 0x1f. */
  dataKey: Buffer.from(Array.from({ length: 32 }, (_, i) => i)),
  context: { purpose: 'example' },
  keyArn: 'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000',
  /** Stands in for a KMS CiphertextBlob (a real one is about 184 bytes). */
  encryptedKey: Buffer.from('not-a-real-kms-ciphertext-blob', 'utf8'),
  frameLength: 16,
  plaintext: Buffer.from('Hello, envseal file format!\n', 'utf8'),
} as const;

export function exampleMessage(): Buffer {
  const random = seededRandom(EXAMPLE.seed);
  const prepared = prepareMessage({ suite: SUITE_COMMIT, encryptionContext: { ...EXAMPLE.context }, random });
  return encryptBuffer(EXAMPLE.plaintext, {
    ...prepared,
    dataKey: EXAMPLE.dataKey,
    encryptedDataKeys: [{ providerId: 'aws-kms', providerInfo: Buffer.from(EXAMPLE.keyArn, 'utf8'), ciphertext: EXAMPLE.encryptedKey }],
    frameLength: EXAMPLE.frameLength,
  });
}

function hex(bytes: Uint8Array): string[] {
  const text = Buffer.from(bytes).toString('hex');
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += 32) lines.push(text.slice(i, i + 32).replace(/(.{8})(?=.)/g, '$1 '));
  return lines.length > 0 ? lines : [''];
}

/** The message as annotated hex: each field on its own line(s), its meaning on the right. */
export function annotatedHexDump(message: Buffer = exampleMessage()): string {
  const rows: [Uint8Array, string][] = [];
  let at = 0;
  const field = (length: number, what: string) => {
    rows.push([message.subarray(at, at + length), what]);
    at += length;
  };
  const header = parseHeader(message)!;
  field(1, 'version 2');
  field(2, 'suite 0x0478 AES_256_GCM_HKDF_SHA512_COMMIT_KEY');
  field(32, 'message id (32 random bytes)');
  field(2, 'AAD length');
  field(2, 'context: pair count');
  for (const [key, value] of Object.entries(header.header.encryptionContext)) {
    field(2, 'key length');
    field(Buffer.byteLength(key), `key "${key}"`);
    field(2, 'value length');
    field(Buffer.byteLength(value), `value "${value}"`);
  }
  field(2, 'encrypted data key count');
  for (const edk of header.header.encryptedDataKeys) {
    field(2, 'provider id length');
    field(Buffer.byteLength(edk.providerId), `provider id "${edk.providerId}"`);
    field(2, 'provider info length');
    field(edk.providerInfo.length, 'provider info: the key ARN');
    field(2, 'encrypted data key length');
    field(edk.ciphertext.length, 'encrypted data key (KMS CiphertextBlob; a placeholder here)');
  }
  field(1, 'content type 0x02 (framed)');
  field(4, `frame length (${header.header.frameLength})`);
  field(32, 'suite data: commitment key');
  field(16, 'header tag (AES-GCM, IV 0, AAD = header body)');
  let sequence = 1;
  while (at < message.length) {
    if (message.readUInt32BE(at) === 0xffffffff) {
      field(4, 'final frame marker');
      field(4, `sequence number ${sequence}`);
      field(12, 'IV (the sequence number)');
      const length = message.readUInt32BE(at);
      field(4, `content length (${length})`);
      field(length, 'ciphertext');
      field(16, 'tag');
    } else {
      field(4, `sequence number ${sequence}`);
      field(12, 'IV (the sequence number)');
      field(header.header.frameLength, 'ciphertext');
      field(16, 'tag');
    }
    sequence++;
  }
  const lines: string[] = [];
  for (const [bytes, what] of rows) {
    hex(bytes).forEach((line, i) => {
      lines.push(i === 0 ? `${line.padEnd(38)}${what}` : line);
    });
  }
  return `${lines.join('\n')}\n`;
}
