/**
 * What a CLI command loads before and while it runs. A key service's SDK, undici (the
 * Vault and Kubernetes HTTP client) and the Kubernetes client must load only when a
 * command uses them; once, a TLS option put undici's 1.4 MB on this path and doubled a
 * seal's start-up (docs/benchmarks.md). The age package (its post-quantum and curve
 * tables) loads only for a command that wraps or opens for age; node:child_process,
 * node:v8 and node:vm only for the commands that use them. Needs `npm run build` (npm
 * test runs it first).
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENVSEAL, NODE } from './cli-support.ts';

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

/**
 * The node_modules packages whose code a file carries: esbuild writes a
 * `// node_modules/...` line per module (`// ../x/node_modules/...` when node_modules is
 * a link to another checkout).
 */
function packagesIn(file: string): Set<string> {
  const text = readFileSync(file, 'utf8');
  const packages = new Set<string>();
  for (const match of text.matchAll(/^\/\/ (?:\S*\/)?node_modules\/((?:@[^/]+\/)?[^/\s]+)\//gm)) packages.add(match[1]!);
  return packages;
}

const HEAVY = /^(undici|@aws-sdk\/|@smithy\/|@alicloud\/|@kubernetes\/|age-encryption|@noble\/)/;

describe('the CLI loads only what a command needs', () => {
  it('no key-service SDK, HTTP client, Kubernetes client or age code on the start-up path', () => {
    expect(existsSync(path.join(bundle, 'main.js')), 'dist/bundle/main.js (npm run build)').toBe(true);
    const loaded = new Set(staticClosure('main.js').flatMap((file) => [...packagesIn(path.join(bundle, file))]));
    const heavy = [...loaded].filter((p) => HEAVY.test(p));
    expect(heavy).toEqual([]);
    // The check sees packages at all: yaml is on the path (every command reads or writes YAML).
    expect(loaded.has('yaml')).toBe(true);
  });

  it('the bundle imports no Node built-in through an ESM facade', () => {
    // `import { x } from "node:fs"` makes Node read every export of fs once, which runs its
    // lazy getters (fs's streams, crypto's webcrypto and X509): scripts/bundle.ts turns them
    // into process.getBuiltinModule() calls.
    const facades = readdirSync(bundle)
      .filter((file) => file.endsWith('.js'))
      .flatMap((file) => [...readFileSync(path.join(bundle, file), 'utf8').matchAll(/^import\s[^;]*?from\s*"((?:node:)?[a-z_]+[^"]*)";?$/gm)])
      .map((match) => match[1]!)
      .filter((specifier) => !specifier.startsWith('.'));
    expect(facades).toEqual([]);
    // The check sees imports at all: the entry imports its chunks.
    expect(staticClosure('main.js').length).toBeGreaterThan(1);
  });

  it('every file of the bundle is ASCII', () => {
    // One character outside ASCII makes V8 hold a file as two-byte text, which Node then
    // re-encodes to UTF-8 at every start to check the compile cache (scripts/bundle.ts).
    const files = readdirSync(bundle).filter((file) => file.endsWith('.js'));
    expect(files.length).toBeGreaterThan(1);
    expect(files.filter((file) => /[\u{80}-\u{10ffff}]/u.test(readFileSync(path.join(bundle, file), 'utf8')))).toEqual([]);
  });
});

/** A preload that records, at exit, the built-ins Node loaded and the files of this checkout it read. */
const RECORDER = `
const { registerHooks } = require('node:module');
const files = [];
registerHooks({ load(url, context, next) { if (url.startsWith('file:')) files.push(url); return next(url, context); } });
process.on('exit', () => {
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
  require('node:fs').writeFileSync(process.env.ENVSEAL_TEST_LOADED, JSON.stringify({ builtins, files }));
});
`;

interface Loaded {
  code: number;
  stdout: string;
  stderr: string;
  /** Node's internal module ids, e.g. "child_process", "internal/crypto/x509". */
  builtins: string[];
  /** The node_modules packages in the files the process loaded. */
  packages: string[];
}

describe('what a command loads when it runs (the built CLI, bin/envseal.js)', () => {
  let work: string;
  let recipient: string;
  let n = 0;

  function run(args: readonly string[], options: { env?: Record<string, string>; input?: string } = {}): Promise<Loaded> {
    const record = path.join(work, `loaded-${n++}.json`);
    return new Promise((resolve) => {
      const child = execFile(
        NODE,
        ['--require', path.join(work, 'recorder.cjs'), ENVSEAL, ...args],
        {
          cwd: work,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ENVSEAL_TEST_LOADED: record, ...options.env },
          encoding: 'utf8',
        },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          const { builtins, files } = JSON.parse(readFileSync(record, 'utf8')) as { builtins: string[]; files: string[] };
          const packages = new Set(files.filter((url) => url.includes('/dist/bundle/')).flatMap((url) => [...packagesIn(new URL(url).pathname)]));
          resolve({ code, stdout, stderr, builtins, packages: [...packages].sort() });
        },
      );
      child.stdin?.end(options.input ?? '');
    });
  }

  beforeAll(async () => {
    expect(existsSync(path.join(bundle, 'main.js')), 'dist/bundle/main.js (npm run build)').toBe(true);
    work = mkdtempSync(path.join(os.tmpdir(), 'envseal-startup-'));
    writeFileSync(path.join(work, 'recorder.cjs'), RECORDER);
    writeFileSync(path.join(work, 'secret.yaml'), 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\ndata:\n  DB_PASSWORD: czNjcjN0\n');
    expect((await run(['keys', 'create', '-o', 'age.key'])).code).toBe(0);
    const printed = await run(['keys', 'recipient', '-i', 'age.key']);
    expect(printed.code).toBe(0);
    recipient = printed.stdout.trim();
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('seal (age) loads the age package, and neither child_process, v8 nor any other provider', async () => {
    const sealed = await run(['seal', '-f', 'secret.yaml', '-r', `age:${recipient}`]);
    expect(sealed.stderr).toBe('');
    expect(sealed.code).toBe(0);
    expect(sealed.stdout).toContain('kind: EnvelopeSecret');
    writeFileSync(path.join(work, 'sealed.yaml'), sealed.stdout);
    expect(sealed.packages).toContain('age-encryption');
    expect(sealed.packages.filter((p) => HEAVY.test(p) && !/^(age-encryption|@noble\/|@scure\/)/.test(p))).toEqual([]);
    // (node:net is there for stdout, a pipe here; Node's web streams, which age uses, load node:vm.)
    expect(sealed.builtins.filter((m) => ['child_process', 'v8', 'dgram', 'http', 'https', 'tls', 'http2'].includes(m))).toEqual([]);
    // stdout (a pipe here) is written with fs.writeSync: no net.Socket, so no node:net or node:tty.
    expect(sealed.builtins.filter((m) => ['net', 'tty', 'fs/promises', 'readline'].includes(m))).toEqual([]);
  });

  it('verify and --version load no age code at all', async () => {
    const verified = await run(['verify', '-f', 'sealed.yaml']);
    expect(verified.stderr).toBe('');
    expect(verified.code).toBe(0);
    expect(verified.packages).toEqual(['yaml']);
    const version = await run(['--version']);
    expect(version.stdout).toMatch(/^envseal \d+\.\d+\.\d+/);
    expect(version.packages).toEqual(['yaml']);
    // Nor any built-in they do not call: node:crypto, node:fs/promises, node:util and node:tty
    // are taken on first call (scripts/bundle.ts), stdout and stderr are written without
    // stream objects (src/cli/fd-writer.ts), and a manifest is read with node:fs.
    const unused = ['child_process', 'v8', 'vm', 'crypto', 'fs/promises', 'readline', 'stream', 'net', 'tty', 'timers/promises'];
    for (const loaded of [verified, version]) expect(loaded.builtins.filter((m) => unused.includes(m))).toEqual([]);
    // The check sees built-ins at all: the ESM loader's own modules are in the list.
    expect(verified.builtins).toContain('fs');
  });

  it('the editor still starts: edit loads child_process when it needs it', async () => {
    // EDITOR=true exits at once without changing the file: edit reports no change.
    const edited = await run(['edit', 'sealed.yaml', '-i', 'age.key'], { env: { EDITOR: 'true' } });
    expect(edited.code, edited.stderr).toBe(0);
    expect(edited.builtins).toContain('child_process');
  });
});

describe("Node's compile cache never fails a command", () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'envseal-compile-cache-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const version = (env: Record<string, string>) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        NODE,
        [ENVSEAL, '--version'],
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ...env }, encoding: 'utf8' },
        (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
      );
    });

  it('is written under $XDG_CACHE_HOME/envseal/node-compile-cache and read again', async () => {
    const cache = path.join(work, 'cache');
    for (let i = 0; i < 2; i++) {
      const result = await version({ XDG_CACHE_HOME: cache });
      expect(result.stderr).toBe('');
      expect(result.stdout).toMatch(/^envseal /);
    }
    const root = path.join(cache, 'envseal', 'node-compile-cache');
    const entries = readdirSync(root, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(entries.length).toBeGreaterThan(0);
  });

  it('a damaged cache, a file where the folder should be, or a read-only folder: the command runs as before', async () => {
    // Every cache entry overwritten with garbage: Node's checksum rejects them.
    const cache = path.join(work, 'cache');
    const root = path.join(cache, 'envseal', 'node-compile-cache');
    for (const entry of readdirSync(root, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) writeFileSync(path.join(entry.parentPath, entry.name), 'not a V8 code cache');
    }
    const damaged = await version({ XDG_CACHE_HOME: cache });
    expect([damaged.code, damaged.stderr]).toEqual([0, '']);
    expect(damaged.stdout).toMatch(/^envseal /);

    writeFileSync(path.join(work, 'a-file'), '');
    const blocked = await version({ XDG_CACHE_HOME: path.join(work, 'a-file') });
    expect([blocked.code, blocked.stderr]).toEqual([0, '']);
    expect(blocked.stdout).toMatch(/^envseal /);

    // Read-only for its owner (root ignores the mode; the file case above covers root).
    const readOnly = path.join(work, 'read-only');
    mkdirSync(readOnly);
    chmodSync(readOnly, 0o555);
    const refused = await version({ XDG_CACHE_HOME: readOnly });
    chmodSync(readOnly, 0o755);
    expect([refused.code, refused.stderr]).toEqual([0, '']);
    expect(refused.stdout).toMatch(/^envseal /);
  });
});
