// `npm run cluster` (npx node test/harness/cli.ts): builds or reuses the control plane
// binaries, starts etcd + kube-apiserver + kube-controller-manager, prints how to point
// kubectl at it, and stays up until Ctrl-C (SIGINT) or SIGTERM, then cleans up.
//
// Options:
//   --kubeconfig-out <path>  also copy the admin kubeconfig to <path> (removed on exit)
//   --keep                   keep the temp dir (logs, etcd data) after exit
//   --no-build               fail instead of building missing binaries
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { binDirFromBuildScript, ensureBinaries, missingBinaries, startControlPlane } from './control-plane.ts';

const { values } = parseArgs({
  options: {
    'kubeconfig-out': { type: 'string' },
    keep: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (values.help) {
  process.stdout.write('usage: npm run cluster -- [--kubeconfig-out <path>] [--keep] [--no-build]\n');
  process.exit(0);
}

const log = (message: string) => process.stderr.write(`[control-plane] ${message}\n`);

let binDir: string;
if (values['no-build']) {
  binDir = binDirFromBuildScript();
  const missing = missingBinaries(binDir);
  if (missing.length > 0) {
    log(`missing in ${binDir}: ${missing.join(', ')}; run scripts/control-plane/build.sh`);
    process.exit(1);
  }
} else {
  binDir = await ensureBinaries(log);
}

const started = Date.now();
const cp = await startControlPlane({ binDir, log, keepDir: values.keep });
const kubeconfigOut = values['kubeconfig-out'] === undefined ? undefined : path.resolve(values['kubeconfig-out']);
if (kubeconfigOut !== undefined) fs.copyFileSync(cp.kubeconfigPath, kubeconfigOut);
const kubeconfig = kubeconfigOut ?? cp.kubeconfigPath;

process.stdout.write(`
envseal control plane is up (${((Date.now() - started) / 1000).toFixed(1)} s)
  API server:  ${cp.server}
  kubeconfig:  ${kubeconfig}
  kubectl:     ${cp.kubectlPath}
  helm:        ${cp.helmPath}
  logs:        ${cp.logDir}

Point kubectl (and helm) at it from another shell:
  export KUBECONFIG=${kubeconfig}
  export PATH=${binDir}:$PATH
  kubectl get namespaces

Ctrl-C stops it and removes ${cp.dir}${values.keep ? ' (kept: --keep)' : ''}.
`);

let stopping = false;
const shutdown = async (reason: string, code: number) => {
  if (stopping) return;
  stopping = true;
  log(`${reason}: stopping`);
  clearInterval(keepAlive);
  await cp.stop();
  if (kubeconfigOut !== undefined) fs.rmSync(kubeconfigOut, { force: true });
  log('stopped');
  process.exit(code);
};

// The harness's own handlers only run when nobody else listens; these take precedence
// and stop asynchronously (graceful SIGTERM first).
process.on('SIGINT', () => void shutdown('SIGINT', 130));
process.on('SIGTERM', () => void shutdown('SIGTERM', 143));
process.on('SIGHUP', () => void shutdown('SIGHUP', 129));
cp.onUnexpectedExit((component, code, signal) => {
  log(`${component} exited unexpectedly (code ${code}, signal ${signal}); last lines of ${cp.logPath(component)}:\n${cp.logTail(component, 30)}`);
  void shutdown(`${component} died`, 1);
});
// Children are unref'd; keep the event loop alive until a signal arrives.
const keepAlive = setInterval(() => {}, 1 << 30);
