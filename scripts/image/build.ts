// Builds envseal's container image without Docker, from the Dockerfile's own recipe:
// the build stage's outputs are made here (dist/bundle by `npm run build`, a stripped
// Node binary from the npm `node` package), then the runtime stage's instructions are
// executed in order (WORKDIR, COPY, ENV, LABEL, USER, ENTRYPOINT, CMD) onto a base that
// holds what the distroless base gives (glibc and the libraries Node links, /etc/passwd
// with nonroot 65532, /tmp). umoci turns the folder into an OCI image and skopeo into a
// docker-archive that `ctr images import` loads. Also builds a busybox-static image: the
// node's pause (sandbox) image and the tests' workload image.
//
//   node scripts/image/build.ts [--tag TAG] [--out DIR] [--busybox]
//     prints the archive path; default tag dev-<hash of the inputs>; DIR defaults to
//     $ENVSEAL_CACHE_DIR/images (~/.cache/envseal/images), where an archive of the same
//     tag is reused.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { copies, env, execForm, labels, parseDockerfile, type Stage } from './dockerfile.ts';

export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const controllerRepository = 'localhost/envseal';
export const busyboxRepository = 'localhost/envseal-busybox';

export interface BuiltImage {
  /** localhost/NAME:TAG, as the chart's image.repository:image.tag names it. */
  reference: string;
  tag: string;
  /** docker-archive tarball for `ctr images import`. */
  archive: string;
  archiveBytes: number;
  /** Sum of the root filesystem's file sizes. */
  rootfsBytes: number;
  /** True when an archive of this tag was already in the output dir. */
  reused: boolean;
}

export interface ImageBuildOptions {
  /** Default: dev-<first 12 hex of the inputs' sha256>. */
  tag?: string;
  /** Where the archive goes. Default: $ENVSEAL_CACHE_DIR/images or ~/.cache/envseal/images. */
  outDir?: string;
  signal?: AbortSignal;
}

export function defaultImageDir(): string {
  return path.join(process.env.ENVSEAL_CACHE_DIR ?? path.join(os.homedir(), '.cache/envseal'), 'images');
}

function run(file: string, args: string[], signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { signal, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${stderr.trim() || error.message}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(path.join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function hashTree(hash: ReturnType<typeof createHash>, file: string): Promise<void> {
  const info = await stat(file);
  if (info.isDirectory()) {
    for (const name of (await readdir(file)).sort()) await hashTree(hash, path.join(file, name));
  } else {
    hash
      .update(path.relative(repoRoot, file))
      .update('\0')
      .update(await readFile(file))
      .update('\0');
  }
}

/** The Node binary the image ships: the npm `node` package's (the project's Node 24). */
export function nodeBinary(): string {
  const file = path.join(repoRoot, 'node_modules/node/bin/node');
  if (!fs.existsSync(file)) throw new Error(`${file} is missing: run npm ci (the \`node\` devDependency provides the image's Node binary)`);
  return fs.realpathSync(file);
}

function runtimeStage(dockerfileText: string): { runtime: Stage; build: Stage } {
  const { stages } = parseDockerfile(dockerfileText);
  const build = stages.find((s) => s.name === 'build');
  const runtime = stages.at(-1);
  if (build === undefined || runtime === undefined || runtime === build) throw new Error('Dockerfile: expected a "build" stage and a runtime stage after it');
  return { runtime, build };
}

/**
 * What each path the runtime stage copies --from=build is, outside Docker: the build
 * stage's WORKDIR is the repository, its `npm run build` is this checkout's, and its
 * `strip -o /src/node` is done here with the npm `node` package's binary.
 */
async function buildStageOutput(source: string, work: string, signal?: AbortSignal): Promise<string> {
  if (source === '/src/node') {
    const out = path.join(work, 'node');
    await run('strip', ['-o', out, nodeBinary()], signal);
    return out;
  }
  if (source.startsWith('/src/dist/')) {
    const local = path.join(repoRoot, source.slice('/src/'.length));
    if (!(await exists(local))) throw new Error(`${local} is missing: run npm run build first (the Dockerfile's build stage)`);
    return local;
  }
  throw new Error(`Dockerfile: the image builder does not know how to make ${source} of the build stage; teach scripts/image/build.ts`);
}

/** The shared libraries a binary links (ldd), with the dynamic loader. */
async function linkedLibraries(binary: string, signal?: AbortSignal): Promise<string[]> {
  const out = await run('ldd', [binary], signal);
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const match = /(\/\S+)\s+\(0x/.exec(line);
    if (match) libs.add(match[1]!);
  }
  if (libs.size === 0) throw new Error(`ldd ${binary}: no libraries found`);
  return [...libs];
}

/** The base: what gcr.io/distroless/cc-debian12:nonroot provides that Node needs. */
async function writeBase(rootfs: string, nodeLibs: string[]): Promise<void> {
  for (const lib of nodeLibs) {
    // Keep the path the binary asks for (/lib64/ld-linux-x86-64.so.2 is a symlink on Debian).
    const dest = path.join(rootfs, lib);
    await mkdir(path.dirname(dest), { recursive: true });
    await cp(fs.realpathSync(lib), dest);
  }
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n');
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nnonroot:x:65532:\n');
  await mkdir(path.join(rootfs, 'home/nonroot'), { recursive: true });
  await mkdir(path.join(rootfs, 'tmp'), { recursive: true });
  await chmod(path.join(rootfs, 'tmp'), 0o1777);
}

export interface ImageConfig {
  user: string;
  workdir: string;
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  labels: Record<string, string>;
}

/** Assembles the controller image's root filesystem in rootfs (an empty folder) from the Dockerfile. */
export async function buildControllerRootfs(rootfs: string, options: { signal?: AbortSignal; version?: string } = {}): Promise<ImageConfig> {
  const { runtime } = runtimeStage(await readFile(path.join(repoRoot, 'Dockerfile'), 'utf8'));
  const work = await mkdtemp(path.join(os.tmpdir(), 'envseal-image-work-'));
  try {
    let workdir = '/';
    const copyList = copies(runtime);
    let copyIndex = 0;
    for (const instruction of runtime.instructions) {
      switch (instruction.keyword) {
        case 'WORKDIR':
          workdir = path.posix.resolve(workdir, instruction.args);
          await mkdir(path.join(rootfs, workdir), { recursive: true });
          break;
        case 'COPY': {
          const copy = copyList[copyIndex++]!;
          for (const source of copy.sources) {
            const local =
              copy.from === undefined ? path.join(repoRoot, source) : copy.from === 'build' ? await buildStageOutput(source, work, options.signal) : undefined;
            if (local === undefined) throw new Error(`Dockerfile: COPY --from=${copy.from}: only the build stage is known to the image builder`);
            const destIsDir = copy.dest.endsWith('/') || copy.sources.length > 1;
            const dest = path.join(rootfs, path.posix.resolve(workdir, copy.dest), destIsDir ? path.basename(source) : '');
            await mkdir(path.dirname(dest), { recursive: true });
            await cp(local, dest, { recursive: true, filter: (file) => !file.endsWith('.test.js') && !file.endsWith('.map') });
          }
          break;
        }
        case 'RUN':
          throw new Error(
            `Dockerfile: the runtime stage has RUN ${instruction.args}; the image builder cannot run it (keep the runtime stage to COPY/ENV/USER)`,
          );
        default:
          break; // ARG, LABEL, ENV, USER, ENTRYPOINT, CMD: read below
      }
    }
    const nodeInImage = path.join(rootfs, 'usr/local/bin/node');
    if (!(await exists(nodeInImage))) throw new Error('Dockerfile: the runtime stage does not copy Node to /usr/local/bin/node');
    await writeBase(rootfs, await linkedLibraries(nodeInImage, options.signal));
    const user = runtime.instructions.filter((i) => i.keyword === 'USER').at(-1)?.args;
    if (user === undefined || !/^\d+(:\d+)?$/.test(user)) throw new Error('Dockerfile: the runtime stage needs a numeric USER');
    return {
      user,
      workdir,
      env: env(runtime),
      entrypoint: execForm(runtime, 'ENTRYPOINT'),
      cmd: execForm(runtime, 'CMD'),
      labels: labels(runtime, options.version === undefined ? {} : { VERSION: options.version }),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function busyboxRootfs(rootfs: string, signal?: AbortSignal): Promise<ImageConfig> {
  const busybox = '/bin/busybox';
  const ldd = await run('ldd', [busybox], signal).catch((err: Error) => err.message);
  if (!/not a dynamic executable/.test(ldd))
    throw new Error(`${busybox} is not the static busybox (install busybox-static: bash scripts/node/install-packages.sh)`);
  await mkdir(path.join(rootfs, 'bin'), { recursive: true });
  await cp(busybox, path.join(rootfs, 'bin/busybox'));
  const applets = (await run(busybox, ['--list'], signal)).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  for (const applet of applets) await symlink('busybox', path.join(rootfs, 'bin', applet));
  await mkdir(path.join(rootfs, 'tmp'), { recursive: true });
  await chmod(path.join(rootfs, 'tmp'), 0o1777);
  await mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await writeFile(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  // The default command is a pause: sleeps until SIGTERM, reaping nothing else's children.
  return {
    user: '65534:65534',
    workdir: '/',
    env: { PATH: '/bin' },
    entrypoint: ['/bin/sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'],
    cmd: [],
    labels: { 'org.opencontainers.image.title': 'envseal-busybox' },
  };
}

/** rootfs -> OCI layout (umoci) -> docker-archive (skopeo), written atomically to archive. */
async function packImage(rootfs: string, config: ImageConfig, reference: string, archive: string, signal?: AbortSignal): Promise<void> {
  const work = await mkdtemp(path.join(os.tmpdir(), 'envseal-oci-'));
  try {
    const layout = path.join(work, 'oci');
    const image = `${layout}:image`;
    await run('umoci', ['init', '--layout', layout], signal);
    await run('umoci', ['new', '--image', image], signal);
    await run('umoci', ['insert', '--image', image, rootfs, '/'], signal);
    const args = [
      'config',
      '--image',
      image,
      '--os',
      'linux',
      '--architecture',
      'amd64',
      '--config.user',
      config.user,
      '--config.workingdir',
      config.workdir,
      '--clear=config.entrypoint',
      '--clear=config.cmd',
    ];
    for (const [key, value] of Object.entries(config.env)) args.push('--config.env', `${key}=${value}`);
    for (const part of config.entrypoint) args.push(`--config.entrypoint=${part}`);
    for (const part of config.cmd) args.push(`--config.cmd=${part}`);
    for (const [key, value] of Object.entries(config.labels)) args.push('--config.label', `${key}=${value}`);
    await run('umoci', args, signal);
    await mkdir(path.dirname(archive), { recursive: true });
    const tmp = `${archive}.${process.pid}.tmp`;
    await rm(tmp, { force: true });
    await run('skopeo', ['copy', '--quiet', `oci:${image}`, `docker-archive:${tmp}:${reference}`], signal);
    await rename(tmp, archive);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function build(name: string, tag: string, options: ImageBuildOptions, make: (rootfs: string) => Promise<ImageConfig>): Promise<BuiltImage> {
  const outDir = options.outDir ?? defaultImageDir();
  const reference = `${name}:${tag}`;
  const archive = path.join(outDir, `${path.basename(name)}-${tag}.tar`);
  const work = await mkdtemp(path.join(os.tmpdir(), 'envseal-rootfs-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    await mkdir(rootfs);
    const config = await make(rootfs);
    const rootfsBytes = await treeBytes(rootfs);
    const reused = await exists(archive);
    if (!reused) await packImage(rootfs, config, reference, archive, options.signal);
    return { reference, tag, archive, archiveBytes: (await stat(archive)).size, rootfsBytes, reused };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** A tag that changes whenever anything the image holds changes. */
export async function inputsTag(): Promise<string> {
  const hash = createHash('sha256');
  for (const file of ['Dockerfile', 'package.json', 'bin', 'crds', 'dist/bundle', 'scripts/image/build.ts']) await hashTree(hash, path.join(repoRoot, file));
  hash.update(await readFile(nodeBinary()));
  return `dev-${hash.digest('hex').slice(0, 12)}`;
}

export async function buildControllerImage(options: ImageBuildOptions = {}): Promise<BuiltImage> {
  if (!(await exists(path.join(repoRoot, 'dist/bundle/main.js')))) throw new Error('dist/bundle/main.js is missing: run npm run build first');
  const current = await inputsTag();
  const tag = options.tag ?? current;
  const image = await build(controllerRepository, tag, options, (rootfs) => buildControllerRootfs(rootfs, { signal: options.signal, version: tag }));
  // Archives of earlier inputs (120 MB each) go: only this build's dev-<hash>* stay.
  const dir = path.dirname(image.archive);
  const prefix = `${path.basename(controllerRepository)}-dev-`;
  for (const name of await readdir(dir)) {
    if (name.startsWith(prefix) && name.endsWith('.tar') && !name.startsWith(`${path.basename(controllerRepository)}-${current}`))
      await rm(path.join(dir, name), { force: true });
  }
  return image;
}

export async function buildBusyboxImage(options: ImageBuildOptions = {}): Promise<BuiltImage> {
  const version = (await run('/bin/busybox', ['--help'], options.signal).catch((err: Error) => err.message)).match(/BusyBox v([\w.-]+)/)?.[1] ?? 'unknown';
  return build(busyboxRepository, options.tag ?? version, options, (rootfs) => busyboxRootfs(rootfs, options.signal));
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const { values } = parseArgs({ options: { tag: { type: 'string' }, out: { type: 'string' }, busybox: { type: 'boolean', default: false } } });
  const started = Date.now();
  const image = values.busybox
    ? await buildBusyboxImage({ tag: values.tag, outDir: values.out })
    : await buildControllerImage({ tag: values.tag, outDir: values.out });
  const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
  process.stderr.write(
    `${image.reference}: rootfs ${mb(image.rootfsBytes)}, archive ${mb(image.archiveBytes)}${image.reused ? ' (reused)' : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
  process.stdout.write(`${image.archive}\n`);
}
