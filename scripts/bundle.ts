// Bundles the compiled CLI (dist/cli/main.js) with esbuild into dist/bundle/: the code
// `envseal seal` needs in one file, and one chunk per lazily imported part (a provider,
// encrypt/decrypt, the controller). Node then resolves and reads a handful of files
// instead of a few hundred, which is most of the CLI's start-up, and the dependencies
// are tree-shaken: @kubernetes/client-node costs 87 MiB of RSS when imported from
// node_modules (its generated API models) and 38 MiB bundled; the controller's peak RSS
// over 1,000 objects went from 159 to 133 MiB (docs/benchmarks.md). bin/start.js uses the
// bundle when it is not older than dist/cli/main.js.
//
//   node scripts/bundle.ts [--dist DIR]   (run by `npm run build`, after tsc; DIR defaults to dist)
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

/**
 * Node built-ins come from process.getBuiltinModule() instead of `import ... from
 * 'node:x'`: an ESM import of a built-in builds a facade that reads every export once,
 * which runs the lazy getters (node:fs's streams, for one). esbuild leaves built-ins as
 * import statements; this rewrites them in each output file into declarations at the top
 * of the file (import bindings are hoisted, and esbuild gives every binding in a file a
 * unique name, so the top is where they belong). Measured in docs/benchmarks.md ("One
 * seal as fast as Node can start").
 */
function withoutBuiltinImports(code: string, file: string): string {
  const declarations: string[] = [];
  const rest = code.replaceAll(/^import\s+(?:([^;"']*?)\s+from\s+)?"([^"]+)";\n/gms, (statement, clause: string | undefined, specifier: string) => {
    if (specifier.startsWith('.')) return statement;
    if (!isBuiltin(specifier)) throw new Error(`${file}: unexpected import of ${specifier}`);
    const module = `process.getBuiltinModule(${JSON.stringify(specifier)})`;
    if (clause === undefined) {
      declarations.push(`${module};`);
      return '';
    }
    // default, * as ns, { a, b as c }, or default plus one of the other two.
    const named = /\{([^}]*)\}/.exec(clause);
    const namespace = /\*\s+as\s+([\w$]+)/.exec(clause);
    const defaultName = /^\s*([\w$]+)\s*(?:,|$)/.exec(clause);
    if (defaultName) declarations.push(`const ${defaultName[1]} = ${module};`);
    if (namespace) declarations.push(`const ${namespace[1]} = ${module};`);
    if (named) {
      const bindings = named[1]!
        .split(',')
        .map((part) => part.trim())
        .filter(Boolean)
        .map((part) => part.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, '$1: $2'));
      declarations.push(`const { ${bindings.join(', ')} } = ${module};`);
    }
    if (!defaultName && !namespace && !named) throw new Error(`${file}: cannot read the import clause ${clause}`);
    return '';
  });
  return `${declarations.join('\n')}\n${rest}`;
}

const root = new URL('../', import.meta.url).pathname;
const { values } = parseArgs({ options: { dist: { type: 'string', default: path.join(root, 'dist') } } });
const dist = path.resolve(values.dist!);
const outdir = path.join(dist, 'bundle');
rmSync(outdir, { recursive: true, force: true });
await build({
  // Dependencies resolve from this checkout's node_modules, wherever dist is.
  absWorkingDir: root,
  nodePaths: [path.join(root, 'node_modules')],
  entryPoints: [path.join(dist, 'cli/main.js')],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outdir,
  entryNames: '[name]',
  chunkNames: '[name]-[hash]',
  external: [],
  // Bundled CommonJS dependencies call require(); ESM output has none of its own.
  banner: { js: "const require = process.getBuiltinModule('node:module').createRequire(import.meta.url);" },
  logLevel: 'warning',
});
for (const file of readdirSync(outdir)) {
  if (!file.endsWith('.js')) continue;
  const full = path.join(outdir, file);
  const code = readFileSync(full, 'utf8');
  // The banner stays the first line; the declarations go right after it.
  const newline = code.indexOf('\n');
  writeFileSync(full, code.slice(0, newline + 1) + withoutBuiltinImports(code.slice(newline + 1), file));
}
