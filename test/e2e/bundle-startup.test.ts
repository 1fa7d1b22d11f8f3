/**
 * What `envseal seal` loads before it does anything: the bundle's entry and the chunks
 * it imports statically. A key service's SDK, undici (the Vault and Kubernetes HTTP
 * client) and the Kubernetes client must load only when a command uses them; once, a
 * TLS option put undici's 1.4 MB on this path and doubled a seal's start-up
 * (docs/benchmarks.md). Needs `npm run build` (npm test runs it first).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const bundle = path.resolve(import.meta.dirname, '../../dist/bundle');

/** The entry and every chunk it reaches through static imports. */
function staticClosure(entry: string): string[] {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(path.join(bundle, file), 'utf8');
    // Static imports only: `import ... from "./x.js"` at statement level, not import("./x.js").
    for (const match of text.matchAll(/^import\s[^;]*?from\s*"\.\/([^"]+)";?$/gm)) visit(match[1]!);
    for (const match of text.matchAll(/^import\s*"\.\/([^"]+)";?$/gm)) visit(match[1]!);
  };
  visit(entry);
  return [...seen];
}

/** The node_modules packages whose code a file carries (esbuild writes a `// node_modules/...` line per module). */
function packagesIn(file: string): Set<string> {
  const text = readFileSync(path.join(bundle, file), 'utf8');
  const packages = new Set<string>();
  for (const match of text.matchAll(/^\/\/ node_modules\/((?:@[^/]+\/)?[^/]+)\//gm)) packages.add(match[1]!);
  return packages;
}

describe('the CLI loads only what a command needs', () => {
  it('no key-service SDK, HTTP client or Kubernetes client on the start-up path', () => {
    expect(existsSync(path.join(bundle, 'main.js')), 'dist/bundle/main.js (npm run build)').toBe(true);
    const loaded = new Set(staticClosure('main.js').flatMap((file) => [...packagesIn(file)]));
    const heavy = [...loaded].filter((p) => /^(undici|@aws-sdk\/|@smithy\/|@alicloud\/|@kubernetes\/|age-encryption|@noble\/)/.test(p));
    expect(heavy).toEqual([]);
    // The check sees packages at all: yaml is on the path (every command reads or writes YAML).
    expect(loaded.has('yaml')).toBe(true);
  });
});
