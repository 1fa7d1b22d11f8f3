/** Above this share of V8's heap limit the controller warns: a larger cluster would crash it. */
export const HEAP_WARNING_RATIO = 0.8;

export interface HeapStatistics {
  used_heap_size: number;
  heap_size_limit: number;
}

/**
 * A warning when the live heap is close to V8's limit (the Helm chart sets it with
 * --max-old-space-size): past the limit V8 aborts the process, and the pod would crash
 * at every start while the cluster stays that large. Says what to change, before it
 * happens; undefined when there is room.
 */
export function heapWarning(stats: HeapStatistics, objects: number): string | undefined {
  const ratio = stats.used_heap_size / stats.heap_size_limit;
  if (!(ratio >= HEAP_WARNING_RATIO)) return undefined;
  const mib = (bytes: number) => Math.round(bytes / 1048576);
  return `the heap holds ${mib(stats.used_heap_size)} MiB of its ${mib(stats.heap_size_limit)} MiB limit (${Math.round(ratio * 100)}%) with ${objects} EnvelopeSecrets cached: raise --max-old-space-size (Helm: controller.nodeOptions) and the memory limit before the cluster grows further`;
}
