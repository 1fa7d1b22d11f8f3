// A real Kubernetes control plane for tests and the demo: etcd + kube-apiserver +
// kube-controller-manager, built from source by scripts/control-plane/build.sh and
// started here on free loopback ports with a throwaway PKI.
//
// Lifecycle guarantees:
// - stop() stops every component (SIGTERM to its process group, SIGKILL after a grace
//   period) and removes the temp dir.
// - If the Node process exits or gets SIGINT/SIGTERM/SIGHUP without calling stop(),
//   exit/signal handlers stop the components synchronously.
// - If the Node process dies without running any handler (SIGKILL, crash), a small
//   watchdog shell process (its own process group) notices within a second that the
//   parent is gone, stops every component recorded in <dir>/pgids and removes the dir.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const buildScript = path.join(repoRoot, 'scripts/control-plane/build.sh');

export type ComponentName = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';
export const componentNames: readonly ComponentName[] = ['etcd', 'kube-apiserver', 'kube-controller-manager'];

export interface ControlPlaneOptions {
  /** Directory holding the binaries. Default: what build.sh --print-bin-dir prints. */
  binDir?: string;
  /** Parent of the cluster's temp dir. Default: os.tmpdir(). */
  parentDir?: string;
  /** Keep the temp dir (logs, etcd data) after stop(). Default: env ENVSEAL_KEEP_CONTROL_PLANE=1. */
  keepDir?: boolean;
  /** Upper bound for the whole startup. Default 180 s. */
  startTimeoutMs?: number;
  /** Start kube-controller-manager (garbage collection, namespace deletion, service accounts). Default true. */
  controllerManager?: boolean;
  /**
   * For a node (test/harness/node.ts): the address of the network namespace this control
   * plane runs in. The API server then listens on every address there, advertises this one
   * (the `kubernetes` Service's endpoint, which kube-proxy serves to pods) and reaches
   * kubelets by InternalIP with the admin client certificate. Default: loopback only.
   */
  nodeAddress?: string;
  extraEtcdArgs?: string[];
  extraApiServerArgs?: string[];
  extraControllerManagerArgs?: string[];
  /** Progress messages. Default: silent. */
  log?: (message: string) => void;
}

export interface StopComponentOptions {
  /** SIGTERM (default: graceful, SIGKILL after graceMs) or SIGKILL (a crash). */
  signal?: 'SIGTERM' | 'SIGKILL';
  /**
   * How long to wait after SIGTERM before SIGKILL. Defaults: etcd 10 s,
   * kube-controller-manager 5 s, kube-apiserver 3 s (it closes its listener at once
   * but then holds its exit until clients' watch connections go away, up to its
   * request timeout of 60 s; its state lives in etcd, so SIGKILL after 3 s loses
   * nothing).
   */
  graceMs?: number;
}

export interface ControlPlanePorts {
  etcdClient: number;
  etcdPeer: number;
  apiServer: number;
  controllerManager: number;
}

export interface ControlPlane {
  /** Temp dir holding pki/, etcd-data/, logs/ and the kubeconfig. */
  readonly dir: string;
  readonly binDir: string;
  /** Admin kubeconfig (client certificate in group system:masters), data inlined. */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly etcdUrl: string;
  readonly ports: ControlPlanePorts;
  readonly pki: Pki;
  readonly logDir: string;
  readonly kubectlPath: string;
  readonly helmPath: string;
  logPath(component: ComponentName): string;
  /** Last lines of a component's log. */
  logTail(component: ComponentName, lines?: number): string;
  pid(component: ComponentName): number | undefined;
  isRunning(component: ComponentName): boolean;
  stopComponent(component: ComponentName, options?: StopComponentOptions): Promise<void>;
  /** Starts a stopped component with the same flags and data and waits until it is ready. */
  startComponent(component: ComponentName): Promise<void>;
  restartApiServer(options?: StopComponentOptions): Promise<void>;
  restartEtcd(options?: StopComponentOptions): Promise<void>;
  restartControllerManager(options?: StopComponentOptions): Promise<void>;
  /** Waits until /readyz is ok and the default namespace exists. */
  waitForApiServer(timeoutMs?: number): Promise<void>;
  /** Called when a component exits without being asked to. */
  onUnexpectedExit(listener: (component: ComponentName, code: number | null, signal: string | null) => void): void;
  /** Stops everything and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface Pki {
  caCert: string;
  caKey: string;
  servingCert: string;
  servingKey: string;
  adminCert: string;
  adminKey: string;
  controllerManagerCert: string;
  controllerManagerKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

// ---------------------------------------------------------------------------------
// Binaries

/** The bin dir build.sh uses (does not build). */
export function binDirFromBuildScript(): string {
  return execFileSync('bash', [buildScript, '--print-bin-dir'], { encoding: 'utf8' }).trim();
}

const requiredBinaries = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl', 'helm'];

export function missingBinaries(binDir: string): string[] {
  return requiredBinaries.filter((b) => {
    try {
      fs.accessSync(path.join(binDir, b), fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
}

/**
 * Runs build.sh (idempotent: seconds when everything is built; a first build takes
 * a long time) and returns the bin dir. Build progress goes to this process's stderr.
 */
export async function ensureBinaries(log: (message: string) => void = () => {}): Promise<string> {
  const expected = binDirFromBuildScript();
  if (missingBinaries(expected).length === 0) return expected;
  log(`building the control plane binaries into ${expected} (first build: expect 15-30 minutes)`);
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = spawn('bash', [buildScript], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${buildScript} failed (exit ${code ?? signal}); see its output above`));
    });
  });
  const binDir = stdout.trim().split('\n').pop() ?? expected;
  const missing = missingBinaries(binDir);
  if (missing.length > 0) throw new Error(`build.sh finished but ${missing.join(', ')} missing in ${binDir}`);
  return binDir;
}

// ---------------------------------------------------------------------------------
// Small utilities

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True when pid exists and is not a zombie. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: already gone
  }
}

/** Reserves n distinct free loopback ports (all held open at once, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      ports.push((server.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

function tailFile(file: string, lines = 40): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    const all = text.trimEnd().split('\n');
    return all.slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

interface HttpResult {
  status: number;
  body: string;
}

interface TlsMaterial {
  ca?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
}

function httpGet(url: string, tls: TlsMaterial = {}, timeoutMs = 5_000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const options: https.RequestOptions = { method: 'GET', timeout: timeoutMs };
    if (u.protocol === 'https:') {
      if (tls.ca !== undefined) options.ca = fs.readFileSync(tls.ca);
      if (tls.cert !== undefined) options.cert = fs.readFileSync(tls.cert);
      if (tls.key !== undefined) options.key = fs.readFileSync(tls.key);
      options.rejectUnauthorized = tls.insecure !== true;
    }
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------
// PKI (openssl CLI)

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${e.stderr?.toString() ?? e.message}`);
  }
}

function randomSerial(): string {
  return `0x${[...crypto.getRandomValues(new Uint8Array(16))]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join('')
    .replace(/^0/, '1')}`;
}

function generatePki(pkiDir: string): Pki {
  fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  const cnf = path.join(pkiDir, 'openssl.cnf');
  fs.writeFileSync(
    cnf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      'CN = unused',
      '[v3_ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,digitalSignature,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[v3_server]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      // 10.0.0.1: the first address of --service-cluster-ip-range (the kubernetes Service).
      'subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
      '[v3_client]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = clientAuth',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    [
      'req',
      '-config',
      cnf,
      '-x509',
      '-new',
      ...ec,
      '-extensions',
      'v3_ca',
      '-days',
      '3650',
      '-subj',
      '/CN=envseal-test-ca',
      '-set_serial',
      randomSerial(),
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
    ],
    pkiDir,
  );
  const leaf = (name: string, subject: string, extensions: string) => {
    openssl(['req', '-config', cnf, '-new', ...ec, '-subj', subject, '-keyout', `${name}.key`, '-out', `${name}.csr`], pkiDir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-set_serial',
        randomSerial(),
        '-days',
        '3650',
        '-extfile',
        cnf,
        '-extensions',
        extensions,
        '-out',
        `${name}.crt`,
      ],
      pkiDir,
    );
    fs.rmSync(path.join(pkiDir, `${name}.csr`));
  };
  leaf('apiserver', '/CN=kube-apiserver', 'v3_server');
  leaf('admin', '/O=system:masters/CN=envseal-admin', 'v3_client');
  // The controller manager runs with --use-service-account-credentials=false, so its own
  // identity needs every permission its controllers use (the garbage collector deletes
  // anything): system:masters, as in a single-binary test cluster.
  leaf('controller-manager', '/O=system:masters/CN=system:kube-controller-manager', 'v3_client');
  // Service-account token signing key (RSA, RS256).
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', 'sa.key'], pkiDir);
  openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], pkiDir);
  const p = (f: string) => path.join(pkiDir, f);
  return {
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    servingCert: p('apiserver.crt'),
    servingKey: p('apiserver.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    controllerManagerCert: p('controller-manager.crt'),
    controllerManagerKey: p('controller-manager.key'),
    serviceAccountKey: p('sa.key'),
    serviceAccountPub: p('sa.pub'),
  };
}

function writeKubeconfig(file: string, server: string, ca: string, cert: string, key: string, user: string): void {
  const b64 = (f: string) => fs.readFileSync(f).toString('base64');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'envseal-test', cluster: { server, 'certificate-authority-data': b64(ca) } }],
    users: [{ name: user, user: { 'client-certificate-data': b64(cert), 'client-key-data': b64(key) } }],
    contexts: [{ name: 'envseal-test', context: { cluster: 'envseal-test', user, namespace: 'default' } }],
    'current-context': 'envseal-test',
    preferences: {},
  };
  fs.writeFileSync(file, toYaml(config), { mode: 0o600 });
}

// ---------------------------------------------------------------------------------
// Process supervision

/** Every live cluster of this process, for the exit/signal handlers. */
const liveClusters = new Set<ControlPlaneImpl>();
const handledSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const signalNumbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };
let handlersInstalled = false;

function onProcessExit(): void {
  for (const cluster of [...liveClusters]) cluster.stopSync();
}

function onSignal(signal: NodeJS.Signals): void {
  for (const cluster of [...liveClusters]) cluster.stopSync();
  uninstallHandlers();
  // If nobody else (e.g. vitest) handles this signal, behave like the default action.
  if (process.listenerCount(signal) === 0) process.exit(128 + (signalNumbers[signal] ?? 1));
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onProcessExit);
  for (const s of handledSignals) process.on(s, onSignal);
}

function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onProcessExit);
  for (const s of handledSignals) process.off(s, onSignal);
}

// Runs detached (own process group). When the parent is gone without cleaning up,
// stops every process group listed in $dir/pgids and removes $dir (unless $keep=1).
const watchdogScript = `
parent=$1; dir=$2; keep=$3
trap '' INT HUP
trap 'exit 0' TERM
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
if [ -f "$dir/pgids" ]; then
  for g in $(cat "$dir/pgids"); do kill -TERM -"$g" 2>/dev/null; done
  i=0
  while [ $i -lt 10 ]; do
    alive=0
    for g in $(cat "$dir/pgids"); do kill -0 -"$g" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 1; i=$((i+1))
  done
  for g in $(cat "$dir/pgids"); do kill -KILL -"$g" 2>/dev/null; done
fi
[ "$keep" = 1 ] || rm -rf "$dir"
`;

const defaultGraceMs: Record<ComponentName, number> = { etcd: 10_000, 'kube-apiserver': 3_000, 'kube-controller-manager': 5_000 };

class Component {
  readonly name: ComponentName;
  readonly bin: string;
  readonly args: string[];
  readonly logFile: string;
  child: ChildProcess | undefined;
  exited: Promise<void> = Promise.resolve();
  stopping = false;
  exitInfo: { code: number | null; signal: string | null } | undefined;
  onExit: (code: number | null, signal: string | null) => void = () => {};

  constructor(name: ComponentName, bin: string, args: string[], logFile: string) {
    this.name = name;
    this.bin = bin;
    this.args = args;
    this.logFile = logFile;
  }

  get pid(): number | undefined {
    return this.child !== undefined && this.exitInfo === undefined ? this.child.pid : undefined;
  }

  start(): void {
    if (this.pid !== undefined) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    fs.appendFileSync(this.logFile, `\n==== ${new Date().toISOString()} starting ${this.name} ${this.args.join(' ')}\n`);
    const fd = fs.openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.bin, this.args, { detached: true, stdio: ['ignore', fd, fd] });
    } finally {
      fs.closeSync(fd);
    }
    this.child = child;
    this.stopping = false;
    this.exitInfo = undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        if (!this.stopping) this.onExit(code, signal);
        resolve();
      });
      child.once('error', (err) => {
        fs.appendFileSync(this.logFile, `spawn error: ${err.message}\n`);
        if (this.exitInfo === undefined) {
          this.exitInfo = { code: null, signal: null };
          resolve();
        }
      });
    });
    child.unref();
  }

  async stop(options: StopComponentOptions = {}): Promise<void> {
    const child = this.child;
    if (child === undefined || child.pid === undefined) return;
    const pgid = child.pid;
    if (this.exitInfo === undefined) {
      this.stopping = true;
      // Children are unref'd; while we wait for one to exit it must keep the loop alive.
      child.ref();
      const signal = options.signal ?? 'SIGTERM';
      killGroup(pgid, signal);
      const graceMs = options.graceMs ?? defaultGraceMs[this.name];
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.exited.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        killGroup(pgid, 'SIGKILL');
        await this.exited;
      }
      child.unref();
    }
    killGroup(pgid, 'SIGKILL'); // anything else left in the group
  }

  stopSync(): void {
    const pid = this.child?.pid;
    if (pid === undefined || this.exitInfo !== undefined) return;
    this.stopping = true;
    killGroup(pid, 'SIGTERM');
  }
}

class ControlPlaneImpl implements ControlPlane {
  readonly dir: string;
  readonly binDir: string;
  readonly kubeconfigPath: string;
  readonly server: string;
  readonly etcdUrl: string;
  readonly ports: ControlPlanePorts;
  readonly pki: Pki;
  readonly logDir: string;
  readonly kubectlPath: string;
  readonly helmPath: string;
  readonly keepDir: boolean;
  readonly components: Map<ComponentName, Component> = new Map();
  readonly log: (message: string) => void;
  private readonly exitListeners: ((c: ComponentName, code: number | null, signal: string | null) => void)[] = [];
  private watchdog: ChildProcess | undefined;
  private stopped = false;
  private stopPromise: Promise<void> | undefined;

  constructor(dir: string, binDir: string, ports: ControlPlanePorts, options: ControlPlaneOptions) {
    this.dir = dir;
    this.binDir = binDir;
    this.ports = ports;
    this.keepDir = options.keepDir ?? process.env.ENVSEAL_KEEP_CONTROL_PLANE === '1';
    this.log = options.log ?? (() => {});
    this.logDir = path.join(dir, 'logs');
    fs.mkdirSync(this.logDir, { recursive: true });
    this.server = `https://127.0.0.1:${ports.apiServer}`;
    this.etcdUrl = `http://127.0.0.1:${ports.etcdClient}`;
    this.kubeconfigPath = path.join(dir, 'kubeconfig');
    this.kubectlPath = path.join(binDir, 'kubectl');
    this.helmPath = path.join(binDir, 'helm');
    this.pki = generatePki(path.join(dir, 'pki'));
    writeKubeconfig(this.kubeconfigPath, this.server, this.pki.caCert, this.pki.adminCert, this.pki.adminKey, 'envseal-admin');
    const kcmKubeconfig = path.join(dir, 'controller-manager.kubeconfig');
    writeKubeconfig(
      kcmKubeconfig,
      this.server,
      this.pki.caCert,
      this.pki.controllerManagerCert,
      this.pki.controllerManagerKey,
      'system:kube-controller-manager',
    );

    const peer = `http://127.0.0.1:${ports.etcdPeer}`;
    this.add('etcd', [
      '--name=envseal',
      `--data-dir=${path.join(dir, 'etcd-data')}`,
      `--listen-client-urls=${this.etcdUrl}`,
      `--advertise-client-urls=${this.etcdUrl}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=envseal=${peer}`,
      '--initial-cluster-state=new',
      '--unsafe-no-fsync=true',
      '--log-level=warn',
      ...(options.extraEtcdArgs ?? []),
    ]);
    this.add('kube-apiserver', [
      `--etcd-servers=${this.etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${ports.apiServer}`,
      `--cert-dir=${path.join(dir, 'apiserver')}`,
      `--tls-cert-file=${this.pki.servingCert}`,
      `--tls-private-key-file=${this.pki.servingKey}`,
      `--client-ca-file=${this.pki.caCert}`,
      '--authorization-mode=RBAC',
      // Owner references with blockOwnerDeletion then need update on the owner's finalizers, as on
      // clusters that enable this plugin: the chart's RBAC test proves envseal has it.
      '--enable-admission-plugins=OwnerReferencesPermissionEnforcement',
      `--service-account-issuer=${this.server}`,
      `--service-account-key-file=${this.pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${this.pki.serviceAccountKey}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      // The "kubernetes" Service's Endpoints cannot hold a loopback address: without
      // this the API server logs a validation error every few seconds.
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      ...(options.nodeAddress === undefined
        ? []
        : [
            '--bind-address=0.0.0.0',
            `--advertise-address=${options.nodeAddress}`,
            '--endpoint-reconciler-type=lease',
            // Without it `kubectl logs` looks the node's name up in the host's DNS.
            '--kubelet-preferred-address-types=InternalIP',
            `--kubelet-client-certificate=${this.pki.adminCert}`,
            `--kubelet-client-key=${this.pki.adminKey}`,
          ]),
      ...(options.extraApiServerArgs ?? []),
    ]);
    if (options.controllerManager !== false) {
      this.add('kube-controller-manager', [
        `--kubeconfig=${kcmKubeconfig}`,
        `--authentication-kubeconfig=${kcmKubeconfig}`,
        `--authorization-kubeconfig=${kcmKubeconfig}`,
        // No front-proxy (requestheader) CA here; do not look it up in kube-system.
        '--authentication-skip-lookup=true',
        '--bind-address=127.0.0.1',
        `--secure-port=${ports.controllerManager}`,
        `--cert-dir=${path.join(dir, 'controller-manager')}`,
        '--leader-elect=false',
        // All default controllers: garbage collector, namespace, serviceaccount(-token),
        // root-ca-cert-publisher, ... (bootstrapsigner/tokencleaner stay off).
        '--controllers=*',
        '--use-service-account-credentials=false',
        `--service-account-private-key-file=${this.pki.serviceAccountKey}`,
        `--root-ca-file=${this.pki.caCert}`,
        `--cluster-signing-cert-file=${this.pki.caCert}`,
        `--cluster-signing-key-file=${this.pki.caKey}`,
        '--cluster-name=envseal-test',
        '--profiling=false',
        ...(options.extraControllerManagerArgs ?? []),
      ]);
    }
  }

  private add(name: ComponentName, args: string[]): void {
    const component = new Component(name, path.join(this.binDir, name), args, path.join(this.logDir, `${name}.log`));
    component.onExit = (code, signal) => {
      this.writePgids();
      fs.appendFileSync(component.logFile, `==== ${name} exited unexpectedly (code ${code}, signal ${signal})\n`);
      for (const listener of this.exitListeners) listener(name, code, signal);
    };
    this.components.set(name, component);
  }

  private component(name: ComponentName): Component {
    const c = this.components.get(name);
    if (c === undefined) throw new Error(`${name} is not part of this control plane`);
    return c;
  }

  /** Records the live process groups for the watchdog. */
  private writePgids(): void {
    if (this.stopped && !fs.existsSync(this.dir)) return;
    const pgids = [...this.components.values()].map((c) => c.pid).filter((p): p is number => p !== undefined);
    const tmp = path.join(this.dir, 'pgids.tmp');
    try {
      fs.writeFileSync(tmp, `${pgids.join('\n')}\n`);
      fs.renameSync(tmp, path.join(this.dir, 'pgids'));
    } catch {
      // dir removed concurrently
    }
  }

  startWatchdog(): void {
    const child = spawn('sh', ['-c', watchdogScript, 'envseal-control-plane-watchdog', String(process.pid), this.dir, this.keepDir ? '1' : '0'], {
      detached: true,
      stdio: 'ignore',
    });
    child.unref();
    this.watchdog = child;
  }

  logPath(component: ComponentName): string {
    return path.join(this.logDir, `${component}.log`);
  }

  logTail(component: ComponentName, lines = 40): string {
    return tailFile(this.logPath(component), lines);
  }

  pid(component: ComponentName): number | undefined {
    return this.components.get(component)?.pid;
  }

  isRunning(component: ComponentName): boolean {
    return this.pid(component) !== undefined;
  }

  onUnexpectedExit(listener: (component: ComponentName, code: number | null, signal: string | null) => void): void {
    this.exitListeners.push(listener);
  }

  /** Error with the last lines of every component log. */
  startupError(message: string): Error {
    const parts = [message];
    for (const c of this.components.values()) {
      const state =
        c.exitInfo !== undefined
          ? `exited (code ${c.exitInfo.code}, signal ${c.exitInfo.signal})`
          : c.pid !== undefined
            ? `running, pid ${c.pid}`
            : 'not started';
      parts.push(`---- ${c.name} (${state}); last lines of ${c.logFile}:\n${tailFile(c.logFile, 25)}`);
    }
    return new Error(parts.join('\n'));
  }

  private assertAlive(names: ComponentName[]): void {
    for (const name of names) {
      const c = this.components.get(name);
      if (c !== undefined && c.exitInfo !== undefined) {
        throw this.startupError(`${name} exited during startup (code ${c.exitInfo.code}, signal ${c.exitInfo.signal})`);
      }
    }
  }

  private async poll(what: string, timeoutMs: number, watch: ComponentName[], check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    for (;;) {
      if (this.stopped) throw new Error(`control plane stopped while waiting for ${what}`);
      this.assertAlive(watch);
      try {
        if (await check()) return;
      } catch (err) {
        lastError = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw this.startupError(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`);
      }
      await sleep(250);
    }
  }

  private adminTls(): TlsMaterial {
    return { ca: this.pki.caCert, cert: this.pki.adminCert, key: this.pki.adminKey };
  }

  async waitForEtcd(timeoutMs = 60_000): Promise<void> {
    await this.poll('etcd /health', timeoutMs, ['etcd'], async () => {
      const res = await httpGet(`${this.etcdUrl}/health`);
      return res.status === 200 && /"health":\s*"true"/.test(res.body);
    });
  }

  async waitForApiServer(timeoutMs = 120_000): Promise<void> {
    await this.poll('kube-apiserver /readyz', timeoutMs, ['etcd', 'kube-apiserver'], async () => {
      const res = await httpGet(`${this.server}/readyz`, this.adminTls());
      return res.status === 200;
    });
    await this.poll('the default namespace', timeoutMs, ['etcd', 'kube-apiserver'], async () => {
      const res = await httpGet(`${this.server}/api/v1/namespaces/default`, this.adminTls());
      return res.status === 200;
    });
  }

  async waitForControllerManager(timeoutMs = 120_000): Promise<void> {
    if (!this.components.has('kube-controller-manager')) return;
    const watch: ComponentName[] = ['etcd', 'kube-apiserver', 'kube-controller-manager'];
    await this.poll('kube-controller-manager /healthz', timeoutMs, watch, async () => {
      const res = await httpGet(`https://127.0.0.1:${this.ports.controllerManager}/healthz`, { insecure: true });
      return res.status === 200;
    });
    // Its serviceaccount controller creates default/default: proof that controllers run.
    await this.poll('the default ServiceAccount (created by kube-controller-manager)', timeoutMs, watch, async () => {
      const res = await httpGet(`${this.server}/api/v1/namespaces/default/serviceaccounts/default`, this.adminTls());
      return res.status === 200;
    });
  }

  async startComponent(name: ComponentName): Promise<void> {
    const c = this.component(name);
    this.log(`starting ${name}`);
    c.start();
    this.writePgids();
    if (name === 'etcd') {
      await this.waitForEtcd();
      if (this.isRunning('kube-apiserver')) await this.waitForApiServer();
    } else if (name === 'kube-apiserver') {
      await this.waitForApiServer();
    } else {
      await this.waitForControllerManager();
    }
  }

  async stopComponent(name: ComponentName, options: StopComponentOptions = {}): Promise<void> {
    const c = this.component(name);
    this.log(`stopping ${name}${options.signal === 'SIGKILL' ? ' (SIGKILL)' : ''}`);
    await c.stop(options);
    this.writePgids();
  }

  async restartApiServer(options: StopComponentOptions = {}): Promise<void> {
    await this.stopComponent('kube-apiserver', options);
    await this.startComponent('kube-apiserver');
  }

  async restartEtcd(options: StopComponentOptions = {}): Promise<void> {
    await this.stopComponent('etcd', options);
    await this.startComponent('etcd');
  }

  async restartControllerManager(options: StopComponentOptions = {}): Promise<void> {
    await this.stopComponent('kube-controller-manager', options);
    await this.startComponent('kube-controller-manager');
  }

  async startAll(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1_000, deadline - Date.now());
    this.startWatchdog();
    this.component('etcd').start();
    this.writePgids();
    await this.waitForEtcd(left());
    this.component('kube-apiserver').start();
    this.writePgids();
    await this.waitForApiServer(left());
    if (this.components.has('kube-controller-manager')) {
      this.component('kube-controller-manager').start();
      this.writePgids();
      await this.waitForControllerManager(left());
    }
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopped = true;
    // Dependents first.
    const order: ComponentName[] = ['kube-controller-manager', 'kube-apiserver', 'etcd'];
    for (const name of order) {
      const c = this.components.get(name);
      if (c !== undefined) await c.stop();
    }
    liveClusters.delete(this);
    if (liveClusters.size === 0) uninstallHandlers();
    if (this.watchdog?.pid !== undefined) killGroup(this.watchdog.pid, 'SIGTERM');
    if (!this.keepDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** For exit/signal handlers: cannot await. */
  stopSync(): void {
    if (this.stopped && this.stopPromise === undefined) return;
    this.stopped = true;
    const live = [...this.components.values()].filter((c) => c.pid !== undefined);
    for (const c of live) c.stopSync();
    const deadline = Date.now() + 3_000;
    while (Date.now() < deadline && live.some((c) => c.child?.pid !== undefined && pidAlive(c.child.pid))) sleepSync(50);
    for (const c of live) if (c.child?.pid !== undefined) killGroup(c.child.pid, 'SIGKILL');
    if (this.watchdog?.pid !== undefined) killGroup(this.watchdog.pid, 'SIGTERM');
    liveClusters.delete(this);
    if (!this.keepDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Starts etcd, kube-apiserver and kube-controller-manager and resolves once the API
 * server is ready and the controller manager runs. Always call stop() (e.g. in
 * afterAll/teardown); the process handlers and the watchdog are the safety net.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binDir = options.binDir ?? binDirFromBuildScript();
  const needed: string[] = ['etcd', 'kube-apiserver', ...(options.controllerManager === false ? [] : ['kube-controller-manager'])];
  const missing = missingBinaries(binDir).filter((b) => needed.includes(b));
  if (missing.length > 0) {
    throw new Error(`control plane binaries missing in ${binDir}: ${missing.join(', ')}; run scripts/control-plane/build.sh`);
  }
  const timeoutMs = options.startTimeoutMs ?? 180_000;
  // A port taken between reservation and bind (another process racing us) is retried.
  for (let attempt = 1; ; attempt++) {
    const [etcdClient, etcdPeer, apiServer, controllerManager] = (await freePorts(4)) as [number, number, number, number];
    const dir = fs.mkdtempSync(path.join(options.parentDir ?? os.tmpdir(), 'envseal-cp-'));
    let cluster: ControlPlaneImpl | undefined;
    try {
      cluster = new ControlPlaneImpl(dir, binDir, { etcdClient, etcdPeer, apiServer, controllerManager }, options);
      liveClusters.add(cluster);
      installHandlers();
      const started = Date.now();
      await cluster.startAll(timeoutMs);
      cluster.log(`control plane ready in ${((Date.now() - started) / 1000).toFixed(1)} s: ${cluster.server} (dir ${dir})`);
      return cluster;
    } catch (err) {
      const portClash = cluster !== undefined && [...cluster.components.values()].some((c) => /address already in use/.test(tailFile(c.logFile, 50)));
      if (cluster !== undefined) await cluster.stop();
      else fs.rmSync(dir, { recursive: true, force: true });
      if (portClash && attempt < 3) continue;
      throw err;
    }
  }
}
