// Shared by the CLI's end-to-end tests (test/e2e/cli*.test.ts): the built CLI, run as a
// user runs it, with the project's Node 24.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NODE = path.join(ROOT, 'node_modules/.bin/node');
export const ENVSEAL = path.join(ROOT, 'bin/envseal.js');
export const KUBECTL_ENVSEAL = path.join(ROOT, 'bin/kubectl-envseal.js');
const MAIN = path.join(ROOT, 'dist/cli/main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function newestSource(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/**
 * `npm test` builds before it runs the tests; run on their own, the CLI tests build here
 * when dist/ is missing or older than src/. A type error elsewhere in src/ (caught by the
 * typecheck step anyway) does not stop tsc from emitting, so only a missing or stale
 * dist/cli/main.js afterwards is a failure.
 */
export function ensureBuilt(): void {
  const newest = newestSource(path.join(ROOT, 'src'));
  if (existsSync(MAIN) && statSync(MAIN).mtimeMs >= newest) return;
  try {
    execFileSync(NODE, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'pipe' });
  } catch (error) {
    if (!existsSync(MAIN) || statSync(MAIN).mtimeMs < newest) throw error;
  }
}

/** Runs `node bin/envseal.js ARGS` (or another bin) in `cwd` with exactly `env` (plus PATH). */
export function runCli(args: readonly string[], options: { cwd: string; env?: Record<string, string>; input?: string; bin?: string }): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      NODE,
      [options.bin ?? ENVSEAL, ...args],
      // A clean environment: no AWS settings, identity or kubeconfig leak in from the host.
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: options.cwd, ...options.env },
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(options.input ?? '');
  });
}
