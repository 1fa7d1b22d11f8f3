/**
 * The exports of a CommonJS package loaded with import(): Node gives them as named
 * exports and as `default`; the bundle's lazily loaded chunk (scripts/bundle.ts) only as
 * `default`.
 */
export function commonJsExports<T extends object>(module: T): T {
  const exports = (module as { default?: T }).default;
  return exports !== undefined && typeof exports === 'object' ? exports : module;
}
