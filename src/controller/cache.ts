import type { Logger } from 'pino';
import type { KubeClient, KubeObject } from '../kube/client.ts';
import { objectKey, Reflector, type StoreEvent } from './reflector.ts';

/**
 * The local copy of one resource: a single cluster-wide reflector, or one per watched
 * namespace (namespaced mode needs no cluster-wide access).
 */
export class ObjectCache<T extends KubeObject, S extends KubeObject = T> {
  readonly #reflectors = new Map<string, Reflector<T, S>>();

  constructor(options: {
    client: KubeClient;
    /** Collection path for a namespace, or for all namespaces when undefined. */
    path: (namespace?: string) => string;
    namespaces: readonly string[];
    labelSelector?: string;
    /** `initial`: the object came with the first complete read of the collection (cold start). */
    onEvent: (event: StoreEvent, object: S, initial: boolean) => void;
    onRestart?: (reason: string) => void;
    /** What the store keeps of each object (see ReflectorOptions.keep). */
    keep?: (object: T) => S;
    logger: Logger;
  }) {
    const scopes = options.namespaces.length > 0 ? options.namespaces : [''];
    for (const namespace of scopes) {
      this.#reflectors.set(
        namespace,
        new Reflector<T, S>({
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

  #reflectorFor(namespace: string): Reflector<T, S> | undefined {
    return this.#reflectors.get('') ?? this.#reflectors.get(namespace);
  }

  get(key: string): S | undefined {
    const namespace = key.slice(0, key.indexOf('/'));
    return this.#reflectorFor(namespace)?.store.get(key);
  }

  /** A mark to take before writing an object of `namespace` (see Reflector.remember). */
  changeMark(namespace: string): number {
    return this.#reflectorFor(namespace)?.changeMark() ?? 0;
  }

  /** Keeps an object the controller just wrote, unless list or watch told something newer since `since`. */
  remember(object: T, since: number): boolean {
    return this.#reflectorFor(object.metadata?.namespace ?? '')?.remember(object, since) ?? false;
  }

  *values(): IterableIterator<S> {
    for (const reflector of this.#reflectors.values()) yield* reflector.store.values();
  }

  get hasSynced(): boolean {
    return [...this.#reflectors.values()].every((r) => r.hasSynced);
  }

  async waitForSync(): Promise<void> {
    await Promise.all([...this.#reflectors.values()].map((r) => r.waitForSync()));
  }

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([...this.#reflectors.values()].map((r) => r.run(signal)));
  }
}

export { objectKey };
