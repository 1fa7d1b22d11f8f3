import type { Logger } from 'pino';
import type { EnvelopeSecret, EnvelopeSecretStatus } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { bindingOf, validateEnvelopeSecret } from '../api/validation.ts';
import type { Binding } from '../envelope/context.ts';
import { KubeApiError, type KubeClient, type KubeObject, paths } from '../kube/client.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import { openEnvelopeSecret, unwrapDataKey } from '../sealing/open.ts';
import { classifyError } from './classify.ts';
import { Reason, type ReadyState, readyCondition } from './conditions.ts';
import { DataKeyCache } from './dek-cache.ts';
import { ANNOTATION_DATA_HASH, ANNOTATION_SPEC_HASH, FIELD_MANAGER, desiredSecret, sealedDataDigest, needsReplace, ownershipOf, type SecretManifest, specHash } from './desired.ts';
import type { EventRecorder } from './events.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { ObjectCache } from './cache.ts';

export type EnvelopeSecretObject = EnvelopeSecret & KubeObject;
export type SecretObject = KubeObject & { type?: string; immutable?: boolean; data?: Record<string, string> };

export interface ReconcileRequest {
  namespace: string;
  name: string;
}

export interface ReconcileResult {
  /** Look again after this long even if nothing changes (e.g. a foreign Secret). */
  requeueAfterMs?: number;
  outcome: 'synced' | 'unchanged' | 'terminal' | 'gone';
}

/** Thrown for failures worth a retry with backoff; the status already says why. */
export class RetryableError extends Error {
  /** The Ready reason written to the status (KMSUnavailable, KubernetesError, ...). */
  readonly reason: string;
  constructor(message: string, options: { cause: unknown; reason: string }) {
    super(message, { cause: options.cause });
    this.name = 'RetryableError';
    this.reason = options.reason;
  }
}

export interface ReconcilerOptions {
  client: KubeClient;
  envelopeSecrets: ObjectCache<EnvelopeSecretObject>;
  secrets: ObjectCache<SecretObject>;
  providers: ProviderRegistry;
  dataKeys: DataKeyCache;
  events: EventRecorder;
  logger: Logger;
  metrics: ControllerMetrics;
  now?: () => Date;
  /** How often to look again at a Secret that is not ours. */
  foreignRecheckMs?: number;
}

/**
 * reconcile(request) -> result: makes the Secret of one EnvelopeSecret what its spec says.
 * Steady state (spec unchanged, Secret as last written) makes no key-provider call.
 */
export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #now: () => Date;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  async reconcile(request: ReconcileRequest, signal: AbortSignal): Promise<ReconcileResult> {
    const key = `${request.namespace}/${request.name}`;
    const source = this.#o.envelopeSecrets.get(key);
    if (!source || source.metadata.deletionTimestamp) return { outcome: 'gone' };
    const log = this.#o.logger.child({ envelopeSecret: key });

    const issues = validateEnvelopeSecret(source);
    if (issues.length > 0) {
      const first = issues[0]!;
      const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
      await this.#setStatus(source, { ready: false, reason: Reason.InvalidSpec, message: `${first.path}: ${first.message}${more}` }, undefined, signal);
      return { outcome: 'terminal' };
    }

    const hash = specHash(source);
    const live = await this.#liveSecret(request, signal);
    const ownership = live ? ownershipOf(live, source) : 'owned';
    if (live && ownership === 'foreign') {
      await this.#setStatus(
        source,
        { ready: false, reason: Reason.SecretNotOwned, message: `Secret ${request.name} exists and is not managed by this EnvelopeSecret; envseal will not overwrite it. Delete it, or annotate it envseal.dev/adopt=true to hand it over.` },
        undefined,
        signal,
      );
      return { outcome: 'terminal', requeueAfterMs: this.#o.foreignRecheckMs ?? 60_000 };
    }
    if (live && ownership === 'owned' && this.#inSync(source, live, hash)) return { outcome: 'unchanged' };
    if (failedForGood(source)) return { outcome: 'terminal' };

    const binding = bindingOf(source);
    let data: Record<string, Buffer>;
    try {
      data = await this.#open(source, binding, signal);
    } catch (error) {
      signal.throwIfAborted();
      return this.#fail(source, error, log, signal);
    }
    try {
      const desired = desiredSecret({ source, data, specHash: hash });
      const written = await this.#write(live, desired, signal);
      // Before the status: if a restart fails, the object stays out of sync and is retried.
      await this.#restartWorkloads(source, signal);
      await this.#setStatus(source, { ready: true, reason: Reason.Synced, message: `Secret ${request.name} is up to date (${Object.keys(data).length} keys)` }, written.metadata?.resourceVersion, signal);
      log.info({ secretResourceVersion: written.metadata?.resourceVersion }, 'secret synced');
      return { outcome: 'synced' };
    } catch (error) {
      signal.throwIfAborted();
      return this.#fail(source, error, log, signal);
    } finally {
      for (const value of Object.values(data)) value.fill(0);
    }
  }

  #inSync(source: EnvelopeSecretObject, live: SecretObject, hash: string): boolean {
    const status = source.status;
    const ready = status?.conditions?.find((c) => c.type === 'Ready');
    const owner = live.metadata?.ownerReferences?.find((o) => o.controller);
    return (
      live.metadata?.annotations?.[ANNOTATION_SPEC_HASH] === hash &&
      owner?.uid === source.metadata.uid &&
      status?.secretResourceVersion === live.metadata?.resourceVersion &&
      status?.observedGeneration === source.metadata.generation &&
      ready?.status === 'True'
    );
  }

  async #liveSecret(request: ReconcileRequest, signal: AbortSignal): Promise<SecretObject | undefined> {
    const cached = this.#o.secrets.get(`${request.namespace}/${request.name}`);
    if (cached) return cached;
    try {
      return await this.#o.client.request<SecretObject>({ method: 'GET', path: paths.secret(request.namespace, request.name), signal });
    } catch (error) {
      if (error instanceof KubeApiError && error.notFound) return undefined;
      throw error;
    }
  }

  #open(source: EnvelopeSecretObject, binding: Binding, signal: AbortSignal): Promise<Record<string, Buffer>> {
    return openEnvelopeSecret({
      secret: source,
      binding,
      providers: this.#o.providers,
      reportKeys: true,
      signal,
      // Unwrapped data keys are cached by binding and wrapped keys: zero KMS calls when
      // only the Secret needs repairing.
      dataKeyFor: async (envelope, index) => {
        const cacheKey = DataKeyCache.keyOf(binding, envelope);
        const cached = this.#o.dataKeys.get(cacheKey);
        this.#o.metrics.dekCache.inc({ result: cached ? 'hit' : 'miss' });
        if (cached) return cached;
        const { dataKey } = await unwrapDataKey({ envelope, index, binding, providers: this.#o.providers, signal });
        this.#o.dataKeys.set(cacheKey, dataKey);
        return dataKey;
      },
    });
  }

  async #write(live: SecretObject | undefined, desired: SecretManifest, signal: AbortSignal): Promise<SecretObject> {
    const { namespace, name } = desired.metadata;
    if (live && needsReplace(live, desired)) {
      // Immutable Secrets and type changes cannot be updated in place.
      await this.#o.client.request({ method: 'DELETE', path: paths.secret(namespace, name), body: { preconditions: { uid: live.metadata?.uid } }, signal });
    }
    const written = await this.#o.client.request<SecretObject>({
      method: 'PATCH',
      path: paths.secret(namespace, name),
      query: { fieldManager: FIELD_MANAGER, force: true },
      body: desired,
      patchType: 'apply',
      signal,
    });
    const extra = Object.keys(written.data ?? {}).filter((key) => !Object.hasOwn(desired.data, key));
    if (extra.length === 0) {
      this.#o.secrets.remember(written);
      return written;
    }
    // Keys someone else added are owned by their field manager, so apply keeps them; the
    // Secret must hold exactly the sealed keys.
    let pruned: SecretObject;
    try {
      pruned = await this.#o.client.request<SecretObject>({
        method: 'PATCH',
        path: paths.secret(namespace, name),
        body: [
          { op: 'test', path: '/metadata/resourceVersion', value: written.metadata?.resourceVersion },
          ...extra.map((key) => ({ op: 'remove', path: `/data/${key.replaceAll('~', '~0').replaceAll('/', '~1')}` })),
        ],
        patchType: 'json',
        signal,
      });
    } catch (error) {
      // 422 here means the test or a remove failed: someone wrote the Secret since the
      // apply. A conflict, to be retried -- not a rejected Secret (which is never retried).
      if (error instanceof KubeApiError && error.status === 422) {
        throw new KubeApiError(409, 'Conflict', `PATCH ${paths.secret(namespace, name)}: the Secret changed while keys added by others were being removed; retrying`, { cause: error });
      }
      throw error;
    }
    this.#o.secrets.remember(pruned);
    return pruned;
  }

  /** Rolls the listed workloads whose pod template does not carry the current data digest. */
  async #restartWorkloads(source: EnvelopeSecretObject, signal: AbortSignal): Promise<void> {
    const workloads = source.spec.restartWorkloads ?? [];
    if (workloads.length === 0) return;
    const digest = sealedDataDigest(source);
    const namespace = source.metadata.namespace ?? '';
    for (const workload of workloads) {
      const path = `/apis/apps/v1/namespaces/${namespace}/${workload.kind.toLowerCase()}s/${encodeURIComponent(workload.name)}`;
      let current: { spec?: { template?: { metadata?: { annotations?: Record<string, string> } } } };
      try {
        current = await this.#o.client.request({ method: 'GET', path, signal });
      } catch (error) {
        if (error instanceof KubeApiError && error.notFound) {
          this.#o.events.record(involved(source), { type: 'Warning', reason: 'WorkloadNotFound', message: `${workload.kind} ${workload.name} listed in restartWorkloads does not exist` });
          continue;
        }
        throw error;
      }
      if (current.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH] === digest) continue;
      await this.#o.client.request({
        method: 'PATCH',
        path,
        query: { fieldManager: FIELD_MANAGER },
        body: { spec: { template: { metadata: { annotations: { [ANNOTATION_DATA_HASH]: digest } } } } },
        patchType: 'merge',
        signal,
      });
      this.#o.events.record(involved(source), { type: 'Normal', reason: 'RolloutRestarted', message: `restarted ${workload.kind} ${workload.name}: the Secret's data changed` });
    }
  }

  async #fail(source: EnvelopeSecretObject, error: unknown, log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
    const classified = classifyError(error);
    log.warn({ reason: classified.reason, retryable: classified.retryable, error: classified.message }, 'reconcile failed');
    try {
      await this.#setStatus(source, { ready: false, reason: classified.reason, message: classified.message }, undefined, signal);
    } catch (statusError) {
      log.warn({ error: statusError instanceof Error ? statusError.message : 'unknown' }, 'could not write status');
    }
    if (classified.retryable) throw new RetryableError(`${classified.reason}: ${classified.message}`, { cause: error, reason: classified.reason });
    return { outcome: 'terminal' };
  }

  async #setStatus(source: EnvelopeSecretObject, state: ReadyState, secretResourceVersion: string | undefined, signal: AbortSignal): Promise<void> {
    const previous = source.status?.conditions?.find((c) => c.type === 'Ready');
    const condition = readyCondition(state, previous, source.metadata.generation, this.#now());
    const status: EnvelopeSecretStatus = {
      observedGeneration: source.metadata.generation,
      conditions: [condition],
      ...(secretResourceVersion ? { secretResourceVersion } : {}),
    };
    const old = source.status;
    const unchanged =
      old?.observedGeneration === status.observedGeneration &&
      old?.secretResourceVersion === (secretResourceVersion ?? old?.secretResourceVersion) &&
      previous?.status === condition.status &&
      previous?.reason === condition.reason &&
      previous?.message === condition.message;
    if (!unchanged) {
      const updated = await this.#o.client.request<EnvelopeSecretObject>({
        method: 'PATCH',
        path: `${paths.envelopeSecret(source.metadata.namespace ?? '', source.metadata.name)}/status`,
        body: { status },
        patchType: 'merge',
        signal,
      });
      this.#o.envelopeSecrets.remember(updated);
    }
    if (previous?.status !== condition.status || previous?.reason !== condition.reason) {
      this.#o.events.record(involved(source), { type: state.ready ? 'Normal' : 'Warning', reason: state.reason, message: state.message });
    }
  }
}

function involved(source: EnvelopeSecretObject) {
  return { apiVersion: API_VERSION, kind: KIND, namespace: source.metadata.namespace ?? '', name: source.metadata.name, uid: source.metadata.uid ?? '' };
}

// Failures that only a new spec can cure: the object is not retried, even after a
// restart, until its generation changes. Failures that depend on the outside world
// (KMS permissions, keys, configured providers) are retried at every resync.
const PERMANENT_REASONS: ReadonlySet<string> = new Set([Reason.ContextMismatch, Reason.CommitmentMismatch, Reason.DecryptFailed, Reason.InvalidSpec, Reason.SecretRejected]);

function failedForGood(source: EnvelopeSecretObject): boolean {
  const ready = source.status?.conditions?.find((c) => c.type === 'Ready');
  return ready?.status === 'False' && PERMANENT_REASONS.has(ready.reason) && source.status?.observedGeneration === source.metadata.generation;
}

