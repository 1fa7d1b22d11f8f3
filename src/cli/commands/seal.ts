import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { quoteName } from '../../api/names.ts';
import type { EnvelopeSecret, SecretTemplate } from '../../api/types.ts';
import { bindingOf, MAX_SECRET_DATA_BYTES, parseEnvelopeSecret } from '../../api/validation.ts';
import { type Binding, isScope, namespaceListProblem, type Scope } from '../../envelope/context.ts';
import { mergeValues } from '../../sealing/edit.ts';
import { sealEnvelopeSecret } from '../../sealing/seal.ts';
import { VALUE_OVERHEAD_BYTES } from '../../envelope/envelope.ts';
import { parseRecipientTarget, recipientForms } from '../../providers/registry.ts';
import type { RecipientTarget } from '../../providers/types.ts';
import { flag, HELP_OPTION, stringList, stringOption } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, readInput, writeManifest } from '../command.ts';
import { parseOutputFormat, parseSingleDocument } from '../documents.ts';
import { formatManifest } from '../namespace-stream.ts';
import { CLUSTER_OPTIONS, clusterTargets } from '../cluster.ts';
import { invalidInput, usageError } from '../errors.ts';
import { fileError, readInputFile, resolvePath, writeFileAtomic } from '../files.ts';
import { PROVIDER_OPTIONS } from '../provider-config.ts';
import {
  checkMetadataMaps,
  checkName,
  checkNamespace,
  checkValues,
  parseEnvFile,
  parseLiteral,
  parsePairs,
  readFromFile,
  type SecretInput,
  secretFromManifest,
  ValueCollector,
} from '../secret-input.ts';

const OPTIONS = {
  filename: {
    type: 'string',
    short: 'f',
    multiple: true,
    value: 'FILE',
    help: 'Secret manifest to seal (YAML or JSON; "-" for stdin); several with --output-dir',
  },
  'output-dir': { type: 'string', value: 'DIR', help: 'seal every -f FILE in one run, each into DIR/<its file name> (DIR is created if missing)' },
  'from-literal': { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'a value given on the command line' },
  'from-file': { type: 'string', multiple: true, value: '[KEY=]PATH', help: "a file's bytes; the key defaults to the file name" },
  'from-env-file': { type: 'string', multiple: true, value: 'PATH', help: 'KEY=VALUE lines (kubectl format: values taken literally)' },
  name: { type: 'string', value: 'NAME', help: 'name of the Secret (default: metadata.name of the input)' },
  namespace: { type: 'string', short: 'n', value: 'NAMESPACE', help: 'namespace (default: metadata.namespace of the input; required unless --scope cluster)' },
  type: { type: 'string', value: 'TYPE', help: "Secret type, e.g. kubernetes.io/tls (default: the input's, else Opaque)" },
  label: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'label of the Secret' },
  annotation: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'annotation of the Secret' },
  immutable: { type: 'boolean', help: 'make the Secret immutable' },
  recipient: { type: 'string', short: 'r', multiple: true, value: 'PROVIDER:TARGET', help: `who can open it: ${recipientForms()}` },
  scope: { type: 'string', value: 'SCOPE', help: 'strict (default: this name and namespace), namespace, cluster, or namespaces (with --namespaces)' },
  namespaces: {
    type: 'string',
    value: 'NS,NS,...',
    help: "scope namespaces: this name in each of these namespaces and no other; writes one YAML document per namespace (only -n NAMESPACE's when given)",
  },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'yaml (default) or json' },
  write: { type: 'string', short: 'w', value: 'FILE', help: 'write to FILE (atomically, only on success) instead of stdout' },
  'merge-into': { type: 'string', value: 'FILE', help: 'add or replace values in this EnvelopeSecret, in place (no Decrypt needed)' },
  ...CLUSTER_OPTIONS,
  ...PROVIDER_OPTIONS,
  ...HELP_OPTION,
} as const;

export const sealCommand: Command = {
  name: 'seal',
  summary: 'encrypt a Secret into an EnvelopeSecret manifest',
  usage:
    'envseal seal [-f FILE | --from-literal K=V | --from-file [K=]PATH | --from-env-file PATH]... --recipient P:T... [options]\n       envseal seal -f FILE... --output-dir DIR --recipient P:T... [options]',
  description: `
Encrypts values into an EnvelopeSecret that is safe to commit. Values come from a
native Secret manifest (-f FILE or stdin: data in base64, stringData as text; stringData
wins for the same key, as with the API server) and/or the --from-* flags; the same key
from two sources is an error. Labels, annotations, type and immutable of the input
become the Secret's template; server-set metadata and kubectl's last-applied annotation
are dropped. Sealing needs only the recipients' public keys (age) or kms:GenerateDataKey
and kms:Encrypt (aws-kms).

With --controller-namespace NS the result is also sealed for the age recipient that the
envseal controller in that namespace publishes, so that the cluster can open it with no
key file at hand (needs read access to the ConfigMap envseal-age-recipient there).

With --merge-into FILE the values are added to an existing EnvelopeSecret as one new
envelope, for its recipients (or only those given by --recipient and
--controller-namespace); replaced keys leave their old envelopes
and every other value keeps its exact ciphertext. FILE is rewritten in place unless -w
names another file.

With --namespaces a,b,c (scope namespaces) the values are bound to the name and to
that list: the result opens as this name in each listed namespace and in no other. The
output is one YAML stream of one document per listed namespace, identical but for
metadata.namespace, for kubectl apply -f; with -n NAMESPACE, only that namespace's
document (e.g. for a kustomize overlay that sets the namespace). KMS keys wrap the data
key once per listed namespace, under an encryption context naming it. Every command
that rewrites a manifest keeps such a stream whole.

With --output-dir DIR, every -f FILE (one Secret manifest each) is sealed in one run
and written to DIR under the input's file name, as a loop of single seals would, without
starting a process per Secret. --namespace, --scope, --type, --label, --annotation and
--immutable apply to each; every Secret is sealed before any file is written.`,
  footer: `
Examples:
  envseal seal -f secret.yaml -r age:age1... -w db.envelope.yaml
  envseal seal --name db -n prod --from-literal PASSWORD=hunter2 -r aws-kms:alias/envseal
  envseal seal --merge-into db.envelope.yaml --from-file tls.key=./key.pem
  envseal seal -f secrets/db.yaml -f secrets/api.yaml -r age:age1... --output-dir sealed/
  envseal seal -f pull-secret.yaml --namespaces team-a,team-b -r aws-kms:alias/envseal -w pull.envelope.yaml`,
  options: OPTIONS,
  providers: 'seal',
  run: seal,
};

async function collectInput(ctx: CommandContext, file: string | undefined): Promise<SecretInput & { fromManifest: boolean }> {
  const { io, values } = ctx;
  const literals = stringList(values, 'from-literal');
  const files = stringList(values, 'from-file');
  const envFiles = stringList(values, 'from-env-file');
  const hasFlags = literals.length + files.length + envFiles.length > 0;

  let base: SecretInput | undefined;
  if (file !== undefined || !hasFlags) {
    const input = await readInput(file, io, 'pass -f FILE, --from-literal, --from-file or --from-env-file, or pipe a Secret manifest');
    base = secretFromManifest(parseSingleDocument(input.bytes, input.source).value, input.source);
  }
  const collector = new ValueCollector();
  if (base) collector.addAll(base.values, file === undefined || file === '-' ? 'stdin' : quoteName(file));
  for (const [index, literal] of literals.entries()) {
    const [key, value] = parseLiteral(literal, index);
    collector.add(key, value, '--from-literal');
  }
  for (const spec of files) {
    const [key, value] = await readFromFile(spec, io.cwd);
    collector.add(key, value, `--from-file ${quoteName(spec)}`);
  }
  for (const envFile of envFiles) {
    const bytes = await readInputFile(envFile, { cwd: io.cwd, maxBytes: 8 * 1024 * 1024, what: 'read --from-env-file' });
    collector.addAll(parseEnvFile(bytes, quoteName(envFile)), `--from-env-file ${quoteName(envFile)}`);
  }

  const result: SecretInput & { fromManifest: boolean } = {
    labels: { ...base?.labels, ...parsePairs(stringList(values, 'label'), '--label') },
    annotations: { ...base?.annotations, ...parsePairs(stringList(values, 'annotation'), '--annotation') },
    values: collector.values,
    fromManifest: base !== undefined,
  };
  checkMetadataMaps(result.labels, result.annotations);
  const name = stringOption(values, 'name') ?? base?.name;
  const namespace = stringOption(values, 'namespace') ?? base?.namespace;
  const type = stringOption(values, 'type') ?? base?.type;
  const immutable = flag(values, 'immutable') ? true : base?.immutable;
  if (name !== undefined) result.name = name;
  if (namespace !== undefined) result.namespace = namespace;
  if (type !== undefined) {
    if (type === '') throw usageError('--type must not be empty');
    result.type = type;
  }
  if (immutable !== undefined) result.immutable = immutable;
  return result;
}

/** The template fields the input sets (others are left as they are). */
function templateOf(input: SecretInput): SecretTemplate {
  const template: SecretTemplate = {};
  if (input.type !== undefined) template.type = input.type;
  if (input.immutable !== undefined) template.immutable = input.immutable;
  const metadata: NonNullable<SecretTemplate['metadata']> = {};
  if (Object.keys(input.labels).length > 0) metadata.labels = input.labels;
  if (Object.keys(input.annotations).length > 0) metadata.annotations = input.annotations;
  if (Object.keys(metadata).length > 0) template.metadata = metadata;
  return template;
}

function mergeTemplate(current: SecretTemplate | undefined, update: SecretTemplate): SecretTemplate | undefined {
  const merged: SecretTemplate = { ...current };
  if (update.type !== undefined) merged.type = update.type;
  if (update.immutable !== undefined) merged.immutable = update.immutable;
  const labels = { ...current?.metadata?.labels, ...update.metadata?.labels };
  const annotations = { ...current?.metadata?.annotations, ...update.metadata?.annotations };
  const metadata: NonNullable<SecretTemplate['metadata']> = { ...current?.metadata };
  if (Object.keys(labels).length > 0) metadata.labels = labels;
  if (Object.keys(annotations).length > 0) metadata.annotations = annotations;
  if (Object.keys(metadata).length > 0) merged.metadata = metadata;
  return Object.keys(merged).length > 0 ? merged : undefined;
}

function parseScope(text: string | undefined): Scope | undefined {
  if (text === undefined) return undefined;
  if (!isScope(text)) throw usageError(`--scope must be strict, namespace, cluster or namespaces, not ${quoteName(text)}`);
  return text;
}

/** --namespaces a,b,c: checked, sorted and without duplicates (the canonical form the format requires). */
function parseNamespaces(ctx: CommandContext, scope: Scope | undefined): string[] | undefined {
  const text = stringOption(ctx.values, 'namespaces');
  if (text === undefined) {
    if (scope === 'namespaces') throw usageError('--scope namespaces needs --namespaces NS,NS,... (the namespaces to seal for)');
    return undefined;
  }
  if (scope !== undefined && scope !== 'namespaces') throw usageError(`--namespaces seals for scope namespaces, not --scope ${scope}`);
  const list = [...new Set(text.split(',').map((ns) => checkNamespace(ns.trim(), true)!))].sort();
  const problem = namespaceListProblem(list);
  if (problem !== undefined) throw usageError(`--namespaces ${problem}`);
  return list;
}

/**
 * The binding of a new manifest. Scope namespaces: the document's namespace is -n (one
 * document, e.g. for a kustomize overlay) or, without -n, every listed one (a stream).
 */
function bindingFor(ctx: CommandContext, input: SecretInput, scope: Scope, list: string[] | undefined): { binding: Binding; stream: boolean } {
  const name = checkName(input.name);
  if (list === undefined) return { binding: { scope, name, namespace: checkNamespace(input.namespace, scope !== 'cluster') ?? '' }, stream: false };
  const explicit = stringOption(ctx.values, 'namespace');
  const namespace = explicit ?? input.namespace;
  if (namespace !== undefined && !list.includes(namespace)) throw usageError(`namespace ${quoteName(namespace)} is not one of --namespaces ${list.join(',')}`);
  return { binding: { scope: 'namespaces', name, namespace: namespace ?? list[0]!, namespaces: list }, stream: explicit === undefined };
}

async function seal(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const mergeInto = stringOption(values, 'merge-into');
  const write = stringOption(values, 'write');
  const scope = parseScope(stringOption(values, 'scope'));
  const namespaces = parseNamespaces(ctx, scope);
  const targets: RecipientTarget[] = stringList(values, 'recipient').map(parseRecipientTarget);
  const formatFlag = stringOption(values, 'output');
  parseOutputFormat(formatFlag);
  const files = stringList(values, 'filename');
  const outputDir = stringOption(values, 'output-dir');
  if (files.length > 1 && outputDir === undefined) throw usageError('several -f FILE need --output-dir DIR (each EnvelopeSecret goes to its own file)');
  if (outputDir !== undefined) checkBatchFlags(ctx, files, write, mergeInto);
  targets.push(...(await clusterTargets(values, io, ctx.signal)));
  if (outputDir !== undefined) return sealMany(ctx, files, outputDir, { scope, namespaces, targets, format: parseOutputFormat(formatFlag) });
  const file = files[0];

  if (mergeInto !== undefined) {
    if (mergeInto === '-') throw usageError('--merge-into needs a file (it is rewritten in place)');
    if (namespaces !== undefined) throw usageError("--merge-into keeps the manifest's namespaces: --namespaces cannot change them (seal anew)");
    const existing = loadEnvelopeSecret(await readInput(mergeInto, io, ''));
    const input = await collectInput(ctx, file);
    const merged = await mergeInto_(existing.secret, input, { scope, targets, ctx });
    await writeManifest(merged, { format: parseOutputFormat(formatFlag, existing.format), file: write ?? mergeInto, io, stream: existing.stream });
    io.stderr.write(`sealed ${input.values.size} value${input.values.size === 1 ? '' : 's'} into ${quoteName(write ?? mergeInto)}\n`);
    return 0;
  }

  const input = await collectInput(ctx, file);
  const { binding, stream } = bindingFor(ctx, input, scope ?? 'strict', namespaces);
  if (targets.length === 0) throw usageError('no recipient: pass --recipient aws-kms:ARN-or-alias, --recipient age:age1... or --controller-namespace NS');
  if (input.values.size === 0) throw usageError('no values to seal: the input has no data or stringData, and no --from-* flag was given');
  const sealed = await sealEnvelopeSecret({
    values: checkValues(input.values),
    binding,
    targets,
    providers: ctx.providers,
    random: ctx.random,
    now: io.now(),
    template: templateOf(input),
    signal: ctx.signal,
  });
  await writeManifest(sealed, { format: parseOutputFormat(formatFlag), file: write, io, stream });
  if (write !== undefined)
    io.stderr.write(
      `sealed ${input.values.size} value${input.values.size === 1 ? '' : 's'} for ${targets.length} recipient${targets.length === 1 ? '' : 's'} into ${quoteName(write)}\n`,
    );
  return 0;
}

function checkBatchFlags(ctx: CommandContext, files: readonly string[], write: string | undefined, mergeInto: string | undefined): void {
  const { values } = ctx;
  if (files.length === 0) throw usageError('--output-dir needs one or more -f FILE');
  if (files.includes('-')) throw usageError('--output-dir reads files: stdin (-f -) cannot be one of them');
  if (write !== undefined) throw usageError('-w and --output-dir cannot be combined');
  if (mergeInto !== undefined) throw usageError('--merge-into and --output-dir cannot be combined');
  for (const option of ['name', 'from-literal', 'from-file', 'from-env-file']) {
    if (values[option] !== undefined) throw usageError(`--${option} names one Secret's values; with --output-dir each -f FILE is its own Secret`);
  }
  const seen = new Map<string, string>();
  for (const file of files) {
    const base = path.basename(file);
    const other = seen.get(base);
    if (other !== undefined) throw usageError(`${quoteName(other)} and ${quoteName(file)} would both be written to ${quoteName(base)} in the output directory`);
    seen.set(base, file);
  }
}

/** Seals each file into DIR/<its name>: all are sealed (and checked) before any is written. */
async function sealMany(
  ctx: CommandContext,
  files: readonly string[],
  outputDir: string,
  options: { scope: Scope | undefined; namespaces: string[] | undefined; targets: RecipientTarget[]; format: 'yaml' | 'json' },
): Promise<number> {
  const { io } = ctx;
  if (options.targets.length === 0)
    throw usageError('no recipient: pass --recipient aws-kms:ARN-or-alias, --recipient age:age1... or --controller-namespace NS');
  const dir = resolvePath(io.cwd, outputDir);
  for (const file of files) {
    if (path.dirname(resolvePath(io.cwd, file)) === dir) throw usageError(`${quoteName(file)} is in the output directory: sealing it would overwrite it`);
  }
  const scope = options.scope ?? 'strict';
  const texts: string[] = new Array(files.length);
  // A few at a time: a KMS's GenerateDataKey round trips overlap; age is local.
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      const file = files[index]!;
      ctx.signal?.throwIfAborted();
      const input = await collectInput(ctx, file);
      const { binding, stream } = bindingFor(ctx, input, scope, options.namespaces);
      if (input.values.size === 0) throw invalidInput(`${quoteName(file)}: no values to seal (the manifest has no data or stringData)`);
      const sealed = await sealEnvelopeSecret({
        values: checkValues(input.values),
        binding,
        targets: options.targets,
        providers: ctx.providers,
        random: ctx.random,
        now: ctx.io.now(),
        template: templateOf(input),
        signal: ctx.signal,
      });
      parseEnvelopeSecret(sealed, 'output');
      texts[index] = formatManifest(sealed, options.format, stream);
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, files.length) }, worker));
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw fileError(error, 'create the output directory', outputDir);
  }
  for (const [index, file] of files.entries()) {
    await writeFileAtomic(path.join(dir, path.basename(file)), texts[index]!, { cwd: io.cwd, temporaries: io.temporaries });
  }
  io.stderr.write(
    `sealed ${files.length} Secret${files.length === 1 ? '' : 's'} for ${options.targets.length} recipient${options.targets.length === 1 ? '' : 's'} into ${quoteName(outputDir)}\n`,
  );
  return 0;
}

/** The 1 MiB limit counts the values the manifest keeps too. */
function checkMergedSize(secret: EnvelopeSecret, values: ReadonlyMap<string, Buffer>): void {
  let total = 0;
  for (const envelope of secret.spec.envelopes) {
    for (const [key, sealed] of Object.entries(envelope.data)) {
      if (!values.has(key)) total += Buffer.byteLength(sealed, 'base64') - VALUE_OVERHEAD_BYTES;
    }
  }
  for (const value of values.values()) total += value.length;
  if (total > MAX_SECRET_DATA_BYTES) {
    throw invalidInput(`with the merged values the Secret would hold ${total} bytes; a Secret holds at most ${MAX_SECRET_DATA_BYTES} (1 MiB)`);
  }
}

async function mergeInto_(
  secret: EnvelopeSecret,
  input: SecretInput,
  options: { scope: Scope | undefined; targets: RecipientTarget[]; ctx: CommandContext },
): Promise<EnvelopeSecret> {
  const binding = bindingOf(secret);
  // The binding is the manifest's: a differing name, namespace or scope is a mistake.
  if (input.name !== undefined && input.name !== binding.name) {
    throw usageError(`the input names ${quoteName(input.name)} but the EnvelopeSecret is ${quoteName(binding.name)}`);
  }
  if (input.namespace !== undefined && input.namespace !== (secret.metadata.namespace ?? '')) {
    throw usageError(`the input's namespace ${quoteName(input.namespace)} differs from the EnvelopeSecret's ${quoteName(secret.metadata.namespace ?? '')}`);
  }
  if (options.scope !== undefined && options.scope !== binding.scope) {
    throw usageError(`--scope ${options.scope} differs from the EnvelopeSecret's scope ${binding.scope}`);
  }
  if (input.values.size === 0) throw usageError('no values to merge: pass --from-literal, --from-file, --from-env-file or -f FILE');
  checkMergedSize(secret, input.values);
  const merged = await mergeValues({
    secret,
    values: checkValues(input.values),
    ...(options.targets.length > 0 ? { targets: options.targets } : {}),
    providers: options.ctx.providers,
    random: options.ctx.random,
    now: options.ctx.io.now(),
    signal: options.ctx.signal,
  });
  const template = mergeTemplate(secret.spec.template, templateOf(input));
  const spec = { ...merged.spec };
  if (template === undefined) delete spec.template;
  else spec.template = template;
  return { ...merged, spec };
}
