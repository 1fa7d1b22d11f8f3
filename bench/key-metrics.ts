// What the data-key metrics cost the controller (issue 18, item 5): the CPU of computing
// a record's key facts (once per watch event of an EnvelopeSecret), of one scrape's
// summary over every record, and the heap the facts add to the records. No API call is
// added: everything comes from the cache. In process, on real EnvelopeSecrets sealed for
// one aws-kms-shaped key and one age recipient (the shapes the manifest holds; no KMS).
//
//   npx node --expose-gc bench/key-metrics.ts [--counts 1000,100000] [--runs 20]
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { formatSealedAt } from '../src/api/validation.ts';
import { KeyLabels, keyFactsOf, summarizeKeys } from '../src/controller/key-metrics.ts';
import { envelopeSecretRecord, type EnvelopeSecretObject } from '../src/controller/records.ts';

const { values: flags } = parseArgs({ options: { counts: { type: 'string', default: '1000,100000' }, runs: { type: 'string', default: '20' } } });
const COUNTS = flags.counts.split(',').map(Number);
const RUNS = Number(flags.runs);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const AGE = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

/** An object as a watch event gives it: parsed from JSON, so that no two share strings. */
function object(i: number): EnvelopeSecretObject {
  const sealedAt = formatSealedAt(new Date(Date.UTC(2026, 0, 1) - (i % 400) * 86_400_000));
  return JSON.parse(
    JSON.stringify({
      apiVersion: 'envseal.dev/v1alpha1',
      kind: 'EnvelopeSecret',
      metadata: { name: `s-${i}`, namespace: 'bench', uid: `uid-${i}`, generation: 1, resourceVersion: String(i) },
      spec: {
        envelopes: [
          {
            id: `${'A'.repeat(43)}=`,
            suite: 'A256GCM-HKDF-SHA512-COMMIT',
            commitment: `${'B'.repeat(43)}=`,
            sealedAt,
            recipients: [
              { provider: 'aws-kms', keyId: KEY_ARN, encryptedKey: 'C'.repeat(244) },
              { provider: 'age', recipient: AGE, encryptedKey: 'D'.repeat(312) },
            ],
            data: { PASSWORD: 'E'.repeat(60) },
          },
        ],
      },
    }),
  ) as EnvelopeSecretObject;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function heapAfterGc(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

for (const count of COUNTS) {
  const objects = Array.from({ length: count }, (_, i) => object(i));
  // CPU of keyFactsOf alone, per object (what each watch event adds to making its record).
  const factsMs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const labels = new KeyLabels();
    const start = performance.now();
    for (const o of objects) keyFactsOf(o.spec, labels);
    factsMs.push(performance.now() - start);
  }
  // Heap of the records with and without the facts (the facts are what this item adds).
  const labels = new KeyLabels();
  const before = heapAfterGc();
  const withFacts = objects.map((o) => envelopeSecretRecord(o, labels));
  const withFactsBytes = heapAfterGc() - before;
  const before2 = heapAfterGc();
  const withoutFacts = objects.map((o) => {
    const { oldestSealedAtMinute: _o, unknownAge: _u, keys: _k, otherKeys: _x, ...rest } = envelopeSecretRecord(o);
    return rest;
  });
  const withoutFactsBytes = heapAfterGc() - before2;
  // CPU of one scrape's summary over every record.
  const now = Date.UTC(2026, 5, 1);
  const scrapeMs: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const start = performance.now();
    summarizeKeys(withFacts, now);
    scrapeMs.push(performance.now() - start);
  }
  const perObjectUs = (median(factsMs) * 1000) / count;
  console.log(
    `${count} objects: keyFactsOf ${perObjectUs.toFixed(2)} µs/object (${median(factsMs).toFixed(1)} ms all); ` +
      `one scrape ${median(scrapeMs).toFixed(2)} ms; ` +
      `records ${(withFactsBytes / count).toFixed(0)} B/object with the facts, ${(withoutFactsBytes / count).toFixed(0)} without ` +
      `(+${((withFactsBytes - withoutFactsBytes) / count).toFixed(0)} B/object, ${((withFactsBytes - withoutFactsBytes) / 1024 / 1024).toFixed(2)} MiB in all); ` +
      `${labels.size} distinct labels`,
  );
  if (withoutFacts.length !== withFacts.length) throw new Error('unreachable');
}
