/**
 * Reading why a call to a key service failed, for every provider: the error a client
 * library throws wraps the one that tells (a socket's errno, a TLS alert) in `cause`
 * chains and, for happy-eyeballs connects, in an AggregateError's `errors`.
 */

/** Socket and DNS failures: the call got no answer, and another attempt may get one. */
export const SOCKET_ERROR_CODES: readonly string[] = [
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
];

const MAX_DEPTH = 5;

/**
 * The first value `pick` finds in `error`, its `cause` chain or the `errors` of an
 * AggregateError on the way, looking at most five levels down.
 */
export function findInCauses<T>(error: unknown, pick: (error: { code?: unknown; name?: unknown }) => T | undefined, depth = 0): T | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const found = pick(error as { code?: unknown; name?: unknown });
  if (found !== undefined || depth >= MAX_DEPTH) return found;
  const inCause = findInCauses((error as { cause?: unknown }).cause, pick, depth + 1);
  if (inCause !== undefined) return inCause;
  const errors = (error as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) return undefined;
  for (const inner of errors) {
    const inInner = findInCauses(inner, pick, depth + 1);
    if (inInner !== undefined) return inInner;
  }
  return undefined;
}

/** The first error `code` in the chain that is one of `codes`. */
export function codeInCauses(error: unknown, codes: ReadonlySet<string>): string | undefined {
  return findInCauses(error, (e) => (typeof e.code === 'string' && codes.has(e.code) ? e.code : undefined));
}
