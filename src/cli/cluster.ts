import path from 'node:path';
import { quoteName } from '../api/names.ts';
import { localIdentityProvider } from '../providers/registry.ts';
import type { RecipientTarget } from '../providers/types.ts';
import { type OptionSpecs, type OptionValues, stringOption } from './args.ts';
import { CliError, EXIT, usageError } from './errors.ts';
import type { CliIo } from './io.ts';

/** Options of the commands that can seal for a cluster's own age recipient. */
export const CLUSTER_OPTIONS: OptionSpecs = {
  'controller-namespace': {
    type: 'string',
    value: 'NS',
    help: 'also seal for the age recipient that the envseal controller in namespace NS publishes (ConfigMap envseal-age-recipient; needs read access to it)',
  },
  kubeconfig: { type: 'string', value: 'FILE', help: 'kubeconfig for --controller-namespace (default: $KUBECONFIG, then ~/.kube/config)' },
};

/**
 * The cluster's published age recipient, when --controller-namespace is given. The
 * Kubernetes client is loaded only then.
 */
export async function clusterTargets(values: OptionValues, io: CliIo, signal: AbortSignal | undefined): Promise<RecipientTarget[]> {
  const namespace = stringOption(values, 'controller-namespace');
  const flagged = stringOption(values, 'kubeconfig');
  if (namespace === undefined) {
    if (flagged !== undefined) throw usageError('--kubeconfig is only used with --controller-namespace');
    return [];
  }
  // KUBECONFIG may list several files; the client reads one: the first.
  const kubeconfig = flagged ?? io.env.KUBECONFIG?.split(path.delimiter).find((p) => p !== '');
  const { fetchClusterAgeRecipient } = await import('../kube/cluster-recipient.ts');
  let recipient: string;
  try {
    recipient = await fetchClusterAgeRecipient({
      namespace,
      ...(kubeconfig !== undefined ? { kubeconfig: path.resolve(io.cwd, kubeconfig) } : {}),
      signal,
    });
  } catch (error) {
    signal?.throwIfAborted();
    // Its messages name the namespace, the ConfigMap and the API server's answer: no secrets.
    const detail = error instanceof Error ? error.message.slice(0, 400) : 'unexpected error';
    throw new CliError('ClusterRecipient', `cannot get the cluster's age recipient from namespace ${quoteName(namespace)}: ${detail}`, {
      exitCode: EXIT.provider,
      cause: error,
    });
  }
  return [{ provider: localIdentityProvider().name, target: recipient.trim() }];
}
