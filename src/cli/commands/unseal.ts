import { quoteName } from '../../api/names.ts';
import { renderTemplates } from '../../api/template-render.ts';
import { parseTemplate, referencedKeys } from '../../api/template.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { openEnvelopeSecret } from '../../sealing/open.ts';
import { HELP_OPTION, stringOption } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, readInput } from '../command.ts';
import { formatDocument, parseOutputFormat } from '../documents.ts';
import { CliError } from '../errors.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';

const OPTIONS = {
  filename: { type: 'string', short: 'f', value: 'FILE', help: 'EnvelopeSecret manifest (default: stdin)' },
  key: { type: 'string', short: 'k', value: 'KEY', help: 'print only the raw value of KEY (a sealed or a templated key)' },
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
base64): the sealed keys and the keys of spec.template.data rendered from them. With
--key, the raw bytes of one key, sealed or rendered. Needs an age identity of one of the
recipients (--identity FILE or ENVSEAL_AGE_IDENTITY) or kms:Decrypt on one of the KMS
keys. The output is plaintext: do not commit it.`,
  footer: `
Examples:
  envseal unseal -f db.envelope.yaml -i ~/.config/envseal/age.key
  envseal unseal -f db.envelope.yaml --key PASSWORD
  envseal unseal -f db.envelope.yaml --key config.yaml     # a template, rendered`,
  options: OPTIONS,
  providers: 'open',
  run: unseal,
};

/** The Secret the controller materializes, with the given values and the templates rendered from them. */
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
  const templates = template.data;
  if (templates !== undefined) {
    for (const [key, value] of Object.entries(renderTemplates({ templates, values }))) {
      data[key] = value.toString('base64');
      value.fill(0);
    }
  }
  manifest.data = data;
  return manifest;
}

export function keysOf(secret: EnvelopeSecret): string[] {
  return [...secret.spec.envelopes.flatMap((envelope) => Object.keys(envelope.data)), ...Object.keys(secret.spec.template?.data ?? {})];
}

/** The sealed keys to open for --key: the key itself, or the keys its template reads. */
function keysToOpen(secret: EnvelopeSecret, key: string): string[] {
  const text = secret.spec.template?.data?.[key];
  if (text === undefined) return [key];
  return [...new Set(referencedKeys(parseTemplate(key, text)).map((ref) => ref.key))];
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
    ...(key !== undefined ? { keys: keysToOpen(secret, key) } : {}),
    signal: ctx.signal,
  });
  try {
    const templates = secret.spec.template?.data;
    if (key !== undefined && templates !== undefined && Object.hasOwn(templates, key)) {
      // Rendered into a fresh buffer, which the stream owns from here.
      io.stdout.write(renderTemplates({ templates: { [key]: templates[key]! }, values: opened })[key]!);
    } else if (key !== undefined) {
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
