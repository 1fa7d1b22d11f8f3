// The leak check over the whole e2e run (meant to run last; see docs/reliability.md):
// every log line and metrics scrape recorded by every controller any test file started
// (test/harness/faults-leaks.ts), every Event in every namespace and every
// EnvelopeSecret status in the cluster are scanned for
// - the canary marker every test value carries ("CANARY-"), raw, in base64 at each of
//   the three byte alignments, and in hex;
// - age identities ("AGE-SECRET-KEY-");
// - every data key, in base64 and hex: those the tests declared when sealing (KMS keys
//   included), and those recovered here by unwrapping every envelope in the cluster with
//   the cluster age identities found in the cluster, with the value keys derived from them.
// This file also produces material of its own (good, moved, tampered and forged objects
// with canary values), so that it checks something even when it runs alone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { createAgeProvider } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { CANARY_MARKER, clusterSecrets, declaringDataKeys, KeyNeedles, readRecord, scanTexts } from '../harness/faults-leaks.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, paths, publishedRecipient } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const client = adminClient();
const controllerNamespace = uniqueName('envseal-leaks');
const ns = uniqueName('leaks');
const other = uniqueName('leaks-other');
let controller: TestController | undefined;
let recipient: string;
const sealer = ProviderRegistry.of([declaringDataKeys(createAgeProvider({}))]);

const seal = (namespace: string, name: string, values: Record<string, string>): Promise<EnvelopeSecret> =>
  sealFor({ namespace, name, values, targets: [ageTarget(recipient)], providers: sealer });
const apply = applyOrThrow;

async function waitReason(namespace: string, name: string, reason: string): Promise<void> {
  await waitFor(`${namespace}/${name} ${reason}`, async () => {
    const es = await getOrUndefined<EnvelopeSecret & { metadata: { generation: number } }>(client, paths.envelopeSecret(namespace, name));
    return es?.status?.conditions?.find((c) => c.type === 'Ready')?.reason === reason && es.status.observedGeneration === es.metadata.generation;
  });
}

async function listAllPages<T>(path: string): Promise<T[]> {
  const items: T[] = [];
  let token: string | undefined;
  do {
    const page = await client.request<{ items: T[]; metadata: { continue?: string } }>({ method: 'GET', path, query: { limit: 500, continue: token } });
    items.push(...page.items);
    token = page.metadata.continue || undefined;
  } while (token);
  return items;
}

beforeAll(async () => {
  await installCrd();
  for (const name of [controllerNamespace, ns, other]) await createNamespace(client, name);
  controller = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace: controllerNamespace, namespaces: [ns, other] } });
  recipient = await publishedRecipient(client, controllerNamespace);
});

afterAll(async () => {
  await controller?.stop();
});

describe('leak check over the whole e2e run', () => {
  it('produces material of its own: synced, moved, tampered and forged objects with canary values', async () => {
    await apply(await seal(ns, 'good', { PASSWORD: `${CANARY_MARKER}leaks-good-1f2e3d`, TOKEN: `${CANARY_MARKER}leaks-token-9a8b7c` }));
    await apply({ ...(await seal(ns, 'moved', { K: `${CANARY_MARKER}leaks-moved` })), metadata: { name: 'moved', namespace: other } });
    const tampered = await seal(ns, 'tampered', { A: `${CANARY_MARKER}leaks-a`, B: `${CANARY_MARKER}leaks-b` });
    const raw = Buffer.from(tampered.spec.envelopes[0]!.data.A!, 'base64');
    raw[14]! ^= 0x20;
    tampered.spec.envelopes[0]!.data.A = raw.toString('base64');
    await apply(tampered);
    const forged = await seal(ns, 'forged', { K: `${CANARY_MARKER}leaks-forged` });
    forged.spec.envelopes[0]!.recipients = (await seal(ns, 'forged', { K: `${CANARY_MARKER}leaks-decoy` })).spec.envelopes[0]!.recipients;
    await apply(forged);
    await waitReason(ns, 'good', 'Synced');
    await waitReason(other, 'moved', 'ContextMismatch');
    await waitReason(ns, 'tampered', 'DecryptFailed');
    await waitReason(ns, 'forged', 'CommitmentMismatch');
  });

  it('finds the canaries and data keys where they belong (the scanner works)', async () => {
    const { dataKeys } = await clusterSecrets(client);
    expect(dataKeys.length).toBeGreaterThan(0);
    const keys = new KeyNeedles();
    for (const key of dataKeys) keys.add(key);
    // The materialized Secret holds the values in base64: the scanner must see them there.
    const secret = await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'good'));
    const found = scanTexts(new Map([['the Secret ns/good', JSON.stringify(secret)]]), keys);
    expect(found.map((f) => f.what)).toContain('canary marker, base64 alignment 0');
    // A data key written into a log line, in base64 or in hex, is found.
    const key = Buffer.from(dataKeys[0]!);
    const planted = new Map([
      ['base64', `{"msg":"oops","key":"${key.toString('base64')}"}`],
      ['hex', `unwrapped ${key.toString('hex').toUpperCase()} ok`],
      ['plain', `value=${CANARY_MARKER}x`],
    ]);
    expect(
      scanTexts(planted, keys)
        .map((f) => `${f.source}: ${f.what}`)
        .sort(),
    ).toEqual(['base64: a data key or value key in base64', 'hex: a data key or value key in hex', 'plain: canary marker']);
  });

  it('no canary, identity or data key in any log line, Event, status or metric of the run', async () => {
    await controller?.stop();
    controller = undefined;
    const record = readRecord();
    const cluster = await clusterSecrets(client);
    const keys = new KeyNeedles();
    for (const key of [...record.declaredDataKeys, ...cluster.dataKeys, ...cluster.valueKeys]) keys.add(key);

    const events = await listAllPages<{ metadata: { namespace: string } }>('/api/v1/events');
    const sources = await listAllPages<EnvelopeSecret & { metadata: { namespace: string; name: string } }>(paths.envelopeSecrets());
    const texts = new Map(record.texts);
    texts.set('every Event in the cluster', events.map((e) => JSON.stringify(e)).join('\n'));
    texts.set(
      'every EnvelopeSecret status in the cluster',
      sources.map((s) => `${s.metadata.namespace}/${s.metadata.name} ${JSON.stringify(s.status ?? {})}`).join('\n'),
    );

    const withMarker = cluster.values.filter((v) => v.includes(CANARY_MARKER)).length;
    const summary = {
      recordFiles: record.files,
      logLines: record.logLines,
      metricScrapes: record.metricScrapes,
      events: events.length,
      statuses: sources.length,
      ageIdentities: cluster.identities.length,
      dataKeys: keys.size,
      declaredDataKeys: record.declaredDataKeys.length,
      recoveredValues: cluster.values.length,
      recoveredValuesWithMarker: withMarker,
      megabytesScanned: Math.round([...texts.values()].reduce((n, t) => n + t.length, 0) / 1e5) / 10,
    };
    process.stderr.write(`[zz-leaks] scanned: ${JSON.stringify(summary)}\n`);

    expect(record.logLines).toBeGreaterThan(0);
    expect(record.metricScrapes).toBeGreaterThan(0);
    expect(events.length).toBeGreaterThan(0);
    expect(sources.length).toBeGreaterThan(0);
    expect(cluster.identities.length).toBeGreaterThan(0);
    expect(withMarker).toBeGreaterThan(0);
    expect(scanTexts(texts, keys)).toEqual([]);
  }, 600_000);
});
