import { KubeApiError, type WatchEvent } from '../kube/client.ts';
import { EnvsealError } from '../util/errors.ts';

/**
 * The streaming list (KEP-3157, "watch-list"): one watch request whose first events are
 * the collection's objects as ADDED events, at a consistent snapshot, ended by a BOOKMARK
 * annotated `k8s.io/initial-events-end: "true"`; the same stream then goes on as a plain
 * watch from that snapshot. Unlike a paginated list it has no continue token to expire and
 * no gap between list and watch for etcd's compaction to fall into.
 */

export const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

/** The query of a watch-list request; a server that lacks it refuses (422) or ignores it. */
export function watchListQuery(options: { labelSelector: string | undefined; timeoutSeconds: number }): Record<string, string | number | boolean | undefined> {
  return {
    sendInitialEvents: true,
    // With no resourceVersion: objects at least as new as a consistent read (the latest).
    resourceVersionMatch: 'NotOlderThan',
    allowWatchBookmarks: true,
    labelSelector: options.labelSelector,
    timeoutSeconds: options.timeoutSeconds,
  };
}

/** The API server answered a watch-list request in a way that says it does not support it. */
export class WatchListUnsupportedError extends EnvsealError {
  readonly code = 'WatchListUnsupported';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WatchListUnsupportedError';
  }
}

/**
 * Whether an error answer to a watch-list request means "not supported here": the
 * request's parameters refused (400, or 422 naming `sendInitialEvents` or
 * `resourceVersionMatch` when the WatchList gate is off or the server predates it).
 * Decided from the status and the Status causes' field paths, never the wording.
 */
export function refusedWatchList(error: unknown): boolean {
  if (!(error instanceof KubeApiError)) return false;
  if (error.status === 400) return true;
  return (
    error.status === 422 &&
    (error.causes.length === 0 || error.causes.some((c) => /^(sendInitialEvents|resourceVersionMatch|allowWatchBookmarks)$/.test(c.field)))
  );
}

/** What an event before the end bookmark is: an object of the list, or the end. */
export type InitialEvent = { kind: 'item' } | { kind: 'end'; resourceVersion: string };

/**
 * Classifies an event that came before the end bookmark. Only ADDED events and bookmarks
 * belong there; a MODIFIED or DELETED event, or a bookmark without the annotation, means
 * the server ignored `sendInitialEvents` (a plain watch: its synthetic ADDED events would
 * never be followed by an end, so nothing would say which stored objects are gone).
 */
export function initialEvent(event: WatchEvent<{ metadata?: { resourceVersion?: string; annotations?: Record<string, string> } }>): InitialEvent {
  const metadata = event.object?.metadata;
  if (event.type === 'ADDED') return { kind: 'item' };
  if (event.type === 'BOOKMARK' && metadata?.annotations?.[INITIAL_EVENTS_END] === 'true' && metadata.resourceVersion) {
    return { kind: 'end', resourceVersion: metadata.resourceVersion };
  }
  throw new WatchListUnsupportedError(`a ${event.type} event came before the end of the initial events: the API server ignored sendInitialEvents`);
}
