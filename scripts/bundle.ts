// Bundles the compiled CLI (dist/cli/main.js) with esbuild into dist/bundle/: the code
// `envseal seal` needs in one file, and one chunk per lazily imported part (a provider,
// encrypt/decrypt, the controller). Node then resolves and reads a handful of files
// instead of a few hundred, which is most of the CLI's start-up (docs/benchmarks.md).
// Large dependencies loaded only by some commands stay external: Node loads them from
// node_modules when (and only when) those commands run. bin/start.js uses the bundle
// when it is not older than dist/cli/main.js.
//
//   node scripts/bundle.ts        (run by `npm run build`, after tsc)
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

const root = new URL('../', import.meta.url).pathname;
const outdir = `${root}dist/bundle`;
rmSync(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: ['dist/cli/main.js'],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  outdir,
  entryNames: '[name]',
  chunkNames: '[name]-[hash]',
  external: ['@aws-sdk/*', '@smithy/*', '@kubernetes/client-node', 'pino', 'prom-client', 'undici'],
  // Bundled CommonJS dependencies call require(); ESM output has none of its own.
  banner: { js: "import { createRequire as __envsealCreateRequire } from 'node:module'; const require = __envsealCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
