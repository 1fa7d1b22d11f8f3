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
import { rmSync } from 'node:fs';
import { builtinModules, isBuiltin } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build, type Plugin } from 'esbuild';

/**
 * Node built-ins come from process.getBuiltinModule() instead of `import ... from
 * 'node:x'`. An ESM import of a built-in builds a facade that reads every export once,
 * and that runs the lazy getters: `import { readFileSync } from 'node:fs'` loads fs's
 * streams, node:crypto loads webcrypto, X509 and argon2, node:v8 the heap utilities and
 * workers. The seal path loaded 106 internal modules more than `node -e 0`; see
 * docs/benchmarks.md ("One seal as fast as Node can start").
 */
const builtinsWithoutFacade: Plugin = {
  name: 'builtins-without-esm-facade',
  setup(b) {
    const names = builtinModules.map((name) => name.replaceAll(/[/.]/g, (c) => `\\${c}`)).join('|');
    b.onResolve({ filter: new RegExp(`^(node:)?(${names})$`) }, (args) => ({ path: args.path, namespace: 'node-builtin' }));
    b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: 'node-builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => {
      if (!isBuiltin(args.path)) return { errors: [{ text: `${args.path} is not a Node built-in` }] };
      return { contents: `module.exports = process.getBuiltinModule(${JSON.stringify(args.path)});`, loader: 'js' };
    });
  },
};

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
  plugins: [builtinsWithoutFacade],
  // Bundled CommonJS dependencies call require(); ESM output has none of its own.
  banner: { js: "import { createRequire as __envsealCreateRequire } from 'node:module'; const require = __envsealCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
