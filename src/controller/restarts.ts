import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { API_VERSION, KIND, type WorkloadRef } from '../api/types.ts';
import type { Clock } from './clock.ts';
import { podTemplateUsesSecret } from './consent.ts';
import { ANNOTATION_DATA_HASH, sealedDataDigest } from './desired.ts';
import type { EventSink, ReconcilerApi } from './reconciler-api.ts';
import type { EnvelopeSecretObject } from './records.ts';

/**
 * Rollout restarts of spec.restartWorkloads, debounced per workload (docs/controller.md,
 * "Rollout restart"). With a window, the first changed Secret a workload uses opens a
 * batch due `windowMs` later; Secrets written before it fires join it, and one patch of
 * the pod template restarts the workload for all of them. A batch fires inside the
 * reconcile of one of its members once due (the work queue requeues each member for that
 * time), so restarts take the fair queue's turns and need no timer of their own.
 *
 * What is pending lives here, in memory; the EnvelopeSecret's status says RestartPending,
 * so that a new leader, which finds nothing here, schedules the restart again.
 */
export interface WorkloadRestartsOptions {
  api: Pick<ReconcilerApi, 'getWorkload' | 'annotatePodTemplate'>;
  events: EventSink;
  logger: Logger;
  clock: Pick<Clock, 'now'>;
  /** 0: each Secret written restarts its workloads at once. */
  windowMs: number;
  /** Pending (workload, EnvelopeSecret) pairs kept per namespace; beyond, restarts happen at once. */
  maxPendingPerNamespace?: number;
  /** The same, over all namespaces. */
  maxPending?: number;
}

/** What is left to do for one EnvelopeSecret's listed workloads. */
export interface RestartState {
  /** Listed workloads that do not use the Secret: not restarted (RestartRefused). */
  refused: WorkloadRef[];
  /** Workloads whose restart for this Secret is scheduled and not done yet. */
  pending: WorkloadRef[];
  /** When the last of the pending restarts is due (ms since the epoch). */
  dueAt?: number;
}

interface Member {
  secretName: string;
  digest: string;
  uid: string;
}

interface Batch {
  readonly key: string;
  readonly namespace: string;
  readonly workload: WorkloadRef;
  readonly dueAt: number;
  readonly members: Map<string, Member>;
  firing?: Promise<void>;
  /** Set once the pod template was patched (or there was nothing to patch): the members it refused. */
  fired?: { refused: ReadonlySet<string> };
}

type One = 'done' | 'refused' | { dueAt: number };

export const DEFAULT_MAX_PENDING_PER_NAMESPACE = 5_000;
export const DEFAULT_MAX_PENDING = 20_000;

export class WorkloadRestarts {
  readonly #o: WorkloadRestartsOptions;
  readonly #maxPerNamespace: number;
  readonly #max: number;
  /** The batch that new changes of a workload join, by workload key. */
  readonly #open = new Map<string, Batch>();
  /** Each EnvelopeSecret's batches (open, firing or fired and not yet reported), by workload key. */
  readonly #memberOf = new Map<string, Map<string, Batch>>();
  readonly #perNamespace = new Map<string, number>();
  #total = 0;

  constructor(options: WorkloadRestartsOptions) {
    this.#o = options;
    this.#maxPerNamespace = options.maxPendingPerNamespace ?? DEFAULT_MAX_PENDING_PER_NAMESPACE;
    this.#max = options.maxPending ?? DEFAULT_MAX_PENDING;
  }

  get windowMs(): number {
    return this.#o.windowMs;
  }

  /** Pending (workload, EnvelopeSecret) pairs held in memory. */
  get size(): number {
    return this.#total;
  }

  /**
   * After the Secret of `source` was written (or when only restarts were left to do):
   * restarts its consenting workloads at once (no window) or schedules them, and fires
   * the batches it belongs to that are due.
   */
  async request(source: EnvelopeSecretObject, signal: AbortSignal): Promise<RestartState> {
    const key = `${source.metadata.namespace}/${source.metadata.name}`;
    const listed = source.spec.restartWorkloads ?? [];
    const keys = new Set(listed.map((w) => workloadKey(source.metadata.namespace ?? '', w)));
    // A workload no longer listed is not restarted for this object any more.
    for (const [wkey, batch] of this.#memberOf.get(key) ?? []) if (!keys.has(wkey)) this.#leave(batch, key);
    const state: RestartState = { refused: [], pending: [] };
    for (const workload of listed) add(state, workload, await this.#one(source, key, workload, signal));
    return state;
  }

  /**
   * For an object whose status says RestartPending, from memory alone (no read of the
   * object): undefined when nothing is known of it here (a new leader: call request).
   */
  async settle(key: string, signal: AbortSignal): Promise<RestartState | undefined> {
    const mine = this.#memberOf.get(key);
    if (!mine || mine.size === 0) return undefined;
    const state: RestartState = { refused: [], pending: [] };
    for (const batch of [...mine.values()]) add(state, batch.workload, await this.#settleBatch(batch, key, signal));
    return state;
  }

  /** The object is gone: it leaves its batches; a batch left without members is dropped. */
  forget(key: string): void {
    for (const batch of [...(this.#memberOf.get(key)?.values() ?? [])]) this.#leave(batch, key);
  }

  async #one(source: EnvelopeSecretObject, key: string, workload: WorkloadRef, signal: AbortSignal): Promise<One> {
    const namespace = source.metadata.namespace ?? '';
    const wkey = workloadKey(namespace, workload);
    const digest = sealedDataDigest(source);
    const joined = this.#memberOf.get(key)?.get(wkey);
    if (joined) {
      const member = joined.members.get(key)!;
      // New data before the batch fires: the same batch covers it (the Secret is written first).
      if (!joined.fired && !joined.firing) member.digest = digest;
      if (member.digest === digest) return this.#settleBatch(joined, key, signal);
      this.#leave(joined, key);
    }
    if (this.#o.windowMs > 0) {
      const open = this.#open.get(wkey);
      if (open && this.#admit(namespace)) return this.#join(open, key, source, digest, signal);
    }
    const current = await this.#o.api.getWorkload(namespace, workload.kind, workload.name, signal);
    if (!current) {
      this.#o.events.record(involved(source.metadata), {
        type: 'Warning',
        reason: 'WorkloadNotFound',
        message: `${workload.kind} ${workload.name} listed in restartWorkloads does not exist`,
      });
      return 'done';
    }
    if (!podTemplateUsesSecret(current, source.metadata.name)) return 'refused';
    if (current.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH] === digest) return 'done';
    if (this.#o.windowMs > 0 && this.#admit(namespace)) {
      // Another worker may have opened the workload's batch while this one read it.
      const opened = this.#open.get(wkey);
      if (opened) return this.#join(opened, key, source, digest, signal);
      const batch: Batch = { key: wkey, namespace, workload, dueAt: this.#o.clock.now() + this.#o.windowMs, members: new Map() };
      this.#open.set(wkey, batch);
      return this.#join(batch, key, source, digest, signal);
    }
    // No window, or the memory for pending restarts is full: restart now, as without a window.
    await this.#o.api.annotatePodTemplate(namespace, workload.kind, workload.name, { [ANNOTATION_DATA_HASH]: digest }, signal);
    this.#o.events.record(involved(source.metadata), {
      type: 'Normal',
      reason: 'RolloutRestarted',
      message: `restarted ${workload.kind} ${workload.name}: the Secret's data changed`,
    });
    return 'done';
  }

  #join(batch: Batch, key: string, source: EnvelopeSecretObject, digest: string, signal: AbortSignal): Promise<One> {
    batch.members.set(key, { secretName: source.metadata.name, digest, uid: source.metadata.uid ?? '' });
    const mine = this.#memberOf.get(key) ?? new Map<string, Batch>();
    this.#memberOf.set(key, mine);
    mine.set(batch.key, batch);
    this.#perNamespace.set(batch.namespace, (this.#perNamespace.get(batch.namespace) ?? 0) + 1);
    this.#total++;
    return this.#settleBatch(batch, key, signal);
  }

  #admit(namespace: string): boolean {
    return this.#total < this.#max && (this.#perNamespace.get(namespace) ?? 0) < this.#maxPerNamespace;
  }

  #leave(batch: Batch, key: string): void {
    if (!batch.members.delete(key)) return;
    const mine = this.#memberOf.get(key);
    mine?.delete(batch.key);
    if (mine?.size === 0) this.#memberOf.delete(key);
    const count = (this.#perNamespace.get(batch.namespace) ?? 1) - 1;
    if (count > 0) this.#perNamespace.set(batch.namespace, count);
    else this.#perNamespace.delete(batch.namespace);
    this.#total--;
    // Nobody left who changed: nothing to restart for.
    if (batch.members.size === 0 && this.#open.get(batch.key) === batch) this.#open.delete(batch.key);
  }

  /** Fires the batch if due; a member whose outcome is known leaves it. */
  async #settleBatch(batch: Batch, key: string, signal: AbortSignal): Promise<One> {
    if (!batch.fired) {
      if (!batch.firing && batch.dueAt > this.#o.clock.now()) return { dueAt: batch.dueAt };
      batch.firing ??= this.#fire(batch, key, signal).finally(() => {
        batch.firing = undefined;
      });
      await batch.firing;
    }
    const refused = batch.fired?.refused.has(key) === true;
    this.#leave(batch, key);
    return refused ? 'refused' : 'done';
  }

  /** One read and at most one patch of the workload for every member of the batch. */
  async #fire(batch: Batch, firedBy: string, signal: AbortSignal): Promise<void> {
    const { namespace, workload } = batch;
    // Changes from now on start a new batch: this one may already have read the workload.
    if (this.#open.get(batch.key) === batch) this.#open.delete(batch.key);
    const members = [...batch.members];
    const by = batch.members.get(firedBy) ?? members[0]![1];
    const object = { namespace, name: by.secretName, uid: by.uid };
    try {
      const current = await this.#o.api.getWorkload(namespace, workload.kind, workload.name, signal);
      if (!current) {
        this.#o.events.record(involved(object), {
          type: 'Warning',
          reason: 'WorkloadNotFound',
          message: `${workload.kind} ${workload.name} listed in restartWorkloads does not exist`,
        });
        batch.fired = { refused: new Set() };
        return;
      }
      // Consent is asked again: the workload may have stopped using a Secret meanwhile.
      const consenting = members.filter(([, m]) => podTemplateUsesSecret(current, m.secretName));
      const refused = new Set(members.filter(([, m]) => !podTemplateUsesSecret(current, m.secretName)).map(([k]) => k));
      const value = consenting.length === 1 ? consenting[0]![1].digest : combinedDigest(consenting);
      if (consenting.length > 0 && current.spec?.template?.metadata?.annotations?.[ANNOTATION_DATA_HASH] !== value) {
        await this.#o.api.annotatePodTemplate(namespace, workload.kind, workload.name, { [ANNOTATION_DATA_HASH]: value }, signal);
        const names = consenting.map(([, m]) => m.secretName);
        this.#o.events.record(involved(object), {
          type: 'Normal',
          reason: 'RolloutRestarted',
          message:
            names.length === 1
              ? `restarted ${workload.kind} ${workload.name}: the Secret's data changed`
              : `restarted ${workload.kind} ${workload.name} once for ${names.length} changed Secrets (${listOf(names)})`,
        });
        this.#o.logger.info({ namespace, workload: `${workload.kind} ${workload.name}`, secrets: names.length }, 'workload restarted');
      }
      batch.fired = { refused };
    } catch (error) {
      // Retried by the members' next reconcile; changes meanwhile join this batch again.
      if (!this.#open.has(batch.key) && batch.members.size > 0) this.#open.set(batch.key, batch);
      throw error;
    }
  }
}

function workloadKey(namespace: string, workload: WorkloadRef): string {
  return `${namespace}/${workload.kind}/${workload.name}`;
}

function add(state: RestartState, workload: WorkloadRef, one: One): void {
  if (one === 'refused') state.refused.push(workload);
  else if (one !== 'done') {
    state.pending.push(workload);
    state.dueAt = Math.max(state.dueAt ?? 0, one.dueAt);
  }
}

/** A digest of the members' sealed-data digests: changes whenever one of them does, reveals nothing. */
function combinedDigest(members: readonly [string, Member][]): string {
  const lines = members.map(([key, m]) => `${key}=${m.digest}`).sort();
  return `sha256:${createHash('sha256').update(lines.join('\n')).digest('hex')}`;
}

/** At most ten names, then how many more. */
function listOf(names: readonly string[]): string {
  const shown = names.slice(0, 10).join(', ');
  return names.length > 10 ? `${shown} and ${names.length - 10} more` : shown;
}

function involved(object: { namespace?: string; name: string; uid?: string }) {
  return { apiVersion: API_VERSION, kind: KIND, namespace: object.namespace ?? '', name: object.name, uid: object.uid ?? '' };
}
