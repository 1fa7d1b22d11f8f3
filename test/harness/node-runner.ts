// The part of the harness's node that runs inside its network namespace, started by
// test/harness/node.ts as `nsenter --net=/run/netns/NAME node node-runner.ts STATE`
// (not `ip netns exec`, which remounts /sys and hides the cgroup mounts from runc).
// It starts the control plane (its own, with the API server on the namespace's address),
// containerd, the images, kubelet, kube-scheduler and kube-proxy, waits for the node to
// be Ready, serves the API server on STATE/api.sock for the host side, writes
// STATE/ready.json, and stops everything it started when its stdin closes or on SIGTERM.
// The host (sysctls, mounts, cgroups, shims, directories) is put back by node-host.sh.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { stringify as toYaml } from 'yaml';
import { startControlPlane, type ControlPlane } from './control-plane.ts';

export interface RunnerOptions {
  stateDir: string;
  binDir: string;
  nodeName: string;
  nodeAddress: string;
  podCidr: string;
  /** docker-archive tarballs to import into containerd's k8s.io namespace. */
  images: string[];
  /** The pause image (one of the imported ones). */
  sandboxImage: string;
}

export interface RunnerReady {
  /** Admin kubeconfig, valid inside the namespace (https://127.0.0.1:<port>). */
  kubeconfigPath: string;
  apiSocket: string;
  containerdSocket: string;
  controlPlaneDir: string;
  timings: Record<string, number>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const log = (message: string) => process.stderr.write(`[node-runner] ${message}\n`);

function run(file: string, args: string[], options: { input?: string; signal?: AbortSignal } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { signal: options.signal, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${stderr.trim() || error.message}`, { cause: error }));
      else resolve(stdout);
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

class Daemons {
  private readonly children: { name: string; pid: number; exited: Promise<void>; done: boolean }[] = [];
  private readonly stateDir: string;
  constructor(stateDir: string) {
    this.stateDir = stateDir;
  }

  start(name: string, file: string, args: string[]): void {
    const logFile = path.join(this.stateDir, 'logs', `${name}.log`);
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = fs.openSync(logFile, 'a');
    const child = spawn(file, args, { detached: true, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    if (child.pid === undefined) throw new Error(`${name}: could not start ${file}`);
    // For node-host.sh: the process groups to stop if this runner is killed.
    fs.appendFileSync(path.join(this.stateDir, 'node-pgids'), `${child.pid}\n`);
    const entry = { name, pid: child.pid, done: false, exited: Promise.resolve() };
    entry.exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        entry.done = true;
        if (!this.stopping) log(`${name} exited unexpectedly (code ${code}, signal ${signal}); see ${logFile}`);
        resolve();
      }),
    );
    child.unref();
    this.children.push(entry);
  }

  assertRunning(): void {
    const dead = this.children.find((c) => c.done);
    if (dead) throw new Error(`${dead.name} exited; last lines of its log:\n${tail(path.join(this.stateDir, 'logs', `${dead.name}.log`))}`);
  }

  stopping = false;

  /** Last started first (kube-proxy, scheduler, kubelet, then containerd). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const c of [...this.children].reverse()) {
      if (c.done) continue;
      try {
        process.kill(-c.pid, 'SIGTERM');
      } catch {
        continue;
      }
      const timedOut = await Promise.race([c.exited.then(() => false), sleep(10_000).then(() => true)]);
      if (timedOut) {
        try {
          process.kill(-c.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }
}

function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function poll(what: string, timeoutMs: number, daemons: Daemons, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    daemons.assertRunning();
    try {
      if (await check()) return;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? ` (last error: ${last})` : ''}`);
    await sleep(250);
  }
}

function kubeconfig(file: string, server: string, ca: string, cert: string, key: string, user: string): void {
  const b64 = (f: string) => fs.readFileSync(f).toString('base64');
  fs.writeFileSync(
    file,
    toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'envseal-node', cluster: { server, 'certificate-authority-data': b64(ca) } }],
      users: [{ name: user, user: { 'client-certificate-data': b64(cert), 'client-key-data': b64(key) } }],
      contexts: [{ name: 'envseal-node', context: { cluster: 'envseal-node', user } }],
      'current-context': 'envseal-node',
    }),
    { mode: 0o600 },
  );
}

function containerdConfig(o: RunnerOptions, dir: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    // /opt/containerd on the host otherwise.
    'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]',
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    `[${cri}]`,
    `  sandbox_image = "${o.sandboxImage}"`,
    // Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails in runc.
    '  restrict_oom_score_adj = true',
    '  enable_selinux = false',
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `[${cri}.containerd.runtimes.runc.options]`,
    '  SystemdCgroup = false',
    `  Root = "${dir}/runc"`,
    `[${cri}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = "${dir}/net.d"`,
    '',
  ].join('\n');
}

export async function runNode(o: RunnerOptions): Promise<{ cp: ControlPlane; daemons: Daemons; ready: RunnerReady; server: net.Server }> {
  const timings: Record<string, number> = {};
  let t = Date.now();
  const lap = (name: string) => {
    timings[name] = Date.now() - t;
    t = Date.now();
  };
  const daemons = new Daemons(o.stateDir);
  const cp = await startControlPlane({ binDir: o.binDir, nodeAddress: o.nodeAddress, parentDir: o.stateDir, log });
  try {
    lap('controlPlaneMs');
    const kubectl = (args: string[], input?: string) => run(cp.kubectlPath, ['--kubeconfig', cp.kubeconfigPath, ...args], { input });

    // The node's identity: a client certificate in group system:nodes, allowed what the
    // built-in system:node role allows (this control plane runs RBAC only).
    const pki = path.join(o.stateDir, 'node-pki');
    fs.mkdirSync(pki, { recursive: true, mode: 0o700 });
    await run('openssl', [
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      `/O=system:nodes/CN=system:node:${o.nodeName}`,
      '-keyout',
      path.join(pki, 'kubelet.key'),
      '-out',
      path.join(pki, 'kubelet.csr'),
    ]);
    const ext = path.join(pki, 'ext.cnf');
    fs.writeFileSync(ext, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      path.join(pki, 'kubelet.csr'),
      '-CA',
      cp.pki.caCert,
      '-CAkey',
      cp.pki.caKey,
      '-CAcreateserial',
      '-days',
      '30',
      '-extfile',
      ext,
      '-out',
      path.join(pki, 'kubelet.crt'),
    ]);
    const local = cp.server; // https://127.0.0.1:<port>, inside this namespace
    const kubeletKubeconfig = path.join(o.stateDir, 'kubelet.kubeconfig');
    kubeconfig(kubeletKubeconfig, local, cp.pki.caCert, path.join(pki, 'kubelet.crt'), path.join(pki, 'kubelet.key'), `system:node:${o.nodeName}`);
    await kubectl(
      ['apply', '-f', '-'],
      toYaml({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'envseal-harness:nodes' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:nodes' }],
      }),
    );

    // containerd, with its state under STATE and the pods' network from the CNI bridge plugin.
    const ctrDir = path.join(o.stateDir, 'containerd');
    fs.mkdirSync(path.join(ctrDir, 'net.d'), { recursive: true });
    fs.writeFileSync(path.join(ctrDir, 'config.toml'), containerdConfig(o, ctrDir));
    fs.writeFileSync(
      path.join(ctrDir, 'net.d', '10-envseal.conflist'),
      JSON.stringify(
        {
          cniVersion: '1.0.0',
          name: 'envseal',
          plugins: [
            {
              type: 'bridge',
              bridge: 'cni0',
              isGateway: true,
              ipMasq: false,
              hairpinMode: true,
              ipam: { type: 'host-local', ranges: [[{ subnet: o.podCidr }]], routes: [{ dst: '0.0.0.0/0' }], dataDir: path.join(o.stateDir, 'cni-ipam') },
            },
          ],
        },
        null,
        2,
      ),
    );
    const socket = path.join(ctrDir, 'containerd.sock');
    daemons.start('containerd', 'containerd', ['--config', path.join(ctrDir, 'config.toml'), '--log-level', 'warn']);
    const ctr = (args: string[]) => run('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args]);
    await poll('containerd', 30_000, daemons, async () => {
      await ctr(['version']);
      return true;
    });
    lap('containerdMs');
    for (const archive of o.images) await ctr(['images', 'import', '--no-unpack=false', archive]);
    lap('imagesMs');

    // kubelet: cgroupfs driver (no systemd here), cgroup v1 accepted, its state under STATE;
    // pods get a resolv.conf whose resolver is their own loopback (nothing listens: lookups
    // fail at once and no DNS query leaves the namespace).
    const resolvConf = path.join(o.stateDir, 'resolv.conf');
    fs.writeFileSync(resolvConf, 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    const kubeletConfig = path.join(o.stateDir, 'kubelet.yaml');
    fs.writeFileSync(
      kubeletConfig,
      toYaml({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: o.nodeAddress,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: cp.pki.caCert } },
        authorization: { mode: 'Webhook' },
        cgroupDriver: 'cgroupfs',
        failCgroupV1: false,
        containerRuntimeEndpoint: `unix://${socket}`,
        podLogsDir: path.join(o.stateDir, 'pod-logs'),
        resolvConf,
        clusterDomain: 'cluster.local',
        // Never evict or garbage-collect images on a test node.
        imageGCHighThresholdPercent: 100,
        evictionHard: {},
        // Mounted Secrets are refreshed on each pod sync: every 10 s instead of every minute.
        syncFrequency: '10s',
        registerNode: true,
        serializeImagePulls: false,
        staticPodPath: '',
        rotateCertificates: false,
      }),
    );
    daemons.start('kubelet', path.join(o.binDir, 'kubelet'), [
      `--config=${kubeletConfig}`,
      `--kubeconfig=${kubeletKubeconfig}`,
      `--root-dir=${path.join(o.stateDir, 'kubelet')}`,
      `--cert-dir=${path.join(o.stateDir, 'kubelet-pki')}`,
      `--hostname-override=${o.nodeName}`,
      `--node-ip=${o.nodeAddress}`,
      '--v=1',
    ]);
    const schedPort = 10259;
    daemons.start('kube-scheduler', path.join(o.binDir, 'kube-scheduler'), [
      `--kubeconfig=${cp.kubeconfigPath}`,
      `--authentication-kubeconfig=${cp.kubeconfigPath}`,
      `--authorization-kubeconfig=${cp.kubeconfigPath}`,
      '--authentication-skip-lookup=true',
      '--leader-elect=false',
      '--bind-address=127.0.0.1',
      `--secure-port=${schedPort}`,
      `--cert-dir=${path.join(o.stateDir, 'scheduler-pki')}`,
    ]);
    daemons.start('kube-proxy', path.join(o.binDir, 'kube-proxy'), [
      `--kubeconfig=${cp.kubeconfigPath}`,
      '--proxy-mode=iptables',
      `--cluster-cidr=${o.podCidr}`,
      `--hostname-override=${o.nodeName}`,
      // 0: leave the host-wide conntrack sysctls alone.
      '--conntrack-max-per-core=0',
      '--conntrack-tcp-timeout-established=0',
      '--conntrack-tcp-timeout-close-wait=0',
      '--oom-score-adj=0',
      '--metrics-bind-address=127.0.0.1:10249',
      '--healthz-bind-address=127.0.0.1:10256',
    ]);
    await poll(`node ${o.nodeName} Ready`, 120_000, daemons, async () => {
      const node = JSON.parse(await kubectl(['get', 'node', o.nodeName, '-o', 'json'])) as { status?: { conditions?: { type: string; status: string }[] } };
      return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
    });
    lap('nodeReadyMs');
    // The scheduler is up once it answers /healthz (its serving certificate is self-signed).
    await poll(
      'kube-scheduler /healthz',
      60_000,
      daemons,
      () =>
        new Promise<boolean>((resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port: schedPort, path: '/healthz', rejectUnauthorized: false, timeout: 2_000 }, (res) => {
              res.resume();
              resolve(res.statusCode === 200);
            })
            .on('error', reject)
            .on('timeout', () => reject(new Error('timeout')));
        }),
    );
    lap('schedulerMs');

    // The API server for the host side: a Unix socket (file paths cross network namespaces).
    const apiSocket = path.join(o.stateDir, 'api.sock');
    const apiPort = Number(new URL(cp.server).port);
    const server = net.createServer((client) => {
      const upstream = net.connect(apiPort, '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', close).on('close', close);
      upstream.on('error', close).on('close', close);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(apiSocket, () => resolve()));
    return { cp, daemons, server, ready: { kubeconfigPath: cp.kubeconfigPath, apiSocket, containerdSocket: socket, controlPlaneDir: cp.dir, timings } };
  } catch (err) {
    await daemons.stop();
    await cp.stop();
    throw err;
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  const stateDir = process.argv[2];
  if (stateDir === undefined) throw new Error('usage: node-runner.ts STATE_DIR');
  const options = JSON.parse(fs.readFileSync(path.join(stateDir, 'runner.json'), 'utf8')) as RunnerOptions;
  let stopping: Promise<void> | undefined;
  let started: Awaited<ReturnType<typeof runNode>> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (started) {
        started.server.close();
        await started.daemons.stop();
        await started.cp.stop();
      }
      process.exit(0);
    })();
    return stopping;
  };
  // The host side closes stdin to stop us (also when it dies).
  process.stdin
    .on('end', () => void stop())
    .on('error', () => void stop())
    .resume();
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
  try {
    started = await runNode(options);
    fs.writeFileSync(path.join(stateDir, 'ready.json.tmp'), JSON.stringify(started.ready));
    fs.renameSync(path.join(stateDir, 'ready.json.tmp'), path.join(stateDir, 'ready.json'));
    log(`node ${options.nodeName} Ready (${JSON.stringify(started.ready.timings)})`);
    if (stopping) await stop();
  } catch (err) {
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    fs.writeFileSync(path.join(stateDir, 'runner.error'), (err as Error).message);
    process.exit(1);
  }
}
