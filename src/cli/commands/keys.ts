import { quoteName } from '../../api/names.ts';
import { localIdentityProvider, PROVIDER_NAMES } from '../../providers/registry.ts';
import { flag, HELP_OPTION, stringOption } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CliError, usageError } from '../errors.ts';
import { writeNewPrivateFile } from '../files.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS, resolveProviderConfig } from '../provider-config.ts';

export const keysCreateCommand: Command = {
  name: 'keys create',
  summary: 'create an age identity, or a key in a key service (AWS KMS, Vault transit, Alibaba Cloud KMS)',
  usage: 'envseal keys create -o FILE | --stdout [--type x25519|hybrid]\n       envseal keys create --provider PROVIDER --name NAME [provider options]',
  description: `
age (default): generates a new identity and writes it to -o FILE with mode 0600; an
existing file is never overwritten. The public recipient (age1...) is printed on stdout:
seal for it with --recipient age:age1... With --stdout the identity itself is printed
on stdout instead (e.g. to pipe it into a Kubernetes Secret) and the recipient on stderr.
--type hybrid makes a post-quantum hybrid (ML-KEM-768 + X25519) identity.

aws-kms: creates a symmetric customer master key and the alias (kms:CreateKey and
kms:CreateAlias) and prints the key ARN; seal with --recipient aws-kms:alias/NAME.

vault-transit: creates an aes256-gcm96 transit key with derived=true (so that Vault
binds each wrapped key to its namespace and name) on Vault or OpenBao at VAULT_ADDR with
VAULT_TOKEN, and prints its path MOUNT/keys/NAME; an existing key is never changed.

alibaba-kms: creates a symmetric key and the alias (kms:CreateKey, kms:CreateAlias)
and prints the key ARN; seal with --recipient alibaba-kms:alias/NAME.

Every provider prints the new key's id on stdout and the --recipient to seal for it on
stderr.`,
  footer: `
Examples:
  envseal keys create -o ~/.config/envseal/age.key
  envseal keys create --provider aws-kms --alias alias/envseal-prod --region eu-west-1
  envseal keys create --provider vault-transit --name envseal-prod
  envseal keys create --provider alibaba-kms --name alias/envseal-prod --alibaba-kms-region cn-hangzhou`,
  options: {
    output: { type: 'string', short: 'o', value: 'FILE', help: 'write the new age identity to FILE (mode 0600, never overwritten)' },
    stdout: { type: 'boolean', help: 'print the new age identity on stdout (the recipient goes to stderr)' },
    type: { type: 'string', short: 't', value: 'TYPE', help: 'age identity type: x25519 (default) or hybrid (post-quantum)' },
    provider: { type: 'string', short: 'p', value: 'PROVIDER', help: `${PROVIDER_NAMES.join(', ')} (default: local identity)` },
    name: { type: 'string', value: 'KEY', help: 'the new key in the key service: an alias (aws-kms: alias/NAME), a transit key NAME or MOUNT/keys/NAME' },
    alias: { type: 'string', value: 'alias/NAME', help: 'the same as --name' },
    description: { type: 'string', value: 'TEXT', help: 'the key description, where the service keeps one' },
    ...PROVIDER_OPTIONS,
    ...HELP_OPTION,
  },
  providers: 'seal',
  run: keysCreate,
};

export const keysRecipientCommand: Command = {
  name: 'keys recipient',
  summary: 'print the age recipient of an identity file',
  usage: 'envseal keys recipient [--identity FILE]',
  description: `
Prints the public recipient (age1...) of every identity in the file named by --identity
or ENVSEAL_AGE_IDENTITY, one a line, for --recipient age:age1...`,
  options: { ...IDENTITY_OPTIONS, ...HELP_OPTION },
  providers: 'none',
  run: keysRecipient,
};

async function keysCreate(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const local = localIdentityProvider();
  const providerName = stringOption(values, 'provider') ?? local.name;
  if (!ctx.providers.definitions.some((d) => d.name === providerName)) {
    throw usageError(`--provider must be one of ${ctx.providers.definitions.map((d) => d.name).join(', ')}, not ${quoteName(providerName)}`);
  }
  const definition = ctx.providers.definition(providerName);
  const output = stringOption(values, 'output');
  const toStdout = flag(values, 'stdout');

  if (definition.localIdentity === undefined) {
    for (const option of ['output', 'stdout', 'type'] as const) {
      if (values[option] !== undefined) throw usageError(`--${option} is for ${local.name} identities, not --provider ${definition.name}`);
    }
    if (definition.createKey === undefined) throw usageError(`the ${definition.name} provider cannot create keys`);
    const name = stringOption(values, 'name') ?? stringOption(values, 'alias');
    if (name === undefined) throw usageError(`--provider ${definition.name} needs --name NAME (the new key's name or alias)`);
    if (values.name !== undefined && values.alias !== undefined) throw usageError('pass --name or --alias, not both');
    const description = stringOption(values, 'description');
    const created = await ctx.providers.createKey(definition.name, {
      name,
      description,
      signal: ctx.signal,
    });
    io.stdout.write(`${created.keyId}\n`);
    io.stderr.write(`${created.summary}; seal with --recipient ${definition.name}:${created.target}\n`);
    return 0;
  }
  for (const option of ['alias', 'description', 'name'] as const) {
    if (values[option] !== undefined)
      throw usageError(
        `--${option} is for keys created in a key service (--provider ${ctx.providers.definitions
          .filter((d) => d.createKey)
          .map((d) => d.name)
          .join(', --provider ')})`,
      );
  }
  if (output !== undefined && toStdout) throw usageError('pass either -o FILE or --stdout, not both');
  if (output === undefined && !toStdout) throw usageError('pass -o FILE to write the new identity to a file (or --stdout to print it)');
  if (output === '-') throw usageError('use --stdout to print the identity');

  const identity = definition.localIdentity;
  const kind = stringOption(values, 'type') ?? identity.kinds[0]!;
  if (!identity.kinds.includes(kind)) throw usageError(`--type must be ${identity.kinds.join(' or ')}, not ${quoteName(kind)}`);
  const generated = await identity.generate(kind);
  const text = identity.formatFile(generated, io.now());
  if (output !== undefined) {
    await writeNewPrivateFile(output, text, { cwd: io.cwd });
    io.stdout.write(`${generated.recipient}\n`);
    io.stderr.write(
      `wrote a new ${kind} ${definition.name} identity to ${quoteName(output)} (mode 0600); its recipient is on stdout: seal with --recipient ${definition.name}:RECIPIENT\n`,
    );
  } else {
    io.stdout.write(text);
    io.stderr.write(`Public key: ${generated.recipient}\n`);
  }
  return 0;
}

async function keysRecipient(ctx: CommandContext): Promise<number> {
  const local = localIdentityProvider();
  const config = await resolveProviderConfig(ctx.values, ctx.io, { identities: true });
  const identities = local.localIdentity.identitiesOf(config[local.name]);
  if (identities.length === 0) throw new CliError('IdentityNotFound', `no ${local.name} identity: pass --identity FILE or set ENVSEAL_AGE_IDENTITY`);
  for (const identity of identities) ctx.io.stdout.write(`${await local.localIdentity.recipientOf(identity)}\n`);
  return 0;
}
