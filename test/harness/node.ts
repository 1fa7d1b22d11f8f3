// A real node for e2e tests and the Helm demo: containerd, kubelet, kube-scheduler and
// kube-proxy, with their own control plane, all inside a network namespace made here (a
// veth pair with both ends inside it, a private /24 and a default route that stays in
// it), so that no packet leaves the machine. The envseal image (scripts/image/build.ts)
// and a busybox image (the pause image, and the tests' workloads) are imported, so the
// chart runs unmodified with image.pullPolicy=Never.
//
// Layout: this process (the host side) creates the namespace and a state dir, starts a
// watchdog (node-host.sh watch: takes a host-wide lock, records the host's sysctls and
// what exists under /var, /run and the cgroup hierarchies), then starts node-runner.ts
// under `nsenter --net` and reaches its API server through a Unix socket bridged to a
// loopback port here. stop() ends the runner and runs node-host.sh clean, which stops
// containers and shims, unmounts, removes cgroups and directories, restores the sysctls
// and deletes the namespace; the watchdog does the same if this process is SIGKILLed.
// Needs root, cgroup v1 or v2, and scripts/node/install-packages.sh's packages.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { buildBusyboxImage, buildControllerImage, type BuiltImage } from '../../scripts/image/build.ts';
import { binDirFromBuildScript, repoRoot } from './control-plane.ts';
import type { RunnerOptions, RunnerReady } from './node-runner.ts';

export const hostScript = path.join(repoRoot, 'test/harness/node-host.sh');
const runnerScript = path.join(repoRoot, 'test/harness/node-runner.ts');
export const nodeBinaries = ['kubelet', 'kube-scheduler', 'kube-proxy'];

export interface NodeClusterOptions {
  /** Progress messages. Default: silent. */
  log?: (message: string) => void;
  /** Upper bound for the whole start (not counting waiting for another node's lock). Default 240 s. */
  startTimeoutMs?: number;
  signal?: AbortSignal;
  /**
   * For tests: when the watchdog restores the host after this process died, it writes a
   * host snapshot here, still holding the host lock (so no other node can be in it).
   */
  snapshotAfterKillPath?: string;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NodeCluster {
  /** Admin kubeconfig for this (host) side: https://127.0.0.1:<bridge port>. */
  readonly kubeconfigPath: string;
  readonly nodeName: string;
  readonly nodeAddress: string;
  readonly netns: string;
  readonly stateDir: string;
  readonly binDir: string;
  /** localhost/envseal:<tag>, imported. */
  readonly controllerImage: BuiltImage;
  /** localhost/envseal-busybox:<version>, imported: the pause image; sh, cat, sleep for workloads. */
  readonly busyboxImage: BuiltImage;
  /** Start-up phases in ms (control plane, containerd, images, node Ready, ...). */
  readonly timings: Record<string, number>;
  /**
   * The host (node-host.sh snapshot) when this node took the host lock, and after stop()
   * restored it, before the lock was released: no other node can be in either.
   */
  readonly hostSnapshots: { before: string[]; after?: string[] };
  kubectl(args: string[], options?: { input?: string; signal?: AbortSignal }): Promise<CommandResult>;
  helm(args: string[], options?: { signal?: AbortSignal }): Promise<CommandResult>;
  /** Imports a docker-archive into the node's containerd (k8s.io namespace). */
  importImage(archive: string, options?: { signal?: AbortSignal }): Promise<void>;
  /** The last lines of a daemon's log (kubelet, containerd, kube-proxy, kube-scheduler, runner). */
  logTail(name: string, lines?: number): string;
  /** Stops everything and puts the host back as it was. Idempotent. */
  stop(): Promise<void>;
}

/** This process's environment with the sbin directories (ip, containerd's tools), which a test runner's PATH may lack. */
const withSbin = (env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv => ({
  ...env,
  PATH: `${env.PATH ?? '/usr/bin:/bin'}:/usr/local/sbin:/usr/sbin:/sbin`,
});

function exec(
  file: string,
  args: string[],
  options: { input?: string; signal?: AbortSignal; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { signal: options.signal, timeout: options.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024, env: withSbin(options.env) },
      (error, stdout, stderr) => {
        resolve({
          code: error ? (typeof error.code === 'number' ? error.code : 1) : 0,
          stdout,
          stderr: stderr || (error && typeof error.code !== 'number' ? error.message : ''),
        });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

async function execOrThrow(file: string, args: string[], options: { input?: string; signal?: AbortSignal } = {}): Promise<string> {
  const result = await exec(file, args, options);
  if (result.code !== 0) throw new Error(`${path.basename(file)} ${args.join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function tail(file: string, lines = 40): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Why this machine cannot run the node, or undefined when it can. */
export async function nodePrerequisites(binDir = binDirFromBuildScript()): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the node needs root (network namespace, containerd, kubelet)';
  const missing = nodeBinaries.filter((b) => !fs.existsSync(path.join(binDir, b)));
  if (missing.length > 0) return `${missing.join(', ')} missing in ${binDir}: run scripts/control-plane/build.sh (npm run tools)`;
  const check = await exec('bash', [path.join(repoRoot, 'scripts/node/install-packages.sh'), '--check']);
  if (check.code !== 0) return `${check.stderr.trim()}: run bash scripts/node/install-packages.sh (npm run tools)`;
  return undefined;
}

/** The host state a test compares before and after a node (node-host.sh snapshot). */
export async function hostSnapshot(): Promise<string[]> {
  return (await execOrThrow('bash', [hostScript, 'snapshot'])).trimEnd().split('\n');
}

/** A readable difference between two snapshots ('' when equal). */
export function snapshotDiff(before: string[], after: string[]): string {
  const gone = before.filter((l) => !after.includes(l)).map((l) => `- ${l}`);
  const added = after.filter((l) => !before.includes(l)).map((l) => `+ ${l}`);
  return [...gone, ...added].join('\n');
}

async function waitForFile(file: string, what: string, timeoutMs: number, failed: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (fs.existsSync(file)) return;
    const failure = failed();
    if (failure !== undefined) throw new Error(failure);
    if (Date.now() > deadline) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
    await sleep(200);
  }
}

/** Starts the control plane and a Ready node in a new network namespace. Always call stop(). */
export async function startNodeCluster(options: NodeClusterOptions = {}): Promise<NodeCluster> {
  const log = options.log ?? (() => {});
  const binDir = binDirFromBuildScript();
  const problem = await nodePrerequisites(binDir);
  if (problem !== undefined) throw new Error(`cannot start a node here: ${problem}`);
  const started = Date.now();
  const id = randomBytes(3).toString('hex');
  const netns = `envseal-${id}`;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'envseal-node-'));
  fs.mkdirSync(path.join(stateDir, 'logs'));
  const nodeName = 'envseal-node';
  const nodeAddress = '10.213.0.2';
  const cleanup = () => exec('bash', [hostScript, 'clean', stateDir], { timeoutMs: 120_000 });

  // The watchdog first: it holds the host lock and records the host before anything changes.
  const watchdog = spawn(
    'bash',
    [hostScript, 'watch', String(process.pid), stateDir, ...(options.snapshotAfterKillPath ? [options.snapshotAfterKillPath] : [])],
    { detached: true, stdio: 'ignore', env: withSbin() },
  );
  watchdog.unref();
  let watchdogExit: string | undefined;
  watchdog.once(
    'exit',
    (code) =>
      (watchdogExit = `the node watchdog exited (code ${code}): ${fs.existsSync(path.join(stateDir, 'watchdog.error')) ? fs.readFileSync(path.join(stateDir, 'watchdog.error'), 'utf8') : 'see node-host.sh'}`),
  );
  const stopWatchdog = () => {
    try {
      if (watchdog.pid !== undefined) process.kill(-watchdog.pid, 'SIGTERM');
    } catch {
      // gone
    }
  };
  let runner: ChildProcess | undefined;
  let bridge: net.Server | undefined;
  try {
    log('waiting for the host lock (one node at a time on this machine)');
    await waitForFile(path.join(stateDir, 'watchdog.ready'), 'the node watchdog (host lock)', 960_000, () => watchdogExit);
    const deadline = Date.now() + (options.startTimeoutMs ?? 240_000);
    const hostSnapshots: { before: string[]; after?: string[] } = {
      before: fs.readFileSync(path.join(stateDir, 'before/snapshot'), 'utf8').trimEnd().split('\n'),
    };

    log(`network namespace ${netns}: ${nodeAddress}/24, default route inside it`);
    fs.writeFileSync(path.join(stateDir, 'netns'), netns);
    await execOrThrow('ip', ['netns', 'add', netns]);
    const ipn = (...args: string[]) => execOrThrow('ip', ['-n', netns, ...args]);
    await ipn('link', 'set', 'lo', 'up');
    await ipn('link', 'add', 'envseal0', 'type', 'veth', 'peer', 'name', 'envseal1');
    await ipn('addr', 'add', `${nodeAddress}/24`, 'dev', 'envseal0');
    await ipn('link', 'set', 'envseal0', 'up');
    await ipn('link', 'set', 'envseal1', 'up');
    await ipn('route', 'add', 'default', 'dev', 'envseal0');

    log('building the images (scripts/image/build.ts)');
    const imageStart = Date.now();
    const controllerImage = await buildControllerImage({ signal: options.signal });
    const busyboxImage = await buildBusyboxImage({ signal: options.signal });
    const imageBuildMs = Date.now() - imageStart;

    const runnerOptions: RunnerOptions = {
      stateDir,
      binDir,
      nodeName,
      nodeAddress,
      podCidr: '10.214.0.0/24',
      images: [controllerImage.archive, busyboxImage.archive],
      sandboxImage: busyboxImage.reference,
    };
    fs.writeFileSync(path.join(stateDir, 'runner.json'), JSON.stringify(runnerOptions));
    const runnerLog = path.join(stateDir, 'logs', 'runner.log');
    const fd = fs.openSync(runnerLog, 'a');
    runner = spawn('nsenter', [`--net=/run/netns/${netns}`, '--', process.execPath, runnerScript, stateDir], {
      detached: true,
      stdio: ['pipe', fd, fd],
      env: withSbin(),
    });
    fs.closeSync(fd);
    fs.writeFileSync(path.join(stateDir, 'runner.pid'), `${runner.pid}\n`);
    let runnerExit: string | undefined;
    const runnerExited = new Promise<void>((resolve) =>
      runner!.once('exit', (code, signal) => {
        runnerExit = `the node runner exited (code ${code}, signal ${signal}); last lines of ${runnerLog}:\n${tail(runnerLog)}`;
        resolve();
      }),
    );
    runner.unref();
    log('starting the control plane, containerd, kubelet, kube-scheduler and kube-proxy in the namespace');
    await waitForFile(path.join(stateDir, 'ready.json'), 'the node to be Ready', Math.max(1_000, deadline - Date.now()), () => runnerExit ?? watchdogExit);
    const ready = JSON.parse(fs.readFileSync(path.join(stateDir, 'ready.json'), 'utf8')) as RunnerReady;

    // Loopback port here -> Unix socket -> the API server in the namespace (TLS end to end).
    const sockets = new Set<net.Socket>();
    bridge = net.createServer((client) => {
      const upstream = net.connect(ready.apiSocket);
      sockets.add(client).add(upstream);
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve, reject) => bridge!.once('error', reject).listen(0, '127.0.0.1', () => resolve()));
    const port = (bridge.address() as net.AddressInfo).port;
    const config = parseYaml(fs.readFileSync(ready.kubeconfigPath, 'utf8')) as { clusters: { cluster: { server: string } }[] };
    for (const c of config.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
    const kubeconfigPath = path.join(stateDir, 'host.kubeconfig');
    fs.writeFileSync(kubeconfigPath, toYaml(config), { mode: 0o600 });
    const timings = { imageBuildMs, ...ready.timings, totalMs: Date.now() - started };
    log(`node Ready in ${(timings.totalMs / 1000).toFixed(1)} s (${JSON.stringify(timings)})`);

    const theRunner = runner;
    const theBridge = bridge;
    let stopPromise: Promise<void> | undefined;
    const kubectl = (args: string[], o: { input?: string; signal?: AbortSignal } = {}) =>
      exec(path.join(binDir, 'kubectl'), ['--kubeconfig', kubeconfigPath, ...args], o);
    return {
      kubeconfigPath,
      nodeName,
      nodeAddress,
      netns,
      stateDir,
      binDir,
      controllerImage,
      busyboxImage,
      timings,
      hostSnapshots,
      kubectl,
      // Helm's cache and config in the state dir, not in $HOME.
      helm: (args, o = {}) =>
        exec(path.join(binDir, 'helm'), ['--kubeconfig', kubeconfigPath, ...args], {
          ...o,
          env: {
            ...process.env,
            HELM_CACHE_HOME: path.join(stateDir, 'helm/cache'),
            HELM_CONFIG_HOME: path.join(stateDir, 'helm/config'),
            HELM_DATA_HOME: path.join(stateDir, 'helm/data'),
          },
        }),
      importImage: async (archive, o = {}) => {
        await execOrThrow('ctr', ['--address', ready.containerdSocket, '--namespace', 'k8s.io', 'images', 'import', archive], o);
      },
      logTail: (name, lines = 40) => tail(path.join(stateDir, 'logs', `${name}.log`), lines),
      stop: () => {
        stopPromise ??= (async () => {
          theBridge.close();
          for (const s of sockets) s.destroy();
          theRunner.stdin?.end();
          const timedOut = await Promise.race([runnerExited.then(() => false), sleep(60_000).then(() => true)]);
          if (timedOut && theRunner.pid !== undefined) {
            try {
              process.kill(-theRunner.pid, 'SIGKILL');
            } catch {
              // gone
            }
          }
          const result = await cleanup();
          // Still under the host lock (the watchdog holds it until it is stopped).
          hostSnapshots.after = await hostSnapshot();
          stopWatchdog();
          if (result.code !== 0) throw new Error(`node-host.sh clean failed: ${result.stderr}`);
        })();
        return stopPromise;
      },
    };
  } catch (err) {
    bridge?.close();
    runner?.stdin?.end();
    // The state dir goes with the cleanup: keep the logs for the error.
    const kept = path.join(os.tmpdir(), `envseal-node-logs-${id}`);
    fs.cpSync(stateDir, kept, { recursive: true, filter: (f) => fs.statSync(f).isDirectory() || f.endsWith('.log') });
    await cleanup();
    stopWatchdog();
    throw new Error(`the node did not start (logs kept in ${kept}): ${(err as Error).message}`, { cause: err });
  }
}
