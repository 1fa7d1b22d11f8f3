import { execFile } from 'node:child_process';
import { lstat, opendir, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { formatSealedAt } from '../../api/validation.ts';
import { buildInventory, type Inventory, type InventoryDocument, type InventoryProblem, parseKeyFilter } from '../../sealing/inventory.ts';
import { flag, HELP_OPTION, stringOption } from '../args.ts';
import { type Command, type CommandContext, MAX_MANIFEST_BYTES } from '../command.ts';
import { EXIT, usageError } from '../errors.ts';
import { fileError, readInputFile, resolvePath } from '../files.ts';
import { formatInventoryText } from './inventory-text.ts';

const OPTIONS = {
  key: { type: 'string', short: 'k', value: 'PROVIDER:TARGET', help: 'only the manifests and envelopes this key opens (the reverse index)' },
  output: { type: 'string', short: 'o', value: 'FORMAT', help: 'text (default) or json (schema envseal.dev/inventory/v1, docs/cli.md)' },
  git: { type: 'boolean', help: 'for envelopes without sealedAt, take the time of the commit that added them (git log)' },
  ...HELP_OPTION,
} as const;

export const inventoryCommand: Command = {
  name: 'inventory',
  summary: 'list the keys and data-key ages of a tree of manifests, and which manifests a key opens',
  usage: 'envseal inventory [--key PROVIDER:TARGET] [-o text|json] [--git] PATH...',
  description: `
Reads every *.yaml and *.yml file under each PATH (a directory, recursively; or a file),
all the documents of each, and lists for every EnvelopeSecret the keys (KMS keys, age
recipients) each envelope depends on and the age of its data key (from its sealedAt;
"unknown" for manifests sealed before envseal recorded it). Then the reverse index: each
key and the manifests it opens, for key retirement and incident response. Other
documents are skipped; a file that cannot be read or a document that is not a valid
EnvelopeSecret is reported and the rest is still listed (exit 3). No key, no provider
call and no value is needed or read.`,
  footer: `
Examples:
  envseal inventory deploy/
  envseal inventory deploy/ --key aws-kms:arn:aws:kms:eu-west-1:111122223333:key/1234abcd-...
  envseal inventory -o json deploy/ | jq '.manifests[] | select(.envelopes[].ageSeconds > 7776000)'
Keys are named as the manifest records them (a key ARN, not an alias: nothing is resolved).
Exit codes: 0 listed, 2 usage, 3 some file or document could not be read (listed under problems).`,
  options: OPTIONS,
  positionals: { max: 1024 },
  providers: 'none',
  run: inventory,
};

async function inventory(ctx: CommandContext): Promise<number> {
  const { io, values, positionals } = ctx;
  const output = stringOption(values, 'output') ?? 'text';
  if (output !== 'text' && output !== 'json') throw usageError(`-o/--output must be text or json, not ${JSON.stringify(output.slice(0, 20))}`);
  if (positionals.length === 0) throw usageError('no PATH: name the directories or files to list, e.g. envseal inventory deploy/');
  const keyText = stringOption(values, 'key');
  const key = keyText === undefined ? undefined : parseKeyFilter(keyText);

  const problems: InventoryProblem[] = [];
  const files: string[] = [];
  for (const root of positionals) await collectFiles(root, io.cwd, files, problems, ctx.signal);
  const documents: InventoryDocument[] = [];
  for (const file of files) {
    ctx.signal?.throwIfAborted();
    let bytes: Buffer;
    try {
      bytes = await readInputFile(file, { cwd: io.cwd, maxBytes: MAX_MANIFEST_BYTES });
    } catch (error) {
      problems.push({ file, document: null, message: error instanceof Error ? error.message : 'cannot read' });
      continue;
    }
    documents.push(...parseDocuments(bytes, file, problems));
  }
  const fallback = flag(values, 'git') ? await gitTimes(documents, io.cwd, ctx.signal) : undefined;
  const result: Inventory = buildInventory({
    documents,
    problems,
    now: io.now(),
    ...(key === undefined ? {} : { key }),
    ...(fallback ? { fallbackSealedAt: ({ file, envelopeId }: { file: string; envelopeId: string }) => fallback.get(`${file}\0${envelopeId}`) } : {}),
  });
  io.stdout.write(output === 'json' ? `${JSON.stringify(result, null, 2)}\n` : formatInventoryText(result, { key }));
  for (const problem of result.problems)
    io.stderr.write(`${problem.file}${problem.document === null ? '' : ` (document ${problem.document})`}: ${problem.message}\n`);
  return result.problems.length > 0 ? EXIT.invalidInput : EXIT.ok;
}

const MANIFEST_FILE = /\.ya?ml$/i;

/** The manifest files of `root` (a file is taken whatever its name; directories are walked, symbolic links not followed). */
async function collectFiles(root: string, cwd: string, files: string[], problems: InventoryProblem[], signal?: AbortSignal): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    // A PATH the user names is followed if it is a link; links inside it are not.
    info = await stat(resolvePath(cwd, root));
  } catch (error) {
    problems.push({ file: root, document: null, message: fileError(error, 'read', root).message });
    return;
  }
  if (!info.isDirectory()) {
    files.push(root);
    return;
  }
  const visit = async (dir: string): Promise<void> => {
    signal?.throwIfAborted();
    const names: string[] = [];
    try {
      for await (const entry of await opendir(resolvePath(cwd, dir))) names.push(entry.name);
    } catch (error) {
      problems.push({ file: dir, document: null, message: fileError(error, 'list', dir).message });
      return;
    }
    names.sort();
    for (const name of names) {
      if (name === '.git') continue;
      const child = path.join(dir, name);
      const childInfo = await lstat(resolvePath(cwd, child)).catch(() => undefined);
      if (childInfo?.isDirectory()) await visit(child);
      else if (childInfo?.isFile() && MANIFEST_FILE.test(name)) files.push(child);
    }
  };
  await visit(root);
}

/** Every document of a YAML file; a file that is not UTF-8 or YAML is one problem, a bad document another. */
function parseDocuments(bytes: Buffer, file: string, problems: InventoryProblem[]): InventoryDocument[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    problems.push({ file, document: null, message: 'not UTF-8 text' });
    return [];
  }
  const parsed = parseAllDocuments(text, { uniqueKeys: true });
  const list = Array.isArray(parsed) ? parsed : [];
  const documents: InventoryDocument[] = [];
  list.forEach((document, index) => {
    const error = document.errors[0];
    if (error !== undefined) {
      // The parser's message may quote the text (a value): only its code and position.
      const where = error.linePos?.[0];
      problems.push({
        file,
        document: index,
        message: `malformed YAML${where ? ` at line ${where.line}, column ${where.col}` : ''} (${error.code.toLowerCase().replaceAll('_', ' ')})`,
      });
      return;
    }
    if (document.contents === null) return;
    try {
      documents.push({ file, document: index, value: document.toJS({ maxAliasCount: 100 }) });
    } catch {
      problems.push({ file, document: index, message: 'malformed YAML (too many or unresolved aliases)' });
    }
  });
  return documents;
}

/**
 * For `--git`: the time of the oldest commit that added each envelope id lacking a
 * sealedAt (git log -S, limited to its file). One git process per such envelope; a file
 * outside a Git work tree (or no git) leaves the age unknown.
 */
async function gitTimes(documents: readonly InventoryDocument[], cwd: string, signal?: AbortSignal): Promise<Map<string, string>> {
  const times = new Map<string, string>();
  for (const { file, value } of documents) {
    const envelopes = (value as { spec?: { envelopes?: unknown } } | null)?.spec?.envelopes;
    if (!Array.isArray(envelopes)) continue;
    for (const envelope of envelopes as { id?: unknown; sealedAt?: unknown }[]) {
      const id = envelope?.id;
      if (typeof id !== 'string' || envelope.sealedAt !== undefined || times.has(`${file}\0${id}`)) continue;
      const full = resolvePath(cwd, file);
      const seconds = await new Promise<string>((resolve) => {
        execFile(
          'git',
          ['-C', path.dirname(full), 'log', '--format=%ct', '--reverse', '-S', id, '--', path.basename(full)],
          { signal, maxBuffer: 1024 * 1024, timeout: 60_000 },
          (error, stdout) => resolve(error ? '' : String(stdout).split('\n')[0]!.trim()),
        );
      });
      if (/^\d+$/.test(seconds)) times.set(`${file}\0${id}`, formatSealedAt(new Date(Number(seconds) * 1000)));
    }
  }
  return times;
}
