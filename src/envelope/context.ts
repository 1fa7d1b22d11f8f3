import { clip } from '../util/message.ts';
import { EnvelopeError } from './errors.ts';

export const SCOPES = ['strict', 'namespace', 'cluster', 'namespaces'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: unknown): value is Scope {
  return typeof value === 'string' && (SCOPES as readonly string[]).includes(value);
}

/**
 * Where a sealed value may be opened: namespace and name are taken from the object's
 * metadata, never its spec. `namespaces` (scope `namespaces` only) is the canonical list
 * the values are bound to; the AAD authenticates it, and `namespace` must be one of them.
 */
export interface Binding {
  scope: Scope;
  namespace: string;
  name: string;
  namespaces?: readonly string[];
}

/** At most this many namespaces in a `namespaces` scope (docs/format.md). */
export const MAX_SCOPE_NAMESPACES = 32;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Why `list` is not a canonical namespace list (non-empty, at most 32, each a DNS-1123
 * label, sorted by bytes, no duplicates), or undefined. Refused rather than normalized:
 * the list enters the AAD exactly as written.
 */
export function namespaceListProblem(list: readonly unknown[]): string | undefined {
  if (list.length === 0) return 'must name at least one namespace';
  if (list.length > MAX_SCOPE_NAMESPACES) return `names ${list.length} namespaces; at most ${MAX_SCOPE_NAMESPACES}`;
  for (const [i, item] of list.entries()) {
    if (typeof item !== 'string' || item.length > 63 || !DNS1123_LABEL.test(item)) return `entry #${i} is not a namespace name (a DNS-1123 label)`;
    const previous = list[i - 1] as string | undefined;
    if (previous !== undefined && !(previous < item)) return `entry #${i} is not after entry #${i - 1}: the list must be sorted, without duplicates`;
  }
  return undefined;
}

/** The canonical text of a namespace list: its labels joined by ',' (a label holds no ','). */
export function canonicalNamespaces(list: readonly string[]): string {
  const problem = namespaceListProblem(list);
  if (problem !== undefined) throw new EnvelopeError('InvalidEnvelope', `namespaces ${problem}`, { field: 'namespaces' });
  return list.join(',');
}

export const CONTEXT_KEYS = {
  format: 'envseal.dev/format',
  suite: 'envseal.dev/suite',
  envelope: 'envseal.dev/envelope',
  scope: 'envseal.dev/scope',
  namespace: 'envseal.dev/namespace',
  name: 'envseal.dev/name',
  key: 'envseal.dev/key',
  /** Scope `namespaces` only: the canonical namespace list. */
  namespaces: 'envseal.dev/namespaces',
} as const;

/**
 * The scope, namespace and name entries of the AAD as the scope defines them. Scope
 * `namespaces` binds the name and the list, not one namespace: the same ciphertext opens
 * in each listed namespace.
 */
function scopeEntries(binding: Binding): [string, string][] {
  if (binding.scope === 'namespaces') {
    const list = listedNamespaces(binding);
    return [
      [CONTEXT_KEYS.scope, binding.scope],
      [CONTEXT_KEYS.namespace, ''],
      [CONTEXT_KEYS.name, binding.name],
      [CONTEXT_KEYS.namespaces, list],
    ];
  }
  return [
    [CONTEXT_KEYS.scope, binding.scope],
    [CONTEXT_KEYS.namespace, binding.scope === 'cluster' ? '' : binding.namespace],
    [CONTEXT_KEYS.name, binding.scope === 'strict' ? binding.name : ''],
  ];
}

/**
 * The KMS encryption context: the non-empty scope, namespace and name entries. The KMS
 * enforces it on Decrypt and records it in its audit log. For scope `namespaces` it names
 * `binding.namespace` (one wrapping per listed namespace, so a key policy can still grant
 * Decrypt per namespace) besides the scope, the name and the canonical list.
 */
export function kmsEncryptionContext(binding: Binding): Record<string, string> {
  if (binding.scope === 'namespaces') {
    const list = listedNamespaces(binding);
    return {
      [CONTEXT_KEYS.scope]: binding.scope,
      [CONTEXT_KEYS.namespace]: binding.namespace,
      [CONTEXT_KEYS.name]: binding.name,
      [CONTEXT_KEYS.namespaces]: list,
    };
  }
  return Object.fromEntries(scopeEntries(binding).filter(([, value]) => value !== ''));
}

/**
 * Scope namespaces: the canonical list, once `binding.namespace` (the reader's, from the
 * object's metadata) is checked to be in it. Nothing is sealed or opened, and no KMS is
 * asked, for a namespace the list does not name.
 */
export function listedNamespaces(binding: Binding): string {
  const list = canonicalNamespaces(binding.namespaces ?? []);
  if (!(binding.namespaces ?? []).includes(binding.namespace)) {
    throw new EnvelopeError(
      'ContextMismatch',
      `namespace ${JSON.stringify(binding.namespace.slice(0, 63))} is not one of the namespaces the manifest is sealed for (spec.namespaces: ${clip(list, 200)}); a copy opens only in a listed namespace`,
      { field: 'namespaces' },
    );
  }
  return list;
}

export interface ValueAadInput {
  binding: Binding;
  formatVersion: string;
  suite: string;
  /** The envelope id's base64 text, as stored. */
  envelopeId: string;
  /** The data key name. */
  key: string;
}

/** The additional authenticated data of one value. */
export function valueAad(input: ValueAadInput): Buffer {
  return encodeContext([
    [CONTEXT_KEYS.format, input.formatVersion],
    [CONTEXT_KEYS.suite, input.suite],
    [CONTEXT_KEYS.envelope, input.envelopeId],
    ...scopeEntries(input.binding),
    [CONTEXT_KEYS.key, input.key],
  ]);
}

const MAX_UINT16 = 0xffff;

/**
 * Canonical encoding of a string map, as the AWS Encryption SDK serializes an
 * encryption context: UInt16BE count, then for each pair sorted by the key's UTF-8
 * bytes: UInt16BE key length, key, UInt16BE value length, value. Empty entries are
 * kept (the AAD always has all seven; eight for scope `namespaces`).
 */
export function encodeContext(entries: Iterable<readonly [string, string]> | Record<string, string>): Buffer {
  const pairs = (Symbol.iterator in entries ? [...entries] : Object.entries(entries)).map(
    ([key, value]) => [Buffer.from(key, 'utf8'), Buffer.from(value, 'utf8')] as const,
  );
  pairs.sort(([a], [b]) => Buffer.compare(a, b));
  for (let i = 1; i < pairs.length; i++) {
    if (Buffer.compare(pairs[i - 1]![0], pairs[i]![0]) === 0) {
      throw new EnvelopeError('InvalidEnvelope', 'encryption context has a duplicate key');
    }
  }
  if (pairs.length > MAX_UINT16) {
    throw new EnvelopeError('ContextTooLarge', 'encryption context has more than 65535 entries');
  }
  const parts: Buffer[] = [u16(pairs.length)];
  for (const [key, value] of pairs) {
    if (key.length > MAX_UINT16 || value.length > MAX_UINT16) {
      throw new EnvelopeError('ContextTooLarge', 'an encryption context entry is longer than 65535 bytes');
    }
    parts.push(u16(key.length), key, u16(value.length), value);
  }
  return Buffer.concat(parts);
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}
