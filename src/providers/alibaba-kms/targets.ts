/** Targets of the alibaba-kms provider: key ids, aliases and ARNs; the manifest checks of its recipients. */

import { ProviderError, type RecipientProblem } from '../types.ts';

import { ALIBABA_KMS, MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES } from './types.ts';
import type { Recipient } from '../types.ts';
import { quoteTarget } from '../types.ts';

// ---------------------------------------------------------------------------------
// Targets

export interface ParsedAlibabaTarget {
  kind: 'key-arn' | 'alias-arn' | 'alias' | 'key-id';
  /** From the ARN; undefined for a bare key id or alias. */
  region: string | undefined;
  /** What KeyId takes in calls: the key id or the alias name (alias/NAME). */
  keyRef: string;
}

export const KEY_ID = /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|key-[a-z0-9]{8,64})$/;
export const ALIAS_NAME = /^alias\/[A-Za-z0-9:/_-]{1,255}$/;
export const REGION = /^[a-z]{2,}(?:-[a-z0-9]+)+$/;
export const ACCOUNT = /^\d{1,32}$/;
export const KEY_ARN = /^acs:kms:([a-z]{2,}(?:-[a-z0-9]+)+):(\d{1,32}):key\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|key-[a-z0-9]{8,64})$/;
export const TARGET_FORMS = 'a key id, alias/NAME, or an ARN acs:kms:REGION:ACCOUNT:key/KEY-ID or :alias/NAME';

export function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `alibaba-kms target ${quoteTarget(target)} ${problem}`, { provider: ALIBABA_KMS });
}

/** Parses a target, or throws InvalidRecipient naming the problem. No I/O. */
export function parseAlibabaTarget(target: string): ParsedAlibabaTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `alibaba-kms target is empty: expected ${TARGET_FORMS}`, { provider: ALIBABA_KMS });
  }
  if (target.trim() !== target) throw invalidTarget(target, 'has leading or trailing white space');
  if (target.startsWith('acs:')) {
    const parts = target.split(':');
    if (parts.length < 5 || parts[1] !== 'kms') throw invalidTarget(target, 'is not a KMS ARN: expected acs:kms:REGION:ACCOUNT:key/KEY-ID or :alias/NAME');
    const [, , region = '', account = '', ...rest] = parts;
    const resource = rest.join(':');
    if (!REGION.test(region)) throw invalidTarget(target, `has no valid region (got ${quoteTarget(region)})`);
    if (!ACCOUNT.test(account)) throw invalidTarget(target, `has no valid account id (got ${quoteTarget(account)})`);
    if (resource.startsWith('key/')) {
      if (!KEY_ID.test(resource.slice(4))) throw invalidTarget(target, 'has an invalid key id: expected a UUID or key- followed by 8-64 of a-z 0-9');
      return { kind: 'key-arn', region, keyRef: resource.slice(4) };
    }
    if (resource.startsWith('alias/')) {
      if (!ALIAS_NAME.test(resource)) throw invalidTarget(target, 'has an invalid alias: alias/ followed by 1-255 of A-Z a-z 0-9 : / _ -');
      return { kind: 'alias-arn', region, keyRef: resource };
    }
    throw invalidTarget(target, 'names neither a key (key/KEY-ID) nor an alias (alias/NAME)');
  }
  if (target.startsWith('alias/')) {
    if (!ALIAS_NAME.test(target)) throw invalidTarget(target, 'is not a valid alias: alias/ followed by 1-255 of A-Z a-z 0-9 : / _ -');
    return { kind: 'alias', region: undefined, keyRef: target };
  }
  if (KEY_ID.test(target)) return { kind: 'key-id', region: undefined, keyRef: target };
  if (/^[A-Za-z0-9_-]+$/.test(target)) throw invalidTarget(target, `is not ${TARGET_FORMS} (an alias needs the alias/ prefix: alias/${target}?)`);
  throw invalidTarget(target, `is not ${TARGET_FORMS}`);
}

/** The region and key id of a key ARN (a recipient's keyId), or undefined. */
export function parseKeyArn(arn: unknown): { region: string; account: string; keyId: string } | undefined {
  if (typeof arn !== 'string') return undefined;
  const m = KEY_ARN.exec(arn);
  return m === null ? undefined : { region: m[1]!, account: m[2]!, keyId: m[3]! };
}

/** Problems with a manifest recipient's own fields (the controller and `envseal verify`). */
export function checkAlibabaRecipient(recipient: Readonly<Record<string, unknown>>, encryptedKey: Uint8Array | undefined): RecipientProblem[] {
  const problems: RecipientProblem[] = [];
  if (parseKeyArn(recipient.keyId) === undefined) {
    problems.push({ field: 'keyId', check: 'structure', message: 'an alibaba-kms recipient needs keyId, the key ARN acs:kms:REGION:ACCOUNT:key/KEY-ID' });
  }
  if (encryptedKey !== undefined) {
    if (encryptedKey.byteLength === 0)
      problems.push({ field: 'encryptedKey', check: 'structure', message: 'an alibaba-kms encryptedKey is a KMS CiphertextBlob and cannot be empty' });
    if (encryptedKey.byteLength > MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES) {
      problems.push({
        field: 'encryptedKey',
        check: 'size',
        message: `an alibaba-kms encryptedKey is a KMS CiphertextBlob: at most ${MAX_ALIBABA_KMS_ENCRYPTED_KEY_BYTES} bytes`,
      });
    }
  }
  return problems;
}

/** The EncryptionContext parameter: the service takes the map as one JSON string. */
export function encryptionContextJson(context: Record<string, string>): string {
  return JSON.stringify(
    Object.fromEntries(
      Object.keys(context)
        .sort()
        .map((k) => [k, context[k]]),
    ),
  );
}

/** A recipient for messages: the provider and its key ARN. */
export function describeAlibabaRecipient(recipient: Recipient): string {
  return `alibaba-kms ${recipient.keyId ?? '(no keyId)'}`;
}
