import type { Logger } from 'pino';
import type { EnvelopeSecretStatus } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { bindingOf, type ValidationIssue, validateEnvelopeSecret } from '../api/validation.ts';
import type { Binding } from '../envelope/context.ts';
import { openEnvelopeSecret } from '../sealing/open.ts';
import { capMessage } from '../util/message.ts';
import { NamespaceBudget } from './budget.ts';
import { classifyError } from './classify.ts';
import { Reason, type ReasonName, type ReadyState, readyConditionOf, statusConditions } from './conditions.ts';
import { ReportedError, TerminalError } from './controller.ts';
import { DataKeyCache } from './dek-cache.ts';
import { FIELD_MANAGER, desiredSecret, needsReplace, ownershipOf, type SecretManifest, specHash } from './desired.ts';
import { CreateFirst, SecretExistsError } from './create-first.ts';
import { DriftTracker } from './drift.ts';
import { FailureMemo } from './failure-memo.ts';
import type { ReconcileRequest, ReconcileResult, ReconcilerOptions } from './reconciler-api.ts';

export type { EventSink, ReconcileRequest, ReconcileResult, ReconcilerOptions, UnwrapDataKey } from './reconciler-api.ts';
import type { EnvelopeSecretObject, EnvelopeSecretRecord, SecretObject } from './records.ts';
import { type RestartState, WorkloadRestarts } from './restarts.ts';
import { failedForGood, OUTSIDE_WORLD, observedCurrent, secretInSync, syncedThisSpec } from './record-state.ts';

export type { EnvelopeSecretObject, SecretObject } from './records.ts';

export class Reconciler {
  readonly #o: ReconcilerOptions;
  readonly #now: () => number;
  readonly #budget: NamespaceBudget;
  readonly #drift: DriftTracker;
  readonly #failures = new FailureMemo();
  readonly #restarts: WorkloadRestarts;
  readonly #createFirst: CreateFirst;

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    const clock = options.clock ?? { now: () => Date.now() };
    this.#now = () => clock.now();
    this.#budget = options.budget ?? new NamespaceBudget({ perSecond: 0, now: this.#now });
    this.#drift = options.drift ?? new DriftTracker({ now: this.#now });
    this.#restarts =
      options.restarts ?? new WorkloadRestarts({ api: options.api, events: options.events, logger: options.logger, clock: { now: this.#now }, windowMs: 0 });
    this.#createFirst = new CreateFirst(options.secretsListed ?? (() => false));
  }

  async reconcile(request: ReconcileRequest, signal: AbortSignal): Promise<ReconcileResult> {
    const key = `${request.namespace}/${request.name}`;
    const record = this.#o.envelopeSecrets.get(key);
    if (!record || record.metadata.deletionTimestamp) return this.#gone(key);
    const log = this.#o.logger.child({ envelopeSecret: key });

    const live = await this.#liveSecret(request, signal);
    const ownership = live ? ownershipOf(live, record) : 'owned';
    if (live && ownership === 'foreign') {
      await this.#setStatus(
        record,
        {
          ready: false,
          reason: Reason.SecretNotOwned,
          message: `Secret ${request.name} exists and is not managed by this EnvelopeSecret; envseal will not overwrite it. Delete it, or annotate it envseal.dev/adopt=true to hand it over.`,
        },
        undefined,
        signal,
      );
      return { outcome: 'terminal', requeueAfterMs: this.#o.foreignRecheckMs ?? 60_000 };
    }
    const secretCurrent = live !== undefined && ownership === 'owned' && secretInSync(record, live);
    const ready = readyConditionOf(record.status);
    if (secretCurrent && ready?.status === 'True' && observedCurrent(record)) {
      if (ready.reason !== Reason.RestartPending) return { outcome: 'unchanged' };
      // A restart is pending: from memory, without reading the object (a new leader reads it below).
      const settled = await this.#restarts.settle(key, signal);
      if (settled) return this.#report(record, settled, live.metadata?.resourceVersion, signal);
    }
    if (failedForGood(record) || this.#failures.holds(key, record, this.#now())) return { outcome: 'terminal' };

    // Someone else changed or deleted the Secret since envseal wrote it for this spec.
    if (!secretCurrent && ownership === 'owned' && syncedThisSpec(record, live)) {
      const decision = this.#drift.drifted(key);
      if (!decision.repair) {
        if (decision.started) await this.#reportConflict(record, decision.repairs, decision.retryAfterMs, signal);
        return { outcome: 'deferred', requeueAfterMs: decision.retryAfterMs };
      }
    }

    // The namespace's budget of key-provider calls is asked before any other work, so an
    // object that must wait costs nothing (not even a read) until its slot comes.
    const restartOnly = secretCurrent && (ready?.reason === Reason.RestartRefused || ready?.reason === Reason.RestartPending) && observedCurrent(record);
    if (!restartOnly) {
      const waitMs = this.#budget.admit(request.namespace, key);
      if (waitMs > 0) {
        this.#o.metrics.budgetExhausted.inc({ namespace: request.namespace });
        log.debug({ retryInMs: waitMs }, 'namespace out of key-provider budget; waiting for its slot');
        return { outcome: 'deferred', requeueAfterMs: waitMs };
      }
    }

    // At least as new as the cached record, from the API server's watch cache (not etcd).
    const source = await this.#o.api.getEnvelopeSecret(request.namespace, request.name, signal, record.metadata.resourceVersion);
    if (!source || source.metadata.deletionTimestamp) return this.#gone(key);
    if (source.metadata.generation !== record.metadata.generation) this.#drift.forget(key);

    const issues = validateEnvelopeSecret(source);
    if (issues.length > 0) return this.#refuse(key, source, Reason.InvalidSpec, issues, signal);
    const violations = this.#o.policy?.(source) ?? [];
    if (violations.length > 0) return this.#refuse(key, source, Reason.PolicyViolation, violations, signal);

    if (restartOnly) {
      // Only the restart is left to do: no key-provider call.
      return this.#restartAndReport(source, live!, signal);
    }

    const binding = bindingOf(source);
    let data: Record<string, Buffer>;
    try {
      data = await this.#open(source, binding, signal);
    } catch (error) {
      signal.throwIfAborted();
      return this.#fail(key, source, error, log, signal);
    }
    try {
      // The hash of the spec that was opened: the cached record may be older than the read.
      const desired = desiredSecret({ source, data, specHash: specHash(source) });
      const written = await this.#write(live, desired, signal);
      return await this.#restartAndReport(source, written, signal, Object.keys(desired.data).length);
    } catch (error) {
      signal.throwIfAborted();
      // Once per key: the Secret is read from now on, and its data key is cached.
      if (error instanceof SecretExistsError) return this.reconcile(request, signal);
      return this.#fail(key, source, error, log, signal);
    } finally {
      for (const value of Object.values(data)) value.fill(0);
    }
  }

  #gone(key: string): ReconcileResult {
    this.#drift.forget(key);
    this.#budget.forget(key);
    this.#failures.forget(key);
    this.#restarts.forget(key);
    this.#createFirst.forget(key);
    return { outcome: 'gone' };
  }

  async #refuse(key: string, source: EnvelopeSecretObject, reasonName: ReasonName, issues: readonly ValidationIssue[], signal: AbortSignal): Promise<never> {
    const first = issues[0]!;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    const message = `${first.path}: ${first.message}${more}`;
    this.#failures.remember(key, source, reasonName, Number.POSITIVE_INFINITY);
    await this.#setStatus(source, { ready: false, reason: reasonName, message }, undefined, signal);
    throw new TerminalError(`${reasonName}: ${message}`, { reason: reasonName });
  }

  /** Restarts (or schedules restarts of) the consenting workloads, then reports for the written Secret. */
  async #restartAndReport(source: EnvelopeSecretObject, written: SecretObject, signal: AbortSignal, keys?: number): Promise<ReconcileResult> {
    // Before the status: if a restart fails, the object stays out of sync and is retried.
    const state = await this.#restarts.request(source, signal);
    return this.#report(source, state, written.metadata?.resourceVersion, signal, keys);
  }

  /** Synced, RestartPending (Ready, looked at again when due) or RestartRefused. */
  async #report(
    source: EnvelopeSecretObject | EnvelopeSecretRecord,
    state: RestartState,
    secretResourceVersion: string | undefined,
    signal: AbortSignal,
    keys?: number,
  ): Promise<ReconcileResult> {
    const name = source.metadata.name;
    const requeue = state.dueAt === undefined ? {} : { requeueAfterMs: Math.max(1, state.dueAt - this.#now()) };
    const workloads = (list: readonly { kind: string; name: string }[]) => list.map((w) => `${w.kind} ${w.name}`).join(', ');
    if (state.refused.length > 0) {
      const message = `Secret ${name} is up to date, but envseal restarts only workloads whose pod template uses the Secret (a volume, env or envFrom naming it): ${workloads(state.refused)} does not; remove it from restartWorkloads or make it use the Secret`;
      await this.#setStatus(source, { ready: false, reason: Reason.RestartRefused, message }, secretResourceVersion, signal);
      return { outcome: 'terminal', ...requeue };
    }
    if (state.dueAt !== undefined) {
      const at = new Date(state.dueAt).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const message = `Secret ${name} is up to date; restart of ${workloads(state.pending)} due at ${at} (restarts are batched over ${this.#restarts.windowMs / 1000} s)`;
      await this.#setStatus(source, { ready: true, reason: Reason.RestartPending, message }, secretResourceVersion, signal);
      return { outcome: keys === undefined ? 'deferred' : 'synced', ...requeue };
    }
    const message = `Secret ${name} is up to date${keys === undefined ? '' : ` (${keys} keys)`}`;
    await this.#setStatus(source, { ready: true, reason: Reason.Synced, message }, secretResourceVersion, signal);
    this.#o.logger.info({ envelopeSecret: `${source.metadata.namespace}/${name}`, secretResourceVersion }, 'secret synced');
    return { outcome: 'synced' };
  }

  /** The live Secret: from the cache (no values), else absent once the cache is complete (create first), else read. */
  async #liveSecret(request: ReconcileRequest, signal: AbortSignal): Promise<SecretObject | undefined> {
    const key = `${request.namespace}/${request.name}`;
    const cached = this.#o.secrets.get(key);
    if (cached || this.#createFirst.assumeAbsent(key)) return cached;
    return this.#o.api.getSecret(request.namespace, request.name, signal);
  }

  /** Opens every value; the call admitted by the budget covers the first unwrap, the others are charged. */
  async #open(source: EnvelopeSecretObject, binding: Binding, signal: AbortSignal): Promise<Record<string, Buffer>> {
    const namespace = source.metadata.namespace ?? '';
    let attempts = 0;
    const beforeAttempt = () => {
      if (attempts++ > 0) this.#budget.charge(namespace);
      this.#o.metrics.unwrapAttempts.inc({ namespace });
    };
    try {
      return await openEnvelopeSecret({
        secret: source,
        binding,
        reportKeys: true,
        signal,
        // Unwrapped data keys are cached by binding and wrapped keys: zero KMS calls when
        // only the Secret needs repairing.
        dataKeyFor: async (envelope, index) => {
          const cacheKey = DataKeyCache.keyOf(binding, envelope);
          const cached = this.#o.dataKeys.get(cacheKey);
          this.#o.metrics.dekCache.inc({ result: cached ? 'hit' : 'miss' });
          if (cached) return cached;
          const { dataKey } = await this.#o.unwrap({ envelope, index, binding, signal, beforeAttempt });
          this.#o.dataKeys.set(cacheKey, dataKey);
          return dataKey;
        },
      });
    } finally {
      if (attempts === 0) this.#budget.refund(namespace);
    }
  }

  async #write(live: SecretObject | undefined, desired: SecretManifest, signal: AbortSignal): Promise<SecretObject> {
    const { namespace, name } = desired.metadata;
    const { api } = this.#o;
    if (!live && this.#createFirst.assumeAbsent(`${namespace}/${name}`)) return this.#createFirst.create(api, `${namespace}/${name}`, desired, signal);
    if (live && ((live.type ?? 'Opaque') !== desired.type || live.immutable === true)) {
      // The cache keeps no values: an immutable Secret's data is read to decide.
      const full = live.immutable === true ? await api.getSecret(namespace, name, signal) : live;
      // Immutable Secrets and type changes cannot be updated in place.
      if (full && needsReplace(full, desired)) await api.deleteSecret(namespace, name, full.metadata?.uid, signal);
    }
    const written = await api.applySecret(desired, signal);
    const extra = Object.keys(written.data ?? {}).filter((key) => !Object.hasOwn(desired.data, key));
    if (extra.length === 0) return written;
    // Keys someone else added are owned by their field manager, so apply keeps them; the
    // Secret must hold exactly the sealed keys.
    return api.removeSecretKeys(namespace, name, { resourceVersion: written.metadata?.resourceVersion, keys: extra }, signal);
  }

  /** Says who keeps changing the Secret (its field managers other than envseal's), once per backoff. */
  async #reportConflict(record: EnvelopeSecretRecord, repairs: number, retryAfterMs: number, signal: AbortSignal): Promise<void> {
    const namespace = record.metadata.namespace ?? '';
    const name = record.metadata.name;
    const secret = await this.#o.api.getSecret(namespace, name, signal);
    const fields = (secret?.metadata?.managedFields ?? []) as { manager?: unknown }[];
    const managers = [...new Set(fields.map((f) => f.manager).filter((m): m is string => typeof m === 'string' && m !== FIELD_MANAGER))];
    const who =
      managers.length > 0
        ? `field manager ${managers.map((m) => JSON.stringify(m)).join(', ')}`
        : secret
          ? 'another writer'
          : 'another writer (it was deleted)';
    this.#o.logger.warn(
      { envelopeSecret: `${namespace}/${name}`, managers, repairs, retryInMs: retryAfterMs },
      'another writer keeps changing the Secret; backing off',
    );
    await this.#setStatus(
      record,
      {
        ready: false,
        reason: Reason.Conflict,
        message: `Secret ${name} keeps being changed by ${who} (${repairs} repairs within a minute); envseal stops repairing it for ${Math.round(retryAfterMs / 1000)} s. Stop the other writer, or remove the Secret from its reach.`,
      },
      undefined,
      signal,
    );
  }

  async #fail(key: string, source: EnvelopeSecretObject, error: unknown, log: Logger, signal: AbortSignal): Promise<never> {
    const classified = classifyError(error);
    const message = capMessage(classified.message);
    log.warn({ reason: classified.reason, terminal: classified.terminal === true, error: message }, 'reconcile failed');
    if (classified.terminal) {
      // Remembered even when the status cannot be written: the object is not opened again
      // until its spec changes (or, for the KMS's answers, until the next resync).
      const until = OUTSIDE_WORLD.has(classified.reason) ? this.#now() + 0.9 * (this.#o.resyncMs ?? 10 * 60_000) : Number.POSITIVE_INFINITY;
      this.#failures.remember(key, source, classified.reason, until);
    }
    try {
      await this.#setStatus(source, { ready: false, reason: classified.reason, message }, undefined, signal);
    } catch (statusError) {
      log.warn({ error: capMessage(statusError instanceof Error ? statusError.message : 'unknown') }, 'could not write status');
    }
    const options = { cause: error, reason: classified.reason };
    throw classified.terminal ? new TerminalError(`${classified.reason}: ${message}`, options) : new ReportedError(`${classified.reason}: ${message}`, options);
  }

  async #setStatus(
    source: EnvelopeSecretRecord | EnvelopeSecretObject,
    state: ReadyState,
    secretResourceVersion: string | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const old = source.status;
    const previous = readyConditionOf(old);
    const conditions = statusConditions(state, old?.conditions, source.metadata.generation, new Date(this.#now()));
    const condition = conditions[0]!;
    const status: EnvelopeSecretStatus = {
      observedGeneration: source.metadata.generation,
      conditions,
      ...(secretResourceVersion ? { secretResourceVersion } : {}),
    };
    const unchanged =
      old?.observedGeneration === status.observedGeneration &&
      old?.secretResourceVersion === (secretResourceVersion ?? old?.secretResourceVersion) &&
      old?.conditions?.length === conditions.length &&
      conditions.every((c) => old.conditions?.some((o) => o.type === c.type && o.status === c.status && o.reason === c.reason && o.message === c.message));
    if (!unchanged) {
      await this.#o.api.patchStatus(source.metadata.namespace ?? '', source.metadata.name, status, signal);
    }
    // A pending restart is told by the status alone; its end is told (Synced, RolloutRestarted).
    const quiet = state.reason === Reason.RestartPending;
    if (!quiet && (previous?.status !== condition.status || previous?.reason !== condition.reason)) {
      this.#o.events.record(involved(source), { type: state.ready ? 'Normal' : 'Warning', reason: state.reason, message: condition.message });
    }
  }
}

function involved(source: EnvelopeSecretRecord | EnvelopeSecretObject) {
  return { apiVersion: API_VERSION, kind: KIND, namespace: source.metadata.namespace ?? '', name: source.metadata.name, uid: source.metadata.uid ?? '' };
}
