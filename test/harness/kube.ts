// Small helpers for e2e tests: kubectl as a user would run it, and typed reads.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { stringify } from 'yaml';
import { KubeApiError, KubeClient, paths } from '../../src/kube/client.ts';
import { adminKubeConfig, sharedCluster, waitFor } from './cluster.ts';
import { repoRoot } from './control-plane.ts';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built kubectl against the shared control plane; never throws on exit codes. */
export async function kubectl(args: string[], input?: string): Promise<KubectlResult> {
  const cluster = sharedCluster();
  return new Promise((resolve) => {
    const child = execFile(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfigPath, ...args], { maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export async function kubectlApply(object: unknown): Promise<KubectlResult> {
  return kubectl(['apply', '-f', '-'], stringify(object));
}

/** kubectl that throws with its stderr unless it succeeds; its stdout. */
export async function kubectlOk(args: string[], input?: string): Promise<string> {
  const result = await kubectl(args, input);
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** A Secret's data (base64, as the API server shows it) as text. */
export function decodeSecretData(data: Record<string, string> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

/** kubectl apply that throws with kubectl's message when it fails. */
export async function applyOrThrow(object: unknown): Promise<void> {
  const result = await kubectlApply(object);
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
}

export function adminClient(): KubeClient {
  return new KubeClient(adminKubeConfig());
}

export const crdPath = path.join(repoRoot, 'crds/envelopesecrets.envseal.dev.yaml');

/** Applies the product CRD and waits until it is served. */
export async function installCrd(): Promise<void> {
  const result = await kubectl(['apply', '--server-side', '-f', crdPath]);
  if (result.code !== 0) throw new Error(`CRD apply failed: ${result.stderr}`);
  // kubectl wait fails at once, rather than waiting, while a just-created CRD has no
  // status.conditions yet ("accessor error: <nil>"): asked again until the deadline.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const wait = await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/envelopesecrets.envseal.dev']);
    if (wait.code === 0) return;
    if (!wait.stderr.includes('accessor error') || Date.now() > deadline) throw new Error(`CRD not established: ${wait.stderr}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 250));
  }
}

export async function createNamespace(client: KubeClient, name: string): Promise<void> {
  await client.request({ method: 'POST', path: '/api/v1/namespaces', body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } });
}

export async function getOrUndefined<T>(client: KubeClient, objectPath: string): Promise<T | undefined> {
  try {
    return await client.request<T>({ method: 'GET', path: objectPath });
  } catch (error) {
    if (error instanceof KubeApiError && error.notFound) return undefined;
    throw error;
  }
}

/** The age recipient a controller published in its namespace (waits for it). */
export async function publishedRecipient(client: KubeClient, controllerNamespace: string, timeoutMs = 60_000): Promise<string> {
  const configMap = await waitFor(
    'the published age recipient',
    () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')),
    { timeoutMs },
  );
  return configMap.data.recipient;
}

export { paths };
