import { describe, expect, it } from 'vitest';
import { encodeContext, kmsEncryptionContext, valueAad } from './context.ts';

describe('encodeContext', () => {
  it('writes a count, then length-prefixed pairs sorted by key bytes', () => {
    const encoded = encodeContext({ b: 'xy', a: '' });
    expect(encoded.toString('hex')).toBe(['0002', '0001', '61', '0000', '0001', '62', '0002', '7879'].join(''));
  });

  it('sorts by UTF-8 bytes, not UTF-16 code units', () => {
    // U+FB01 is 0xEF 0xAC 0x81 in UTF-8 but sorts before U+1F600 (surrogates 0xD83D) in UTF-16
    const encoded = encodeContext({ '\u{1F600}': '1', '\uFB01': '2' });
    const firstKeyLength = encoded.readUInt16BE(2);
    expect(encoded.subarray(4, 4 + firstKeyLength).toString('utf8')).toBe('\uFB01');
  });

  it('keeps the boundary between key and value (no concatenation ambiguity)', () => {
    expect(encodeContext({ ab: 'c' }).equals(encodeContext({ a: 'bc' }))).toBe(false);
  });

  it('refuses entries over 65535 bytes', () => {
    expect(() => encodeContext({ k: 'x'.repeat(70_000) })).toThrow(/longer than 65535/);
  });
});

describe('scope bindings', () => {
  const binding = { namespace: 'prod', name: 'db' };

  it('binds strict to namespace and name', () => {
    expect(kmsEncryptionContext({ scope: 'strict', ...binding })).toEqual({
      'envseal.dev/scope': 'strict',
      'envseal.dev/namespace': 'prod',
      'envseal.dev/name': 'db',
    });
  });

  it('binds namespace scope to the namespace only', () => {
    expect(kmsEncryptionContext({ scope: 'namespace', ...binding })).toEqual({
      'envseal.dev/scope': 'namespace',
      'envseal.dev/namespace': 'prod',
    });
  });

  it('binds cluster scope to neither', () => {
    expect(kmsEncryptionContext({ scope: 'cluster', ...binding })).toEqual({ 'envseal.dev/scope': 'cluster' });
  });

  it('gives the AAD all seven entries, empty ones included', () => {
    const aad = valueAad({ binding: { scope: 'cluster', ...binding }, formatVersion: '1', suite: 'S', envelopeId: 'ID', key: 'K' });
    expect(aad.readUInt16BE(0)).toBe(7);
    expect(aad.includes(Buffer.from('prod'))).toBe(false);
    expect(aad.includes(Buffer.from('envseal.dev/namespace'))).toBe(true);
  });
});

describe('scope namespaces', () => {
  const listed = { scope: 'namespaces', name: 'db', namespaces: ['team-a', 'team-b'] } as const;
  const inA = { ...listed, namespace: 'team-a', namespaces: [...listed.namespaces] };
  const aadOf = (binding: Parameters<typeof valueAad>[0]['binding']) => valueAad({ binding, formatVersion: '1', suite: 'S', envelopeId: 'ID', key: 'K' });

  it('gives the AAD an eighth entry, the canonical list, and no single namespace: the same AAD in every listed namespace', () => {
    const aad = aadOf(inA);
    expect(aad.readUInt16BE(0)).toBe(8);
    expect(aad.includes(Buffer.from('team-a,team-b'))).toBe(true);
    expect(aadOf({ ...inA, namespace: 'team-b' }).equals(aad)).toBe(true);
    expect(aadOf({ ...inA, name: 'other' }).equals(aad)).toBe(false);
    expect(aadOf({ ...inA, namespaces: ['team-a', 'team-b', 'team-c'] }).equals(aad)).toBe(false);
  });

  it('names one namespace in the KMS encryption context, with the scope, the name and the list', () => {
    expect(kmsEncryptionContext({ ...inA, namespace: 'team-b' })).toEqual({
      'envseal.dev/scope': 'namespaces',
      'envseal.dev/namespace': 'team-b',
      'envseal.dev/name': 'db',
      'envseal.dev/namespaces': 'team-a,team-b',
    });
  });

  it('refuses a namespace that is not listed (ContextMismatch), and a list that is not canonical', () => {
    expect(() => aadOf({ ...inA, namespace: 'team-c' })).toThrow(expect.objectContaining({ code: 'ContextMismatch' }));
    expect(() => kmsEncryptionContext({ ...inA, namespace: 'team-c' })).toThrow(/"team-c" is not one of the namespaces/);
    for (const namespaces of [
      [],
      ['team-b', 'team-a'],
      ['team-a', 'team-a'],
      ['Team-A'],
      ['a,b'],
      Array.from({ length: 33 }, (_, i) => `n${String(i).padStart(2, '0')}`),
    ]) {
      expect(() => aadOf({ ...inA, namespace: namespaces[0] ?? '', namespaces }), JSON.stringify(namespaces)).toThrow(
        expect.objectContaining({ code: 'InvalidEnvelope' }),
      );
    }
  });

  it('leaves the other scopes with their seven entries', () => {
    for (const scope of ['strict', 'namespace', 'cluster'] as const) {
      expect(aadOf({ scope, namespace: 'prod', name: 'db', namespaces: ['prod'] }).readUInt16BE(0)).toBe(7);
    }
  });
});
