import type { Logger } from 'pino';
import { KubeApiError } from '../kube/client.ts';
import type { KubeObjectApi } from '../kube/object-api.ts';
import { type Clock, type Random, sleep, systemClock } from './clock.ts';

export interface LeaderElectionOptions {
  /** The Lease calls: read, create and replace (with its resourceVersion as the precondition). */
  client: Pick<KubeObjectApi, 'read' | 'create' | 'replace'>;
  namespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  logger: Logger;
  onChange?: (leading: boolean) => void;
  /** Lease times, expiry and the retry period (and its jitter). */
  clock?: Clock;
  random?: Random;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

const LEASE_TYPE = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' } as const;

function leaseRef(namespace: string, name: string) {
  return { ...LEASE_TYPE, namespace, name };
}

/** coordination.k8s.io wants MicroTime: RFC 3339 with six fraction digits. */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * Leader election on a Lease, as client-go does it: a candidate takes the lease when its
 * holder has not renewed it for a lease duration, judged by the local time at which this
 * candidate last saw the record change (so clocks need not agree). The leader renews
 * every retry period and steps down if it cannot renew within the renew deadline.
 */
export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #clock: Clock;
  readonly #random: Random;
  #observed: { record: string; at: number } | undefined;
  #leading = false;

  constructor(options: LeaderElectionOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /**
   * Waits until this candidate leads, then calls `lead` with a signal that aborts when
   * leadership is lost or `signal` aborts. Resolves after `lead` settles and the lease is
   * released: true after a graceful stop, false when leadership was lost.
   */
  async run(signal: AbortSignal, lead: (leadSignal: AbortSignal) => Promise<void>): Promise<boolean> {
    const { logger, retryPeriodMs } = this.#o;
    while (!signal.aborted && !(await this.#tryAcquireOrRenew(signal))) await sleep(retryPeriodMs * (1 + this.#random() * 0.2), signal, this.#clock);
    // Stopped while standing by: a graceful stop, with no lease to release.
    if (signal.aborted) return true;
    this.#setLeading(true);
    logger.info({ lease: `${this.#o.namespace}/${this.#o.leaseName}`, identity: this.#o.identity }, 'became leader');

    const lost = new AbortController();
    let lostLeadership = false;
    const leadSignal = AbortSignal.any([signal, lost.signal]);
    const renewing = (async () => {
      let lastRenew = this.#clock.now();
      while (!leadSignal.aborted) {
        await sleep(retryPeriodMs, leadSignal, this.#clock);
        if (leadSignal.aborted) break;
        if (await this.#tryAcquireOrRenew(leadSignal)) {
          lastRenew = this.#clock.now();
        } else if (this.#clock.now() - lastRenew > this.#o.renewDeadlineMs) {
          logger.error({ lease: this.#o.leaseName }, 'lost leadership: could not renew the lease in time');
          lostLeadership = true;
          lost.abort(new Error('leadership lost'));
        }
      }
    })();
    try {
      await lead(leadSignal);
    } finally {
      lost.abort();
      await renewing;
      this.#setLeading(false);
      if (!lostLeadership) await this.#release();
    }
    return !lostLeadership;
  }

  #setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#o.onChange?.(leading);
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { client, namespace, leaseName, identity } = this.#o;
    const now = new Date(this.#clock.now());
    const durationSeconds = Math.ceil(this.#o.leaseDurationMs / 1000);
    try {
      let lease: Lease;
      try {
        lease = await client.read<Lease>(leaseRef(namespace, leaseName), { signal });
      } catch (error) {
        if (!(error instanceof KubeApiError && error.notFound)) throw error;
        await client.create(
          {
            ...LEASE_TYPE,
            metadata: { name: leaseName, namespace },
            spec: {
              holderIdentity: identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
          { signal },
        );
        return true;
      }
      const record = JSON.stringify([lease.spec.holderIdentity, lease.spec.renewTime]);
      if (this.#observed?.record !== record) this.#observed = { record, at: this.#clock.now() };
      const holder = lease.spec.holderIdentity ?? '';
      const held = holder !== '' && holder !== identity;
      const expired = this.#clock.now() > this.#observed.at + (lease.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (held && !expired) return false;
      const spec = {
        holderIdentity: identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(now),
        acquireTime: holder === identity && lease.spec.acquireTime ? lease.spec.acquireTime : microTime(now),
        leaseTransitions: (lease.spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1),
      };
      const updated = await client.replace<Lease>({ ...lease, ...LEASE_TYPE, spec }, { signal });
      this.#observed = { record: JSON.stringify([updated.spec.holderIdentity, updated.spec.renewTime]), at: this.#clock.now() };
      return true;
    } catch (error) {
      if (signal.aborted) return false;
      if (!(error instanceof KubeApiError && error.conflict)) {
        this.#o.logger.warn({ error: error instanceof Error ? error.message : 'unknown' }, 'lease request failed');
      }
      return false;
    }
  }

  /** Hands the lease over at once on graceful shutdown. */
  async #release(): Promise<void> {
    const { client, namespace, leaseName, identity } = this.#o;
    try {
      const lease = await client.read<Lease>(leaseRef(namespace, leaseName), { signal: AbortSignal.timeout(5000) });
      if (lease.spec.holderIdentity !== identity) return;
      await client.replace(
        { ...lease, ...LEASE_TYPE, spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(new Date(this.#clock.now())) } },
        { signal: AbortSignal.timeout(5000) },
      );
      this.#o.logger.info({ lease: leaseName }, 'released the lease');
    } catch (error) {
      this.#o.logger.warn({ error: error instanceof Error ? error.message : 'unknown' }, 'could not release the lease');
    }
  }
}
