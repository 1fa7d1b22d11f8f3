/** Targets of the aws-kms provider: key ARNs, alias ARNs, aliases and key ids. */
import { ProviderError } from '../types.ts';
import { AWS_KMS } from './types.ts';
import { quoteTarget } from '../types.ts';

// ---------------------------------------------------------------------------------
// Targets

/** What a target string names, and the region it names if any. */
export interface ParsedKmsTarget {
  kind: 'key-arn' | 'alias-arn' | 'alias' | 'key-id';
  /** From the ARN; undefined for a bare alias or key id. */
  region: string | undefined;
}

export const KEY_ID = /^(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;
export const ALIAS_NAME = /^alias\/[A-Za-z0-9/_-]{1,250}$/;
const ARN = /^arn:([^:]*):([^:]*):([^:]*):([^:]*):(.*)$/;
const PARTITION = /^aws(?:-[a-z]+)*$/;
const REGION = /^[a-z]{2,}(?:-[a-z0-9]+)*-\d+$/;
const ACCOUNT = /^\d{12}$/;
export const KEY_ARN =
  /^arn:aws(?:-[a-z]+)*:kms:[a-z]{2,}(?:-[a-z0-9]+)*-\d+:\d{12}:key\/(?:mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

const TARGET_FORMS = 'a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), an alias ARN, alias/NAME or a key id';

export function invalidTarget(target: string, problem: string): ProviderError {
  return new ProviderError('InvalidRecipient', `aws-kms target ${quoteTarget(target)} ${problem}`, { provider: AWS_KMS });
}

/** Parses a target, or throws InvalidRecipient naming the problem. */
export function parseKmsTarget(target: string): ParsedKmsTarget {
  if (typeof target !== 'string' || target === '') {
    throw new ProviderError('InvalidRecipient', `aws-kms target is empty: expected ${TARGET_FORMS}`, { provider: AWS_KMS });
  }
  if (target.trim() !== target) throw invalidTarget(target, 'has leading or trailing white space');
  if (target.startsWith('arn:')) {
    const m = ARN.exec(target);
    if (m === null) throw invalidTarget(target, 'is not an ARN: expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME');
    const [, partition = '', service = '', region = '', account = '', resource = ''] = m;
    if (!PARTITION.test(partition)) throw invalidTarget(target, `has an unknown partition ${quoteTarget(partition)}`);
    if (service !== 'kms') throw invalidTarget(target, `is an ARN of service ${quoteTarget(service)}, not kms`);
    if (!REGION.test(region)) throw invalidTarget(target, `has no valid region (got ${quoteTarget(region)})`);
    if (!ACCOUNT.test(account)) throw invalidTarget(target, `has no valid 12-digit account id (got ${quoteTarget(account)})`);
    if (resource.startsWith('key/')) {
      if (!KEY_ID.test(resource.slice(4))) {
        throw invalidTarget(target, 'has an invalid key id: expected a UUID or mrk- followed by 32 hex digits');
      }
      return { kind: 'key-arn', region };
    }
    if (resource.startsWith('alias/')) {
      if (!ALIAS_NAME.test(resource)) {
        throw invalidTarget(target, 'has an invalid alias name: alias/ followed by 1-250 of A-Z a-z 0-9 / _ -');
      }
      return { kind: 'alias-arn', region };
    }
    throw invalidTarget(target, 'names neither a key (key/ID) nor an alias (alias/NAME)');
  }
  if (target.startsWith('alias/')) {
    if (!ALIAS_NAME.test(target)) {
      throw invalidTarget(target, 'is not a valid alias: alias/ followed by 1-250 of A-Z a-z 0-9 / _ -');
    }
    return { kind: 'alias', region: undefined };
  }
  if (KEY_ID.test(target)) return { kind: 'key-id', region: undefined };
  if (/^[A-Za-z0-9/_-]+$/.test(target)) {
    throw invalidTarget(target, `is not ${TARGET_FORMS} (an alias needs the alias/ prefix: alias/${target}?)`);
  }
  throw invalidTarget(target, `is not ${TARGET_FORMS}`);
}
