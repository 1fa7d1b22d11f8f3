import { stat } from 'node:fs/promises';
import path from 'node:path';
import { quoteName } from '../../api/names.ts';
import { FileFormatError } from '../../files/errors.ts';
import { MessageEncryptor, prepareMessage } from '../../files/encrypt.ts';
import { AtomicFileSink, type OutputWriter, PassThroughSink, type Sink } from '../../files/sinks.ts';
import { type ByteSource, fileSource } from '../../files/sources.ts';
import { pumpEncrypt } from '../../files/pump.ts';
import { generateDataKeyMaterials } from '../../files/materials.ts';
import { formatBytes, ProgressBar } from '../../files/progress.ts';
import { DEFAULT_FRAME_LENGTH, MAX_FRAME_LENGTH, parseSuite, SUITE_COMMIT, type Suite } from '../../files/suites.ts';
import { ensureParent, isInside, walkTree } from '../../files/tree.ts';
import { looksLikeRecipient, parseRecipientTarget, recipientForms } from '../../providers/registry.ts';
import type { RecipientTarget } from '../../providers/types.ts';
import { flag, HELP_OPTION, stringList, stringOption } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { CliError, usageError } from '../errors.ts';
import { fileError, resolvePath } from '../files.ts';
import type { CliIo } from '../io.ts';
import { PROVIDER_OPTIONS } from '../provider-config.ts';

/** Inputs at least this large get a progress bar when stderr is a terminal. */
export const PROGRESS_THRESHOLD_BYTES = 32 * 1024 * 1024;

const OPTIONS = {
  output: { type: 'string', short: 'o', value: 'FILE', help: 'write here (atomically, only on success) instead of stdout; a directory with -r' },
  recursive: { type: 'boolean', short: 'r', help: 'INPUT is a directory: encrypt every file in it into the directory -o (a tree in, a tree out)' },
  recipient: { type: 'string', multiple: true, value: 'PROVIDER:TARGET', help: `who can decrypt: ${recipientForms()}` },
  context: { type: 'string', short: 'c', multiple: true, value: 'KEY=VALUE', help: 'encryption context pair: authenticated, stored in clear, sent to KMS' },
  suite: { type: 'string', value: 'SUITE', help: '0x0478 (AES_256_GCM_HKDF_SHA512_COMMIT_KEY, default) or 0x0578 (..._ECDSA_P384: also signed)' },
  'frame-length': { type: 'string', value: 'BYTES', help: `plaintext bytes per frame (default ${DEFAULT_FRAME_LENGTH}, at most ${MAX_FRAME_LENGTH})` },
  suffix: { type: 'string', value: 'SUFFIX', help: 'with -r: appended to each output file name (default .encrypted)' },
  ...PROVIDER_OPTIONS,
  ...HELP_OPTION,
} as const;

export const encryptCommand: Command = {
  name: 'encrypt',
  summary: 'encrypt a file (or a tree with -r) in the AWS Encryption SDK message format',
  usage: 'envseal encrypt [INPUT | -] [-o OUTPUT] --recipient P:T... [--context K=V]... [options]',
  description: `
Envelope-encrypts a file of any size, streamed in constant memory: a fresh data key
(KMS GenerateDataKey for the first aws-kms recipient, else random) encrypts the file
locally in frames (AES-256-GCM, key committed, message format version 2 of the AWS
Encryption SDK); the data key, wrapped for every --recipient, travels in the header.
aws-encryption-cli decrypts files encrypted for aws-kms keys, and envseal decrypt reads
its files. INPUT is a file, or standard input when absent or "-". The output is
written to -o FILE atomically (a temporary file renamed on success) or to stdout.

--context pairs are authenticated and stored in clear in the header; KMS gets the
whole context (with aws-crypto-public-key for the signed suite 0x0578) on every call.
Note: -r here is --recursive; --recipient has no short form.`,
  footer: `
Examples:
  envseal encrypt backup.tar -o backup.tar.encrypted --recipient aws-kms:alias/backups -c purpose=backup
  tar c dir | envseal encrypt --recipient age:age1... > dir.tar.encrypted
  envseal encrypt -r ./reports -o ./reports.enc --recipient aws-kms:arn:aws:kms:... --suite 0x0578`,
  options: OPTIONS,
  positionals: { max: 1 },
  providers: 'seal',
  run: encrypt,
};

/** Parses repeated K=V options into an encryption context (first "=" splits; values may be empty). */
export function parseContextPairs(values: readonly string[], option: string): Record<string, string> {
  const context: Record<string, string> = {};
  for (const pair of values) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usageError(`${option} ${quoteName(pair.slice(0, 60))} must be KEY=VALUE`);
    const key = pair.slice(0, eq);
    if (Object.hasOwn(context, key)) throw usageError(`${option} names the key ${quoteName(key)} twice`);
    context[key] = pair.slice(eq + 1);
  }
  return context;
}

/** Standard input as a stream: io.stdinStream when the io provides one, the process's stdin in main, else io.stdin(). */
export function stdinSource(io: CliIo): ByteSource {
  const extended = io as CliIo & { stdinStream?: () => ByteSource };
  if (typeof extended.stdinStream === 'function') return extended.stdinStream();
  if (io.stdout === process.stdout) return process.stdin;
  return (async function* () {
    yield await io.stdin();
  })();
}

export function stderrIsTTY(io: CliIo): boolean {
  return (io.stderr as { isTTY?: unknown }).isTTY === true;
}

/** A FileFormatError as the CLI reports it (exit 3); other errors unchanged. */
export function cliErrorOf(error: unknown, what: string): unknown {
  if (error instanceof FileFormatError) {
    return new CliError(error.code === 'ContextMismatch' ? 'Refused' : 'InvalidInput', `${what}: ${error.message}`, { cause: error });
  }
  return error;
}

export function progressFor(io: CliIo, label: string, size: number | undefined, force = false): ProgressBar | undefined {
  if (!stderrIsTTY(io)) return undefined;
  if (!force && (size === undefined || size < PROGRESS_THRESHOLD_BYTES)) return undefined;
  return new ProgressBar(io.stderr as { write(text: string): unknown }, label, size);
}

function parseFrameLength(text: string | undefined): number {
  if (text === undefined) return DEFAULT_FRAME_LENGTH;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_FRAME_LENGTH) throw usageError(`--frame-length must be a whole number from 1 to ${MAX_FRAME_LENGTH}`);
  return n;
}

function parseSuiteOption(text: string | undefined): Suite {
  if (text === undefined) return SUITE_COMMIT;
  try {
    return parseSuite(text);
  } catch (error) {
    throw usageError(error instanceof Error ? error.message.replace(/^unknown/, '--suite: unknown') : 'invalid --suite');
  }
}

interface EncryptSettings {
  targets: RecipientTarget[];
  context: Record<string, string>;
  suite: Suite;
  frameLength: number;
}

/** Encrypts one input into one sink; the sink is committed on success and aborted on failure. */
async function encryptOne(ctx: CommandContext, settings: EncryptSettings, source: ByteSource, sink: Sink, progress: ProgressBar | undefined): Promise<number> {
  let encryptor: MessageEncryptor | undefined;
  try {
    const prepared = prepareMessage({ suite: settings.suite, encryptionContext: settings.context, random: ctx.random });
    const { dataKey, encryptedDataKeys } = await generateDataKeyMaterials({
      targets: settings.targets,
      providers: ctx.providers,
      encryptionContext: prepared.encryptionContext,
      random: ctx.random,
      signal: ctx.signal,
    });
    try {
      encryptor = new MessageEncryptor({ ...prepared, dataKey, encryptedDataKeys, frameLength: settings.frameLength });
    } finally {
      dataKey.fill(0);
    }
    await pumpEncrypt(source, encryptor, sink, {
      signal: ctx.signal,
      ...(ctx.io.collectGarbage ? { collectGarbage: ctx.io.collectGarbage } : {}),
      ...(progress ? { onProgress: (n: number) => progress.update(n) } : {}),
    });
    await sink.commit();
    return encryptor.plaintextLength;
  } catch (error) {
    encryptor?.destroy();
    await sink.abort();
    throw cliErrorOf(error, 'cannot encrypt');
  } finally {
    progress?.done();
  }
}

/** -r's arguments, checked: an input directory and an output directory (-o DIR). */
export function treeArguments(input: string | undefined, output: string | undefined): { input: string; output: string } {
  if (input === undefined || input === '-') throw usageError('-r needs an input directory');
  if (output === undefined || output === '-') throw usageError('-r needs an output directory: -o DIR');
  return { input, output };
}

/** The input of a one-file run: the file named (its size for the progress bar), or stdin. */
export async function singleInput(
  ctx: CommandContext,
  input: string | undefined,
  verb: 'encrypt' | 'decrypt',
): Promise<{ source: ByteSource; size: number | undefined; label: string }> {
  const { io } = ctx;
  if (input === undefined || input === '-') {
    if (input === undefined && io.stdinIsTTY)
      throw usageError(`no input: pass a file, or pipe the ${verb === 'encrypt' ? 'data to encrypt' : 'message to decrypt'}`);
    return { source: stdinSource(io), size: undefined, label: 'stdin' };
  }
  const info = await inputInfo(input, io.cwd);
  if (info.isDirectory) throw usageError(`${quoteName(input)} is a directory: pass -r and -o DIR to ${verb} a tree`);
  return { source: fileSource(info.full, ctx.signal), size: info.size, label: input };
}

/** -r: the files of the input tree (others reported as skipped) and the output directory, checked to be outside it. */
export async function readTree(
  ctx: CommandContext,
  input: string,
  output: string,
  verb: 'encrypt' | 'decrypt',
): Promise<{ outDir: string; walk: Awaited<ReturnType<typeof walkTree>> }> {
  const { io } = ctx;
  const info = await inputInfo(input, io.cwd);
  if (!info.isDirectory) throw usageError(`${quoteName(input)} is not a directory (-r ${verb}s a tree)`);
  const outDir = resolvePath(io.cwd, output);
  if (isInside(outDir, info.full)) throw usageError('the output directory must not be inside the input directory');
  const walk = await walkTree(info.full, ctx.signal);
  for (const skipped of walk.skipped) io.stderr.write(`skipped ${quoteName(skipped)}: not a regular file (symbolic links are not followed)\n`);
  return { outDir, walk };
}

export async function inputInfo(file: string, cwd: string): Promise<{ full: string; isDirectory: boolean; size: number }> {
  const full = resolvePath(cwd, file);
  try {
    const info = await stat(full);
    return { full, isDirectory: info.isDirectory(), size: info.size };
  } catch (error) {
    throw fileError(error, 'read', file);
  }
}

/** An AtomicFileSink for `file`, opened (its temporary file created). */
export async function openFileSink(file: string, shown: string, mode: number, io: Pick<CliIo, 'temporaries'>): Promise<AtomicFileSink> {
  const temporaries = io.temporaries;
  const sink = new AtomicFileSink(file, { mode, ...(temporaries ? { trackTemporary: (path: string) => temporaries.track(path) } : {}) });
  try {
    await sink.open();
  } catch (error) {
    throw fileError(error, 'write', shown);
  }
  return sink;
}

function checkRecursiveConfusion(ctx: CommandContext): void {
  // `-r age:...` as in seal: here -r is --recursive and the target became the INPUT.
  const input = ctx.positionals[0];
  if (flag(ctx.values, 'recursive') && input !== undefined && looksLikeRecipient(input)) {
    throw usageError(`-r means --recursive here; pass the recipient as --recipient ${quoteName(input.slice(0, 60))}`);
  }
}

async function encrypt(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  checkRecursiveConfusion(ctx);
  const targets = stringList(values, 'recipient').map(parseRecipientTarget);
  if (targets.length === 0) throw usageError(`no recipient: pass --recipient PROVIDER:TARGET (${recipientForms()})`);
  const context = parseContextPairs(stringList(values, 'context'), '--context');
  const settings: EncryptSettings = {
    targets,
    context,
    suite: parseSuiteOption(stringOption(values, 'suite')),
    frameLength: parseFrameLength(stringOption(values, 'frame-length')),
  };
  try {
    // Checked before any KMS call: reserved keys and sizes.
    prepareMessage({ suite: SUITE_COMMIT, encryptionContext: context, random: (n) => new Uint8Array(n) });
  } catch (error) {
    throw cliErrorOf(error, '--context');
  }
  const input = ctx.positionals[0];
  const output = stringOption(values, 'output');
  const recursive = flag(values, 'recursive');

  if (recursive) {
    const tree = treeArguments(input, output);
    return encryptTree(ctx, settings, tree.input, tree.output, stringOption(values, 'suffix') ?? '.encrypted');
  }
  if (stringOption(values, 'suffix') !== undefined) throw usageError('--suffix applies to -r only');

  const { source, size, label } = await singleInput(ctx, input, 'encrypt');
  let sink: Sink;
  if (output === undefined || output === '-') {
    if (io.stdoutIsTTY) throw usageError('refusing to write ciphertext to a terminal: pass -o FILE or redirect stdout');
    // Streamed: ciphertext is not secret, and a message cut short by an error never
    // decrypts (its final frame is missing); the exit status says it failed.
    sink = new PassThroughSink(io.stdout as OutputWriter);
  } else {
    sink = await openFileSink(resolvePath(io.cwd, output), output, 0o644, io);
  }
  const bytes = await encryptOne(ctx, settings, source, sink, progressFor(io, `encrypting ${label}`, size));
  if (output !== undefined && output !== '-') {
    io.stderr.write(`encrypted ${formatBytes(bytes)} for ${targets.length} recipient${targets.length === 1 ? '' : 's'} into ${quoteName(output)}\n`);
  }
  return 0;
}

async function encryptTree(ctx: CommandContext, settings: EncryptSettings, input: string, output: string, suffix: string): Promise<number> {
  const { io } = ctx;
  const { outDir, walk } = await readTree(ctx, input, output, 'encrypt');
  let total = 0;
  for (const entry of walk.files) {
    const target = path.join(outDir, entry.relative + suffix);
    const shown = path.join(output, entry.relative + suffix);
    try {
      await ensureParent(target);
    } catch (error) {
      throw fileError(error, 'create the directory of', shown);
    }
    const sink = await openFileSink(target, shown, 0o644, io);
    total += await encryptOne(ctx, settings, fileSource(entry.file, ctx.signal), sink, progressFor(io, `encrypting ${entry.relative}`, entry.size));
  }
  io.stderr.write(`encrypted ${walk.files.length} file${walk.files.length === 1 ? '' : 's'} (${formatBytes(total)}) into ${quoteName(output)}\n`);
  return 0;
}
