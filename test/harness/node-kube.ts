// Helpers for the tests and the demo on the real node (test/harness/node.ts): typed reads
// through kubectl, pods of a Deployment, the chart installed with the local image.
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { KubeClient } from '../../src/kube/client.ts';
import { repoRoot } from './control-plane.ts';
import type { CommandResult, NodeCluster } from './node.ts';

export const chartDir = path.join(repoRoot, 'charts/envseal');

export interface Pod {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string;
    ownerReferences?: { kind: string; name: string }[];
  };
  spec: {
    nodeName?: string;
    containers: { name: string; image: string; securityContext?: Record<string, unknown>; resources?: Record<string, Record<string, string>> }[];
    securityContext?: Record<string, unknown>;
  };
  status: {
    phase: string;
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: {
      name: string;
      ready: boolean;
      restartCount: number;
      image: string;
      state?: { running?: unknown; waiting?: { reason?: string }; terminated?: { reason?: string; exitCode?: number } };
      lastState?: { terminated?: { reason?: string; exitCode?: number } };
    }[];
  };
}

export function nodeClient(node: NodeCluster): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromFile(node.kubeconfigPath);
  return new KubeClient(kc);
}

export async function kubectlOrThrow(node: NodeCluster, args: string[], input?: string): Promise<string> {
  const result = await node.kubectl(args, input === undefined ? {} : { input });
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

export async function applyManifest(node: NodeCluster, object: unknown): Promise<void> {
  await kubectlOrThrow(node, ['apply', '-f', '-'], stringify(object));
}

export async function getJson<T>(node: NodeCluster, args: string[]): Promise<T> {
  return JSON.parse(await kubectlOrThrow(node, ['get', ...args, '-o', 'json'])) as T;
}

/** Pods matching a label selector, without the ones being deleted. */
export async function livePods(node: NodeCluster, namespace: string, selector: string): Promise<Pod[]> {
  const list = await getJson<{ items: Pod[] }>(node, ['pods', '-n', namespace, ...(selector ? ['-l', selector] : [])]);
  return list.items.filter((p) => p.metadata.deletionTimestamp === undefined);
}

export const isReady = (pod: Pod): boolean =>
  pod.status.phase === 'Running' && pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

export function helmOrThrow(result: CommandResult, what: string): string {
  if (result.code !== 0) throw new Error(`${what} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

/** The chart's values for the locally built image: what a user overrides, nothing else. */
export function imageValues(node: NodeCluster, tag = node.controllerImage.tag): string[] {
  const repository = node.controllerImage.reference.slice(0, node.controllerImage.reference.lastIndexOf(':'));
  return ['--set', `image.repository=${repository}`, '--set', `image.tag=${tag}`, '--set', 'image.pullPolicy=Never'];
}

/** A namespace that enforces the restricted Pod Security Standard. */
export async function restrictedNamespace(node: NodeCluster, name: string): Promise<void> {
  await applyManifest(node, {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name, labels: { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' } },
  });
}

/** A container securityContext that the restricted standard admits. */
export const restrictedContainer = {
  runAsNonRoot: true,
  runAsUser: 65534,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};
