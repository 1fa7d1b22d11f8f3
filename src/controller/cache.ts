import type { Logger } from 'pino';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { objectKey, Reflector, type StoreEvent } from './reflector.ts';

/**
 * The local copy of one resource: a single cluster-wide reflector, or one per watched
 * namespace (namespaced mode needs no cluster-wide access).
 */
export class ObjectCache<T extends KubeObject> {
  readonly #reflectors = new Map<string, Reflector<T>>();

  constructor(options: {
    client: KubeClient;
    /** Collection path for a namespace, or for all namespaces when undefined. */
    path: (namespace?: string) => string;
    namespaces: readonly string[];
    labelSelector?: string;
    onEvent: (event: StoreEvent, object: T) => void;
    onRestart?: (reason: string) => void;
    /** What the store keeps of each object (see ReflectorOptions.keep). */
    keep?: (object: T) => T;
    logger: Logger;
  }) {
    const scopes = options.namespaces.length > 0 ? options.namespaces : [''];
    for (const namespace of scopes) {
      this.#reflectors.set(
        namespace,
        new Reflector<T>({
          client: options.client,
          path: options.path(namespace || undefined),
          ...(options.labelSelector ? { labelSelector: options.labelSelector } : {}),
          onEvent: options.onEvent,
          ...(options.onRestart ? { onRestart: options.onRestart } : {}),
          ...(options.keep ? { keep: options.keep } : {}),
          logger: options.logger,
        }),
      );
    }
  }

  #reflectorFor(namespace: string): Reflector<T> | undefined {
    return this.#reflectors.get('') ?? this.#reflectors.get(namespace);
  }

  get(key: string): T | undefined {
    const namespace = key.slice(0, key.indexOf('/'));
    return this.#reflectorFor(namespace)?.store.get(key);
  }

  remember(object: T): void {
    this.#reflectorFor(object.metadata?.namespace ?? '')?.remember(object);
  }

  *values(): IterableIterator<T> {
    for (const reflector of this.#reflectors.values()) yield* reflector.store.values();
  }

  get hasSynced(): boolean {
    return [...this.#reflectors.values()].every((r) => r.hasSynced);
  }

  async waitForSync(): Promise<void> {
    await Promise.all([...this.#reflectors.values()].map((r) => r.waitForSync()));
  }

  run(signal: AbortSignal): Promise<void[]> {
    return Promise.all([...this.#reflectors.values()].map((r) => r.run(signal)));
  }
}

export { objectKey };
