// The controller's key inventory metrics on a real API server: data-key age (sealedAt) and
// EnvelopeSecrets per key, scraped from the controller's /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectlApply, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const client = adminClient();
const controllerNamespace = uniqueName('envseal-keys');
const ns = uniqueName('keys');
let controller: TestController;
let recipient: string;

const DAY = 86_400;
const readyReason = async (name: string) =>
  (await getOrUndefined<EnvelopeSecret>(client, paths.envelopeSecret(ns, name)))?.status?.conditions?.find((c) => c.type === 'Ready')?.reason;

beforeAll(async () => {
  await installCrd();
  for (const name of [controllerNamespace, ns]) await createNamespace(client, name);
  controller = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace: controllerNamespace, namespaces: [ns] } });
  recipient = (
    await waitFor('recipient', () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')))
  ).data.recipient;
});

afterAll(async () => {
  await controller?.stop();
});

describe('controller key metrics', () => {
  it('exports the oldest data key age, objects of unknown age, and objects per key, with bounded labels', async () => {
    const sealed = (name: string) => sealFor({ namespace: ns, name, values: { K: 'v' }, targets: [ageTarget(recipient)] });
    // Fresh: sealedAt of now, kept by the API server (the CRD declares it).
    const fresh = await sealed('fresh');
    await applyOrThrow(fresh);
    const stored = await getOrUndefined<EnvelopeSecret>(client, paths.envelopeSecret(ns, 'fresh'));
    expect(stored?.spec.envelopes[0]?.sealedAt).toBe(fresh.spec.envelopes[0]?.sealedAt);
    expect(stored?.spec.envelopes[0]?.sealedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // Old: its sealedAt set back 400 days. It is informative, not authenticated: the object still opens.
    const old = await sealed('old');
    const oldSealedAt = new Date(Date.now() - 400 * DAY * 1000);
    old.spec.envelopes[0]!.sealedAt = `${oldSealedAt.toISOString().slice(0, 19)}Z`;
    await applyOrThrow(old);
    // The API server refuses a sealedAt that is not a UTC time to the second (the CRD's pattern).
    const bad = await sealed('bad-time');
    bad.spec.envelopes[0]!.sealedAt = '2026-01-01T00:00:00+01:00';
    const refused = await kubectlApply(bad);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('sealedAt');
    expect(await getOrUndefined(client, paths.envelopeSecret(ns, 'bad-time'))).toBeUndefined();
    // Legacy: sealed before sealedAt existed.
    const legacy = await sealed('legacy');
    delete legacy.spec.envelopes[0]!.sealedAt;
    await applyOrThrow(legacy);
    for (const name of ['fresh', 'old', 'legacy']) await waitFor(`${name} Ready`, async () => (await readyReason(name)) === 'Synced');

    await waitFor('the key metrics', async () => (await controller.metric('envseal_envelopesecrets_by_key')) >= 3, { timeoutMs: 30_000 });
    const text = await fetch(controller.metricsUrl).then((r) => r.text());
    const oldest = await controller.metric('envseal_data_key_oldest_seconds');
    expect(oldest).toBeGreaterThanOrEqual(400 * DAY - 5);
    expect(oldest).toBeLessThan(400 * DAY + 600);
    expect(await controller.metric('envseal_envelopesecrets_data_key_older_than', { days: '365' })).toBe(1);
    expect(await controller.metric('envseal_envelopesecrets_data_key_older_than', { days: '30' })).toBe(1);
    expect(await controller.metric('envseal_envelopesecrets_data_key_age_unknown')).toBe(1);
    // One key (the cluster's age recipient, shortened as the provider describes it) opens all three.
    const byKey = text.split('\n').filter((line) => line.startsWith('envseal_envelopesecrets_by_key{'));
    expect(byKey).toHaveLength(1);
    expect(byKey[0]).toMatch(/^envseal_envelopesecrets_by_key\{key="age age1[^"]+"\} 3$/);
    // The label names the key, never an object.
    for (const name of ['fresh', 'legacy', ns]) expect(byKey[0]).not.toContain(name);

    // An object gone is gone from the next scrape.
    await client.request({ method: 'DELETE', path: paths.envelopeSecret(ns, 'old') });
    await waitFor(
      'the old object out of the metrics',
      async () => (await controller.metric('envseal_envelopesecrets_data_key_older_than', { days: '365' })) === 0,
      {
        timeoutMs: 30_000,
      },
    );
    expect(await controller.metric('envseal_data_key_oldest_seconds')).toBeLessThan(600);
  });
});
