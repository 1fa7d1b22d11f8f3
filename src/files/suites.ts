import { FileFormatError } from './errors.ts';

/**
 * The AWS Encryption SDK algorithm suites envseal reads and writes: both are message
 * format version 2 with key commitment (AES-256-GCM, 12-byte IV, 16-byte tag,
 * HKDF-SHA512 with the message id as salt, 32-byte commitment key).
 */
export interface Suite {
  id: number;
  /** The AWS Encryption SDK's name of the suite. */
  name: string;
  /** ECDSA P-384 with SHA-384 over header and body, its public key in the context. */
  signed: boolean;
}

export const SUITE_COMMIT: Suite = { id: 0x0478, name: 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY', signed: false };
export const SUITE_COMMIT_ECDSA_P384: Suite = { id: 0x0578, name: 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384', signed: true };

export const SUITES: readonly Suite[] = [SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384];

export const MESSAGE_FORMAT_VERSION = 0x02;
export const MESSAGE_ID_LENGTH = 32;
export { DATA_KEY_LENGTH } from '../envelope/kdf.ts';
export const COMMIT_KEY_LENGTH = 32;
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;
export const CONTENT_TYPE_FRAMED = 0x02;
export const CONTENT_TYPE_NON_FRAMED = 0x01;
/** A P-384 signature in DER is at most 104 bytes; writers normalise it to 103. */
export const SIGNATURE_LENGTH = 103;
/** The reserved context key of the signed suite: base64 of the compressed P-384 public key. */
export const PUBLIC_KEY_CONTEXT_KEY = 'aws-crypto-public-key';
export const RESERVED_CONTEXT_PREFIX = 'aws-crypto-';

/** envseal's default frame length (the AWS Encryption SDK's is 4096). */
export const DEFAULT_FRAME_LENGTH = 64 * 1024;
/** Frame lengths envseal accepts, writing and reading: each frame is held in memory once. */
export const MAX_FRAME_LENGTH = 16 * 1024 * 1024;
/** Frames per message: sequence numbers are UInt32 and 0xFFFFFFFF marks the final frame. */
export const MAX_FRAME_COUNT = 0xffffffff;

export function suiteById(id: number): Suite | undefined {
  return SUITES.find((suite) => suite.id === id);
}

export function formatSuiteId(id: number): string {
  return `0x${id.toString(16).padStart(4, '0')}`;
}

/** Parses a suite as the CLI accepts it: 0x0478 / 0x0578, the SDK's names, or committed / committed-signed. */
export function parseSuite(text: string): Suite {
  const t = text.trim();
  const lower = t.toLowerCase();
  for (const suite of SUITES) {
    if (lower === formatSuiteId(suite.id) || lower === suite.id.toString(16).padStart(4, '0') || t.toUpperCase() === suite.name) return suite;
  }
  if (lower === 'committed' || lower === 'commit') return SUITE_COMMIT;
  if (lower === 'committed-signed' || lower === 'signed') return SUITE_COMMIT_ECDSA_P384;
  throw new FileFormatError(
    'UnknownSuite',
    `unknown algorithm suite ${JSON.stringify(t.slice(0, 60))}: use 0x0478 (${SUITE_COMMIT.name}, default) or 0x0578 (${SUITE_COMMIT_ECDSA_P384.name})`,
  );
}
