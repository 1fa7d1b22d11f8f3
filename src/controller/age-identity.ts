import type { Logger } from 'pino';
import { localIdentityProvider } from '../providers/registry.ts';
import { KubeApiError } from '../kube/client.ts';
import type { KubeObjectApi } from '../kube/object-api.ts';
import { EnvsealError } from '../util/errors.ts';
import { PUBLISHED_RECIPIENT_KEY } from '../kube/cluster-recipient.ts';
import { FIELD_MANAGER, LABEL_MANAGED_BY, MANAGED_BY } from './desired.ts';

export const AGE_IDENTITY_KEY = 'identity.agekey';

/** The identity Secret is not usable as it is (a key missing, or gone right after its creation). */
export class ClusterIdentityError extends EnvsealError {
  readonly code = 'ClusterIdentityInvalid';
}

/** The calls the identity needs (KubeObjectApi serves them). */
export type IdentityObjectCalls = Pick<KubeObjectApi, 'read' | 'create' | 'apply'>;

export interface ClusterAgeIdentity {
  identities: string[];
  /** The recipient `envseal seal` uses for this cluster (of the first identity). */
  recipient: string;
  created: boolean;
}

/**
 * The controller's age identity lives in a Secret in its own namespace: read it, or
 * create it on first start (a concurrent replica creating it too is fine: 409, re-read).
 * Its public recipient is published in a ConfigMap that every authenticated user may read.
 */
export async function ensureClusterAgeIdentity(options: {
  client: IdentityObjectCalls;
  namespace: string;
  secretName: string;
  configMapName: string;
  logger: Logger;
  signal: AbortSignal;
}): Promise<ClusterAgeIdentity> {
  const { client, namespace, secretName, signal } = options;
  const { localIdentity } = localIdentityProvider();
  let created = false;
  let file = await readIdentityFile(client, namespace, secretName, signal);
  if (file === undefined) {
    const generated = await localIdentity.generate();
    try {
      await client.create(
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name: secretName, namespace, labels: { [LABEL_MANAGED_BY]: MANAGED_BY, 'envseal.dev/role': 'age-identity' } },
          type: 'Opaque',
          data: { [AGE_IDENTITY_KEY]: Buffer.from(localIdentity.formatFile(generated, new Date())).toString('base64') },
        },
        { signal },
      );
      created = true;
      options.logger.info(
        { secret: `${namespace}/${secretName}`, recipient: generated.recipient },
        'created the cluster age identity; back it up (see README: age key backup)',
      );
    } catch (error) {
      if (!(error instanceof KubeApiError && error.conflict)) throw error;
    }
    file = await readIdentityFile(client, namespace, secretName, signal);
    if (file === undefined) throw new ClusterIdentityError(`age identity Secret ${namespace}/${secretName} vanished right after it was created`);
  }
  const identities = localIdentity.parseFile(file, `Secret ${namespace}/${secretName} key ${AGE_IDENTITY_KEY}`);
  const recipient = await localIdentity.recipientOf(identities[0]!);
  await client.apply(
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: options.configMapName, namespace, labels: { [LABEL_MANAGED_BY]: MANAGED_BY } },
      data: { [PUBLISHED_RECIPIENT_KEY]: recipient },
    },
    { fieldManager: FIELD_MANAGER, force: true, signal },
  );
  return { identities, recipient, created };
}

async function readIdentityFile(client: IdentityObjectCalls, namespace: string, name: string, signal: AbortSignal): Promise<string | undefined> {
  try {
    const secret = await client.read<{ data?: Record<string, string> }>({ apiVersion: 'v1', kind: 'Secret', namespace, name }, { signal });
    const encoded = secret.data?.[AGE_IDENTITY_KEY];
    if (encoded === undefined) throw new ClusterIdentityError(`Secret ${namespace}/${name} has no key ${AGE_IDENTITY_KEY}`);
    return Buffer.from(encoded, 'base64').toString('utf8');
  } catch (error) {
    if (error instanceof KubeApiError && error.notFound) return undefined;
    throw error;
  }
}
