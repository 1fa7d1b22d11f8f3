import type { Logger } from 'pino';
import type { KubeObjectApi } from '../kube/object-api.ts';
import { type Clock, systemClock } from './clock.ts';

export interface InvolvedObject {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
}

export interface EventInput {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Events waiting to be sent beyond this many are dropped (and counted), as client-go's broadcaster does. */
export const DEFAULT_EVENT_BACKLOG = 1000;

/**
 * Writes core/v1 Events (what `kubectl describe` shows) in the background: `record`
 * queues the Event and returns at once, so a reconcile does not wait for a fourth API
 * round trip (docs/benchmarks.md), and one sender posts them in order. Events are
 * advisory: a failed post is logged, never thrown; when the API server cannot keep up,
 * Events beyond the backlog are dropped. `flush` waits for the queue at shutdown.
 */
export class EventRecorder {
  readonly #client: Pick<KubeObjectApi, 'create'>;
  readonly #logger: Logger;
  readonly #instance: string;
  readonly #backlog: number;
  readonly #clock: Pick<Clock, 'now'>;
  readonly #pending: { object: InvolvedObject; event: EventInput; at: string }[] = [];
  #sending: Promise<void> | undefined;
  #dropped = 0;

  constructor(options: { client: Pick<KubeObjectApi, 'create'>; logger: Logger; instance: string; backlog?: number; clock?: Pick<Clock, 'now'> }) {
    this.#client = options.client;
    this.#logger = options.logger;
    this.#instance = options.instance;
    this.#backlog = options.backlog ?? DEFAULT_EVENT_BACKLOG;
    this.#clock = options.clock ?? systemClock;
  }

  /** Events dropped so far because the backlog was full. */
  get dropped(): number {
    return this.#dropped;
  }

  record(object: InvolvedObject, event: EventInput): void {
    if (this.#pending.length >= this.#backlog) {
      this.#dropped++;
      if (this.#dropped === 1 || this.#dropped % 100 === 0)
        this.#logger.warn({ reason: event.reason, dropped: this.#dropped }, 'event backlog full; dropping events');
      return;
    }
    this.#pending.push({ object, event, at: new Date(this.#clock.now()).toISOString() });
    this.#sending ??= this.#drain();
  }

  /** Resolves once every queued Event was sent (or failed), or when `signal` aborts. */
  async flush(signal?: AbortSignal): Promise<void> {
    const aborted = new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
    while (this.#sending && !signal?.aborted) await Promise.race([this.#sending, aborted]);
  }

  async #drain(): Promise<void> {
    try {
      for (let next = this.#pending.shift(); next; next = this.#pending.shift()) await this.#send(next.object, next.event, next.at);
    } finally {
      // Cleared in the same step that found the queue empty: a .finally() callback would
      // run a microtask later, and an Event recorded in between would wait for the next one.
      this.#sending = undefined;
    }
  }

  async #send(object: InvolvedObject, event: EventInput, at: string): Promise<void> {
    try {
      await this.#client.create(
        {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${object.name}.`, namespace: object.namespace },
          involvedObject: object,
          type: event.type,
          reason: event.reason,
          message: event.message.slice(0, 1024),
          source: { component: 'envseal' },
          reportingComponent: 'envseal.dev/controller',
          reportingInstance: this.#instance,
          firstTimestamp: at,
          lastTimestamp: at,
          count: 1,
        },
        { signal: AbortSignal.timeout(30_000) },
      );
    } catch (error) {
      this.#logger.warn({ reason: event.reason, error: error instanceof Error ? error.message : 'unknown' }, 'could not record event');
    }
  }
}
