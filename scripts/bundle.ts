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
 * Built-ins that Node's own start-up has loaded already: taking them costs nothing.
 * Any other (node:crypto, node:fs/promises, node:util, node:tty...) loads a tree of
 * Node's internal modules; node:crypto alone adds a fifth of `node -e 0`'s instructions.
 */
const LOADED_AT_START = new Set(['fs', 'path', 'module', 'url', 'buffer', 'events', 'os', 'process']);

/**
 * How a named import of a built-in becomes a declaration. A function export (checked on
 * the Node running this build) becomes a function that takes the built-in on its first
 * call: a command that never calls it never loads the module. The stand-in behaves the
 * same when called, constructed (`new X509Certificate(...)`) or passed as a callback; it
 * would not for a property read, `instanceof`, `extends` or an identity comparison, so a
 * binding used that way anywhere in the file (or a value that is not a function) is taken
 * at once. An unused binding is dropped.
 */
function bindingDeclaration(imported: string, local: string, specifier: string, code: string): string {
  const module = `process.getBuiltinModule(${JSON.stringify(specifier)})`;
  const bare = specifier.replace(/^node:/, '');
  const name = local.replaceAll('$', '\\$');
  if (!new RegExp(`(?<![\\w$.])${name}(?![\\w$])`).test(code)) return '';
  const unsafe = new RegExp(`(?<![\\w$.])${name}\\s*(?:\\??\\.|[=!]==?)|(?:instanceof|extends|[=!]==?)\\s*${name}(?![\\w$])`);
  const exported = (process.getBuiltinModule(specifier) as Record<string, unknown>)[imported];
  if (LOADED_AT_START.has(bare) || typeof exported !== 'function' || unsafe.test(code)) return `const { ${imported}: ${local} } = ${module};`;
  // new.target: the same function serves `new X509Certificate(...)` and `createHash(...)`.
  return `function ${local}(...args) { const value = ${module}.${imported}; return new.target ? Reflect.construct(value, args) : value(...args); }`;
}

/**
 * Node built-ins come from process.getBuiltinModule() instead of `import ... from
 * 'node:x'`: an ESM import of a built-in builds a facade that reads every export once,
 * which runs the lazy getters (node:fs's streams, for one), and loads the module even
 * for a command that never uses it. esbuild leaves built-ins as import statements; this
 * rewrites them in each output file into declarations at the top of the file (import
 * bindings are hoisted, and esbuild gives every binding in a file a unique name, so the
 * top is where they belong), lazy where bindingDeclaration can tell. Measured in
 * docs/benchmarks.md ("One seal as fast as Node can start", and its second pass).
 */
function withoutBuiltinImports(code: string, file: string): string {
  const imports: { clause: string | undefined; specifier: string }[] = [];
  const rest = code.replaceAll(/^import\s+(?:([^;"']*?)\s+from\s+)?"([^"]+)";\n/gms, (statement, clause: string | undefined, specifier: string) => {
    if (specifier.startsWith('.')) return statement;
    if (!isBuiltin(specifier)) throw new Error(`${file}: unexpected import of ${specifier}`);
    imports.push({ clause, specifier });
    return '';
  });
  const declarations: string[] = [];
  for (const { clause, specifier } of imports) {
    const module = `process.getBuiltinModule(${JSON.stringify(specifier)})`;
    if (clause === undefined) {
      declarations.push(`${module};`);
      continue;
    }
    // default, * as ns, { a, b as c }, or default plus one of the other two.
    const named = /\{([^}]*)\}/.exec(clause);
    const namespace = /\*\s+as\s+([\w$]+)/.exec(clause);
    const defaultName = /^\s*([\w$]+)\s*(?:,|$)/.exec(clause);
    if (defaultName) declarations.push(`const ${defaultName[1]} = ${module};`);
    if (namespace) declarations.push(`const ${namespace[1]} = ${module};`);
    if (named) {
      for (const part of named[1]!
        .split(',')
        .map((text) => text.trim())
        .filter(Boolean)) {
        const binding = /^([\w$]+)(?:\s+as\s+([\w$]+))?$/.exec(part);
        if (!binding) throw new Error(`${file}: cannot read the import binding ${part}`);
        const declaration = bindingDeclaration(binding[1]!, binding[2] ?? binding[1]!, specifier, rest);
        if (declaration) declarations.push(declaration);
      }
    }
    if (!defaultName && !namespace && !named) throw new Error(`${file}: cannot read the import clause ${clause}`);
  }
  return `${declarations.join('\n')}\n${rest}`;
}

/**
 * esbuild escapes every non-ASCII character in code (charset "ascii"), but keeps the
 * comments it keeps as they are: @noble's comments have math symbols (𝑊, ⋅). One such
 * character makes V8 hold the whole file as two-byte text, and Node then re-encodes all
 * of it to UTF-8 on every start to check its compile cache (7.6 M instructions for the
 * age chunk). Whatever is left outside ASCII is in a comment, so it becomes "?".
 */
function asciiOnly(code: string): string {
  return code.replaceAll(/[\u{80}-\u{10ffff}]/gu, '?');
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
  // The banner stays the first line, in the files that call require (making a require
  // function for each of the other chunks a seal loads costs for nothing); the
  // declarations go right after it.
  const newline = code.indexOf('\n');
  const rest = withoutBuiltinImports(code.slice(newline + 1), file);
  const banner = /(?<![\w$.])require(?![\w$])/.test(rest) ? code.slice(0, newline + 1) : '';
  writeFileSync(full, asciiOnly(banner + rest));
}
