import { describe, expect, it } from 'vitest';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderError } from '../providers/types.ts';
import { createVaultTransitProvider } from '../providers/vault-transit/index.ts';
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
