// Fuzzing of the whole opening path as the controller runs it: parse the manifest
// (parseEnvelopeSecret), then open it (openEnvelopeSecret) with the age provider. No
// exception but ManifestError, EnvelopeError or ProviderError; what opens is exactly
// what was sealed; no error message holds a value, a data key or the identity.
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../api/types.ts';
import { ManifestError, parseEnvelopeSecret } from '../api/validation.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import { seededRandom } from '../envelope/random.ts';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { ProviderError } from '../providers/types.ts';
import { openEnvelopeSecret } from './open.ts';
import { sealEnvelopeSecret } from './seal.ts';
import { applyCommonMutation, isCommonMutation, nodes, parentOf } from '../test-support/json-mutations.ts';

const RUNS = 10_000;
const TIMEOUT_MS = 180_000;
const CANARY = 'CANARY-fuzz-open';
const values: Record<string, Buffer> = { PASSWORD: Buffer.from(`${CANARY}-password`), USER: Buffer.from(`${CANARY}-user`) };

let identity: string;
let providers: ProviderRegistry;
let seed: EnvelopeSecret;
let secretTexts: string[];

beforeAll(async () => {
  const mine = await generateAgeIdentity();
  const stranger = await generateAgeIdentity();
  identity = mine.identity;
  providers = ProviderRegistry.of([createAgeProvider({ identities: [identity] })]);
  const sealer = ProviderRegistry.of([createAgeProvider({})]);
  // Two envelopes, the first with a recipient this side cannot open, then its own.
  const first = await sealEnvelopeSecret({
    values: { PASSWORD: values.PASSWORD! },
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    targets: [
      { provider: 'age', target: stranger.recipient },
      { provider: 'age', target: mine.recipient },
    ],
    providers: sealer,
    random: seededRandom('fuzz-open-1'),
  });
  const second = await sealEnvelopeSecret({
    values: { USER: values.USER! },
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    targets: [{ provider: 'age', target: mine.recipient }],
    providers: sealer,
    random: seededRandom('fuzz-open-2'),
  });
  seed = { ...first, spec: { ...first.spec, envelopes: [...first.spec.envelopes, ...second.spec.envelopes] } };
  secretTexts = [CANARY, identity, identity.slice(15, 50)];
});

interface Mutation {
  at: number;
  kind: 'replace' | 'delete' | 'flip' | 'truncate' | 'swap' | 'rename' | 'move';
  value: unknown;
  n: number;
}

const replacement = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.base64String({ maxLength: 120 }),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('base64')),
  fc.constantFrom('age', 'aws-kms', 'strict', 'namespace', 'cluster', 'other-ns', 'other-name', 'A256GCM-HKDF-SHA512', '__proto__', ''),
);
const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('replace', 'delete', 'flip', 'flip', 'flip', 'truncate', 'swap', 'rename', 'move'),
  value: replacement,
  n: fc.nat(),
});

function mutate(doc: unknown, m: Mutation): unknown {
  const copy = JSON.parse(JSON.stringify(doc)) as Record<string, unknown>;
  const all = nodes(copy).filter((p) => p.length > 0);
  const path = all[m.at % all.length]!;
  const { parent, key } = parentOf(copy, path)!;
  const current = parent[key];
  if (isCommonMutation(m.kind)) {
    applyCommonMutation(parent, key, m.kind, m.value, m.n);
    return copy;
  }
  switch (m.kind) {
    case 'rename':
      if (!Array.isArray(parent)) {
        delete parent[key];
        parent[`${String(key)}${m.n % 2 === 0 ? '_' : '.x'}`] = current;
      }
      break;
    case 'move': {
      // The manifest applied as another object (the binding comes from the metadata).
      const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
      const { metadata, spec } = copy;
      if (m.n % 3 === 0 && isObject(metadata)) metadata.namespace = 'staging';
      else if (m.n % 3 === 1 && isObject(metadata)) metadata.name = 'db2';
      else if (isObject(spec)) spec.scope = ['namespace', 'cluster'][m.n % 2];
      break;
    }
  }
  return copy;
}

function fail(message: string): never {
  throw new Error(message);
}

describe('fuzzing parse + openEnvelopeSecret (age)', () => {
  it('opens the unmutated manifest', async () => {
    const opened = await openEnvelopeSecret({ secret: parseEnvelopeSecret(JSON.parse(JSON.stringify(seed))), providers });
    expect(opened).toEqual(values);
  });

  it(
    `throws only typed errors, and opens only exactly what was sealed (${RUNS} cases)`,
    async () => {
      const outcomes = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), async (mutations) => {
          const doc = mutations.reduce<unknown>((d, m) => mutate(d, m), seed);
          let outcome: string;
          try {
            const secret = parseEnvelopeSecret(doc);
            const opened = await openEnvelopeSecret({ secret, providers });
            for (const [key, value] of Object.entries(opened))
              if (!values[key]?.equals(value)) fail(`opened ${JSON.stringify(key)} to something not sealed under it`);
            outcome = 'opened';
          } catch (error) {
            if (error instanceof ManifestError) outcome = 'ManifestError';
            else if (error instanceof EnvelopeError) outcome = `EnvelopeError:${error.code}`;
            else if (error instanceof ProviderError) outcome = `ProviderError:${error.code}`;
            else throw error;
            for (const text of secretTexts)
              if ((error as Error).message.includes(text)) fail(`error message holds secret material: ${(error as Error).message}`);
          }
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }),
        { numRuns: RUNS },
      );
      // The mutations reached every layer: the parser, the provider and the envelope.
      expect(outcomes.get('ManifestError')).toBeGreaterThan(0);
      expect([...outcomes.keys()].some((o) => o.startsWith('ProviderError'))).toBe(true);
      expect([...outcomes.keys()].some((o) => o.startsWith('EnvelopeError'))).toBe(true);
    },
    TIMEOUT_MS,
  );
});
