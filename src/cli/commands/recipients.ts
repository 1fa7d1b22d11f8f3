import { isDeepStrictEqual } from 'node:util';
import { quoteName } from '../../api/names.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { addRecipient } from '../../sealing/edit.ts';
import { type RekeyMode, type RemoveRecipientsResult, removeRecipients } from '../../sealing/rekey.ts';
import { parseRecipientTarget, recipientForms } from '../../providers/registry.ts';
import type { RecipientTarget } from '../../providers/types.ts';
import { flag, HELP_OPTION, type OptionSpecs, stringList, stringOption } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, readInput, writeManifest } from '../command.ts';
import { parseOutputFormat } from '../documents.ts';
import { CLUSTER_OPTIONS, clusterTargets } from '../cluster.ts';
import { usageError } from '../errors.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';
import { abbreviate } from '../../util/message.ts';

export const MANIFEST_REWRITE_OPTIONS: OptionSpecs = {
  filename: { type: 'string', short: 'f', value: 'FILE', help: 'EnvelopeSecret manifest (default: stdin)' },
  recipient: { type: 'string', short: 'r', multiple: true, value: 'PROVIDER:TARGET', help: `${recipientForms()} (an alias only to add)` },
  write: { type: 'string', short: 'w', value: 'FILE', help: 'write to FILE (atomically) instead of stdout' },
  'in-place': { type: 'boolean', help: 'rewrite the -f FILE itself (atomically)' },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: "yaml or json (default: the input's format)" },
};

export const addRecipientCommand: Command = {
  name: 'add-recipient',
  summary: "wrap every envelope's data key for one more recipient",
  usage: 'envseal add-recipient -r PROVIDER:TARGET... [-f FILE] [-w FILE | --in-place]',
  description: `
Adds a recipient to every envelope: e.g. an age break-glass key or a second-region KMS
key. For an aws-kms target next to an existing aws-kms recipient this uses ReEncrypt (the
data key never leaves the KMS); otherwise the data key is unwrapped (needs an identity or
kms:Decrypt), its commitment checked, and wrapped for the new recipient. Values are not
touched. Envelopes that already have the recipient are left as they are.`,
  footer: `
Examples:
  envseal add-recipient -f db.envelope.yaml --in-place -r age:age1... -i ops.key
  envseal add-recipient -f db.envelope.yaml --in-place --controller-namespace envseal-system -i ops.key
  envseal add-recipient -f db.envelope.yaml --in-place -r aws-kms:arn:aws:kms:us-west-2:111122223333:key/...`,
  options: { ...MANIFEST_REWRITE_OPTIONS, ...CLUSTER_OPTIONS, ...IDENTITY_OPTIONS, ...PROVIDER_OPTIONS, ...HELP_OPTION },
  providers: 'open',
  run: (ctx) => changeRecipients(ctx, 'add'),
};

export const removeRecipientCommand: Command = {
  name: 'remove-recipient',
  summary: 'remove a recipient from every envelope and re-key them (never the last one)',
  usage: 'envseal remove-recipient -r PROVIDER:TARGET... [-f FILE] [-w FILE | --in-place] [--rekey | --no-rekey] [-i IDENTITY]',
  description: `
Removes a recipient from every envelope that has it, and re-keys each of those envelopes:
every value is opened and sealed again under a fresh data key for the remaining
recipients, in one atomic write, so that the old data key (which the removed recipient
can still unwrap from Git history) opens none of the new ciphertexts, nor any value edited
into the envelope later. The envelopes stay separate (each is re-keyed on its own), so
the Git diff stays per envelope; envelopes without the recipient are untouched.

Re-keying needs an identity or KMS access that opens the envelopes, and what seal needs
for the remaining recipients. By default an envelope this run cannot open (no identity,
access denied) loses only the wrapping, and a warning on stderr says that the removed
recipient can still open its current values from history. --rekey makes that an error
(nothing written); --no-rekey removes only the wrappings, without Decrypt. Either way the
removed recipient could read the values as they were: rotate them if that matters.

aws-kms recipients are recorded by key ARN; an alias or key id is resolved to it with
kms:DescribeKey. Refuses (exit 5) when an envelope would be left with no recipient.`,
  footer: `
Examples:
  envseal remove-recipient -f db.envelope.yaml --in-place -r age:age1... -i ops.key
  envseal remove-recipient -f db.envelope.yaml --in-place -r aws-kms:alias/old-key --no-rekey`,
  options: {
    ...MANIFEST_REWRITE_OPTIONS,
    rekey: { type: 'boolean', help: 're-key every envelope that loses the recipient, or fail (default: those this run can open)' },
    'no-rekey': { type: 'boolean', help: 'remove only the wrappings (no Decrypt needed); the old data keys stay' },
    ...IDENTITY_OPTIONS,
    ...PROVIDER_OPTIONS,
    ...HELP_OPTION,
  },
  providers: 'open',
  run: (ctx) => changeRecipients(ctx, 'remove'),
};

/**
 * The input and output of a command that rewrites a manifest (MANIFEST_REWRITE_OPTIONS),
 * checked: `destination` is -w FILE, the input file with --in-place, or undefined for stdout.
 */
export function manifestRewrite(values: CommandContext['values']): {
  file: string | undefined;
  destination: string | undefined;
  formatFlag: string | undefined;
} {
  const file = stringOption(values, 'filename');
  const write = stringOption(values, 'write');
  const inPlace = flag(values, 'in-place');
  if (inPlace && write !== undefined) throw usageError('pass either -w FILE or --in-place, not both');
  if (inPlace && (file === undefined || file === '-')) throw usageError('--in-place needs -f FILE');
  const formatFlag = stringOption(values, 'output');
  parseOutputFormat(formatFlag);
  return { file, destination: inPlace ? file : write, formatFlag };
}

async function changeRecipients(ctx: CommandContext, action: 'add' | 'remove'): Promise<number> {
  const { io, values } = ctx;
  const { file, destination, formatFlag } = manifestRewrite(values);
  const targets: RecipientTarget[] = stringList(values, 'recipient').map(parseRecipientTarget);
  if (action === 'add') targets.push(...(await clusterTargets(values, io, ctx.signal)));
  if (targets.length === 0) throw usageError(`no recipient: pass --recipient PROVIDER:TARGET${action === 'add' ? ' or --controller-namespace NS' : ''}`);

  const loaded = loadEnvelopeSecret(await readInput(file, io, 'pass -f FILE or pipe an EnvelopeSecret manifest'));
  let secret: EnvelopeSecret = loaded.secret;
  let removal: RemoveRecipientsResult | undefined;
  if (action === 'add') {
    for (const target of targets) secret = await addRecipient({ secret, target, providers: ctx.providers, signal: ctx.signal });
  } else {
    removal = await removeRecipients({
      secret,
      targets,
      rekey: rekeyMode(values),
      providers: ctx.providers,
      random: ctx.random,
      now: ctx.io.now(),
      signal: ctx.signal,
    });
    secret = removal.secret;
  }
  const unchanged = isDeepStrictEqual(secret, loaded.secret);
  if (unchanged && destination !== undefined && destination === file) {
    io.stderr.write(
      `${quoteName(destination)} already has ${targets.length === 1 ? 'this recipient' : 'these recipients'} in every envelope; nothing written\n`,
    );
    return 0;
  }
  await writeManifest(secret, { format: parseOutputFormat(formatFlag, loaded.format), file: destination, io, stream: loaded.stream });
  if (destination !== undefined) {
    const names = targets.map((t) => quoteName(`${t.provider}:${shorten(t.target)}`)).join(', ');
    const rekeyed = removal && removal.rekeyed.length > 0 ? ` and re-keyed ${plural(removal.rekeyed.length, 'envelope')}` : '';
    io.stderr.write(`${action === 'add' ? 'added' : 'removed'} ${names} ${action === 'add' ? 'to' : 'from'} ${quoteName(destination)}${rekeyed}\n`);
  }
  for (const { index, keys, reason } of removal?.wrappingOnly ?? []) {
    const shown = keys.slice(0, 5).map(quoteName).join(', ') + (keys.length > 5 ? ` and ${keys.length - 5} more` : '');
    io.stderr.write(
      `warning: envelope #${index} (${shown}) was not re-keyed (${reason}): only the wrapping was removed, so the removed recipient can still open its current values from Git history (and values edited into it later); re-key it with an identity or KMS access that opens it (envseal compact), or rotate the values\n`,
    );
  }
  return 0;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function rekeyMode(values: CommandContext['values']): RekeyMode {
  const rekey = flag(values, 'rekey');
  const noRekey = flag(values, 'no-rekey');
  if (rekey && noRekey) throw usageError('pass either --rekey or --no-rekey, not both');
  return rekey ? 'always' : noRekey ? 'never' : 'auto';
}

const shorten = abbreviate;
