import { hkdfSync } from 'node:crypto';

export const DATA_KEY_LENGTH = 32;
export const ENVELOPE_ID_LENGTH = 32;
const VALUE_KEY_INFO = 'envseal/v1 value-key';
const COMMITMENT_INFO = 'envseal/v1 commitment';

export interface DerivedKeys {
  valueKey: Buffer;
  commitment: Buffer;
}

/**
 * HKDF-SHA512 (salt = envelope id, input = data key), as the AWS Encryption SDK's
 * committing suite derives its keys. The caller zeroes `valueKey` when done.
 */
export function deriveKeys(dataKey: Uint8Array, envelopeId: Uint8Array): DerivedKeys {
  return {
    valueKey: Buffer.from(hkdfSync('sha512', dataKey, envelopeId, VALUE_KEY_INFO, 32)),
    commitment: Buffer.from(hkdfSync('sha512', dataKey, envelopeId, COMMITMENT_INFO, 32)),
  };
}
