import { isDeepStrictEqual } from 'node:util';
import { quoteName } from '../../api/names.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { addRecipient, removeRecipient } from '../../sealing/edit.ts';
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
  summary: 'remove a recipient from every envelope (never the last one)',
  usage: 'envseal remove-recipient -r PROVIDER:TARGET... [-f FILE] [-w FILE | --in-place]',
  description: `
Removes a recipient from every envelope that has it. aws-kms recipients are recorded by
key ARN; an alias or key id is resolved to it with kms:DescribeKey. Refuses (exit 5) when an envelope would be
left with no recipient. Note that whoever held the removed key could already read the
current values: rotate them if that matters.`,
  options: { ...MANIFEST_REWRITE_OPTIONS, ...PROVIDER_OPTIONS, ...HELP_OPTION },
  providers: 'seal',
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
  for (const target of targets) {
    secret =
      action === 'add'
        ? await addRecipient({ secret, target, providers: ctx.providers, signal: ctx.signal })
        : await removeRecipient({ secret, target, providers: ctx.providers, signal: ctx.signal });
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
    io.stderr.write(`${action === 'add' ? 'added' : 'removed'} ${names} ${action === 'add' ? 'to' : 'from'} ${quoteName(destination)}\n`);
  }
  return 0;
}

const shorten = abbreviate;
