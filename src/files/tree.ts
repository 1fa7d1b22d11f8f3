import { lstat, mkdir, opendir } from 'node:fs/promises';
import path from 'node:path';

export interface TreeEntry {
  /** Absolute path of the input file. */
  file: string;
  /** Path relative to the tree's root, with the platform's separators. */
  relative: string;
  size: number;
}

export interface TreeWalk {
  files: TreeEntry[];
  /** Symbolic links and special files that were not followed (relative paths). */
  skipped: string[];
}

/** Every regular file under `root`, sorted; symbolic links and special files are skipped, never followed. */
export async function walkTree(root: string, signal?: AbortSignal): Promise<TreeWalk> {
  const files: TreeEntry[] = [];
  const skipped: string[] = [];
  async function visit(dir: string): Promise<void> {
    signal?.throwIfAborted();
    const entries: string[] = [];
    for await (const entry of await opendir(dir)) entries.push(entry.name);
    entries.sort();
    for (const name of entries) {
      const full = path.join(dir, name);
      const info = await lstat(full);
      if (info.isDirectory()) await visit(full);
      else if (info.isFile()) files.push({ file: full, relative: path.relative(root, full), size: info.size });
      else skipped.push(path.relative(root, full));
    }
  }
  await visit(root);
  return { files, skipped };
}

/** Whether `inner` is `outer` or lies inside it. */
export function isInside(inner: string, outer: string): boolean {
  const relative = path.relative(outer, inner);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

export async function ensureParent(file: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
}
