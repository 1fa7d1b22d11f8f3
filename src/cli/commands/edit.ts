import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { quoteName, secretKeyProblem } from '../../api/names.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { isStandardBase64 } from '../../envelope/base64.ts';
import { resealValues } from '../../sealing/edit.ts';
import { openEnvelopeSecret } from '../../sealing/open.ts';
import { HELP_OPTION } from '../args.ts';
import { type Command, type CommandContext, describeSecret, loadEnvelopeSecret, readInput, writeManifest } from '../command.ts';
import { formatDocument, parseSingleDocument } from '../documents.ts';
import { CliError, invalidInput, usageError } from '../errors.ts';
import { fileError, readInputFile } from '../files.ts';
import type { CliIo } from '../io.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';
import { checkValues, missingValue, unknownField } from '../secret-input.ts';

export const editCommand: Command = {
  name: 'edit',
  summary: 'decrypt to a private temporary file, edit it, re-seal on save',
  usage: 'envseal edit FILE [--identity FILE]',
  description: `
Opens the values of an EnvelopeSecret in $VISUAL or $EDITOR (default vi): text values
under stringData, other values as base64 under data. On save, changed values are
re-encrypted, new keys added, removed keys dropped; unchanged values keep their exact
ciphertext, so the Git diff shows only what changed. FILE is replaced atomically; if
nothing changed it is not written. The temporary file lives in a fresh private
directory (mode 0700, file 0600) and is removed on every path, errors included.
Needs an identity or kms:Decrypt (the data keys are unwrapped to re-seal).`,
  footer: `
Exit codes: 0 saved or unchanged; 5 the editor failed, the edit was abandoned or left
no values, or FILE changed meanwhile (FILE is then untouched).`,
  options: { ...IDENTITY_OPTIONS, ...PROVIDER_OPTIONS, ...HELP_OPTION },
  positionals: { max: 1 },
  providers: 'open',
  run: edit,
};

const HEADER = (secret: EnvelopeSecret) => `# envseal edit: EnvelopeSecret ${describeSecret(secret)}
# Save and quit to re-seal; quit without saving to change nothing.
# stringData holds text values, data holds other values in base64.
# Add, change or remove keys in either map. Lines starting with # are ignored.
`;

/** The editable text: UTF-8 values as text, the rest as base64. */
export function editableText(secret: EnvelopeSecret, values: Record<string, Buffer>): string {
  const stringData: Record<string, string> = {};
  const data: Record<string, string> = {};
  for (const envelope of secret.spec.envelopes) {
    for (const key of Object.keys(envelope.data)) {
      const value = values[key];
      if (value === undefined) continue;
      const text = value.toString('utf8');
      if (Buffer.from(text, 'utf8').equals(value)) stringData[key] = text;
      else data[key] = value.toString('base64');
    }
  }
  const body: Record<string, Record<string, string>> = { stringData };
  if (Object.keys(data).length > 0) body.data = data;
  return HEADER(secret) + formatDocument(body, 'yaml');
}

/** The values of an edited file. Messages name keys and lines, never values. */
export function parseEditedText(bytes: Buffer, source: string): Map<string, Buffer> {
  const { value } = parseSingleDocument(bytes, source);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidInput(`${source}: expected stringData and data maps`);
  const record = value as Record<string, unknown>;
  for (const field of Object.keys(record)) {
    if (field !== 'stringData' && field !== 'data')
      throw invalidInput(`${source}: ${unknownField(field, ['stringData', 'data'])}; only stringData and data can be edited`);
  }
  const values = new Map<string, Buffer>();
  for (const field of ['stringData', 'data'] as const) {
    const map = record[field] ?? {};
    if (map === null || typeof map !== 'object' || Array.isArray(map)) throw invalidInput(`${source}: ${field} must be a map`);
    for (const [index, [key, item]] of Object.entries(map as Record<string, unknown>).entries()) {
      if (item === null || item === undefined) throw invalidInput(`${source}: ${missingValue(field, index)}`);
      const problem = secretKeyProblem(key);
      if (problem) throw invalidInput(`${source}: key ${quoteName(key)}: ${problem}`);
      if (values.has(key)) throw invalidInput(`${source}: key ${quoteName(key)} is in both stringData and data`);
      if (typeof item !== 'string')
        throw invalidInput(`${source}: ${field}[${quoteName(key)}] must be a string${field === 'stringData' ? ' (quote numbers and booleans)' : ''}`);
      if (field === 'data' && !isStandardBase64(item)) throw invalidInput(`${source}: data[${quoteName(key)}] is not standard padded base64`);
      values.set(key, field === 'data' ? Buffer.from(item, 'base64') : Buffer.from(item, 'utf8'));
    }
  }
  return values;
}

function sameValues(a: ReadonlyMap<string, Buffer>, b: Record<string, Buffer>): boolean {
  if (a.size !== Object.keys(b).length) return false;
  for (const [key, value] of a) {
    const other = b[key];
    if (other === undefined || !other.equals(value)) return false;
  }
  return true;
}

function temporaryRoot(io: CliIo): string {
  return io.env.TMPDIR || io.env.TMP || io.env.TEMP || os.tmpdir();
}

async function writePrivate(file: string, text: string): Promise<void> {
  const handle = await open(file, 'w', 0o600);
  try {
    await handle.chmod(0o600);
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}

async function edit(ctx: CommandContext): Promise<number> {
  const { io, signal } = ctx;
  const file = ctx.positionals[0];
  if (file === undefined) throw usageError('envseal edit needs the FILE to edit');
  if (file === '-') throw usageError('envseal edit needs a file, not stdin');
  if (io.spawnEditor === undefined) throw usageError('no editor can be started in this environment');
  const editor = io.env.VISUAL || io.env.EDITOR || 'vi';

  const original = await readInput(file, io, '');
  const loaded = loadEnvelopeSecret(original);
  const opened = await openEnvelopeSecret({ secret: loaded.secret, providers: ctx.providers, signal });
  let edited: Map<string, Buffer> | undefined;
  let directory: string | undefined;
  let untrack: (() => void) | undefined;
  try {
    try {
      directory = await mkdtemp(path.join(temporaryRoot(io), 'envseal-edit-'));
    } catch (error) {
      throw fileError(error, 'create a temporary directory in', temporaryRoot(io));
    }
    untrack = io.temporaries?.track(directory);
    const scratch = path.join(directory, `${loaded.secret.metadata.name}.yaml`);
    let written = editableText(loaded.secret, opened);
    await writePrivate(scratch, written);

    for (;;) {
      signal?.throwIfAborted();
      const status = await io.spawnEditor({ editor, file: scratch, signal });
      signal?.throwIfAborted();
      if (status !== 0) throw new CliError('EditorFailed', `the editor (${quoteName(editor)}) exited with status ${status}; ${quoteName(file)} is unchanged`);
      let bytes: Buffer;
      try {
        bytes = await readFile(scratch);
      } catch (error) {
        throw new CliError('EditAborted', `the edited file is gone; ${quoteName(file)} is unchanged`, { cause: error });
      }
      if (bytes.equals(Buffer.from(written, 'utf8'))) {
        if (written.startsWith('# ERROR')) throw new CliError('EditAborted', `edit abandoned; ${quoteName(file)} is unchanged`);
        io.stderr.write(`no changes; ${quoteName(file)} is unchanged\n`);
        return 0;
      }
      if (bytes.toString('utf8').trim() === '') throw new CliError('EditAborted', `the edited file is empty: edit abandoned; ${quoteName(file)} is unchanged`);
      try {
        edited = parseEditedText(bytes, 'the edited file');
        break;
      } catch (error) {
        // Interactive: reopen with the problem on top, as kubectl edit does.
        if (!(error instanceof CliError) || !io.stdinIsTTY) throw error;
        const kept = bytes.toString('utf8').replace(/^(# ERROR.*\n|# Fix it.*\n)+/, '');
        written = `# ERROR: ${error.message.replaceAll('\n', '\n# ')}\n# Fix it and save, or quit without saving to abandon the edit.\n${kept}`;
        await writePrivate(scratch, written);
      }
    }

    if (sameValues(edited, opened)) {
      io.stderr.write(`no changes to the values; ${quoteName(file)} is unchanged\n`);
      return 0;
    }
    const resealed = await resealValues({
      secret: loaded.secret,
      values: checkValues(edited),
      providers: ctx.providers,
      random: ctx.random,
      signal,
    });
    const current = await readInputFile(file, { cwd: io.cwd });
    if (!current.equals(original.bytes))
      throw new CliError('FileChanged', `${quoteName(file)} changed while it was being edited; not overwriting it (run envseal edit again)`);
    await writeManifest(resealed, { format: loaded.format, file, io, stream: loaded.stream });
    io.stderr.write(`re-sealed ${quoteName(file)}\n`);
    return 0;
  } finally {
    for (const value of Object.values(opened)) value.fill(0);
    for (const value of edited?.values() ?? []) value.fill(0);
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
    untrack?.();
  }
}
