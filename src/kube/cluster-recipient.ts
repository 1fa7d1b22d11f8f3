import { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError, KubeClient } from './client.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';

/**
 * Where the controller publishes its cluster recipient, for every authenticated user to
 * read: a ConfigMap in its namespace (this name unless configured otherwise), this key.
 */
export const PUBLISHED_RECIPIENT_CONFIGMAP = 'envseal-age-recipient';
export const PUBLISHED_RECIPIENT_KEY = 'recipient';

/** The cluster's recipient could not be read: nothing published there, or not in the expected form. */
export class ClusterRecipientError extends EnvsealError {
  readonly code: 'NotPublished' | 'MissingKey';
  constructor(code: ClusterRecipientError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClusterRecipientError';
    this.code = code;
  }

  override get exitClass(): ExitClass {
    return 'provider';
  }
}

/**
 * The age recipient a cluster's envseal controller publishes, for sealing with no key
 * file at hand: `envseal seal --controller-namespace NS`.
 */
export async function fetchClusterAgeRecipient(options: {
  kubeconfig?: string;
  namespace: string;
  configMapName?: string;
  signal?: AbortSignal;
}): Promise<string> {
  const kubeConfig = new KubeConfig();
  if (options.kubeconfig) kubeConfig.loadFromFile(options.kubeconfig);
  else kubeConfig.loadFromDefault();
  const client = new KubeClient(kubeConfig);
  const name = options.configMapName ?? PUBLISHED_RECIPIENT_CONFIGMAP;
  try {
    // client-node's object API (loaded here only: the controller imports this file's constants).
    const { KubeObjectApi } = await import('./object-api.ts');
    const configMap = await new KubeObjectApi(client).read<{ apiVersion?: string; kind?: string; data?: Record<string, string> }>(
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: options.namespace, name },
      { signal: options.signal },
    );
    const recipient = configMap.data?.[PUBLISHED_RECIPIENT_KEY];
    if (!recipient) throw new ClusterRecipientError('MissingKey', `ConfigMap ${options.namespace}/${name} has no "${PUBLISHED_RECIPIENT_KEY}" key`);
    return recipient;
  } catch (error) {
    if (error instanceof KubeApiError && error.notFound) {
      throw new ClusterRecipientError(
        'NotPublished',
        `no envseal controller publishes a recipient in namespace ${options.namespace} (ConfigMap ${name} not found); is the controller running there?`,
        { cause: error },
      );
    }
    throw error;
  }
}
