import { randomUUID } from 'node:crypto';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { type FileHandle, mkdir, open, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { quoteName } from '../api/names.ts';
import { CliError } from './errors.ts';

export function resolvePath(cwd: string, file: string): string {
  return path.resolve(cwd, file);
}

function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A file-system error as a CliError naming the file and the reason (never the content). */
export function fileError(error: unknown, action: string, file: string): CliError {
  const code = errnoOf(error);
  const shown = quoteName(file);
  switch (code) {
    case 'ENOENT':
      return new CliError('FileNotFound', `cannot ${action} ${shown}: no such file or directory`, { cause: error });
    case 'EEXIST':
      return new CliError('FileExists', `refusing to overwrite ${shown}: it already exists`, { cause: error });
    case 'EISDIR':
      return new CliError('InvalidInput', `cannot ${action} ${shown}: it is a directory`, { cause: error });
    case 'ENOTDIR':
      return new CliError('InvalidInput', `cannot ${action} ${shown}: a part of its path is a file, not a directory`, { cause: error });
    case 'EACCES':
    case 'EPERM':
      return new CliError('FileError', `cannot ${action} ${shown}: permission denied`, { cause: error });
    default:
      return new CliError('FileError', `cannot ${action} ${shown}${code ? ` (${code})` : ''}`, { cause: error });
  }
}

/** Reads a whole file; refuses files larger than `maxBytes` before reading them. */
export async function readInputFile(file: string, options: { cwd: string; maxBytes?: number; what?: string }): Promise<Buffer> {
  const full = resolvePath(options.cwd, file);
  const what = options.what ?? 'read';
  // Synchronous: an input is at most a manifest or a key file, and node:fs/promises loads
  // readline and the file watchers for one read (docs/benchmarks.md, "second pass").
  try {
    if (options.maxBytes !== undefined) {
      const info = statSync(full);
      if (info.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      if (info.size > options.maxBytes) {
        throw new CliError('InvalidInput', `${quoteName(file)} is ${info.size} bytes; at most ${options.maxBytes} are accepted`);
      }
    }
    return readFileSync(full);
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw fileError(error, what, file);
  }
}

/** Temporary paths of one run, to remove even when the process exits abruptly (a second Ctrl-C). */
export class TemporaryFiles {
  readonly #pending = new Set<string>();

  /** Registers `file`; returns the function that unregisters it (once it is renamed or removed). */
  track(file: string): () => void {
    this.#pending.add(file);
    return () => this.#pending.delete(file);
  }

  /** Removes every tracked path, synchronously (for process 'exit'). */
  removeAllSync(): void {
    for (const file of this.#pending) {
      try {
        rmSync(file, { recursive: true, force: true });
      } catch {
        // best effort on exit
      }
    }
    this.#pending.clear();
  }
}

/**
 * Replaces (or creates) `file` atomically: writes a temporary file in the same
 * directory, flushes it, then renames it over the target. On any failure the target is
 * untouched and the temporary file removed. An existing file keeps its mode; a symlink
 * is followed, so the file it points to is replaced.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  options: { cwd: string; mode?: number; temporaries?: TemporaryFiles | undefined },
): Promise<void> {
  let target = resolvePath(options.cwd, file);
  let mode = options.mode ?? 0o644;
  let existing = false;
  try {
    target = await realpath(target);
    mode = (await stat(target)).mode & 0o7777;
    existing = true;
  } catch (error) {
    if (errnoOf(error) !== 'ENOENT') throw fileError(error, 'write', file);
  }
  const temporary = path.join(path.dirname(target), `.${path.basename(target)}.${randomUUID()}.tmp`);
  const untrack = options.temporaries?.track(temporary) ?? (() => {});
  try {
    const handle = await open(temporary, 'wx', mode);
    try {
      // A new file gets `mode` less the umask; a replaced one keeps its exact mode.
      if (existing || options.mode !== undefined) await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true }).catch(() => {});
    throw error instanceof CliError ? error : fileError(error, 'write', file);
  } finally {
    untrack();
  }
}

/**
 * Creates a new file with mode 0600 and writes `data`; never replaces an existing file
 * (nor follows a symlink). On failure, nothing is left behind.
 */
export async function writeNewPrivateFile(file: string, data: string | Uint8Array, options: { cwd: string }): Promise<void> {
  const target = resolvePath(options.cwd, file);
  let handle: FileHandle;
  try {
    // Missing parent folders (e.g. ~/.config/envseal) are created private to the user.
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      throw errnoOf(error) === 'EEXIST' ? Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }) : error;
    });
    handle = await open(target, 'wx', 0o600);
  } catch (error) {
    throw fileError(error, 'create', file);
  }
  try {
    try {
      await handle.chmod(0o600);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (error) {
    await rm(target, { force: true }).catch(() => {});
    throw fileError(error, 'write', file);
  }
}
