// Fuzzing of opening: openEnvelope throws nothing but an EnvelopeError, whatever the
// (well-typed) input; when it does open, it returns exactly what was sealed; its error
// messages never hold a value or the data key. Inputs: sealed envelopes with random
// mutations (bit flips, truncations, swaps, renames, other bindings, other keys), and
// arbitrary strings and byte arrays in every field.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Binding } from './context.ts';
import { type EnvelopeBody, openEnvelope, SUITE, sealEnvelope } from './envelope.ts';
import { EnvelopeError } from './errors.ts';
import { seededRandom } from './random.ts';

const RUNS = { mutated: 20_000, arbitrary: 12_000, roundTrip: 3_000 };
/** Generous: the runs take a few seconds on an idle machine, several times that on a loaded one. */
const TIMEOUT_MS = 120_000;

const CANARY = 'CANARY-fuzz-envelope';
const dataKey = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
const binding: Binding = { scope: 'strict', namespace: 'prod', name: 'db' };
const values = { DB_PASSWORD: Buffer.from(`${CANARY}-password`), EMPTY: Buffer.alloc(0), BIN: Buffer.from([0, 255, 1, 254]) };
const sealed = sealEnvelope({ dataKey, binding, values, random: seededRandom('fuzz-envelope') });
const secretTexts = [CANARY, Buffer.from(dataKey).toString('hex'), Buffer.from(dataKey).toString('base64').slice(0, 40)];

function fail(message: string): never {
  throw new Error(message);
}

/**
 * Opens and classifies: 'opened' (then every value must be exactly the sealed one) or
 * the EnvelopeError's code. Any other exception fails the property.
 */
function tryOpen(
  input: { dataKey: Uint8Array; binding: Binding; envelope: EnvelopeBody; keys?: string[] },
  expected: Record<string, Buffer> | undefined,
): string {
  let opened: Record<string, Buffer>;
  try {
    opened = openEnvelope(input);
  } catch (error) {
    if (!(error instanceof EnvelopeError)) throw error;
    for (const text of secretTexts) if (error.message.includes(text)) fail(`an EnvelopeError message holds secret material: ${error.message}`);
    return error.code;
  }
  if (expected) {
    for (const [key, value] of Object.entries(opened)) {
      const want = expected[key];
      if (!want?.equals(value)) fail(`opened key ${JSON.stringify(key)} to something that was not sealed under it`);
    }
  }
  return 'opened';
}

const flip = (text: string, bit: number): string => {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length === 0) return text;
  const i = bit % (bytes.length * 8);
  bytes[i >> 3]! ^= 1 << (i & 7);
  return bytes.toString('base64');
};

type Change = (e: EnvelopeBody, n: number) => { envelope: EnvelopeBody; binding?: Binding; dataKey?: Uint8Array };
const changes: Record<string, Change> = {
  'flip a bit of a value': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    return { envelope: { ...e, data: { ...e.data, [key]: flip(e.data[key]!, n) } } };
  },
  'flip a bit of the id': (e, n) => ({ envelope: { ...e, id: flip(e.id, n) } }),
  'flip a bit of the commitment': (e, n) => ({ envelope: { ...e, commitment: flip(e.commitment, n) } }),
  'flip a bit of the data key': (e, n) => {
    const key = Uint8Array.from(dataKey);
    key[(n >> 3) % 32]! ^= 1 << (n & 7);
    return { envelope: e, dataKey: key };
  },
  'truncate a value': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    const raw = Buffer.from(e.data[key]!, 'base64');
    return { envelope: { ...e, data: { ...e.data, [key]: raw.subarray(0, n % raw.length).toString('base64') } } };
  },
  'swap two values': (e, n) => {
    const keys = Object.keys(e.data);
    const a = keys[n % keys.length]!;
    const b = keys[(n + 1) % keys.length]!;
    return { envelope: { ...e, data: { ...e.data, [a]: e.data[b]!, [b]: e.data[a]! } } };
  },
  'rename a key': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    const data = { ...e.data };
    const value = data[key]!;
    delete data[key];
    data[`${key}_${n % 3}`] = value;
    return { envelope: { ...e, data } };
  },
  'another namespace': (e, n) => ({ envelope: e, binding: { ...binding, namespace: `ns-${n % 5}` } }),
  'another name': (e, n) => ({ envelope: e, binding: { ...binding, name: `name-${n % 5}` } }),
  'another scope': (e, n) => ({ envelope: e, binding: { ...binding, scope: n % 2 === 0 ? 'cluster' : 'namespace' } }),
  'another suite': (e, n) => ({ envelope: { ...e, suite: ['A256GCM-HKDF-SHA512', `${SUITE} `, SUITE.toLowerCase(), ''][n % 4]! } }),
  'append garbage to a value': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    return {
      envelope: {
        ...e,
        data: { ...e.data, [key]: Buffer.concat([Buffer.from(e.data[key]!, 'base64'), Buffer.alloc((n % 40) + 1, n & 0xff)]).toString('base64') },
      },
    };
  },
  'a value in base64url': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    return { envelope: { ...e, data: { ...e.data, [key]: Buffer.from(e.data[key]!, 'base64').toString('base64url') } } };
  },
  'a value without padding': (e, n) => {
    const keys = Object.keys(e.data);
    const key = keys[n % keys.length]!;
    return { envelope: { ...e, data: { ...e.data, [key]: e.data[key]!.replace(/=+$/, '') } } };
  },
};

describe('fuzzing openEnvelope', () => {
  it(
    `refuses every mutation of a sealed envelope with an EnvelopeError, or opens exactly what was sealed (${RUNS.mutated} cases)`,
    () => {
      expect(tryOpen({ dataKey, binding, envelope: sealed }, values)).toBe('opened');
      const names = Object.keys(changes);
      const outcomes = new Map<string, number>();
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat(names.length - 1), fc.nat()), { minLength: 1, maxLength: 3 }),
          fc.option(fc.subarray(Object.keys(values)), { nil: undefined }),
          (steps, keys) => {
            let envelope: EnvelopeBody = { ...sealed, data: { ...sealed.data } };
            let b = binding;
            let k: Uint8Array = dataKey;
            for (const [which, n] of steps) {
              const next = changes[names[which]!]!(envelope, n);
              envelope = next.envelope;
              b = next.binding ?? b;
              k = next.dataKey ?? k;
            }
            const outcome = tryOpen({ dataKey: k, binding: b, envelope, ...(keys ? { keys } : {}) }, values);
            outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          },
        ),
        { numRuns: RUNS.mutated },
      );
      // Every kind of refusal happened; and what opened was only ever the sealed values.
      for (const code of ['ValueAuthenticationFailed', 'CommitmentMismatch', 'InvalidBase64', 'UnknownSuite'])
        expect(outcomes.get(code), code).toBeGreaterThan(0);
    },
    TIMEOUT_MS,
  );

  it(
    `throws only EnvelopeError for arbitrary strings and bytes in every field (${RUNS.arbitrary} cases)`,
    () => {
      const text = fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.base64String({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b).toString('base64')),
        fc.constant(sealed.id),
        fc.constant(sealed.commitment),
      );
      const envelopeArb = fc.record({
        id: text,
        suite: fc.oneof(fc.constant(SUITE), fc.string({ maxLength: 30 })),
        commitment: text,
        data: fc.dictionary(
          fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'toString', 'DB_PASSWORD')),
          fc.oneof(text, fc.constantFrom(...Object.values(sealed.data))),
          { maxKeys: 4 },
        ),
      });
      const bindingArb = fc.record({
        scope: fc.constantFrom('strict' as const, 'namespace' as const, 'cluster' as const),
        namespace: fc.string({ maxLength: 70 }),
        name: fc.string({ maxLength: 260 }),
      });
      const keyArb = fc.oneof(fc.constant(dataKey), fc.uint8Array({ maxLength: 40 }));
      fc.assert(
        fc.property(
          keyArb,
          bindingArb,
          envelopeArb,
          fc.option(fc.array(fc.string({ maxLength: 12 }), { maxLength: 3 }), { nil: undefined }),
          (k, b, envelope, keys) => {
            tryOpen({ dataKey: k, binding: b, envelope, ...(keys ? { keys } : {}) }, undefined);
          },
        ),
        { numRuns: RUNS.arbitrary },
      );
    },
    TIMEOUT_MS,
  );

  it(
    `opens exactly what it sealed, for any key names and values (${RUNS.roundTrip} cases)`,
    () => {
      const keyName = fc.oneof(
        fc.stringMatching(/^[-._a-zA-Z0-9]{1,30}$/),
        fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'a'.repeat(253)),
      );
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 32, maxLength: 32 }),
          fc.dictionary(keyName, fc.uint8Array({ maxLength: 200 }), { minKeys: 1, maxKeys: 5 }),
          fc.string({ maxLength: 8 }),
          (k, raw, seed) => {
            const input = Object.fromEntries(Object.entries(raw).map(([key, v]) => [key, Buffer.from(v)]));
            if (Object.hasOwn(input, '__proto__')) {
              // A JavaScript object cannot hold it as a plain key: refused, never dropped.
              try {
                sealEnvelope({ dataKey: k, binding, values: input, random: seededRandom(seed) });
              } catch (error) {
                if (error instanceof EnvelopeError && error.code === 'InvalidEnvelope') return;
                throw error;
              }
              fail('sealed a value under "__proto__"');
            }
            const envelope = sealEnvelope({ dataKey: k, binding, values: input, random: seededRandom(seed) });
            if (Object.keys(envelope.data).length !== Object.keys(input).length) fail('a key was lost when sealing');
            const opened = openEnvelope({ dataKey: k, binding, envelope });
            if (Object.keys(opened).length !== Object.keys(input).length) fail('a key was lost when opening');
            for (const [key, value] of Object.entries(input)) if (!opened[key]?.equals(value)) fail(`key ${key} did not round-trip`);
          },
        ),
        { numRuns: RUNS.roundTrip },
      );
    },
    TIMEOUT_MS,
  );
});
