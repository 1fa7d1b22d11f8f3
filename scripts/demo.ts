// npm run demo: the whole envseal flow on a real, local control plane, then clean up.
// Builds (or reuses) kube-apiserver, etcd and kube-controller-manager, starts them,
// installs the CRD, runs the controller with the age provider, seals a Secret with the
// CLI, applies it, and shows the materialized Secret and the EnvelopeSecret's status.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
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
    const kubectl = (...args: string[]) => execFileSync(cp.kubectlPath, ['--kubeconfig', cp.kubeconfigPath, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const run = (args: string[]) => execFileSync(process.execPath, [envseal, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KUBECONFIG: cp.kubeconfigPath } });
    process.stdout.write(`    API server ${cp.server}; kubeconfig ${cp.kubeconfigPath}\n`);

    say('Installing the EnvelopeSecret CRD');
    process.stdout.write(kubectl('apply', '--server-side', '-f', path.join(root, 'crds/envelopesecrets.envseal.dev.yaml')));
    kubectl('wait', '--for=condition=Established', 'crd/envelopesecrets.envseal.dev');
    kubectl('create', 'namespace', 'envseal-system');
    kubectl('create', 'namespace', 'demo');

    say('Starting the controller (age provider; it creates the cluster identity on first start)');
    controller = spawn(process.execPath, [envseal, 'controller', '--kubeconfig', cp.kubeconfigPath, '--controller-namespace', 'envseal-system', '--no-leader-elect', '--metrics-address', '127.0.0.1:0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
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
    const sealArgs = ['seal', '--name', 'db', '-n', 'demo', '--from-literal', 'DB_USER=app', '--from-literal', 'DB_PASSWORD=correct horse battery staple', '--controller-namespace', 'envseal-system', '-w', manifest];
    process.stdout.write(`    $ envseal ${sealArgs.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ').replace(work, '.')}\n\n`);
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

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
