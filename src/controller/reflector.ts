import type { Logger } from 'pino';
import { KubeApiError, type KubeClient, type KubeList, type KubeObject } from '../kube/client.ts';

export type StoreEvent = 'added' | 'updated' | 'deleted';

export interface ReflectorOptions<T extends KubeObject> {
  client: KubeClient;
  /** Collection path, e.g. /apis/envseal.dev/v1alpha1/envelopesecrets */
  path: string;
  labelSelector?: string;
  onEvent: (event: StoreEvent, object: T) => void;
  logger: Logger;
  /** Stream idle limit; the server also ends each watch after timeoutSeconds. */
  idleTimeoutMs?: number;
  pageSize?: number;
  /** Called after each list or watch failure with the error and the retry delay (metrics). */
  onRestart?: (reason: string) => void;
  /** What the store keeps of each object (after managedFields are dropped); the whole object by default. */
  keep?: (object: T) => T;
}

export const objectKey = (object: KubeObject): string => `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

/**
 * What the store keeps of an object: all of it but metadata.managedFields, which nothing
 * here reads and which is a large part of a small object (server-side apply records a
 * field set per manager, one entry per data key of a Secret): the cache holds every
 * EnvelopeSecret and every managed Secret for the life of the process.
 */
function forStore<T extends KubeObject>(object: T): T {
  if (object.metadata?.managedFields !== undefined) delete object.metadata.managedFields;
  return object;
}

/**
 * Keeps a local copy of a collection with list + watch: resumes watches from the last
 * resourceVersion (bookmarks included), relists on 410 Gone, and restarts with capped
 * exponential backoff on any other error. Never gives up until its signal aborts.
 */
export class Reflector<T extends KubeObject> {
  readonly store = new Map<string, T>();
  readonly #options: ReflectorOptions<T>;
  #resourceVersion: string | undefined;
  #synced!: Promise<void>;
  #markSynced!: () => void;
  #hasSynced = false;

  constructor(options: ReflectorOptions<T>) {
    this.#options = options;
    this.#synced = new Promise((resolve) => (this.#markSynced = resolve));
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** Resolves after the first complete list. */
  waitForSync(): Promise<void> {
    return this.#synced;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { logger } = this.#options;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (this.#resourceVersion === undefined) await this.#list(signal);
        await this.#options.client.watch<T>({
          path: this.#options.path,
          query: {
            resourceVersion: this.#resourceVersion,
            allowWatchBookmarks: true,
            labelSelector: this.#options.labelSelector,
            timeoutSeconds: 240 + Math.floor(Math.random() * 120),
          },
          idleTimeoutMs: this.#options.idleTimeoutMs ?? 420_000,
          signal,
          onEvent: (event) => {
            failures = 0;
            this.#apply(event.type, event.object);
          },
        });
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof KubeApiError && error.gone) {
          logger.info({ path: this.#options.path }, 'resourceVersion expired (410 Gone); relisting');
          this.#resourceVersion = undefined;
          this.#options.onRestart?.('gone');
          continue;
        }
        failures++;
        const delay = Math.min(250 * 2 ** Math.min(failures - 1, 7), 30_000) * (0.8 + Math.random() * 0.4);
        logger.warn({ path: this.#options.path, error: describeError(error), retryInMs: Math.round(delay) }, 'list/watch failed; retrying');
        this.#options.onRestart?.('error');
        await sleep(delay, signal);
      }
    }
  }

  async #list(signal: AbortSignal): Promise<void> {
    const seen = new Map<string, T>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.#options.client.request<KubeList<T>>({
        method: 'GET',
        path: this.#options.path,
        query: { limit: this.#options.pageSize ?? 500, continue: continueToken, labelSelector: this.#options.labelSelector },
        signal,
      });
      for (const item of page.items) seen.set(objectKey(item), this.#forStore(item));
      continueToken = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);

    for (const [key, old] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.#options.onEvent('deleted', old);
      }
    }
    for (const [key, item] of seen) {
      const old = this.store.get(key);
      this.store.set(key, item);
      if (old?.metadata?.resourceVersion !== item.metadata?.resourceVersion) this.#options.onEvent(old ? 'updated' : 'added', item);
    }
    this.#resourceVersion = resourceVersion;
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#markSynced();
    }
  }

  #apply(type: string, object: T): void {
    const rv = object.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (type === 'BOOKMARK') return;
    const key = objectKey(object);
    if (type === 'DELETED') {
      this.store.delete(key);
      this.#options.onEvent('deleted', object);
    } else {
      const existed = this.store.has(key);
      this.store.set(key, this.#forStore(object));
      this.#options.onEvent(existed ? 'updated' : 'added', object);
    }
  }

  /** Replaces the cached copy with a newer one the controller itself just wrote. */
  remember(object: T): void {
    const key = objectKey(object);
    const cached = this.store.get(key);
    if (cached && Number(cached.metadata?.resourceVersion) > Number(object.metadata?.resourceVersion)) return;
    this.store.set(key, this.#forStore(object));
  }

  #forStore(object: T): T {
    const kept = forStore(object);
    return this.#options.keep ? this.#options.keep(kept) : kept;
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
