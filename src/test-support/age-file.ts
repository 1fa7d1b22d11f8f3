// An encryptedKey with the exact shape of an age file envseal writes (one stanza, a
// wrapped 32-byte data key) but fixed bytes: for tests of validation, not of crypto.
const unpadded = (bytes: number, fill: number) => Buffer.alloc(bytes, fill).toString('base64').replace(/=+$/, '');

const ARGUMENTS: Readonly<Record<string, readonly number[]>> = { X25519: [32], mlkem768x25519: [1120], p256tag: [4, 65], mlkem768p256tag: [4, 1153] };

export function ageShapedKey(options: { type?: string; stanzas?: number; payloadBytes?: number } = {}): string {
  const type = options.type ?? 'X25519';
  const args = (ARGUMENTS[type] ?? [32]).map((n, i) => unpadded(n, 1 + i)).join(' ');
  const stanza = `-> ${type} ${args}\n${unpadded(32, 7)}\n`;
  const header = `age-encryption.org/v1\n${stanza.repeat(options.stanzas ?? 1)}--- ${unpadded(32, 9)}\n`;
  return Buffer.concat([Buffer.from(header, 'latin1'), Buffer.alloc(options.payloadBytes ?? 64, 5)]).toString('base64');
}
