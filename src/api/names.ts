import { quoted } from '../util/message.ts';
// Kubernetes name rules (apimachinery's validation), for early, clear errors.

const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Why `key` is not a valid Secret data key, or undefined when it is. */
export function secretKeyProblem(key: string): string | undefined {
  if (key.length === 0) return 'must not be empty';
  if (key.length > 253) return 'must be no more than 253 characters';
  if (!SECRET_KEY.test(key)) return "must consist of alphanumeric characters, '-', '_' or '.'";
  if (key === '.' || key === '..') return `must not be '${key}'`;
  if (key.startsWith('..')) return "must not start with '..'";
  // Valid for Kubernetes, but a JavaScript object cannot hold it as a plain key: refused
  // rather than silently dropped.
  if (key === '__proto__') return "must not be '__proto__'";
  return undefined;
}

/** Object names (Secrets, EnvelopeSecrets): DNS-1123 subdomain. */
export function objectNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > 253) return 'must be no more than 253 characters';
  if (!DNS1123_SUBDOMAIN.test(name)) return "must be lowercase alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character";
  return undefined;
}

export function namespaceProblem(namespace: string): string | undefined {
  if (namespace.length === 0) return 'must not be empty';
  if (namespace.length > 63) return 'must be no more than 63 characters';
  if (!DNS1123_LABEL.test(namespace)) return "must be lowercase alphanumeric characters or '-', starting and ending with an alphanumeric character";
  return undefined;
}

/** Shows a user-supplied name in a message without letting it flood the terminal. */
export function quoteName(name: string): string {
  return quoted(name, 80);
}

const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
export const MAX_QUALIFIED_NAME_PREFIX_LENGTH = 253;
export const MAX_QUALIFIED_NAME_LENGTH = 63;
export const MAX_LABEL_VALUE_LENGTH = 63;

/** Label and annotation keys: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters. */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return "must be a name, optionally prefixed by a DNS subdomain and '/'";
  const name = parts.at(-1)!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0 || prefix.length > MAX_QUALIFIED_NAME_PREFIX_LENGTH || !DNS1123_SUBDOMAIN.test(prefix))
      return `must have a prefix that is a lowercase DNS subdomain of at most ${MAX_QUALIFIED_NAME_PREFIX_LENGTH} characters`;
  }
  if (name.length === 0 || name.length > MAX_QUALIFIED_NAME_LENGTH || !QUALIFIED_NAME_PART.test(name)) {
    return `must have a name of at most ${MAX_QUALIFIED_NAME_LENGTH} alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character`;
  }
  return undefined;
}

export function labelValueProblem(value: string): string | undefined {
  if (value.length > MAX_LABEL_VALUE_LENGTH || !LABEL_VALUE.test(value)) {
    return `must be at most ${MAX_LABEL_VALUE_LENGTH} alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character`;
  }
  return undefined;
}
