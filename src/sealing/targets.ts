import { quoteName } from '../api/names.ts';
import { PROVIDER_NAMES } from '../providers/registry.ts';
import { ProviderError } from '../providers/types.ts';

/** A recipient to seal for, as the user names it: `aws-kms:ARN-or-alias`, `age:age1...`. */
export interface RecipientTarget {
  provider: string;
  target: string;
}

export function parseRecipientTarget(text: string): RecipientTarget {
  const colon = text.indexOf(':');
  const provider = colon > 0 ? text.slice(0, colon) : '';
  const target = colon > 0 ? text.slice(colon + 1) : '';
  if (provider === '' || target === '') {
    throw new ProviderError('InvalidRecipient', `recipient ${quoteName(text)} must be PROVIDER:TARGET, e.g. aws-kms:alias/app or age:age1... (providers: ${PROVIDER_NAMES.join(', ')})`, { provider: provider || 'unknown' });
  }
  return { provider, target };
}
