// vitest globalSetup for the e2e project: builds (or reuses) the control plane
// binaries, starts one control plane for the whole run and tears it down afterwards.
// Tests get it with inject('envsealCluster') (see ./cluster.ts) or the env var
// ENVSEAL_TEST_KUBECONFIG.
import type { TestProject } from 'vitest/node';
import { serveClusterControl } from './cluster-control.ts';
import { ensureBinaries, startControlPlane } from './control-plane.ts';

export interface SharedCluster {
  kubeconfigPath: string;
  server: string;
  binDir: string;
  kubectlPath: string;
  helmPath: string;
  dir: string;
  caCertPath: string;
  /** For connectClusterControl: restart/stop components of the shared control plane. */
  control: { url: string; token: string };
}

declare module 'vitest' {
  export interface ProvidedContext {
    envsealCluster: SharedCluster;
  }
}

const log = (message: string) => process.stderr.write(`[control-plane] ${message}\n`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const binDir = await ensureBinaries(log);
  const cp = await startControlPlane({ binDir, log });
  let control: Awaited<ReturnType<typeof serveClusterControl>> | undefined;
  try {
    control = await serveClusterControl(cp);
    cp.onUnexpectedExit((component, code, signal) => {
      log(`${component} exited unexpectedly (code ${code}, signal ${signal}); last lines:\n${cp.logTail(component, 20)}`);
    });
    const shared: SharedCluster = {
      kubeconfigPath: cp.kubeconfigPath,
      server: cp.server,
      binDir: cp.binDir,
      kubectlPath: cp.kubectlPath,
      helmPath: cp.helmPath,
      dir: cp.dir,
      caCertPath: cp.pki.caCert,
      control: { url: control.url, token: control.token },
    };
    project.provide('envsealCluster', shared);
    process.env.ENVSEAL_TEST_KUBECONFIG = cp.kubeconfigPath;
  } catch (err) {
    await control?.close();
    await cp.stop();
    throw err;
  }
  return async () => {
    await control?.close();
    await cp.stop();
    delete process.env.ENVSEAL_TEST_KUBECONFIG;
  };
}
