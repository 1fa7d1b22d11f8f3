import { quoteName } from '../../api/names.ts';
import { compactEnvelopes } from '../../sealing/edit.ts';
import { parseRecipientTarget } from '../../providers/registry.ts';
import { HELP_OPTION, stringList } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, readInput, writeManifest } from '../command.ts';
import { CLUSTER_OPTIONS, clusterTargets } from '../cluster.ts';
import { parseOutputFormat } from '../documents.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';
import { MANIFEST_REWRITE_OPTIONS, manifestRewrite } from './recipients.ts';

export const compactCommand: Command = {
  name: 'compact',
  summary: 'fold every envelope into one, under a fresh data key (needs Decrypt)',
  usage: 'envseal compact [-f FILE] [-w FILE | --in-place] [-r PROVIDER:TARGET...] [-i IDENTITY]',
  description: `
Every \`seal --merge-into\` (which needs no Decrypt permission) adds an envelope with its
own data key: a manifest edited that way for a while holds many, and the controller
unwraps one data key per envelope. A holder of Decrypt (an identity, or kms:Decrypt)
folds them back into one: every value is opened, checked, and sealed again under a new
data key, for the recipients every envelope shares. When the envelopes are sealed for
different recipients, name the recipients of the result with --recipient (or
--controller-namespace): compacting never widens who can read a value on its own.
Metadata and template are kept. A manifest with one envelope is left as it is unless
--recipient is given.`,
  footer: `
Examples:
  envseal compact -f db.envelope.yaml --in-place -i ops.key
  envseal compact -f db.envelope.yaml --in-place -r aws-kms:alias/prod-secrets --controller-namespace envseal-system`,
  options: { ...MANIFEST_REWRITE_OPTIONS, ...CLUSTER_OPTIONS, ...IDENTITY_OPTIONS, ...PROVIDER_OPTIONS, ...HELP_OPTION },
  providers: 'open',
  run: compact,
};

async function compact(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const { file, destination, formatFlag } = manifestRewrite(values);
  const targets = [...stringList(values, 'recipient').map(parseRecipientTarget), ...(await clusterTargets(values, io, ctx.signal))];

  const loaded = loadEnvelopeSecret(await readInput(file, io, 'pass -f FILE or pipe an EnvelopeSecret manifest'));
  const count = loaded.secret.spec.envelopes.length;
  if (count === 1 && targets.length === 0 && destination !== undefined && destination === file) {
    io.stderr.write(`${quoteName(destination)} has one envelope already; nothing written\n`);
    return 0;
  }
  const compacted = await compactEnvelopes({
    secret: loaded.secret,
    ...(targets.length > 0 ? { targets } : {}),
    providers: ctx.providers,
    random: ctx.random,
    now: io.now(),
    signal: ctx.signal,
  });
  await writeManifest(compacted, { format: parseOutputFormat(formatFlag, loaded.format), file: destination, io, stream: loaded.stream });
  if (destination !== undefined) {
    const keys = Object.keys(compacted.spec.envelopes[0]!.data).length;
    io.stderr.write(`compacted ${count} envelope${count === 1 ? '' : 's'} (${keys} key${keys === 1 ? '' : 's'}) into one in ${quoteName(destination)}\n`);
  }
  return 0;
}
