// npm run demo: the whole envseal flow on a real, local control plane, then clean up.
// Builds (or reuses) kube-apiserver, etcd and kube-controller-manager, starts them,
// installs the CRD, runs the controller with the age provider, seals a Secret with the
// CLI, applies it, and shows the materialized Secret and the EnvelopeSecret's status.
//
// npm run demo -- --helm: the same story as users run it: a real node (containerd,
// kubelet, kube-scheduler, kube-proxy in a network namespace; test/harness/node.ts, needs
// root), the image built from the Dockerfile's recipe, `helm install` of charts/envseal,
// then seal, apply, Ready, drift repair, and a rollout restart of a Deployment whose pod
// prints the value it reads, before and after (docs/helm.md, "Run it for real").
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureBinaries, startControlPlane } from '../test/harness/control-plane.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const envseal = path.join(root, 'bin/envseal.js');
const say = (text: string) => process.stdout.write(`\n\x1b[1m==> ${text}\x1b[0m\n`);

async function main(): Promise<void> {
  say('Building (or reusing) the control plane from the Go module proxy');
  const binDir = await ensureBinaries((m) => process.stderr.write(`    ${m}\n`));
  const work = mkdtempSync(path.join(tmpdir(), 'envseal-demo-'));
  const cp = await startControlPlane({ binDir, log: (m) => process.stderr.write(`    ${m}\n`) });
  let controller: ChildProcess | undefined;
  const stop = async () => {
    if (controller && controller.exitCode === null) {
      controller.kill('SIGTERM');
      await new Promise((resolve) => controller!.once('exit', resolve));
    }
    await cp.stop();
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    const kubectl = (...args: string[]) =>
      execFileSync(cp.kubectlPath, ['--kubeconfig', cp.kubeconfigPath, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const run = (args: string[]) =>
      execFileSync(process.execPath, [envseal, ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, KUBECONFIG: cp.kubeconfigPath },
      });
    process.stdout.write(`    API server ${cp.server}; kubeconfig ${cp.kubeconfigPath}\n`);

    say('Installing the EnvelopeSecret CRD');
    process.stdout.write(kubectl('apply', '--server-side', '-f', path.join(root, 'crds/envelopesecrets.envseal.dev.yaml')));
    kubectl('wait', '--for=condition=Established', 'crd/envelopesecrets.envseal.dev');
    kubectl('create', 'namespace', 'envseal-system');
    kubectl('create', 'namespace', 'demo');

    say('Starting the controller (age provider; it creates the cluster identity on first start)');
    controller = spawn(
      process.execPath,
      [
        envseal,
        'controller',
        '--kubeconfig',
        cp.kubeconfigPath,
        '--controller-namespace',
        'envseal-system',
        '--no-leader-elect',
        '--metrics-address',
        '127.0.0.1:0',
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    const controllerLog: string[] = [];
    controller.stderr?.on('data', (chunk: Buffer) => controllerLog.push(chunk.toString()));
    for (let i = 0; ; i++) {
      try {
        kubectl('get', 'configmap', '-n', 'envseal-system', 'envseal-age-recipient');
        break;
      } catch {
        if (i > 100 || controller.exitCode !== null) throw new Error(`the controller did not publish its recipient:\n${controllerLog.join('')}`);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    }
    const recipient = kubectl('get', 'configmap', '-n', 'envseal-system', 'envseal-age-recipient', '-o', 'jsonpath={.data.recipient}');
    process.stdout.write(`    the cluster's age recipient: ${recipient}\n`);

    say("Sealing a Secret with the CLI for the cluster's published recipient (no private key involved)");
    const manifest = path.join(work, 'db.envelope.yaml');
    const sealArgs = [
      'seal',
      '--name',
      'db',
      '-n',
      'demo',
      '--from-literal',
      'DB_USER=app',
      '--from-literal',
      'DB_PASSWORD=correct horse battery staple',
      '--controller-namespace',
      'envseal-system',
      '-w',
      manifest,
    ];
    process.stdout.write(
      `    $ envseal ${sealArgs
        .map((a) => (a.includes(' ') ? `'${a}'` : a))
        .join(' ')
        .replace(work, '.')}\n\n`,
    );
    run(sealArgs);
    process.stdout.write(readFileSync(manifest, 'utf8').replace(/^/gm, '    '));

    say('Applying it, as GitOps or kubectl would');
    process.stdout.write(kubectl('apply', '-f', manifest));
    kubectl('wait', '--for=condition=Ready', '--timeout=60s', '-n', 'demo', 'envelopesecret/db');
    process.stdout.write(kubectl('get', 'envelopesecrets', '-n', 'demo'));

    say('The Secret the controller materialized');
    process.stdout.write(kubectl('get', 'secret', 'db', '-n', 'demo', '-o', 'jsonpath={range .metadata.ownerReferences[*]}owner: {.kind}/{.name}{"\\n"}{end}'));
    const data = JSON.parse(kubectl('get', 'secret', 'db', '-n', 'demo', '-o', 'jsonpath={.data}')) as Record<string, string>;
    for (const [key, value] of Object.entries(data)) process.stdout.write(`    ${key}: ${Buffer.from(value, 'base64').toString()}\n`);

    say('Drift repair: delete the Secret and watch it come back');
    kubectl('delete', 'secret', 'db', '-n', 'demo');
    for (let i = 0; i < 100; i++) {
      try {
        kubectl('get', 'secret', 'db', '-n', 'demo');
        process.stdout.write('    the Secret is back\n');
        break;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    say('Done; cleaning up');
  } finally {
    await stop();
  }
}

/** The Helm variant. Everything that talks to the API server here is asynchronous: the
 * node's API server is reached through a bridge served by this very process. */
async function mainHelm(): Promise<void> {
  // Loaded only here: the default demo needs neither the node nor the image builder.
  const { startNodeCluster } = await import('../test/harness/node.ts');
  const { chartDir, imageValues, restrictedContainer } = await import('../test/harness/node-kube.ts');
  say('Building (or reusing) the control plane, kubelet, kube-scheduler and kube-proxy');
  await ensureBinaries((m) => process.stderr.write(`    ${m}\n`));
  say('Starting a real node in its own network namespace, with the envseal image built without Docker');
  const node = await startNodeCluster({ log: (m) => process.stderr.write(`    ${m}\n`) });
  const work = mkdtempSync(path.join(tmpdir(), 'envseal-demo-'));
  const stop = async () => {
    await node.stop();
    rmSync(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  const show = (text: string) => process.stdout.write(text.replace(/^/gm, '    ').replace(/ +$/, '') + (text.endsWith('\n') ? '' : '\n'));
  const kubectl = async (...args: string[]) => {
    const result = await node.kubectl(args);
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr.trim()}`);
    return result.stdout;
  };
  const apply = (manifest: string) => node.kubectl(['apply', '-f', '-'], { input: manifest });
  const envsealCli = (args: string[]) =>
    new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [envseal, ...args], { env: { ...process.env, KUBECONFIG: node.kubeconfigPath } }, (error, stdout, stderr) => {
        if (error) reject(new Error(`envseal ${args[0]}: ${stderr.trim() || error.message}`));
        else resolve(stdout);
      });
    });
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  try {
    show(
      `node ${node.nodeName} (${node.nodeAddress}) Ready; image ${node.controllerImage.reference}, ${(node.controllerImage.rootfsBytes / 1e6).toFixed(0)} MB`,
    );
    show(`kubeconfig ${node.kubeconfigPath}`);

    say('helm install (default values; only the image is the local one, never pulled)');
    await kubectl('create', 'namespace', 'envseal-system');
    await kubectl('label', 'namespace', 'envseal-system', 'pod-security.kubernetes.io/enforce=restricted');
    const install = ['install', 'envseal', chartDir, '--namespace', 'envseal-system', ...imageValues(node), '--wait', '--timeout', '4m'];
    show(`$ helm ${install.join(' ').replace(chartDir, 'charts/envseal')}`);
    const installed = await node.helm(install);
    if (installed.code !== 0) throw new Error(`helm install: ${installed.stderr}`);
    show(await kubectl('get', 'pods', '-n', 'envseal-system', '-o', 'wide'));
    show(`lease holder: ${await kubectl('get', 'lease', 'envseal-controller', '-n', 'envseal-system', '-o', 'jsonpath={.spec.holderIdentity}')}`);

    say("Sealing a Secret with the CLI for the cluster's published recipient");
    await kubectl('create', 'namespace', 'demo');
    await kubectl('label', 'namespace', 'demo', 'pod-security.kubernetes.io/enforce=restricted');
    const manifest = path.join(work, 'db.envelope.yaml');
    const seal = (password: string) =>
      envsealCli([
        'seal',
        '--name',
        'db',
        '-n',
        'demo',
        '--from-literal',
        'DB_USER=app',
        '--from-literal',
        `DB_PASSWORD=${password}`,
        '--controller-namespace',
        'envseal-system',
        '-w',
        manifest,
      ]);
    await seal('correct horse battery staple');
    // Ask for a rollout restart of the demo app whenever the Secret changes.
    const withRestart = (text: string) => text.replace(/^spec:\n/m, 'spec:\n  restartWorkloads:\n    - {kind: Deployment, name: demo-app}\n');
    show(withRestart(readFileSync(manifest, 'utf8')));

    say('Applying it; the controller in the pod materializes the Secret');
    const applied = await apply(withRestart(readFileSync(manifest, 'utf8')));
    if (applied.code !== 0) throw new Error(applied.stderr);
    await kubectl('wait', '--for=condition=Ready', '--timeout=60s', '-n', 'demo', 'envelopesecret/db');
    show(await kubectl('get', 'envelopesecrets', '-n', 'demo'));

    say('Drift repair: delete the Secret and watch it come back');
    await kubectl('delete', 'secret', 'db', '-n', 'demo');
    for (let i = 0; i < 100 && (await node.kubectl(['get', 'secret', 'db', '-n', 'demo'])).code !== 0; i++) await sleep(200);
    show('the Secret is back');

    say('A Deployment whose pod prints the DB_PASSWORD it reads from the Secret');
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'demo-app', namespace: 'demo' },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'demo-app' } },
        template: {
          metadata: { labels: { app: 'demo-app' } },
          spec: {
            terminationGracePeriodSeconds: 1,
            securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: 'RuntimeDefault' } },
            containers: [
              {
                name: 'app',
                image: node.busyboxImage.reference,
                imagePullPolicy: 'Never',
                command: ['sh', '-c', 'echo "DB_PASSWORD=$DB_PASSWORD"; exec sleep 3600'],
                env: [{ name: 'DB_PASSWORD', valueFrom: { secretKeyRef: { name: 'db', key: 'DB_PASSWORD' } } }],
                securityContext: restrictedContainer,
              },
            ],
          },
        },
      },
    };
    await apply(JSON.stringify(deployment));
    const appLog = async (notPod?: string) => {
      for (let i = 0; i < 240; i++) {
        const pods = JSON.parse(await kubectl('get', 'pods', '-n', 'demo', '-l', 'app=demo-app', '-o', 'json')) as {
          items: { metadata: { name: string; deletionTimestamp?: string }; status: { phase: string } }[];
        };
        const live = pods.items.filter((p) => !p.metadata.deletionTimestamp && p.status.phase === 'Running' && p.metadata.name !== notPod);
        if (live.length === 1 && pods.items.length === 1) {
          const logs = await node.kubectl(['logs', '-n', 'demo', live[0]!.metadata.name]);
          if (logs.stdout.trim()) return { pod: live[0]!.metadata.name, line: logs.stdout.trim() };
        }
        await sleep(500);
      }
      throw new Error('the demo app did not print its value');
    };
    const before = await appLog();
    show(`pod ${before.pod}: ${before.line}`);

    say('Re-seal with a new password and apply: envseal updates the Secret and restarts the Deployment');
    await seal('a new password');
    const reapplied = await apply(withRestart(readFileSync(manifest, 'utf8')));
    if (reapplied.code !== 0) throw new Error(reapplied.stderr);
    const after = await appLog(before.pod);
    show(`pod ${after.pod}: ${after.line}`);
    say('Done; stopping the node and putting the host back as it was');
  } finally {
    await stop();
  }
}

const { values: flags } = parseArgs({ options: { helm: { type: 'boolean', default: false } } });

(flags.helm ? mainHelm() : main()).catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
