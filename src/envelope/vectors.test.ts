import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Binding, kmsEncryptionContext, valueAad } from './context.ts';
import { FORMAT_VERSION, openEnvelope, SUITE, sealEnvelope } from './envelope.ts';
import { deriveKeys } from './kdf.ts';

interface Vector {
  description: string;
  binding: Binding;
  dataKey: string;
  envelopeId: string;
  valueKey: string;
  commitment: string;
  kmsEncryptionContext: Record<string, string>;
  /** Scope namespaces: the context of each listed namespace's wrapping. */
  kmsEncryptionContextsByNamespace?: Record<string, Record<string, string>>;
  values: { key: string; plaintext: string; nonce: string; aad: string; sealed: string }[];
}

// The vectors live in the spec itself, so the document and the code cannot drift apart.
const spec = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
const block = /```json test-vectors\n([\s\S]*?)\n```/.exec(spec);
const doc = JSON.parse(block?.[1] ?? 'null') as { format: string; suite: string; vectors: Vector[] };

describe('docs/format.md test vectors', () => {
  it('are present and name this format and suite', () => {
    expect(doc.format).toBe(FORMAT_VERSION);
    expect(doc.suite).toBe(SUITE);
    expect(doc.vectors.length).toBeGreaterThanOrEqual(4);
    expect(doc.vectors.map((v) => v.binding.scope).sort()).toEqual(['cluster', 'namespace', 'namespaces', 'strict']);
  });

  describe.each(doc.vectors.map((v) => [v.description, v] as const))('%s', (_name, vector) => {
    const dataKey = Buffer.from(vector.dataKey, 'hex');
    const data = Object.fromEntries(vector.values.map((v) => [v.key, v.sealed]));
    const envelope = { id: vector.envelopeId, suite: SUITE, commitment: vector.commitment, data };

    it('derives the value key and the commitment', () => {
      const keys = deriveKeys(dataKey, Buffer.from(vector.envelopeId, 'base64'));
      expect(keys.valueKey.toString('hex')).toBe(vector.valueKey);
      expect(keys.commitment.toString('base64')).toBe(vector.commitment);
    });

    it('encodes the AAD and the KMS encryption context', () => {
      expect(kmsEncryptionContext(vector.binding)).toEqual(vector.kmsEncryptionContext);
      for (const [namespace, context] of Object.entries(vector.kmsEncryptionContextsByNamespace ?? {})) {
        expect(kmsEncryptionContext({ ...vector.binding, namespace })).toEqual(context);
      }
      for (const value of vector.values) {
        const aad = valueAad({ binding: vector.binding, formatVersion: FORMAT_VERSION, suite: SUITE, envelopeId: vector.envelopeId, key: value.key });
        expect(aad.toString('hex')).toBe(value.aad);
      }
    });

    it('opens every value', () => {
      const opened = openEnvelope({ dataKey, binding: vector.binding, envelope });
      for (const value of vector.values) expect(opened[value.key]!.toString('utf8')).toBe(value.plaintext);
    });

    it('seals to the same bytes given the same id and nonces', () => {
      const nonces = vector.values.map((v) => Buffer.from(v.nonce, 'hex'));
      const sealed = sealEnvelope({
        dataKey,
        binding: vector.binding,
        envelopeId: vector.envelopeId,
        values: Object.fromEntries(vector.values.map((v) => [v.key, Buffer.from(v.plaintext, 'utf8')])),
        random: () => nonces.shift()!,
      });
      expect(sealed).toEqual(envelope);
    });
  });
});
