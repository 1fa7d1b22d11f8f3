// Shared by the bin shims: starts the CLI as fast as Node allows (docs/benchmarks.md).
import { statSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

// V8's compiled code of every module loaded from here on is cached on disk, in
// NODE_COMPILE_CACHE when set, else in $XDG_CACHE_HOME/envseal/node-compile-cache (default
// ~/.cache/...), not in the temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Where the
// folder cannot be written (a read-only container), Node goes on without a cache.
function compileCacheDir() {
  if (process.env.NODE_COMPILE_CACHE) return undefined;
  const base = process.env.XDG_CACHE_HOME || (homedir() ? join(homedir(), '.cache') : '');
  return base ? join(base, 'envseal', 'node-compile-cache') : undefined;
}
module.enableCompileCache?.(compileCacheDir());

const mtime = (file) => {
  try {
    return statSync(new URL(file, import.meta.url)).mtimeMs;
  } catch {
    return -1;
  }
};

// dist/bundle/main.js is the CLI bundled by esbuild (the code `envseal seal` needs in one
// file, and a chunk for each lazily loaded part), made from dist/cli by `npm run build`.
// It resolves ten times fewer files than dist/cli; it is used only when it is not older
// than dist/cli/main.js, so that a tsc-only build never runs a stale bundle.
const BUNDLE = '../dist/bundle/main.js';
const MODULES = '../dist/cli/main.js';

/** Runs the CLI with process.argv, stdio and environment, then exits. */
export async function start(programName) {
  const bundle = mtime(BUNDLE);
  const entry = bundle >= 0 && bundle >= mtime(MODULES) ? BUNDLE : MODULES;
  const { main } = await import(entry);
  await main({ programName });
}
