import { quoteName } from '../api/names.ts';
import type { EnvelopeSecret } from '../api/types.ts';
import { parseEnvelopeSecret } from '../api/validation.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import type { OptionSpecs, OptionValues } from './args.ts';
import { type OutputFormat, parseDocuments } from './documents.ts';
import { formatManifest, type LoadedStream, loadManifestDocuments } from './namespace-stream.ts';
import { CliError, usageError } from './errors.ts';
import { readInputFile, writeFileAtomic } from './files.ts';
import type { CliIo } from './io.ts';

/** Manifests larger than this are refused before parsing (1 MiB of values is ~1.4 MiB of base64). */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

export interface CommandContext {
  io: CliIo;
  values: OptionValues;
  positionals: string[];
  signal: AbortSignal | undefined;
  random: RandomSource;
  /** The providers configured for this run (flags and environment, parsed once). */
  providers: ProviderRegistry;
  program: string;
}

export interface Command {
  /** "seal", or "keys create" for a subcommand. */
  name: string;
  summary: string;
  usage: string;
  description: string;
  footer?: string;
  options: OptionSpecs;
  /** How many positional arguments it takes (default none). */
  positionals?: { max: number };
  /** Whether it needs key providers, and whether they must be able to unwrap (load identities). */
  providers: 'none' | 'seal' | 'open';
  run(ctx: CommandContext): Promise<number>;
}

/**
 * A command whose module is imported only when it runs (or shows its help), so that
 * e.g. the controller's Kubernetes client is not loaded for `envseal seal`.
 */
export interface LazyCommand {
  name: string;
  summary: string;
  load(): Promise<Command>;
}

export type CommandEntry = Command | LazyCommand;

export function isLazy(entry: CommandEntry): entry is LazyCommand {
  return 'load' in entry;
}

export interface Input {
  bytes: Buffer;
  /** For messages: the file name as given, or "stdin". */
  source: string;
  /** The file, when the input came from one. */
  file?: string;
}

/** Reads -f FILE, or standard input for `-f -` or no -f (unless it is a terminal). */
export async function readInput(file: string | undefined, io: CliIo, hint: string): Promise<Input> {
  if (file === undefined || file === '-') {
    if (file === undefined && io.stdinIsTTY) throw usageError(`no input: ${hint}`);
    const bytes = await io.stdin({ maxBytes: MAX_MANIFEST_BYTES });
    if (bytes.length > MAX_MANIFEST_BYTES) throw new CliError('InvalidInput', `stdin holds more than ${MAX_MANIFEST_BYTES} bytes`);
    return { bytes, source: 'stdin' };
  }
  const bytes = await readInputFile(file, { cwd: io.cwd, maxBytes: MAX_MANIFEST_BYTES });
  return { bytes, source: file, file };
}

export type LoadedEnvelopeSecret = LoadedStream;

/**
 * Parses and validates an EnvelopeSecret manifest (exit 3 with every issue listed), or the
 * stream of one document per listed namespace that `seal --namespaces` writes.
 */
export function loadEnvelopeSecret(input: Input): LoadedEnvelopeSecret {
  return loadManifestDocuments(parseDocuments(input.bytes, input.source), input.source);
}

/**
 * Writes a manifest to -w FILE (atomically) or stdout; nothing is written on an earlier
 * error. `stream`: one document per listed namespace (scope namespaces).
 */
export async function writeManifest(
  secret: EnvelopeSecret,
  options: { format: OutputFormat; file?: string | undefined; io: CliIo; stream?: boolean },
): Promise<void> {
  // The output must itself be valid: never write a manifest the controller would refuse.
  parseEnvelopeSecret(secret, 'output');
  const text = formatManifest(secret, options.format, options.stream ?? false);
  if (options.file === undefined) options.io.stdout.write(text);
  else await writeFileAtomic(options.file, text, { cwd: options.io.cwd, temporaries: options.io.temporaries });
}

export function describeSecret(secret: EnvelopeSecret): string {
  const ns = secret.metadata.namespace;
  return quoteName(ns ? `${ns}/${secret.metadata.name}` : secret.metadata.name);
}
