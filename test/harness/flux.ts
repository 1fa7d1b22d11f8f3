// Flux's own controllers (source-controller and kustomize-controller v1.9.6, built by
// scripts/flux/build.sh) as host processes against the harness's API server, every
// listener on 127.0.0.1; and Argo CD's Lua engine (gopher-lua) for health scripts.
//
// Each controller runs under a small sh guard that holds a pipe from this process:
// when this process exits however it exits (SIGKILL too), the pipe closes and the
// guard stops the controller and removes its storage dir, so nothing outlives a test run.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePorts, repoRoot } from './control-plane.ts';
import { recordLeakText } from './faults-leaks.ts';

export const fluxBuildScript = path.join(repoRoot, 'scripts/flux/build.sh');
export type GitopsTool = 'source-controller' | 'kustomize-controller' | 'argocd-lua-health';

export interface GitopsTools {
  binDir: string;
  /** share/<controller>/*.yaml: the CRDs from each controller's module. */
  shareDir: string;
}

function run(
  command: string,
  args: string[],
  options: { input?: string; signal?: AbortSignal; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      {
        maxBuffer: 64 << 20,
        timeout: options.timeoutMs ?? 0,
        ...(options.env ? { env: options.env } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${path.basename(command)} ${args.join(' ')} failed: ${stderr.trim().slice(-4000) || error.message}`, { cause: error }));
        else resolve({ stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Builds (or finds in ~/.cache/envseal) the named tools; the first build takes minutes. */
export async function gitopsTools(names: readonly GitopsTool[], options: { signal?: AbortSignal } = {}): Promise<GitopsTools> {
  const { stdout } = await run('bash', [fluxBuildScript, ...names], { timeoutMs: 30 * 60_000, ...options });
  const binDir = stdout.trim().split('\n').at(-1) ?? '';
  if (binDir === '') throw new Error('scripts/flux/build.sh printed no bin directory');
  return { binDir, shareDir: path.join(path.dirname(binDir), 'share') };
}

export interface HealthStatus {
  status: string;
  message?: string;
}

/**
 * Runs an Argo CD health script on `obj` in gopher-lua, as Argo CD runs a
 * resource.customizations.health script (scripts/flux/argocd-lua-health/main.go).
 */
export async function argocdHealth(binDir: string, script: string, obj: unknown, options: { signal?: AbortSignal } = {}): Promise<HealthStatus> {
  const { stdout } = await run(path.join(binDir, 'argocd-lua-health'), [script], { input: JSON.stringify(obj), ...options });
  return JSON.parse(stdout) as HealthStatus;
}

export interface FluxOptions {
  kubeconfigPath: string;
  kubectlPath: string;
  /** Where Flux's controllers think they run (events, leader election): default flux-system. */
  namespace?: string;
}

export interface Flux {
  namespace: string;
  /** source-controller's artifact server, http://127.0.0.1:PORT */
  storageUrl: string;
  /** The last lines each controller printed. */
  logTail(controller: 'source-controller' | 'kustomize-controller', lines?: number): string;
  stop(): Promise<void>;
}

// sh guard: start "$@" in the background, wait for our stdin to close (this process
// exited or stop() closed it), then TERM, KILL after 5 s, and remove $1.
// (A background list's stdin is /dev/null unless redirected: hence fd 3.)
const guardScript = `
cleanup_dir=$1; shift
exec 3<&0
"$@" </dev/null 3<&- &
child=$!
( cat <&3 >/dev/null; kill -TERM $child 2>/dev/null; i=0
  while kill -0 $child 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL $child 2>/dev/null ) >/dev/null 2>&1 &
wait $child; code=$?
[ -n "$cleanup_dir" ] && rm -rf "$cleanup_dir"
exit $code
`;

interface Guarded {
  child: ChildProcess;
  output: string[];
  exited: Promise<void>;
}

function startGuarded(binary: string, args: string[], env: NodeJS.ProcessEnv, cleanupDir: string): Guarded {
  const child = spawn('sh', ['-c', guardScript, 'envseal-flux-guard', cleanupDir, binary, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line === '') continue;
      output.push(line);
      // Flux logs object names and health-check messages: scanned for canaries with the rest.
      recordLeakText('log', line);
    }
    if (output.length > 2000) output.splice(0, output.length - 2000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return { child, output, exited };
}

async function waitHealthy(name: string, url: string, guarded: Guarded, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (guarded.child.exitCode !== null) throw new Error(`${name} exited (code ${guarded.child.exitCode}):\n${guarded.output.slice(-30).join('\n')}`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${name} not healthy at ${url} within ${timeoutMs} ms:\n${guarded.output.slice(-30).join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Applies Flux's CRDs (from the controllers' own modules) and waits until they are served. */
export async function installFluxCrds(tools: GitopsTools, options: { kubeconfigPath: string; kubectlPath: string }): Promise<void> {
  const files: string[] = [];
  for (const controller of ['source-controller', 'kustomize-controller']) {
    const dir = path.join(tools.shareDir, controller);
    for (const file of (await readdir(dir)).sort()) if (file.endsWith('.yaml')) files.push(path.join(dir, file));
  }
  const kubectl = (args: string[]) => run(options.kubectlPath, ['--kubeconfig', options.kubeconfigPath, ...args]);
  await kubectl(['apply', '--server-side', '--force-conflicts', ...files.flatMap((f) => ['-f', f])]);
  await kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...files.flatMap((f) => ['-f', f])]);
}

/**
 * Starts source-controller and kustomize-controller (CRDs installed first) and resolves
 * once both answer their health endpoints.
 */
export async function startFlux(tools: GitopsTools, options: FluxOptions): Promise<Flux> {
  const namespace = options.namespace ?? 'flux-system';
  await installFluxCrds(tools, options);
  const ns = await run(options.kubectlPath, ['--kubeconfig', options.kubeconfigPath, 'create', 'namespace', namespace]).catch((error: Error) => error);
  if (ns instanceof Error && !/AlreadyExists/.test(ns.message)) throw ns;
  const [storagePort, sourceMetrics, sourceHealth, kustomizeMetrics, kustomizeHealth] = await freePorts(5);
  const storage = await mkdtemp(path.join(tmpdir(), 'envseal-flux-storage-'));
  // No --kubeconfig flag in these controllers: KUBECONFIG. Only loopback addresses;
  // leader election is off unless --enable-leader-election.
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: tmpdir(), KUBECONFIG: options.kubeconfigPath, RUNTIME_NAMESPACE: namespace };
  const common = ['--log-level=info', '--log-encoding=console', '--watch-all-namespaces=true'];
  const source = startGuarded(
    path.join(tools.binDir, 'source-controller'),
    [
      ...common,
      `--storage-path=${storage}`,
      `--storage-addr=127.0.0.1:${storagePort}`,
      `--storage-adv-addr=127.0.0.1:${storagePort}`,
      `--metrics-addr=127.0.0.1:${sourceMetrics}`,
      `--health-addr=127.0.0.1:${sourceHealth}`,
    ],
    env,
    storage,
  );
  const kustomize = startGuarded(
    path.join(tools.binDir, 'kustomize-controller'),
    [...common, `--metrics-addr=127.0.0.1:${kustomizeMetrics}`, `--health-addr=127.0.0.1:${kustomizeHealth}`],
    env,
    '',
  );
  const controllers = { 'source-controller': source, 'kustomize-controller': kustomize };
  const stop = async () => {
    for (const c of Object.values(controllers)) c.child.stdin?.end();
    await Promise.all(Object.values(controllers).map((c) => c.exited));
    await rm(storage, { recursive: true, force: true });
  };
  try {
    await waitHealthy('source-controller', `http://127.0.0.1:${sourceHealth}/readyz`, source, 60_000);
    await waitHealthy('kustomize-controller', `http://127.0.0.1:${kustomizeHealth}/readyz`, kustomize, 60_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    namespace,
    storageUrl: `http://127.0.0.1:${storagePort}`,
    logTail: (controller, lines = 40) => controllers[controller].output.slice(-lines).join('\n'),
    stop,
  };
}
