import { quoteName } from '../../api/names.ts';
import { type AgeIdentityKind, formatAgeIdentityFile, generateAgeIdentity, recipientOfIdentity } from '../../providers/age.ts';
import type { CreatedKey, CreateKeyRequest } from '../../providers/aws-kms.ts';
import type { KeyProvider } from '../../providers/types.ts';
import type { VaultTransitProvider } from '../../providers/vault-transit.ts';
import { flag, HELP_OPTION, stringList, stringOption } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CliError, usageError } from '../errors.ts';
import { writeNewPrivateFile } from '../files.ts';
import { IDENTITY_OPTIONS, KMS_OPTIONS, loadAgeIdentities } from '../provider-config.ts';

export const keysCreateCommand: Command = {
  name: 'keys create',
  summary: 'create an age identity, an AWS KMS key and alias, or a Vault transit key',
  usage: 'envseal keys create -o FILE | --stdout [--type x25519|hybrid]\n       envseal keys create --provider aws-kms --alias alias/NAME [--region REGION]\n       envseal keys create --provider vault-transit --name NAME|MOUNT/keys/NAME [--vault-addr URL]',
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
VAULT_TOKEN, and prints its path MOUNT/keys/NAME; an existing key is never changed.`,
  footer: `
Examples:
  envseal keys create -o ~/.config/envseal/age.key
  envseal keys create --provider aws-kms --alias alias/envseal-prod --region eu-west-1
  envseal keys create --provider vault-transit --name envseal-prod`,
  options: {
    output: { type: 'string', short: 'o', value: 'FILE', help: 'write the new age identity to FILE (mode 0600, never overwritten)' },
    stdout: { type: 'boolean', help: 'print the new age identity on stdout (the recipient goes to stderr)' },
    type: { type: 'string', short: 't', value: 'TYPE', help: 'age identity type: x25519 (default) or hybrid (post-quantum)' },
    provider: { type: 'string', short: 'p', value: 'PROVIDER', help: 'age (default), aws-kms or vault-transit' },
    name: { type: 'string', value: 'KEY', help: 'vault-transit: the new transit key, NAME (mount transit) or MOUNT/keys/NAME' },
    alias: { type: 'string', value: 'alias/NAME', help: 'aws-kms: the alias for the new key' },
    description: { type: 'string', value: 'TEXT', help: 'aws-kms: the key description' },
    ...KMS_OPTIONS,
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

function parseAgeType(text: string | undefined): AgeIdentityKind {
  if (text === undefined || text === 'x25519') return 'x25519';
  if (text === 'hybrid') return 'hybrid';
  throw usageError(`--type must be x25519 or hybrid, not ${quoteName(text)}`);
}

interface KeyCreator extends KeyProvider {
  createKey(request: CreateKeyRequest): Promise<CreatedKey>;
}

function canCreateKeys(provider: KeyProvider): provider is KeyCreator {
  return typeof (provider as Partial<KeyCreator>).createKey === 'function';
}

async function keysCreate(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const provider = stringOption(values, 'provider') ?? 'age';
  const output = stringOption(values, 'output');
  const toStdout = flag(values, 'stdout');

  if (provider === 'aws-kms') {
    for (const option of ['output', 'stdout', 'type'] as const) {
      if (values[option] !== undefined) throw usageError(`--${option} is for age identities, not --provider aws-kms`);
    }
    const alias = stringOption(values, 'alias');
    if (alias === undefined) throw usageError('--provider aws-kms needs --alias alias/NAME');
    const kms = await ctx.providers.get('aws-kms');
    if (!canCreateKeys(kms)) throw new CliError('Refused', 'the configured aws-kms provider cannot create keys');
    const description = stringOption(values, 'description');
    const created = await kms.createKey({ alias, ...(description !== undefined ? { description } : {}), ...(ctx.signal ? { signal: ctx.signal } : {}) });
    io.stdout.write(`${created.keyArn}\n`);
    io.stderr.write(`created ${created.alias} (${created.aliasArn}); seal with --recipient aws-kms:${created.alias}\n`);
    return 0;
  }
  if (provider === 'vault-transit') {
    for (const option of ['output', 'stdout', 'type', 'alias', 'description'] as const) {
      if (values[option] !== undefined) throw usageError(`--${option} is not an option of --provider vault-transit`);
    }
    const name = stringOption(values, 'name');
    if (name === undefined) throw usageError('--provider vault-transit needs --name NAME (or MOUNT/keys/NAME)');
    const vault = (await ctx.providers.get('vault-transit')) as Partial<VaultTransitProvider>;
    if (typeof vault.createKey !== 'function') throw new CliError('Refused', 'the configured vault-transit provider cannot create keys');
    const created = await vault.createKey({ target: name, ...(ctx.signal ? { signal: ctx.signal } : {}) });
    io.stdout.write(`${created.keyId}\n`);
    io.stderr.write(`created transit key ${created.keyId} (derived); seal with --recipient vault-transit:${created.keyId}\n`);
    return 0;
  }
  if (provider !== 'age') throw usageError(`keys create knows the providers age, aws-kms and vault-transit, not ${quoteName(provider)}`);
  for (const option of ['alias', 'description', 'name'] as const) {
    if (values[option] !== undefined) throw usageError(`--${option} is for --provider aws-kms`);
  }
  if (output !== undefined && toStdout) throw usageError('pass either -o FILE or --stdout, not both');
  if (output === undefined && !toStdout) throw usageError('pass -o FILE to write the new identity to a file (or --stdout to print it)');
  if (output === '-') throw usageError('use --stdout to print the identity');

  const kind = parseAgeType(stringOption(values, 'type'));
  const generated = await generateAgeIdentity(kind);
  const text = formatAgeIdentityFile(generated, io.now());
  if (output !== undefined) {
    await writeNewPrivateFile(output, text, { cwd: io.cwd });
    io.stdout.write(`${generated.recipient}\n`);
    io.stderr.write(`wrote a new ${kind} age identity to ${quoteName(output)} (mode 0600); its recipient is on stdout: seal with --recipient age:RECIPIENT\n`);
  } else {
    io.stdout.write(text);
    io.stderr.write(`Public key: ${generated.recipient}\n`);
  }
  return 0;
}

async function keysRecipient(ctx: CommandContext): Promise<number> {
  const identities = await loadAgeIdentities(stringList(ctx.values, 'identity'), ctx.io);
  if (identities.length === 0) throw new CliError('IdentityNotFound', 'no age identity: pass --identity FILE or set ENVSEAL_AGE_IDENTITY');
  for (const identity of identities) ctx.io.stdout.write(`${await recipientOfIdentity(identity)}\n`);
  return 0;
}
