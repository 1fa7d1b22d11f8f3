import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Binding } from './context.ts';
import { checkCommitment, type EnvelopeBody, openEnvelope, SUITE, sealEnvelope, sealValue } from './envelope.ts';
import { EnvelopeError } from './errors.ts';
import { seededRandom } from './random.ts';

const keyName = fc.stringMatching(/^[-._a-zA-Z0-9]{1,40}$/).filter((k) => k !== '.' && !k.startsWith('..') && k !== '__proto__');
const dnsLabel = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
const bindingArb: fc.Arbitrary<Binding> = fc.record({
  scope: fc.constantFrom('strict' as const, 'namespace' as const, 'cluster' as const),
  namespace: dnsLabel,
  name: dnsLabel,
});
const valuesArb = fc.dictionary(keyName, fc.uint8Array({ maxLength: 300 }), { minKeys: 1, maxKeys: 6 });
const dataKeyArb = fc.uint8Array({ minLength: 32, maxLength: 32 });

function expectCode(fn: () => unknown, codes: EnvelopeError['code'][]): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(EnvelopeError);
    expect(codes).toContain((error as EnvelopeError).code);
    return;
  }
  throw new Error('expected an EnvelopeError');
}

function flipBit(base64: string, bit: number): string {
  const bytes = Buffer.from(base64, 'base64');
  const i = bit % (bytes.length * 8);
  bytes[i >> 3]! ^= 1 << (i & 7);
  return bytes.toString('base64');
}

const seal = (dataKey: Uint8Array, binding: Binding, values: Record<string, Uint8Array>, seed = 'seed') =>
  sealEnvelope({ dataKey, binding, values, random: seededRandom(seed) });

describe('envelope format v1', () => {
  it('opens what it sealed', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, valuesArb, (dataKey, binding, values) => {
        const envelope = seal(dataKey, binding, values);
        expect(envelope.suite).toBe(SUITE);
        const opened = openEnvelope({ dataKey, binding, envelope });
        expect(Object.keys(opened).sort()).toEqual(Object.keys(values).sort());
        for (const [key, value] of Object.entries(values)) expect(Buffer.from(value).equals(opened[key]!)).toBe(true);
      }),
    );
  });

  it('is deterministic under a seeded random source, and differs across seeds', () => {
    const dataKey = new Uint8Array(32).fill(7);
    const binding: Binding = { scope: 'strict', namespace: 'prod', name: 'db' };
    const values = { A: Buffer.from('x') };
    expect(seal(dataKey, binding, values, 's1')).toEqual(seal(dataKey, binding, values, 's1'));
    expect(seal(dataKey, binding, values, 's1').data.A).not.toBe(seal(dataKey, binding, values, 's2').data.A);
  });

  it('refuses any flipped bit in a value, the id or the commitment', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, valuesArb, fc.nat(), fc.constantFrom('value', 'id', 'commitment'), (dataKey, binding, values, bit, field) => {
        const envelope = seal(dataKey, binding, values);
        const key = Object.keys(envelope.data)[0]!;
        const tampered: EnvelopeBody =
          field === 'value'
            ? { ...envelope, data: { ...envelope.data, [key]: flipBit(envelope.data[key]!, bit) } }
            : { ...envelope, [field]: flipBit(envelope[field as 'id' | 'commitment'], bit) };
        expectCode(() => openEnvelope({ dataKey, binding, envelope: tampered }), ['ValueAuthenticationFailed', 'CommitmentMismatch']);
      }),
    );
  });

  it('refuses a value opened under another namespace, name or scope', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, bindingArb, valuesArb, (dataKey, sealedFor, openedAs, values) => {
        const envelope = seal(dataKey, sealedFor, values);
        const same =
          sealedFor.scope === openedAs.scope &&
          (sealedFor.scope === 'cluster' || sealedFor.namespace === openedAs.namespace) &&
          (sealedFor.scope !== 'strict' || sealedFor.name === openedAs.name);
        if (same) {
          expect(() => openEnvelope({ dataKey, binding: openedAs, envelope })).not.toThrow();
        } else {
          expectCode(() => openEnvelope({ dataKey, binding: openedAs, envelope }), ['ValueAuthenticationFailed']);
        }
      }),
    );
  });

  it('lets namespace scope move between names and cluster scope move anywhere', () => {
    const dataKey = new Uint8Array(32).fill(1);
    const values = { K: Buffer.from('v') };
    const ns = seal(dataKey, { scope: 'namespace', namespace: 'a', name: 'one' }, values);
    expect(openEnvelope({ dataKey, binding: { scope: 'namespace', namespace: 'a', name: 'two' }, envelope: ns }).K!.toString()).toBe('v');
    const cluster = seal(dataKey, { scope: 'cluster', namespace: 'a', name: 'one' }, values);
    expect(openEnvelope({ dataKey, binding: { scope: 'cluster', namespace: 'b', name: 'two' }, envelope: cluster }).K!.toString()).toBe('v');
  });

  it('refuses values swapped between keys', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, keyName, keyName, fc.uint8Array(), fc.uint8Array(), (dataKey, binding, k1, k2, v1, v2) => {
        fc.pre(k1 !== k2);
        const envelope = seal(dataKey, binding, { [k1]: v1, [k2]: v2 });
        const swapped = { ...envelope, data: { [k1]: envelope.data[k2]!, [k2]: envelope.data[k1]! } };
        expectCode(() => openEnvelope({ dataKey, binding, envelope: swapped }), ['ValueAuthenticationFailed']);
      }),
    );
  });

  it('refuses a value moved from another resource, even under the same data key', () => {
    fc.assert(
      fc.property(dataKeyArb, bindingArb, dnsLabel, keyName, fc.uint8Array(), (dataKey, binding, otherName, key, value) => {
        fc.pre(otherName !== binding.name);
        const mine = seal(dataKey, binding, { [key]: Buffer.from('mine') }, 'one');
        const theirs = seal(dataKey, { ...binding, name: otherName }, { [key]: value }, 'two');
        const moved = { ...mine, data: { [key]: theirs.data[key]! } };
        // Different envelope ids already separate them; the AAD refuses the move.
        expectCode(() => openEnvelope({ dataKey, binding, envelope: moved }), ['ValueAuthenticationFailed']);
      }),
    );
  });

  it('detects a recipient that wraps a different data key (key commitment)', () => {
    fc.assert(
      fc.property(dataKeyArb, dataKeyArb, bindingArb, valuesArb, (dataKey, otherKey, binding, values) => {
        fc.pre(!Buffer.from(dataKey).equals(Buffer.from(otherKey)));
        const envelope = seal(dataKey, binding, values);
        expectCode(() => checkCommitment(otherKey, envelope), ['CommitmentMismatch']);
        expectCode(() => openEnvelope({ dataKey: otherKey, binding, envelope }), ['CommitmentMismatch']);
      }),
    );
  });

  it('refuses truncated values, wrong-length tags and non-canonical base64 with typed errors', () => {
    const dataKey = new Uint8Array(32).fill(3);
    const binding: Binding = { scope: 'strict', namespace: 'n', name: 'x' };
    const envelope = seal(dataKey, binding, { K: Buffer.from('secret') });
    const raw = Buffer.from(envelope.data.K!, 'base64');
    for (const bad of [raw.subarray(0, 27), raw.subarray(0, raw.length - 1), Buffer.concat([raw, Buffer.from([0])])]) {
      expectCode(
        () => openEnvelope({ dataKey, binding, envelope: { ...envelope, data: { K: bad.toString('base64') } } }),
        ['InvalidEnvelope', 'ValueAuthenticationFailed'],
      );
    }
    expectCode(() => openEnvelope({ dataKey, binding, envelope: { ...envelope, data: { K: raw.toString('base64url') } } }), ['InvalidBase64']);
  });

  it('refuses an unknown suite before touching any value', () => {
    const dataKey = new Uint8Array(32).fill(4);
    const binding: Binding = { scope: 'strict', namespace: 'n', name: 'x' };
    const envelope = seal(dataKey, binding, { K: Buffer.from('v') });
    expectCode(() => openEnvelope({ dataKey, binding, envelope: { ...envelope, suite: 'A128GCM' } }), ['UnknownSuite']);
  });

  it('seals one more value into an existing envelope for a holder of its data key only', () => {
    const dataKey = new Uint8Array(32).fill(5);
    const binding: Binding = { scope: 'strict', namespace: 'n', name: 'x' };
    const envelope = seal(dataKey, binding, { A: Buffer.from('a') });
    const B = sealValue({ dataKey, binding, envelope, key: 'B', plaintext: Buffer.from('b'), random: seededRandom('b') });
    const opened = openEnvelope({ dataKey, binding, envelope: { ...envelope, data: { ...envelope.data, B } } });
    expect(opened.B!.toString()).toBe('b');
    expectCode(
      () => sealValue({ dataKey: new Uint8Array(32), binding, envelope, key: 'C', plaintext: Buffer.from('c'), random: seededRandom('c') }),
      ['CommitmentMismatch'],
    );
  });

  it('never puts a value or key bytes in an error message', () => {
    const canary = 'CANARY-7f3a9c-value';
    const dataKey = Buffer.alloc(32, 9);
    const binding: Binding = { scope: 'strict', namespace: 'n', name: 'x' };
    const envelope = seal(dataKey, binding, { K: Buffer.from(canary) });
    const failures: unknown[] = [];
    for (const attempt of [
      () => openEnvelope({ dataKey, binding: { ...binding, name: 'y' }, envelope }),
      () => openEnvelope({ dataKey: Buffer.alloc(32, 1), binding, envelope }),
      () => openEnvelope({ dataKey, binding, envelope: { ...envelope, data: { K: flipBit(envelope.data.K!, 100) } } }),
    ]) {
      try {
        attempt();
      } catch (error) {
        failures.push(error);
      }
    }
    expect(failures).toHaveLength(3);
    for (const error of failures) {
      const text = `${String(error)} ${JSON.stringify(error)} ${(error as Error).stack}`;
      expect(text).not.toContain(canary);
      expect(text).not.toContain(dataKey.toString('base64'));
      expect(text).not.toContain(dataKey.toString('hex'));
    }
  });
});

describe('key names a JavaScript object cannot hold', () => {
  it('refuses __proto__ when sealing and when opening, instead of dropping it', () => {
    const dataKey = new Uint8Array(32).fill(6);
    const binding: Binding = { scope: 'strict', namespace: 'n', name: 'x' };
    const values = Object.fromEntries([['__proto__', Buffer.from('v')]]);
    expectCode(() => seal(dataKey, binding, values), ['InvalidEnvelope']);
    const envelope = seal(dataKey, binding, { K: Buffer.from('v') });
    const data = Object.fromEntries([['__proto__', envelope.data.K!]]);
    expectCode(() => openEnvelope({ dataKey, binding, envelope: { ...envelope, data } }), ['InvalidEnvelope']);
  });
});
