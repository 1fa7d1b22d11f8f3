import type { Logger } from 'pino';
import { KubeApiError, type KubeClient, type KubeList, type KubeObject, throttledBy } from '../kube/client.ts';
import { throttledWaitMs } from '../kube/request-gate.ts';
import { describeError } from '../util/message.ts';
import { type Clock, type Random, sleep, systemClock } from './clock.ts';
import { initialEvent, refusedWatchList, WatchListUnsupportedError, watchListQuery } from './watch-list.ts';

export type StoreEvent = 'added' | 'updated' | 'deleted';

/**
 * How the reflector reads the whole collection: a streaming watch-list while the API
 * server supports it, else paginated lists. Decided per reflector, from the server's
 * answers, and remembered.
 */
export type ListMode = 'watch-list' | 'pages';

export interface ReflectorOptions<T extends KubeObject, S extends KubeObject = T> {
  client: Pick<KubeClient, 'request' | 'watch'>;
  /** Collection path, e.g. /apis/envseal.dev/v1alpha1/envelopesecrets */
  path: string;
  labelSelector?: string;
  /**
   * Told of every change to the store; `initial` is true for the objects of the first
   * complete read of the collection (the cold start), false for everything after it.
   */
  onEvent: (event: StoreEvent, object: S, initial: boolean) => void;
  logger: Logger;
  /** Stream idle limit; the server also ends each watch after timeoutSeconds. */
  idleTimeoutMs?: number;
  pageSize?: number;
  /** Start with paginated lists instead of a watch-list (default: watch-list first). */
  listMode?: ListMode;
  /**
   * Called at each restart of list/watch with its reason (metrics): `gone` (a watch's
   * resourceVersion expired), `continue-expired` (a list page's continue token expired),
   * `incomplete` (a watch-list ended before its initial events did), `unsupported` (the
   * server refused or ignored the watch-list: paginated lists from then on), `throttled`
   * (a 429: sent again after the Retry-After), `error`.
   */
  onRestart?: (reason: string) => void;
  /** What the store keeps of each object (after managedFields are dropped); the whole object by default. */
  keep?: (object: T) => S;
  /** For retry delays (and their jitter) and the spread of watch timeouts. */
  clock?: Clock;
  random?: Random;
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
 * Keeps a local copy of a collection with list + watch: reads the collection with a
 * watch-list (or pages), resumes watches from the last resourceVersion (bookmarks
 * included), reads the collection again on 410 Gone, and restarts with capped
 * exponential backoff on any other error. Never gives up until its signal aborts.
 */
export class Reflector<T extends KubeObject, S extends KubeObject = T> {
  readonly store = new Map<string, S>();
  readonly #options: ReflectorOptions<T, S>;
  /**
   * Counts changes that list and watch made to the store; #changedAt holds, per key, the
   * count at its last change (deleted keys included: tombstones), oldest first. With it,
   * `remember` can tell whether the API server told something newer about an object than
   * what a write returned, without comparing resourceVersions, which are opaque.
   */
  #changes = 0;
  readonly #changedAt = new Map<string, number>();
  /** Changes up to this count may have been forgotten (their tombstones were dropped). */
  #forgottenUpTo = 0;
  #resourceVersion: string | undefined;
  #synced!: Promise<void>;
  #markSynced!: () => void;
  #hasSynced = false;
  #mode: ListMode;
  /**
   * The next read of the collection must be one that cannot expire: after a watch-list
   * that ended early (paginated instead, once), or after a list whose resourceVersion was
   * already gone when its watch started (one unpaginated list: a fresh resourceVersion).
   */
  #next: 'pages' | 'full' | undefined;

  constructor(options: ReflectorOptions<T, S>) {
    this.#options = options;
    this.#mode = options.listMode ?? 'watch-list';
    this.#synced = new Promise((resolve) => (this.#markSynced = resolve));
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  /** How this reflector reads the collection now (watch-list until the server says no). */
  get listMode(): ListMode {
    return this.#mode;
  }

  /** Resolves after the first complete read of the collection (list or watch-list). */
  waitForSync(): Promise<void> {
    return this.#synced;
  }

  async run(signal: AbortSignal): Promise<void> {
    const { logger } = this.#options;
    const random = this.#options.random ?? Math.random;
    let failures = 0;
    while (!signal.aborted) {
      // Set once a list ends; cleared by the first event of the watch that follows it.
      let fromList = false;
      // Set while a watch-list request has not yet ended its initial events.
      let watchListing = false;
      try {
        const timeoutSeconds = 240 + Math.floor(random() * 120);
        if (this.#resourceVersion === undefined) {
          if (this.#mode === 'watch-list' && this.#next === undefined) {
            watchListing = true;
            const synced = await this.#watchList(signal, timeoutSeconds, () => (failures = 0));
            watchListing = false;
            failures = 0;
            if (!synced && !signal.aborted) {
              // Cut before the end of its initial events (a timeout, a restart of the server):
              // one paginated list now, which converges whatever the size; watch-lists after.
              logger.info({ path: this.#options.path }, 'watch-list ended before its initial events did; listing in pages');
              this.#next = 'pages';
              this.#options.onRestart?.('incomplete');
            }
            continue;
          }
          await this.#list(signal, this.#next === 'full');
          this.#next = undefined;
          fromList = true;
        }
        await this.#options.client.watch<T>({
          path: this.#options.path,
          query: {
            resourceVersion: this.#resourceVersion,
            allowWatchBookmarks: true,
            labelSelector: this.#options.labelSelector,
            timeoutSeconds,
          },
          idleTimeoutMs: this.#options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
          signal,
          onEvent: (event) => {
            failures = 0;
            fromList = false;
            this.#apply(event.type, event.object);
          },
        });
        failures = 0;
      } catch (error) {
        if (signal.aborted) break;
        if (error instanceof WatchListUnsupportedError || (watchListing && this.#resourceVersion === undefined && refusedWatchList(error))) {
          // Remembered: this server answers watch-lists with a refusal or a plain watch.
          logger.info({ path: this.#options.path, error: describeError(error) }, 'the API server does not support watch-lists; listing in pages');
          this.#mode = 'pages';
          this.#resourceVersion = undefined;
          this.#options.onRestart?.('unsupported');
          continue;
        }
        if (error instanceof KubeApiError && error.gone) {
          // A watch from a list's resourceVersion that is gone before any event: the list
          // took longer than the server keeps history. Listing the same way again would
          // take as long, so read it in one request (a resourceVersion of now).
          if (fromList && this.#mode === 'pages') this.#next = 'full';
          logger.info({ path: this.#options.path, afterList: fromList }, 'resourceVersion expired (410 Gone); relisting');
          this.#resourceVersion = undefined;
          this.#options.onRestart?.('gone');
          continue;
        }
        const throttled = throttledBy(error);
        if (throttled) {
          // Priority and fairness turned the request away before handling it (a fresh API
          // server does so for its first seconds): a wait the server asked for, not a failure.
          const wait = throttledWaitMs(throttled.retryAfterMs, random());
          logger.info({ path: this.#options.path, retryInMs: Math.round(wait) }, 'the API server asked to retry later (429); waiting');
          this.#options.onRestart?.('throttled');
          await sleep(wait, signal, this.#options.clock ?? systemClock);
          continue;
        }
        failures++;
        const delay = retryDelay(failures, random());
        logger.warn({ path: this.#options.path, error: describeError(error), retryInMs: Math.round(delay) }, 'list/watch failed; retrying');
        this.#options.onRestart?.('error');
        await sleep(delay, signal, this.#options.clock ?? systemClock);
      }
    }
  }

  /**
   * One watch-list: applies the initial events as they stream (work on the first objects
   * starts while the rest is still coming), drops at their end what they did not name,
   * and goes on applying the watch's events until the stream ends. Returns whether the
   * initial events ended (the store is then complete).
   */
  async #watchList(signal: AbortSignal, timeoutSeconds: number, onProgress: () => void): Promise<boolean> {
    const seen = new Set<string>();
    let synced = false;
    // Closes the stream when an event throws (a server that ignored the watch-list).
    const stream = new AbortController();
    try {
      await this.#options.client.watch<T>({
        path: this.#options.path,
        query: watchListQuery({ labelSelector: this.#options.labelSelector, timeoutSeconds }),
        idleTimeoutMs: this.#options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        signal: AbortSignal.any([signal, stream.signal]),
        onEvent: (event) => {
          onProgress();
          if (synced) {
            this.#apply(event.type, event.object);
            return;
          }
          const step = initialEvent(event);
          if (step.kind === 'item') this.#listed(event.object, seen);
          else {
            synced = true;
            this.#listEnded(seen, step.resourceVersion);
          }
        },
      });
    } finally {
      stream.abort();
    }
    return synced;
  }

  /**
   * Lists the collection page by page, applying each page as it comes (so that work on the
   * first objects starts while a large collection is still being read), then drops what
   * the list no longer has. When a continue token expires (the list outlived etcd's
   * compaction), reads the collection in one unpaginated request instead of starting over
   * in pages (client-go's pager: FullListIfExpired), which cannot expire.
   */
  async #list(signal: AbortSignal, full: boolean): Promise<void> {
    let seen = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    let unpaginated = full;
    const pages = new PageSizer(this.#options.pageSize ?? DEFAULT_PAGE_SIZE);
    for (;;) {
      let bytes = 0;
      let page: KubeList<T>;
      try {
        page = await this.#options.client.request<KubeList<T>>({
          method: 'GET',
          path: this.#options.path,
          query: { limit: unpaginated ? undefined : pages.limit, continue: continueToken, labelSelector: this.#options.labelSelector },
          signal,
          onResponseBytes: (n) => (bytes = n),
        });
      } catch (error) {
        if (!(error instanceof KubeApiError && error.gone && continueToken !== undefined)) throw error;
        this.#options.logger.info({ path: this.#options.path }, 'list continue token expired (410 Gone); listing the rest in one request');
        this.#options.onRestart?.('continue-expired');
        // The pages read so far are from an older snapshot: the one list decides what is gone.
        seen = new Set();
        continueToken = undefined;
        unpaginated = true;
        continue;
      }
      pages.observe(page.items.length, bytes);
      for (const item of page.items) this.#listed(item, seen);
      continueToken = page.metadata.continue || undefined;
      resourceVersion = page.metadata.resourceVersion;
      if (continueToken === undefined) break;
    }
    this.#listEnded(seen, resourceVersion);
  }

  /** Puts one object of a list (or of a watch-list's initial events) into the store. */
  #listed(item: T, seen: Set<string>): void {
    const key = objectKey(item);
    seen.add(key);
    const kept = this.#forStore(item);
    const old = this.store.get(key);
    this.store.set(key, kept);
    if (old?.metadata?.resourceVersion !== kept.metadata?.resourceVersion) {
      this.#changed(key);
      this.#options.onEvent(old ? 'updated' : 'added', kept, !this.#hasSynced);
    }
  }

  /** The list is complete: drops what it did not name, and watches from its resourceVersion. */
  #listEnded(seen: Set<string>, resourceVersion: string | undefined): void {
    for (const [key, old] of this.store) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.#changed(key);
        this.#options.onEvent('deleted', old, !this.#hasSynced);
      }
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
    this.#changed(key);
    if (type === 'DELETED') {
      this.store.delete(key);
      this.#options.onEvent('deleted', this.#forStore(object), false);
    } else {
      const existed = this.store.has(key);
      const kept = this.#forStore(object);
      this.store.set(key, kept);
      this.#options.onEvent(existed ? 'updated' : 'added', kept, false);
    }
  }

  #changed(key: string): void {
    this.#changedAt.delete(key);
    this.#changedAt.set(key, ++this.#changes);
    // Bounded: the entries of present keys plus as many tombstones; the oldest go first.
    const limit = 2 * this.store.size + 1024;
    for (const [oldKey, at] of this.#changedAt) {
      if (this.#changedAt.size <= limit) break;
      this.#changedAt.delete(oldKey);
      this.#forgottenUpTo = at;
    }
  }

  /** A mark to pass to `remember` for a write about to be sent. */
  changeMark(): number {
    return this.#changes;
  }

  /**
   * Puts an object the controller itself just wrote into the store, unless list or watch
   * changed that key since `since` (a `changeMark()` taken before the write was sent):
   * then the store already holds what the API server said last (a delete included), and
   * the written copy must not bring a deleted object back. Returns whether it was kept.
   */
  remember(object: T, since: number): boolean {
    const key = objectKey(object);
    if (since < this.#forgottenUpTo || (this.#changedAt.get(key) ?? 0) > since) return false;
    this.store.set(key, this.#forStore(object));
    return true;
  }

  #forStore(object: T): S {
    const kept = forStore(object);
    return this.#options.keep ? this.#options.keep(kept) : (kept as unknown as S);
  }
}

/** The wait before the `failures`-th consecutive retry: 250 ms doubling to 30 s, ±20% (`jitter` in [0, 1)). */
export function retryDelay(failures: number, jitter: number): number {
  return Math.min(250 * 2 ** Math.min(failures - 1, 7), 30_000) * (0.8 + jitter * 0.4);
}

// 2,000 small objects a page: the first list of 10,000 took 5.4 s instead of 31 s at 500 while
// workers ran (docs/benchmarks.md, "Scale"); a list must end within etcd's compaction interval.
const DEFAULT_PAGE_SIZE = 2000;
/** A watch (or watch-list) stream silent this long is ended; the server ends its own after timeoutSeconds (at most 360 s). */
const DEFAULT_IDLE_TIMEOUT_MS = 420_000;
/** What one page of a list may hold, about: objects are kept slim, but a page is parsed whole. */
const PAGE_BYTES = 4 * 1024 * 1024;

/**
 * The limit of the next list page, from the size of the objects seen so far: pages of 2,000
 * small objects, and a few at a time when objects are large (a tenant's 1 MB
 * EnvelopeSecrets), so that one page never holds hundreds of megabytes.
 */
export class PageSizer {
  readonly #max: number;
  limit: number;

  constructor(max: number) {
    this.#max = max;
    // Start small: the first page says how large objects are.
    this.limit = Math.min(max, 16);
  }

  observe(items: number, bytes: number): void {
    if (items === 0 || bytes <= 0) return;
    const perItem = bytes / items;
    this.limit = Math.max(1, Math.min(this.#max, Math.floor(PAGE_BYTES / perItem)));
  }
}
