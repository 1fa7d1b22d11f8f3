import { describe, expect, it } from 'vitest';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderError } from '../providers/types.ts';
import { createVaultTransitProvider } from '../providers/vault-transit/index.ts';
import { KeyLabels, keyFactsOf, MAX_KEYS_PER_OBJECT } from './key-metrics.ts';
import { ControllerMetrics } from './metrics.ts';

const context = { encryptionContext: { 'envseal.dev/scope': 'strict', 'envseal.dev/namespace': 'team-7f3a', 'envseal.dev/name': 'db-7f3a' } };

/** The label sets of a metric's series, from the registry's own JSON. */
async function series(metrics: ControllerMetrics, name: string): Promise<{ labels: Record<string, string | number>; value: number }[]> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return (metric?.values ?? []).map((v) => ({ labels: { ...v.labels } as Record<string, string | number>, value: v.value }));
}

describe('ControllerMetrics.instrument', () => {
  it('counts and times each key-provider call under the provider name, the operation and the outcome', async () => {
    const metrics = new ControllerMetrics({ defaultMetrics: false });
    const { identity, recipient } = await generateAgeIdentity();
    const age = metrics.instrument(createAgeProvider({ identities: [identity] }));
    // A Vault that cannot be reached: a closed port of the loopback, one attempt.
    const vault = metrics.instrument(createVaultTransitProvider({ address: 'http://127.0.0.1:9', token: 'unused', maxAttempts: 1 }));

    const wrapped = await age.wrap({ target: recipient, dataKey: new Uint8Array(32).fill(7), ...context });
    expect(Buffer.from(await age.unwrap({ recipient: wrapped, ...context }))).toEqual(Buffer.alloc(32, 7));
    const failed = await vault
      .unwrap({
        recipient: { provider: 'vault-transit', keyId: 'transit/keys/app', encryptedKey: Buffer.from('vault:v1:AAAA').toString('base64') },
        ...context,
      })
      .catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(ProviderError);
    expect((failed as ProviderError).code).toBe('Unavailable');
    // The message a status and an Event carry names the provider.
    expect((failed as ProviderError).message).toMatch(/^vault-transit decrypt with key transit\/keys\/app failed/);

    expect(await series(metrics, 'envseal_kms_requests_total')).toEqual(
      expect.arrayContaining([
        { labels: { provider: 'age', operation: 'wrap', outcome: 'success' }, value: 1 },
        { labels: { provider: 'age', operation: 'unwrap', outcome: 'success' }, value: 1 },
        { labels: { provider: 'vault-transit', operation: 'unwrap', outcome: 'Unavailable' }, value: 1 },
      ]),
    );
    expect(await series(metrics, 'envseal_kms_requests_total')).toHaveLength(3);
    const timed = (await series(metrics, 'envseal_kms_request_duration_seconds')).filter((s) => s.labels.le === undefined);
    expect(new Set(timed.map((s) => `${s.labels.provider}/${s.labels.operation}`))).toEqual(new Set(['age/wrap', 'age/unwrap', 'vault-transit/unwrap']));
    // Bounded label values: provider names, operations and error codes only; no key, recipient or object name.
    const text = await metrics.registry.metrics();
    expect(text).not.toContain(recipient);
    expect(text).not.toContain('transit/keys/app');
    expect(text).not.toContain('7f3a');
  });
});

describe('key metrics: data-key age and EnvelopeSecrets per key', () => {
  const NOW = Date.parse('2026-06-01T00:00:00Z');
  const arn = (n: number | string) => `arn:aws:kms:eu-west-1:111122223333:key/${String(n).padStart(8, '0')}-0000-4000-8000-000000000000`;
  const kms = (n: number | string) => ({ provider: 'aws-kms', keyId: arn(n), encryptedKey: 'AAAA' });
  const envelope = (sealedAt: string | undefined, ...recipients: object[]) => ({ ...(sealedAt ? { sealedAt } : {}), recipients, data: { K: 'x' } });
  const record = (...envelopes: object[]) => keyFactsOf({ envelopes });

  it('exports the oldest data key, the objects past each age and of unknown age, and the objects per key, at each scrape', async () => {
    const metrics = new ControllerMetrics({ defaultMetrics: false });
    const records = [
      record(
        envelope('2026-05-01T00:00:00Z', kms(1)),
        envelope('2025-01-01T00:00:00Z', kms(1), { provider: 'age', recipient: 'age1zzz', encryptedKey: 'AAAA' }),
      ),
      record(envelope('2026-05-30T00:00:00Z', kms(1))),
      record(envelope(undefined, kms(2))),
      // A time in the future (a wrong clock, or a writer's lie) never makes anything look older.
      record(envelope('2030-01-01T00:00:00Z', kms(2))),
    ];
    metrics.watchKeys(
      () => records,
      () => NOW,
    );
    expect(await series(metrics, 'envseal_data_key_oldest_seconds')).toEqual([{ labels: {}, value: (NOW - Date.parse('2025-01-01T00:00:00Z')) / 1000 }]);
    expect(await series(metrics, 'envseal_envelopesecrets_data_key_age_unknown')).toEqual([{ labels: {}, value: 1 }]);
    expect(await series(metrics, 'envseal_envelopesecrets_data_key_older_than')).toEqual([
      { labels: { days: '30' }, value: 1 },
      { labels: { days: '90' }, value: 1 },
      { labels: { days: '180' }, value: 1 },
      { labels: { days: '365' }, value: 1 },
    ]);
    expect(await series(metrics, 'envseal_envelopesecrets_by_key')).toEqual([
      { labels: { key: `aws-kms ${arn(1)}` }, value: 2 },
      { labels: { key: `aws-kms ${arn(2)}` }, value: 2 },
      { labels: { key: 'age age1zzz' }, value: 1 },
    ]);
    // Scrapes see the cache as it is now: an object gone is gone from the counts.
    records.splice(0, 1);
    metrics.watchKeys(
      () => records,
      () => NOW + 2000,
    );
    expect(await series(metrics, 'envseal_data_key_oldest_seconds')).toEqual([{ labels: {}, value: (NOW + 2000 - Date.parse('2026-05-30T00:00:00Z')) / 1000 }]);
    // The most used keys first.
    expect(await series(metrics, 'envseal_envelopesecrets_by_key')).toEqual([
      { labels: { key: `aws-kms ${arn(2)}` }, value: 2 },
      { labels: { key: `aws-kms ${arn(1)}` }, value: 1 },
    ]);
    // A standby (no cache) exports zeros, not stale numbers.
    metrics.watchKeys(undefined);
    expect(await series(metrics, 'envseal_data_key_oldest_seconds')).toEqual([{ labels: {}, value: 0 }]);
    expect(await series(metrics, 'envseal_envelopesecrets_by_key')).toEqual([]);
  });

  it('bounds the key label: a tenant inventing keys fills only `other`, and real keys keep their own label', async () => {
    const metrics = new ControllerMetrics({ defaultMetrics: false, maxKeyLabels: 5 });
    const records = [
      // Three real keys, each used by several objects.
      ...Array.from({ length: 4 }, () => record(envelope('2026-05-01T00:00:00Z', kms('a')))),
      ...Array.from({ length: 3 }, () => record(envelope('2026-05-01T00:00:00Z', kms('b')))),
      ...Array.from({ length: 2 }, () => record(envelope('2026-05-01T00:00:00Z', kms('c')))),
      // 300 objects of a hostile tenant, each with a made-up key of its own...
      ...Array.from({ length: 300 }, (_, i) => record(envelope('2026-05-01T00:00:00Z', kms(`fake${i}`)))),
      // ...one naming 64 keys, one with a key id too long to be a label, one with an unknown provider.
      record(...Array.from({ length: 4 }, (_, e) => envelope('2026-05-01T00:00:00Z', ...Array.from({ length: 16 }, (_, r) => kms(`many${e * 16 + r}`))))),
      record(envelope('2026-05-01T00:00:00Z', { provider: 'aws-kms', keyId: `arn:${'x'.repeat(2000)}`, encryptedKey: 'AAAA' })),
      record(envelope('2026-05-01T00:00:00Z', { provider: 'made-up', keyId: 'k', encryptedKey: 'AAAA' })),
    ];
    metrics.watchKeys(
      () => records,
      () => NOW,
    );
    const byKey = await series(metrics, 'envseal_envelopesecrets_by_key');
    expect(byKey).toHaveLength(6);
    expect(byKey.slice(0, 3)).toEqual([
      { labels: { key: `aws-kms ${arn('a')}` }, value: 4 },
      { labels: { key: `aws-kms ${arn('b')}` }, value: 3 },
      { labels: { key: `aws-kms ${arn('c')}` }, value: 2 },
    ]);
    // Every object that uses a key without a label of its own, counted once.
    expect(byKey.at(-1)).toEqual({ labels: { key: 'other' }, value: 303 - 2 });
    const text = await metrics.registry.metrics();
    expect(text).not.toContain('x'.repeat(200));
    expect(text).not.toContain('made-up');
    // Each record keeps at most 16 keys, of bounded length.
    const many = records.at(-3)!;
    expect([many.keys.length, many.otherKeys]).toEqual([MAX_KEYS_PER_OBJECT, true]);
  });

  it('keeps one copy of each key label for all records, and drops labels no record uses', () => {
    const labels = new KeyLabels();
    const spec = (n: number) => ({ envelopes: [envelope('2026-05-01T00:00:00Z', kms(n))] });
    // Strings from separate parses, as from separate watch events.
    const a = keyFactsOf(JSON.parse(JSON.stringify(spec(1))), labels);
    const b = keyFactsOf(JSON.parse(JSON.stringify(spec(1))), labels);
    const c = keyFactsOf(spec(2), labels);
    expect(a.keys[0]).toBe(b.keys[0]);
    expect(labels.size).toBe(2);
    labels.retain([a, b]);
    expect(labels.size).toBe(1);
    expect(c.keys).toEqual([`aws-kms ${arn(2)}`]);
    // Invalid shapes (the API server's CRD refuses them; a record is made before validation) cost nothing.
    expect(keyFactsOf({ envelopes: [null, { sealedAt: 7, recipients: 'x' }] }, labels)).toEqual({ unknownAge: true, keys: [], otherKeys: false });
    expect(keyFactsOf(undefined)).toEqual({ unknownAge: false, keys: [], otherKeys: false });
  });
});
