import { EnvelopeError } from './errors.ts';

export const SCOPES = ['strict', 'namespace', 'cluster'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: unknown): value is Scope {
  return typeof value === 'string' && (SCOPES as readonly string[]).includes(value);
}

/** Where a sealed value may be opened: taken from the object's metadata, never its spec. */
export interface Binding {
  scope: Scope;
  namespace: string;
  name: string;
}

export const CONTEXT_KEYS = {
  format: 'envseal.dev/format',
  suite: 'envseal.dev/suite',
  envelope: 'envseal.dev/envelope',
  scope: 'envseal.dev/scope',
  namespace: 'envseal.dev/namespace',
  name: 'envseal.dev/name',
  key: 'envseal.dev/key',
} as const;

/** The scope, namespace and name entries as the scope defines them. */
function scopeEntries(binding: Binding): [string, string][] {
  return [
    [CONTEXT_KEYS.scope, binding.scope],
    [CONTEXT_KEYS.namespace, binding.scope === 'cluster' ? '' : binding.namespace],
    [CONTEXT_KEYS.name, binding.scope === 'strict' ? binding.name : ''],
  ];
}

/**
 * The KMS encryption context: the non-empty scope, namespace and name entries. The KMS
 * enforces it on Decrypt and records it in its audit log.
 */
export function kmsEncryptionContext(binding: Binding): Record<string, string> {
  return Object.fromEntries(scopeEntries(binding).filter(([, value]) => value !== ''));
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
 * kept (the AAD always has all seven).
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
