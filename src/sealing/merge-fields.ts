// The three-way merge of everything in an EnvelopeSecret besides its envelopes
// (metadata, scope, template, restartWorkloads): plain JSON, field by field.
import { isDeepStrictEqual } from 'node:util';

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A field path for messages: `metadata.labels["app.kubernetes.io/name"]`. */
export function fieldPath(parent: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key)}]`;
}

/**
 * Merges `ours` and `theirs` against `base` (undefined = absent): a field changed on one
 * side takes that side; changed identically on both is fine; maps changed on both sides
 * are merged key by key; anything else changed differently on both sides is a conflict
 * (its path is added to `conflicts`) and keeps ours. Lists are whole values.
 */
export function mergeFields(base: unknown, ours: unknown, theirs: unknown, path: string, conflicts: string[]): unknown {
  if (isDeepStrictEqual(ours, theirs)) return ours;
  if (isDeepStrictEqual(base, ours)) return theirs;
  if (isDeepStrictEqual(base, theirs)) return ours;
  if (isPlainObject(ours) && isPlainObject(theirs) && (base === undefined || isPlainObject(base))) {
    const merged: Record<string, unknown> = {};
    const keys = [...Object.keys(ours), ...Object.keys(theirs).filter((k) => !Object.hasOwn(ours, k))];
    for (const key of keys) {
      const value = mergeFields(
        base !== undefined && Object.hasOwn(base, key) ? base[key] : undefined,
        Object.hasOwn(ours, key) ? ours[key] : undefined,
        Object.hasOwn(theirs, key) ? theirs[key] : undefined,
        fieldPath(path, key),
        conflicts,
      );
      if (value !== undefined) merged[key] = value;
    }
    return merged;
  }
  conflicts.push(path === '' ? '(the whole document)' : path);
  return ours;
}
