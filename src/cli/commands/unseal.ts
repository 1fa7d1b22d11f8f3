import { quoteName } from '../../api/names.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { openEnvelopeSecret } from '../../sealing/open.ts';
import { HELP_OPTION, stringOption } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, readInput } from '../command.ts';
import { formatDocument, parseOutputFormat } from '../documents.ts';
import { CliError } from '../errors.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';

const OPTIONS = {
  filename: { type: 'string', short: 'f', value: 'FILE', help: 'EnvelopeSecret manifest (default: stdin)' },
  key: { type: 'string', short: 'k', value: 'KEY', help: 'print only the raw value of KEY' },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'yaml (default) or json' },
  ...IDENTITY_OPTIONS,
  ...PROVIDER_OPTIONS,
  ...HELP_OPTION,
} as const;

export const unsealCommand: Command = {
  name: 'unseal',
  summary: 'decrypt an EnvelopeSecret into a native Secret manifest',
  usage: 'envseal unseal [-f FILE] [--key KEY] [-o yaml|json] [--identity FILE]',
  description: `
Decrypts an EnvelopeSecret and prints the Secret the controller would create (data in
base64), or with --key the raw bytes of one value. Needs an age identity of one of the
recipients (--identity FILE or ENVSEAL_AGE_IDENTITY) or kms:Decrypt on one of the KMS
keys. The output is plaintext: do not commit it.`,
  footer: `
Examples:
  envseal unseal -f db.envelope.yaml -i ~/.config/envseal/age.key
  envseal unseal -f db.envelope.yaml --key PASSWORD`,
  options: OPTIONS,
  providers: 'open',
  run: unseal,
};

/** The Secret the controller materializes, with the given values. */
export function nativeSecret(secret: EnvelopeSecret, values: Record<string, Buffer>): Record<string, unknown> {
  const template = secret.spec.template ?? {};
  const metadata: Record<string, unknown> = { name: secret.metadata.name };
  if (secret.metadata.namespace !== undefined) metadata.namespace = secret.metadata.namespace;
  if (template.metadata?.labels && Object.keys(template.metadata.labels).length > 0) metadata.labels = template.metadata.labels;
  if (template.metadata?.annotations && Object.keys(template.metadata.annotations).length > 0) metadata.annotations = template.metadata.annotations;
  const manifest: Record<string, unknown> = { apiVersion: 'v1', kind: 'Secret', metadata, type: template.type ?? 'Opaque' };
  if (template.immutable !== undefined) manifest.immutable = template.immutable;
  const data: Record<string, string> = {};
  for (const envelope of secret.spec.envelopes) {
    for (const key of Object.keys(envelope.data)) {
      const value = values[key];
      if (value !== undefined) data[key] = value.toString('base64');
    }
  }
  manifest.data = data;
  return manifest;
}

export function keysOf(secret: EnvelopeSecret): string[] {
  return secret.spec.envelopes.flatMap((envelope) => Object.keys(envelope.data));
}

async function unseal(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const format = parseOutputFormat(stringOption(values, 'output'));
  const key = stringOption(values, 'key');
  const { secret } = loadEnvelopeSecret(await readInput(stringOption(values, 'filename'), io, 'pass -f FILE or pipe an EnvelopeSecret manifest'));
  if (key !== undefined && !keysOf(secret).includes(key)) {
    const known = keysOf(secret)
      .map((k) => quoteName(k))
      .join(', ');
    throw new CliError('KeyNotFound', `${quoteName(key)} is not a key of this EnvelopeSecret (keys: ${known})`);
  }
  const opened = await openEnvelopeSecret({
    secret,
    providers: ctx.providers,
    ...(key !== undefined ? { keys: [key] } : {}),
    signal: ctx.signal,
  });
  try {
    if (key !== undefined) {
      // A copy: the stream may still hold the chunk when the opened values are zeroed.
      io.stdout.write(Buffer.from(opened[key]!));
    } else {
      io.stdout.write(formatDocument(nativeSecret(secret, opened), format));
    }
  } finally {
    for (const value of Object.values(opened)) value.fill(0);
  }
  return 0;
}
