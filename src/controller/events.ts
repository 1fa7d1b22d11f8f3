import type { Logger } from 'pino';
import type { KubeClient } from '../kube/client.ts';
import { paths } from '../kube/client.ts';

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

/** Writes core/v1 Events (what `kubectl describe` shows). Failures are logged, never thrown. */
export class EventRecorder {
  readonly #client: KubeClient;
  readonly #logger: Logger;
  readonly #instance: string;

  constructor(options: { client: KubeClient; logger: Logger; instance: string }) {
    this.#client = options.client;
    this.#logger = options.logger;
    this.#instance = options.instance;
  }

  async record(object: InvolvedObject, event: EventInput, signal?: AbortSignal): Promise<void> {
    const now = new Date().toISOString();
    try {
      await this.#client.request({
        method: 'POST',
        path: paths.events(object.namespace),
        body: {
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
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
        signal,
      });
    } catch (error) {
      this.#logger.warn({ reason: event.reason, error: error instanceof Error ? error.message : 'unknown' }, 'could not record event');
    }
  }
}
