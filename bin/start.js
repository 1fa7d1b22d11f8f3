// Shared by the bin shims: starts the CLI as fast as Node allows (docs/benchmarks.md).
// Built-ins come from process.getBuiltinModule(), not `import`: an ESM import of node:fs
// builds a facade that reads every export, which loads fs's streams on the way.
const { statSync } = process.getBuiltinModule('node:fs');
const { enableCompileCache } = process.getBuiltinModule('node:module');
const { homedir } = process.getBuiltinModule('node:os');
const { join } = process.getBuiltinModule('node:path');

// V8's compiled code of every module loaded from here on is cached on disk, in
// NODE_COMPILE_CACHE when set, else in $XDG_CACHE_HOME/envseal/node-compile-cache (default
// ~/.cache/...), not in the temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off. Where the
// folder cannot be written (a read-only container, a file in the way), Node goes on without
// a cache; entries that fail Node's checksum (another build, a damaged file) are recompiled.
// A cache is only ever an optimisation: nothing here may fail the command.
function compileCacheDir() {
  if (process.env.NODE_COMPILE_CACHE) return undefined;
  let home = '';
  try {
    home = homedir();
  } catch {
    // No home directory for this user (a container's uid without a passwd entry).
  }
  const base = process.env.XDG_CACHE_HOME || (home ? join(home, '.cache') : '');
  return base ? join(base, 'envseal', 'node-compile-cache') : undefined;
}
try {
  enableCompileCache?.(compileCacheDir());
} catch {
  // Start without a cache.
}

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
