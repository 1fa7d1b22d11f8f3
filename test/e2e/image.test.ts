// The container image. The Dockerfile is the one recipe: Docker builds it for users, and
// scripts/image/build.ts builds the same image without a Docker engine by executing its
// runtime stage (the image test/e2e/node-helm.test.ts runs in real pods). Here: the
// Dockerfile's shape, that the builder's root filesystem holds exactly what the runtime
// stage copies (no node_modules: the esbuild bundle carries every dependency), its size
// budget (docs/helm.md), and the CLI run inside that root filesystem as UID 65532.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildControllerRootfs, type ImageConfig } from '../../scripts/image/build.ts';
import { copies, execForm, last, parseDockerfile } from '../../scripts/image/dockerfile.ts';
import { repoRoot } from '../harness/control-plane.ts';

/** The image's uncompressed size budget (docs/helm.md, "The image"). */
const ROOTFS_BUDGET_BYTES = 130e6;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(file: string, args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 32 * 1024 * 1024, timeout: 120_000, env: { PATH: '/usr/local/bin:/usr/bin:/bin' } }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

const dockerfile = parseDockerfile(await readFile(path.join(repoRoot, 'Dockerfile'), 'utf8'));
const build = dockerfile.stages.find((s) => s.name === 'build')!;
const runtime = dockerfile.stages.at(-1)!;

describe('the Dockerfile', () => {
  it('builds with Node 24 in a first stage: npm ci, npm run build (tsc + the esbuild bundle), a stripped node', () => {
    expect(dockerfile.stages[0]).toBe(build);
    expect(build.from).toMatch(/^node:24(-|$|@)/);
    const runs = build.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    expect(runs.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(runs).toContain('npm run build');
    expect(runs).toContain('strip -o /src/node /usr/local/bin/node');
  });

  it('runs from a distroless glibc base as a numeric non-root user, node /app/bin/envseal.js controller by default', () => {
    expect(runtime.from).toMatch(/^gcr\.io\/distroless\/cc-debian12:nonroot/);
    expect(last(runtime, 'USER')).toBe('65532:65532');
    expect(last(runtime, 'WORKDIR')).toBe('/app');
    expect(execForm(runtime, 'ENTRYPOINT')).toEqual(['/usr/local/bin/node', '/app/bin/envseal.js']);
    expect(execForm(runtime, 'CMD')).toEqual(['controller']);
    // Nothing the image builder could not do: no RUN in the runtime stage.
    expect(runtime.instructions.filter((i) => i.keyword === 'RUN')).toEqual([]);
  });

  it('ships the Node binary and the bundle, not node_modules', () => {
    expect(copies(runtime)).toEqual([
      { from: 'build', sources: ['/src/node'], dest: '/usr/local/bin/node' },
      { from: undefined, sources: ['package.json'], dest: './' },
      { from: 'build', sources: ['/src/dist/bundle'], dest: './dist/bundle' },
      { from: undefined, sources: ['bin'], dest: './bin' },
      { from: undefined, sources: ['crds'], dest: './crds' },
    ]);
  });

  it('sends only what it copies as the build context (.dockerignore)', async () => {
    const ignore = (await readFile(path.join(repoRoot, '.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
    expect(ignore).toContain('*');
    const sources = dockerfile.stages
      .flatMap(copies)
      .filter((c) => c.from === undefined)
      .flatMap((c) => c.sources);
    for (const source of new Set(sources)) {
      expect(ignore.includes(`!${source}`) || ignore.includes(`!${source}/`), source).toBe(true);
    }
  });
});

describe('the image built without Docker (scripts/image/build.ts)', () => {
  let work: string;
  let rootfs: string;
  let config: ImageConfig;

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'envseal-image-test-'));
    rootfs = path.join(work, 'rootfs');
    await mkdir(rootfs);
    config = await buildControllerRootfs(rootfs, { version: '1.2.3' });
  });

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('holds exactly what the runtime stage copies, with its USER, ENV, ENTRYPOINT, CMD and labels', async () => {
    expect((await readdir(path.join(rootfs, 'app'))).sort()).toEqual(['bin', 'crds', 'dist', 'package.json']);
    expect(await readdir(path.join(rootfs, 'app/dist'))).toEqual(['bundle']);
    for (const dir of ['bin', 'crds', 'dist/bundle']) {
      expect(await filesUnder(path.join(rootfs, 'app', dir)), dir).toEqual((await filesUnder(path.join(repoRoot, dir))).filter((f) => !f.endsWith('.map')));
    }
    expect(await readFile(path.join(rootfs, 'app/package.json'), 'utf8')).toBe(await readFile(path.join(repoRoot, 'package.json'), 'utf8'));
    const all = await filesUnder(rootfs);
    expect(all.filter((f) => f.includes('node_modules'))).toEqual([]);
    expect(config).toEqual({
      user: '65532:65532',
      workdir: '/app',
      env: { NODE_ENV: 'production' },
      entrypoint: ['/usr/local/bin/node', '/app/bin/envseal.js'],
      cmd: ['controller'],
      labels: expect.objectContaining({ 'org.opencontainers.image.title': 'envseal', 'org.opencontainers.image.version': '1.2.3' }),
    });
    expect(await readFile(path.join(rootfs, 'etc/passwd'), 'utf8')).toMatch(/^nonroot:x:65532:65532:/m);
  });

  it(`stays within its size budget (${ROOTFS_BUDGET_BYTES / 1e6} MB uncompressed)`, async () => {
    let total = 0;
    for (const file of await filesUnder(rootfs)) total += (await stat(path.join(rootfs, file))).size;
    process.stderr.write(
      `[image] root filesystem ${(total / 1e6).toFixed(1)} MB (node ${((await stat(path.join(rootfs, 'usr/local/bin/node'))).size / 1e6).toFixed(1)} MB)\n`,
    );
    expect(total).toBeLessThan(ROOTFS_BUDGET_BYTES);
  });

  it('runs the CLI inside its own root filesystem as UID 65532: --help, controller --help, --version, the kubectl plugin', async () => {
    const inImage = (...args: string[]) => exec('/usr/sbin/chroot', ['--userspec=65532:65532', rootfs, '/usr/local/bin/node', ...args]);
    const help = await inImage('/app/bin/envseal.js', '--help');
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('controller');
    const controllerHelp = await inImage('/app/bin/envseal.js', 'controller', '--help');
    expect(controllerHelp.code, controllerHelp.stderr).toBe(0);
    for (const flag of ['--namespaces', '--metrics-address', '--lease-name', '--age-secret', '--region', '--kms-endpoint'])
      expect(controllerHelp.stdout).toContain(flag);
    const plugin = await inImage('/app/bin/kubectl-envseal.js', '--help');
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(plugin.stdout).toContain('kubectl envseal');
    const version = await inImage('/app/bin/envseal.js', '--version');
    expect(version.stdout.trim()).toContain(JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')).version);
    // Nothing else to run in there: no shell, no npm.
    expect((await exec('/usr/sbin/chroot', [rootfs, '/bin/sh', '-c', 'true'])).code).not.toBe(0);
  });

  it('makes a key and seals a Secret inside its root filesystem (the bundle loads its providers without node_modules)', async () => {
    await mkdir(path.join(rootfs, 'tmp/work'), { mode: 0o777 });
    await chmod(path.join(rootfs, 'tmp/work'), 0o777);
    const inImage = (...args: string[]) => exec('/usr/sbin/chroot', ['--userspec=65532:65532', rootfs, '/usr/local/bin/node', '/app/bin/envseal.js', ...args]);
    const keys = await inImage('keys', 'create', '-o', '/tmp/work/age.key');
    expect(keys.code, keys.stderr).toBe(0);
    const recipient = /age1[0-9a-z]+/.exec(keys.stdout)?.[0];
    expect(recipient).toBeDefined();
    const seal = await inImage('seal', '--name', 'db', '-n', 'demo', '--from-literal', 'K=v', '--recipient', `age:${recipient}`, '-w', '/tmp/work/db.yaml');
    expect(seal.code, seal.stderr).toBe(0);
    const sealed = await readFile(path.join(rootfs, 'tmp/work/db.yaml'), 'utf8');
    expect(sealed).toMatch(/^kind: EnvelopeSecret$/m);
    expect(sealed).not.toContain(': v\n');
  });
});
