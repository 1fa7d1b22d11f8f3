// The container image without a Docker engine: the Dockerfile's runtime stage is
// reproduced in a clean folder (its COPY lines, `npm ci --omit=dev`, a fresh build of
// dist/), then run from there with Node 24: the CLI, and the controller against the real
// control plane. No devDependency may be in it.
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { freePort, withControllerProcess } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, kubectlApply, paths, publishedRecipient } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

// ---------------------------------------------------------------------------------------
// the Dockerfile, read as far as this test needs

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(\w+)\s+(.*)$/.exec(line);
    if (!match) throw new Error(`Dockerfile: cannot read ${line}`);
    const keyword = match[1]!.toUpperCase();
    const rest = match[2]!.replace(/\s+/g, ' ').trim();
    if (keyword === 'FROM') {
      const [image, as, name] = rest.split(' ');
      const resolved = image!.replace(/^\$\{(\w+)\}$/, (_m, arg: string) => args[arg] ?? '');
      stages.push({ from: resolved, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else if (keyword === 'ARG' && stages.length === 0) {
      const [name, value] = rest.split('=');
      args[name!] = value ?? '';
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile: ${keyword} before FROM`);
      stage.instructions.push({ keyword, args: rest });
    }
  }
  return { args, stages };
}

const run = (stage: Stage) => stage.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
const copies = (stage: Stage) => stage.instructions.filter((i) => i.keyword === 'COPY').map((i) => i.args);

// ---------------------------------------------------------------------------------------
// processes

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Node 24 (this process, run by `npx vitest`) first on PATH, for npm and the CLI. */
const node24Env = () => ({ ...process.env, PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`, NODE_ENV: 'production' });

function exec(file: string, args: string[], cwd: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env: node24Env(), maxBuffer: 32 * 1024 * 1024, timeout: 170_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

// ---------------------------------------------------------------------------------------

const dockerfile = parseDockerfile(await readFile(path.join(repoRoot, 'Dockerfile'), 'utf8'));
let app: string;

describe('the Dockerfile', () => {
  it('builds with Node 24 in a first stage: npm ci, npm run build', () => {
    const build = dockerfile.stages[0]!;
    expect(build.name).toBe('build');
    expect(build.from).toMatch(/^node:24(-|$|@)/);
    expect(run(build).some((r) => /\bnpm ci\b/.test(r) && !r.includes('--omit=dev'))).toBe(true);
    expect(run(build)).toContain('npm run build');
  });

  it('installs production dependencies only, on the runtime base', () => {
    const deps = dockerfile.stages.find((s) => s.name === 'deps')!;
    const runtime = dockerfile.stages.at(-1)!;
    expect(deps.from).toBe(runtime.from);
    expect(run(deps).some((r) => /\bnpm ci\b.*--omit=dev/.test(r))).toBe(true);
  });

  it('runs from a small Node 24 base as a numeric non-root user, envseal controller by default', () => {
    const runtime = dockerfile.stages.at(-1)!;
    expect(runtime.from).toMatch(/^node:24-(alpine|slim|bookworm-slim)/);
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args ?? '';
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user.split(':')[0])).toBeGreaterThan(0);
    expect(runtime.instructions.find((i) => i.keyword === 'ENTRYPOINT')?.args).toBe('["node", "/app/bin/envseal.js"]');
    expect(runtime.instructions.find((i) => i.keyword === 'CMD')?.args).toBe('["controller"]');
    expect(runtime.instructions.find((i) => i.keyword === 'WORKDIR')?.args).toBe('/app');
    // What this test reproduces below, line for line.
    expect(copies(runtime)).toEqual(['package.json package-lock.json ./', '--from=deps /app/node_modules ./node_modules', '--from=build /src/dist ./dist', 'bin ./bin', 'crds ./crds']);
  });

  it('sends only what it copies as the build context (.dockerignore)', async () => {
    const ignore = (await readFile(path.join(repoRoot, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
    expect(ignore).toContain('*');
    const sources = dockerfile.stages.flatMap(copies).filter((c) => !c.startsWith('--from=')).flatMap((c) => c.split(' ').slice(0, -1));
    for (const source of new Set(sources)) {
      expect(ignore.includes(`!${source}`) || ignore.includes(`!${source}/`), source).toBe(true);
    }
  });
});

describe('the runtime stage, reproduced in a clean folder', () => {
  beforeAll(async () => {
    expect(process.versions.node.split('.')[0], 'run with Node 24 (npx vitest)').toBe('24');
    app = await mkdtemp(path.join(tmpdir(), 'envseal-image-'));
    // COPY package.json package-lock.json ./ ; the deps stage: npm ci --omit=dev
    for (const file of ['package.json', 'package-lock.json']) await cp(path.join(repoRoot, file), path.join(app, file));
    const install = await exec('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], app);
    if (install.code !== 0) throw new Error(`npm ci --omit=dev failed in ${app}:\n${install.stderr.split('\n').slice(0, 12).join('\n')}`);
    // The build stage's `npm run build`, into the clean folder.
    const tsc = path.join(repoRoot, 'node_modules/typescript/bin/tsc');
    const build = await exec(process.execPath, [tsc, '-p', path.join(repoRoot, 'tsconfig.build.json'), '--outDir', path.join(app, 'dist')], repoRoot);
    if (build.code !== 0) throw new Error(`npm run build (tsc) failed:\n${build.stdout}${build.stderr}`);
    // ... and its second step: the esbuild bundle that bin/start.js runs.
    const bundle = await exec(process.execPath, [path.join(repoRoot, 'scripts/bundle.ts'), '--dist', path.join(app, 'dist')], repoRoot);
    if (bundle.code !== 0) throw new Error(`npm run build (bundle) failed:\n${bundle.stdout}${bundle.stderr}`);
    for (const dir of ['bin', 'crds']) await cp(path.join(repoRoot, dir), path.join(app, dir), { recursive: true });
  });

  afterAll(async () => {
    if (app) await rm(app, { recursive: true, force: true });
  });

  it('holds no devDependency, and every production dependency', async () => {
    const pkg = JSON.parse(await readFile(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const lock = JSON.parse(await readFile(path.join(app, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean; os?: string[]; cpu?: string[] }> };
    // A devDependency stays out unless a production dependency needs it too: only
    // @types/node, which @kubernetes/client-node lists as a dependency of its own.
    const neededInProduction = Object.keys(pkg.devDependencies).filter((name) => lock.packages[`node_modules/${name}`]?.dev !== true);
    expect(neededInProduction).toEqual(['@types/node']);
    for (const name of Object.keys(pkg.devDependencies).filter((n) => !neededInProduction.includes(n))) {
      expect(await exists(path.join(app, 'node_modules', name)), name).toBe(false);
    }
    expect(await exists(path.join(app, 'node_modules/node'))).toBe(false);
    // Every package the lock marks dev-only is absent (the `node` binary package, typescript, vitest, esbuild, ...).
    const devOnly = Object.entries(lock.packages).filter(([key, entry]) => key.startsWith('node_modules/') && entry.dev === true);
    expect(devOnly.length).toBeGreaterThan(10);
    for (const [key] of devOnly) expect(await exists(path.join(app, key)), key).toBe(false);
    const production = Object.entries(lock.packages).filter(([key, entry]) => key.startsWith('node_modules/') && !entry.dev && !entry.optional && !entry.devOptional);
    for (const [key] of production) expect(await exists(path.join(app, key)), key).toBe(true);
    expect(await exists(path.join(app, 'node_modules/.bin/node'))).toBe(false);
    const top = await readdir(path.join(app));
    expect(top.sort()).toEqual(['bin', 'crds', 'dist', 'node_modules', 'package-lock.json', 'package.json']);
    expect((await readdir(path.join(app, 'dist'))).some((f) => f.endsWith('.test.js'))).toBe(false);
  });

  it('loads every production dependency', async () => {
    const pkg = JSON.parse(await readFile(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const name of Object.keys(pkg.dependencies)) {
      const result = await exec(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(name)})`], app);
      expect(result.code, `${name}: ${result.stderr}`).toBe(0);
    }
  });

  it('runs the CLI: envseal --help, envseal controller --help, the kubectl plugin', async () => {
    const help = await exec(process.execPath, ['bin/envseal.js', '--help'], app);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('controller');
    const controllerHelp = await exec(process.execPath, ['bin/envseal.js', 'controller', '--help'], app);
    expect(controllerHelp.code, controllerHelp.stderr).toBe(0);
    for (const flag of ['--namespaces', '--metrics-address', '--lease-name', '--age-secret', '--region', '--kms-endpoint']) expect(controllerHelp.stdout).toContain(flag);
    const plugin = await exec(process.execPath, ['bin/kubectl-envseal.js', '--help'], app);
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(plugin.stdout).toContain('kubectl envseal');
    const version = await exec(process.execPath, ['bin/envseal.js', '--version'], app);
    expect(version.stdout.trim()).toContain(JSON.parse(await readFile(path.join(app, 'package.json'), 'utf8')).version);
  });

  it('runs the controller (the image CMD) against the control plane: a sealed Secret appears; SIGTERM stops it cleanly', async () => {
    await installCrd();
    const client = adminClient();
    const namespace = uniqueName('image');
    await createNamespace(client, namespace);
    const port = await freePort();
    const args = ['bin/envseal.js', 'controller', '--kubeconfig', sharedCluster().kubeconfigPath, '--namespaces', namespace, '--controller-namespace', namespace, '--no-leader-elect', '--metrics-address', `127.0.0.1:${port}`];
    const { code, log } = await withControllerProcess({ args, cwd: app, env: node24Env() }, async (log) => {
      await waitFor('caches synced', () => log().includes('caches synced'), { timeoutMs: 60_000 });
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const recipient = await publishedRecipient(client, namespace);
      const sealed = await sealFor({ namespace, name: 'hello', values: { GREETING: `${CANARY_MARKER}from the image` }, targets: [ageTarget(recipient)] });
      expect((await kubectlApply(sealed)).code).toBe(0);
      const secret = await waitFor('the Secret', () => getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(namespace, 'hello')));
      expect(Buffer.from(secret.data.GREETING!, 'base64').toString()).toBe(`${CANARY_MARKER}from the image`);
    });
    expect(code, log.slice(-2000)).toBe(0);
    expect(log).toContain('controller stopped');
  });
});
