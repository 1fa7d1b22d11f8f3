// Test-side access to the shared control plane started by ./global-setup.ts.
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { connectClusterControl, type ClusterControl } from './cluster-control.ts';
import type { SharedCluster } from './global-setup.ts';

export function sharedCluster(): SharedCluster {
  const cluster = inject('envsealCluster');
  if (cluster === undefined) {
    throw new Error('no shared control plane: run this file in the e2e project (its globalSetup is test/harness/global-setup.ts)');
  }
  return cluster;
}

/** Admin KubeConfig (system:masters) for the shared control plane. */
export function adminKubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(sharedCluster().kubeconfigPath);
  return kc;
}

/** A KubeConfig that authenticates with a bearer token (e.g. a ServiceAccount token). */
export function tokenKubeConfig(token: string, namespace = 'default'): KubeConfig {
  const admin = adminKubeConfig();
  const cluster = admin.getCurrentCluster();
  if (cluster === null) throw new Error('admin kubeconfig has no cluster');
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'envseal-test', server: cluster.server, caData: cluster.caData, skipTLSVerify: false }],
    users: [{ name: 'token-user', token }],
    contexts: [{ name: 'token', cluster: 'envseal-test', user: 'token-user', namespace }],
    currentContext: 'token',
  });
  return kc;
}

export function clusterControl(): ClusterControl {
  return connectClusterControl(sharedCluster().control);
}

/** A DNS-1123 name unique to this run. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * Polls check() until it returns a value other than undefined/false, or throws after
 * timeoutMs with the description and the last error or value seen.
 */
export async function waitFor<T>(
  description: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 200;
  const deadline = Date.now() + timeoutMs;
  let last = 'never checked';
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
      last = `last result: ${String(value)}`;
    } catch (err) {
      last = `last error: ${(err as Error).message}`;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${description} (${last})`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** HTTP status of a @kubernetes/client-node ApiException, or undefined. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** Resolves to the HTTP status an API call fails with (throws if it succeeds). */
export async function failureStatus(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
  } catch (err) {
    const status = statusOf(err);
    if (status === undefined) throw err;
    return status;
  }
  throw new Error('expected the API call to fail, but it succeeded');
}
