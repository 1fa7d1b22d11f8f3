// Fuzzing of manifest parsing: validateEnvelopeSecret never throws, whatever the
// document; parseEnvelopeSecret throws nothing but a ManifestError; no issue message
// quotes a sealed value. Inputs: arbitrary JSON documents, and a valid manifest with
// one to three random mutations (replace, delete, flip a bit, truncate, swap, rename).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sealEnvelope } from '../envelope/envelope.ts';
import { seededRandom } from '../envelope/random.ts';
import { API_VERSION, KIND } from './types.ts';
import { ManifestError, parseEnvelopeSecret, validateEnvelopeSecret } from './validation.ts';
import { ageShapedKey } from '../test-support/age-file.ts';
import { applyCommonMutation, isCommonMutation, nodes, parentOf } from '../test-support/json-mutations.ts';

const FUZZ_RUNS = { arbitrary: 25_000, mutated: 30_000 };
/** Generous: the runs take seconds on an idle machine, several times that on a loaded one. */
const TIMEOUT_MS = 120_000;

const CANARY = 'CANARY-fuzz-manifest-value';

function validManifest(): Record<string, unknown> {
  const binding = { scope: 'strict' as const, namespace: 'prod', name: 'db' };
  const envelope = sealEnvelope({
    dataKey: new Uint8Array(32).fill(9),
    binding,
    values: { DB_PASSWORD: Buffer.from('hunter2'), USER: Buffer.from('app'), 'tls.crt': Buffer.alloc(64, 1) },
    random: seededRandom('fuzz-manifest'),
  });
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: 'db', namespace: 'prod', labels: { team: 'a' } },
    spec: {
      scope: 'strict',
      envelopes: [
        {
          ...envelope,
          recipients: [
            { provider: 'age', recipient: 'age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq', encryptedKey: ageShapedKey() },
            {
              provider: 'aws-kms',
              keyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
              encryptedKey: Buffer.alloc(180, 4).toString('base64'),
            },
          ],
        },
      ],
      template: { type: 'Opaque', immutable: false, metadata: { labels: { a: 'b' }, annotations: { c: 'd' } } },
      restartWorkloads: [{ kind: 'Deployment', name: 'web' }],
    },
  };
}

// Keys and values that have tripped up JavaScript code before.
const trickyKey = fc.constantFrom(
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  '',
  '.',
  '..',
  '..x',
  'a/b',
  'é',
  'A'.repeat(254),
  'x'.repeat(63),
);
const base64ish = fc.oneof(
  fc.base64String({ maxLength: 200 }),
  fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b).toString('base64')),
  fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b).toString('base64url')),
  fc.uint8Array({ minLength: 1, maxLength: 60 }).map((b) => Buffer.from(b).toString('base64').replace(/=+$/, '')),
  fc.string({ unit: fc.constantFrom(...'ABCabc019+/=-_ \n\t'.split('')), maxLength: 80 }),
);
const replacement: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  base64ish,
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    Number.MAX_SAFE_INTEGER,
    -0,
    [],
    {},
    'A256GCM-HKDF-SHA512-COMMIT',
    'A256GCM-HKDF-SHA512',
    'age',
    'aws-kms',
    'gcp-kms',
    'strict',
    'namespace',
    'cluster',
    'none',
  ),
  fc.dictionary(fc.oneof(trickyKey, fc.string({ maxLength: 10 })), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 4 }),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 4 }),
);

interface Mutation {
  at: number;
  kind: 'replace' | 'delete' | 'flip' | 'truncate' | 'swap' | 'rename';
  value: unknown;
  n: number;
  key: string;
}

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('replace', 'delete', 'flip', 'truncate', 'swap', 'rename'),
  value: replacement,
  n: fc.nat(),
  key: fc.oneof(trickyKey, fc.string({ maxLength: 12 })),
});

/** Applies one mutation to a deep copy of doc. */
function mutate(doc: unknown, m: Mutation): unknown {
  const copy = JSON.parse(JSON.stringify(doc)) as unknown;
  const all = nodes(copy);
  const path = all[m.at % all.length]!;
  const slot = parentOf(copy, path);
  if (!slot) return m.kind === 'replace' ? m.value : copy;
  const { parent, key } = slot;
  if (isCommonMutation(m.kind)) applyCommonMutation(parent, key, m.kind, m.value, m.n);
  else if (m.kind === 'rename' && !Array.isArray(parent)) {
    const current = parent[key];
    delete parent[key];
    Object.defineProperty(parent, m.key, { value: current, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}

/** Prefixes one sealed-material string (a value, a wrapped key, an id, a commitment) with the canary. */
function plantCanary(doc: unknown, n: number): unknown {
  const spots = nodes(doc).filter((p) => {
    const last = p[p.length - 1];
    const sealed = p[p.length - 2] === 'data' || last === 'encryptedKey' || last === 'id' || last === 'commitment';
    return sealed && p[0] === 'spec' && p[1] === 'envelopes' && typeof parentOf(doc, p)?.parent[last!] === 'string';
  });
  if (spots.length === 0) return doc;
  const { parent, key } = parentOf(doc, spots[n % spots.length]!)!;
  parent[key] = `${CANARY}${String(parent[key])}`;
  return doc;
}

// Plain checks (no expect() in the hot loop: it costs more than the code under test).
function fail(message: string): never {
  throw new Error(message);
}

function checkTypedOutcome(doc: unknown): number {
  const issues = validateEnvelopeSecret(doc);
  if (!Array.isArray(issues)) fail('validateEnvelopeSecret did not return a list');
  for (const issue of issues) {
    if (typeof issue.path !== 'string' || typeof issue.message !== 'string') fail(`malformed issue ${JSON.stringify(issue)}`);
    // Issue messages name fields and keys; a sealed value (the canary) is never quoted.
    if (issue.message.includes(CANARY) || issue.path.includes(CANARY)) fail(`issue quotes a sealed value: ${issue.path}: ${issue.message}`);
  }
  try {
    const parsed = parseEnvelopeSecret(doc, 'fuzz.yaml');
    if (issues.length > 0) fail('parseEnvelopeSecret accepted a document with issues');
    if (parsed !== doc) fail('parseEnvelopeSecret returned another object');
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    if (issues.length === 0) fail('parseEnvelopeSecret refused a document without issues');
    if (error.issues.length !== issues.length) fail('ManifestError lists other issues than validateEnvelopeSecret');
  }
  return issues.length;
}

describe('fuzzing manifest parsing', () => {
  it('the valid manifest used as the seed is valid', () => {
    expect(validateEnvelopeSecret(validManifest())).toEqual([]);
  });

  it(
    `never throws on arbitrary JSON documents (${FUZZ_RUNS.arbitrary} cases)`,
    () => {
      const doc = fc.oneof(
        fc.jsonValue({ maxDepth: 4 }),
        fc.record({
          apiVersion: fc.constant(API_VERSION),
          kind: fc.constant(KIND),
          metadata: fc.jsonValue({ maxDepth: 2 }),
          spec: fc.jsonValue({ maxDepth: 3 }),
        }),
        fc.record({
          apiVersion: fc.constant(API_VERSION),
          kind: fc.constant(KIND),
          metadata: fc.constant({ name: 'x', namespace: 'y' }),
          spec: fc.record({
            envelopes: fc.array(fc.dictionary(fc.constantFrom('id', 'suite', 'commitment', 'recipients', 'data'), replacement), { maxLength: 3 }),
          }),
        }),
      );
      fc.assert(
        fc.property(doc, (d) => {
          checkTypedOutcome(d);
        }),
        { numRuns: FUZZ_RUNS.arbitrary },
      );
    },
    TIMEOUT_MS,
  );

  it(
    `never throws on a valid manifest with one to three random mutations (${FUZZ_RUNS.mutated} cases), and accepts it only when it is still well formed`,
    () => {
      const seed = validManifest();
      let accepted = 0;
      fc.assert(
        fc.property(fc.array(mutationArb, { minLength: 1, maxLength: 3 }), fc.option(fc.nat(), { nil: undefined }), (mutations, canaryAt) => {
          const mutated = mutations.reduce<unknown>((d, m) => mutate(d, m), seed);
          const doc = canaryAt === undefined ? mutated : plantCanary(mutated, canaryAt);
          if (checkTypedOutcome(doc) === 0) {
            accepted++;
            // Anything accepted still has the shape the controller relies on.
            const spec = (doc as { spec: { envelopes: { data: Record<string, unknown>; recipients: unknown[] }[] } }).spec;
            for (const envelope of spec.envelopes) {
              if (envelope.recipients.length === 0) fail('accepted an envelope without recipients');
              for (const value of Object.values(envelope.data)) if (typeof value !== 'string') fail('accepted a non-string value');
            }
          }
        }),
        { numRuns: FUZZ_RUNS.mutated },
      );
      // Some mutations are harmless (a label changed); most are refused.
      expect(accepted).toBeGreaterThan(0);
      expect(accepted).toBeLessThan(FUZZ_RUNS.mutated);
    },
    TIMEOUT_MS,
  );
});
