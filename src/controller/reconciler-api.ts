import { API_VERSION, type EnvelopeSecretStatus, KIND, type WorkloadRef } from '../api/types.ts';
import { KubeApiError, type KubeClient, type KubeObject, paths } from '../kube/client.ts';
import type { KubeObjectApi, ObjectRef } from '../kube/object-api.ts';
import type { ObjectCache } from './cache.ts';
import type { PodTemplateHolder } from './consent.ts';
import { FIELD_MANAGER, type SecretManifest } from './desired.ts';
import type { EnvelopeSecretObject, EnvelopeSecretRecord, SecretObject } from './records.ts';
import type { Logger } from 'pino';
import type { Envelope, Recipient, ValidationIssue } from '../api/types.ts';
import type { Binding } from '../envelope/context.ts';
import type { NamespaceBudget } from './budget.ts';
import type { Clock } from './clock.ts';
import type { DataKeyCache } from './dek-cache.ts';
import type { DriftTracker } from './drift.ts';
import type { EventInput, InvolvedObject } from './events.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { WorkloadRestarts } from './restarts.ts';

/** A workload of spec.restartWorkloads as the reconciler reads it: what its pod template uses and carries. */
export type Workload = PodTemplateHolder & { spec?: { template?: { metadata?: { annotations?: Record<string, string> } } } };

export type WorkloadKind = WorkloadRef['kind'];

/**
 * The API calls the reconciler makes, and nothing else. Reads answer undefined for an
 * object that does not exist; writes keep the controller's caches up to date with what
 * they wrote (the reconciler never writes to a cache itself). Errors are the API
 * server's (KubeApiError), so that the reconciler classifies them.
 */
export interface ReconcilerApi {
  /**
   * The whole EnvelopeSecret, spec included, as the API server has it now. `notOlderThan`:
   * the resourceVersion the cache holds; the API server then answers from its watch cache.
   */
  getEnvelopeSecret(namespace: string, name: string, signal: AbortSignal, notOlderThan?: string): Promise<EnvelopeSecretObject | undefined>;
  /** The Secret with its values. */
  getSecret(namespace: string, name: string, signal: AbortSignal): Promise<SecretObject | undefined>;
  /** Server-side apply of the Secret, field manager envseal, forced. */
  applySecret(desired: SecretManifest, signal: AbortSignal): Promise<SecretObject>;
  /** Creates the Secret (field manager envseal); a 409 AlreadyExists if any Secret of that name exists. */
  createSecret(desired: SecretManifest, signal: AbortSignal): Promise<SecretObject>;
  /** Deletes the Secret if it still has this uid (an immutable Secret to replace). */
  deleteSecret(namespace: string, name: string, uid: string | undefined, signal: AbortSignal): Promise<void>;
  /**
   * Removes keys that other field managers added, if the Secret is still at
   * `resourceVersion`; a Secret changed meanwhile is a 409 Conflict (retried).
   */
  removeSecretKeys(
    namespace: string,
    name: string,
    options: { resourceVersion: string | undefined; keys: readonly string[] },
    signal: AbortSignal,
  ): Promise<SecretObject>;
  getWorkload(namespace: string, kind: WorkloadKind, name: string, signal: AbortSignal): Promise<Workload | undefined>;
  /** Merges annotations into the workload's pod template (which rolls its pods). */
  annotatePodTemplate(namespace: string, kind: WorkloadKind, name: string, annotations: Record<string, string>, signal: AbortSignal): Promise<void>;
  /** Writes the status subresource. */
  patchStatus(namespace: string, name: string, status: EnvelopeSecretStatus, signal: AbortSignal): Promise<void>;
}

/** The reconciler's view of a cache: read only. */
export interface Store<S> {
  get(key: string): S | undefined;
}

/** ReconcilerApi over a Kubernetes client, writing through the controller's caches. */
export function kubeReconcilerApi(options: {
  client: Pick<KubeClient, 'request'>;
  /** The object calls: client-node's KubernetesObjectApi (src/kube/object-api.ts). */
  objects: Pick<KubeObjectApi, 'read' | 'create' | 'apply' | 'mergePatch' | 'delete'>;
  envelopeSecrets: Pick<ObjectCache<EnvelopeSecretObject, EnvelopeSecretRecord>, 'changeMark' | 'remember'>;
  secrets: Pick<ObjectCache<SecretObject>, 'changeMark' | 'remember'>;
}): ReconcilerApi {
  const { client, objects, envelopeSecrets, secrets } = options;
  const read = async <T>(ref: ObjectRef, signal: AbortSignal, notOlderThan?: string): Promise<T | undefined> => {
    try {
      return await objects.read<T>(ref, { signal, notOlderThan });
    } catch (error) {
      if (error instanceof KubeApiError && error.notFound) return undefined;
      throw error;
    }
  };
  const secretRef = (namespace: string, name: string): ObjectRef => ({ apiVersion: 'v1', kind: 'Secret', namespace, name });
  return {
    getEnvelopeSecret: (namespace, name, signal, notOlderThan) => read({ apiVersion: API_VERSION, kind: KIND, namespace, name }, signal, notOlderThan),
    getSecret: (namespace, name, signal) => read(secretRef(namespace, name), signal),
    async applySecret(desired, signal) {
      // Taken before the write: the watch may tell something newer while it is in flight.
      const mark = secrets.changeMark(desired.metadata.namespace);
      const written = await objects.apply<SecretObject>(desired, { fieldManager: FIELD_MANAGER, force: true, signal });
      secrets.remember(written, mark);
      return written;
    },
    async createSecret(desired, signal) {
      const mark = secrets.changeMark(desired.metadata.namespace);
      const written = await objects.create<SecretObject>(desired as KubeObject, { fieldManager: FIELD_MANAGER, signal });
      secrets.remember(written, mark);
      return written;
    },
    async deleteSecret(namespace, name, uid, signal) {
      await objects.delete(secretRef(namespace, name), { ...(uid === undefined ? {} : { uid }), signal });
    },
    async removeSecretKeys(namespace, name, { resourceVersion, keys }, signal) {
      const mark = secrets.changeMark(namespace);
      // A merge patch: null removes a key; the resourceVersion makes a Secret changed since
      // the apply a 409 Conflict (retried) rather than a Secret pruned on stale knowledge.
      const pruned = await objects.mergePatch<SecretObject>(
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name, namespace, ...(resourceVersion === undefined ? {} : { resourceVersion }) },
          data: Object.fromEntries(keys.map((key) => [key, null])),
        },
        { fieldManager: FIELD_MANAGER, signal },
      );
      secrets.remember(pruned, mark);
      return pruned;
    },
    getWorkload: (namespace, kind, name, signal) => read({ apiVersion: 'apps/v1', kind, namespace, name }, signal),
    async annotatePodTemplate(namespace, kind, name, annotations, signal) {
      await objects.mergePatch(
        { apiVersion: 'apps/v1', kind, metadata: { name, namespace }, spec: { template: { metadata: { annotations } } } },
        { fieldManager: FIELD_MANAGER, signal },
      );
    },
    // KubernetesObjectApi has no subresources: docs/controller.md, "The Kubernetes client".
    async patchStatus(namespace, name, status, signal) {
      const mark = envelopeSecrets.changeMark(namespace);
      const updated = await client.request<EnvelopeSecretObject>({
        method: 'PATCH',
        path: `${paths.envelopeSecret(namespace, name)}/status`,
        body: { status },
        patchType: 'merge',
        signal,
      });
      envelopeSecrets.remember(updated, mark);
    },
  };
}

export interface ReconcileRequest {
  namespace: string;
  name: string;
}

/**
 * What a reconcile that did not fail ends with. Failures are thrown: a TerminalError when
 * only a change of the object can cure them (InvalidSpec, ContextMismatch, ...), any
 * other error is retried with backoff (a ReportedError when the status already says why).
 */
export interface ReconcileResult {
  /** Look again after this long even if nothing changes (a foreign Secret, a backoff, a budget). */
  requeueAfterMs?: number;
  /**
   * synced: the Secret was written; unchanged: nothing to do; terminal: a state only a
   * person can change (a foreign Secret, a refused restart, a failure already reported);
   * gone: the object was deleted; deferred: waiting (a drift backoff, the budget).
   */
  outcome: 'synced' | 'unchanged' | 'terminal' | 'gone' | 'deferred';
}

/** Unwraps one envelope's data key (the keyring over the configured providers, commitment checked). */
export type UnwrapDataKey = (request: {
  envelope: Envelope;
  index: number;
  binding: Binding;
  signal: AbortSignal;
  /** Called before each key-provider call (the namespace's budget). */
  beforeAttempt: (recipient: Recipient) => void;
}) => Promise<{ dataKey: Uint8Array }>;

/** Where the reconciler's Events go (EventRecorder sends them in the background). */
export interface EventSink {
  record(object: InvolvedObject, event: EventInput): void;
}

export interface ReconcilerOptions {
  /** The API calls the reconciler makes (kubeReconcilerApi in the controller). */
  api: ReconcilerApi;
  /** The caches, read only: slim EnvelopeSecret records and managed Secrets without values. */
  envelopeSecrets: Store<EnvelopeSecretRecord>;
  secrets: Store<SecretObject>;
  /** True once the managed-Secret cache holds its first complete list: a Secret it lacks is then created, not read first. */
  secretsListed?: () => boolean;
  unwrap: UnwrapDataKey;
  dataKeys: DataKeyCache;
  events: EventSink;
  logger: Logger;
  metrics: Pick<ControllerMetrics, 'unwrapAttempts' | 'budgetExhausted' | 'dekCache'>;
  /** What a tenant may ask for beyond the format (Secret types, reserved metadata keys). */
  policy?: (source: EnvelopeSecretObject) => ValidationIssue[];
  /** Key-provider calls per namespace; default: unlimited. */
  budget?: NamespaceBudget;
  drift?: DriftTracker;
  /** How often every object is looked at again: failures that depend on the outside world are retried once per resync. */
  resyncMs?: number;
  clock?: Pick<Clock, 'now'>;
  /** How often to look again at a Secret that is not ours. */
  foreignRecheckMs?: number;
  /** Rollout restarts, debounced per workload; default: at once. */
  restarts?: WorkloadRestarts;
}

/**
 * reconcile(request) -> result: makes the Secret of one EnvelopeSecret what its spec says.
 * Steady state (spec unchanged, Secret as last written) makes no key-provider call and
 * reads nothing from the API server: the cache holds a slim record of each object, and
 * the full object is read only when the Secret must be written.
 */
