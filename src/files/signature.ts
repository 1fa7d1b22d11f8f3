import { createECDH, createPrivateKey, createPublicKey, createSign, createVerify, ECDH, type KeyObject, type Sign, type Verify } from 'node:crypto';
import type { RandomSource } from '../envelope/random.ts';
import { FileFormatError } from './errors.ts';

const CURVE = 'secp384r1';
const SCALAR_LENGTH = 48;
// The order of the P-384 group.
const ORDER = BigInt('0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973');

export interface SigningKey {
  privateKey: KeyObject;
  /** base64 of the compressed public point (SEC 1, 2.3.3): the aws-crypto-public-key value. */
  publicKeyBase64: string;
}

function b64url(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64url');
}

/**
 * A fresh ECDSA P-384 key pair for one message, its scalar drawn from `random` (so a
 * seeded source gives a reproducible key in tests). The signatures themselves use
 * OpenSSL's nonces.
 */
export function generateSigningKey(random: RandomSource): SigningKey {
  for (let attempt = 0; attempt < 64; attempt++) {
    const d = Buffer.from(random(SCALAR_LENGTH));
    const scalar = BigInt(`0x${d.toString('hex')}`);
    if (scalar === 0n || scalar >= ORDER) {
      d.fill(0);
      continue;
    }
    const ecdh = createECDH(CURVE);
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey();
    const compressed = ecdh.getPublicKey(null, 'compressed');
    const privateKey = createPrivateKey({
      key: { kty: 'EC', crv: 'P-384', x: b64url(point.subarray(1, 49)), y: b64url(point.subarray(49, 97)), d: b64url(d) },
      format: 'jwk',
    });
    d.fill(0);
    return { privateKey, publicKeyBase64: compressed.toString('base64') };
  }
  throw new FileFormatError('InvalidArgument', 'the random source gave no valid P-384 scalar in 64 attempts');
}

/** The verification key from the aws-crypto-public-key value; InvalidPublicKey when it is not a P-384 point. */
export function verificationKeyOf(publicKeyBase64: string): KeyObject {
  const compressed = Buffer.from(publicKeyBase64, 'base64');
  if (compressed.length !== SCALAR_LENGTH + 1 || compressed.toString('base64') !== publicKeyBase64 || (compressed[0] !== 2 && compressed[0] !== 3)) {
    throw new FileFormatError('InvalidPublicKey', 'aws-crypto-public-key is not the base64 of a compressed P-384 point');
  }
  let point: Buffer;
  try {
    point = ECDH.convertKey(compressed, CURVE, undefined, undefined, 'uncompressed') as Buffer;
  } catch (cause) {
    throw new FileFormatError('InvalidPublicKey', 'aws-crypto-public-key is not a point of P-384', { cause });
  }
  return createPublicKey({ key: { kty: 'EC', crv: 'P-384', x: b64url(point.subarray(1, 49)), y: b64url(point.subarray(49, 97)) }, format: 'jwk' });
}

/** ECDSA P-384 / SHA-384 over everything fed to it; the signature in DER. */
export class MessageSigner {
  readonly #sign: Sign = createSign('sha384');
  readonly #key: KeyObject;
  constructor(key: SigningKey) {
    this.#key = key.privateKey;
  }
  update(bytes: Uint8Array): void {
    this.#sign.update(bytes);
  }
  sign(): Buffer {
    return this.#sign.sign({ key: this.#key, dsaEncoding: 'der' });
  }
}

export class MessageVerifier {
  readonly #verify: Verify = createVerify('sha384');
  readonly #key: KeyObject;
  constructor(publicKeyBase64: string) {
    this.#key = verificationKeyOf(publicKeyBase64);
  }
  update(bytes: Uint8Array): void {
    this.#verify.update(bytes);
  }
  verify(signature: Uint8Array): boolean {
    try {
      return this.#verify.verify({ key: this.#key, dsaEncoding: 'der' }, signature);
    } catch {
      return false;
    }
  }
}
