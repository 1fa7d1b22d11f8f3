/** Targets of the vault-transit provider (NAME or MOUNT/keys/NAME), the transit context, the manifest forms of its recipients. */

import { encodeContext } from '../../envelope/context.ts';
import { ProviderError } from '../types.ts';

import { CONTEXT_PREFIX, DEFAULT_TRANSIT_MOUNT, type ParsedTransitTarget, VAULT_TRANSIT } from './types.ts';
import { quoteTarget } from '../types.ts';

// ---------------------------------------------------------------------------------
// Targets

export const SEGMENT = /^[A-Za-z0-9_.-]{1,128}$/;
export const TARGET_FORMS = 'NAME (on the mount transit) or MOUNT/keys/NAME';

export function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `vault-transit target ${quoteTarget(target)} ${problem}`, { provider: VAULT_TRANSIT });
}

/** Parses `NAME` or `MOUNT/keys/NAME`, or throws InvalidRecipient naming the problem. */
export function parseTransitTarget(target: string): ParsedTransitTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `vault-transit target is empty: expected ${TARGET_FORMS}`, { provider: VAULT_TRANSIT });
  }
  const at = target.lastIndexOf('/keys/');
  const mount = at < 0 ? DEFAULT_TRANSIT_MOUNT : target.slice(0, at);
  const name = at < 0 ? target : target.slice(at + '/keys/'.length);
  if (at < 0 && target.includes('/')) throw invalidTarget(target, `is not ${TARGET_FORMS}`);
  if (!SEGMENT.test(name) || name === '.' || name === '..') {
    throw invalidTarget(target, 'has an invalid key name: 1-128 of A-Z a-z 0-9 _ . -');
  }
  const segments = mount.split('/');
  if (segments.some((s) => !SEGMENT.test(s) || s === '.' || s === '..')) {
    throw invalidTarget(target, 'has an invalid mount path: segments of A-Z a-z 0-9 _ . - separated by /');
  }
  return { mount, name, keyId: `${mount}/keys/${name}` };
}

/** The transit `context`: base64 of the prefix and envseal's canonical encoding of the encryption context. */
export function transitContext(encryptionContext: Record<string, string>): string {
  return Buffer.concat([CONTEXT_PREFIX, encodeContext(encryptionContext)]).toString('base64');
}

export const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);
export const TRANSIT_CIPHERTEXT = /^vault:v\d+:[A-Za-z0-9+/=]+$/;

export function isTransitKeyPath(keyId: unknown): boolean {
  if (typeof keyId !== 'string' || !keyId.includes('/keys/')) return false;
  try {
    return parseTransitTarget(keyId).keyId === keyId;
  } catch {
    return false;
  }
}
