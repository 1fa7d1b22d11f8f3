// The Argo CD health check (docs/argocd-health.lua), run in gopher-lua, the Lua engine
// Argo CD embeds, with the libraries Argo CD opens for a customization from argocd-cm
// (scripts/flux/argocd-lua-health), on real EnvelopeSecrets as the API server returns
// them, plus the states a live object passes through.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Condition, EnvelopeSecret } from '../../src/api/types.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { argocdHealth, gitopsTools } from '../harness/flux.ts';
import { type KmsEmulator, startLocalKms } from '../harness/kms-emulators.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, paths, publishedRecipient } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const scriptPath = path.join(repoRoot, 'docs/argocd-health.lua');
const client = adminClient();
const namespace = uniqueName('argocd-health');
// A namespace no controller watches: objects there keep the status the API server gives them.
const unwatched = uniqueName('argocd-unwatched');
let controller: TestController;
// A KMS the controller is configured for, stopped once a manifest is sealed: its outage is a retried failure.
let kms: KmsEmulator;
let binDir: string;

type Live = EnvelopeSecret & { metadata: { generation: number; uid: string } };

const health = (obj: unknown) => argocdHealth(binDir, scriptPath, obj);
const live = (name: string, ns = namespace) => getOrUndefined<Live>(client, paths.envelopeSecret(ns, name));
const condition = (es: Live | undefined, type: string) =>
  es?.status?.observedGeneration === es?.metadata.generation ? es?.status?.conditions?.find((c) => c.type === type) : undefined;
const withGeneration = (es: Live, generation: number): Live => ({ ...es, metadata: { ...es.metadata, generation } });
const withConditions = (es: Live, conditions: Condition[]): Live => ({ ...es, status: { observedGeneration: es.metadata.generation, conditions } });

let recipient: string;
const seal = (name: string, sealedFor = namespace) =>
  sealFor({ namespace: sealedFor, name, values: { PASSWORD: `${CANARY_MARKER}argocd "quoted" \\ ünïcode\n` }, targets: [ageTarget(recipient)] });

beforeAll(async () => {
  binDir = (await gitopsTools(['argocd-lua-health'])).binDir;
  await installCrd();
  await createNamespace(client, namespace);
  await createNamespace(client, unwatched);
  kms = await startLocalKms();
  controller = await startTestController({
    kubeConfig: adminKubeConfig(),
    config: {
      namespace,
      namespaces: [namespace],
      providers: { 'aws-kms': { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials, maxAttempts: 1 } },
    },
  });
  recipient = await publishedRecipient(client, namespace);
});

afterAll(async () => {
  await controller?.stop();
  await kms?.stop();
});

describe('the Argo CD health check, in gopher-lua', () => {
  it('runs with Argo CD’s library set: base and table only', async () => {
    // What makes this Argo CD’s engine and not a C Lua 5.1: a customization has no
    // string or io library there, so a script using them would fail in Argo CD.
    const dir = await mkdtemp(path.join(tmpdir(), 'envseal-lua-'));
    try {
      const probe = path.join(dir, 'probe.lua');
      await writeFile(probe, 'return { status = string.format("%s", "Healthy") }\n');
      await expect(argocdHealth(binDir, probe, {})).rejects.toThrow(/non-table object\(nil\) with key 'format'/);
      await writeFile(probe, 'return { status = "Fine" }\n');
      expect(await argocdHealth(binDir, probe, {})).toEqual({ status: 'Unknown', message: 'Lua returned an invalid health status' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(await health({ metadata: {} })).toEqual({ status: 'Progressing', message: 'Waiting for the envseal controller' });
  });

  it('is Healthy when the controller reports Ready=True for the current generation', async () => {
    await applyOrThrow(await seal('good'));
    const es = await waitFor('good Synced', async () => {
      const object = await live('good');
      return condition(object, 'Ready')?.reason === 'Synced' ? object : undefined;
    });
    expect(await health(es)).toEqual({ status: 'Healthy', message: 'Secret good is up to date (1 keys)' });
  });

  it('is Degraded with envseal’s reason when the controller reports Stalled', async () => {
    const moved = await seal('moved', 'elsewhere');
    await applyOrThrow({ ...moved, metadata: { name: 'moved', namespace } });
    const es = await waitFor('moved Stalled with ContextMismatch', async () => {
      const object = await live('moved');
      return condition(object, 'Stalled')?.status === 'True' ? object : undefined;
    });
    expect(condition(es, 'Stalled')?.reason).toBe('ContextMismatch');
    const result = await health(es);
    expect(result.status).toBe('Degraded');
    expect(result.message).toMatch(/^ContextMismatch: .*another namespace, name or scope/);
  });

  it('is Progressing for a new object the controller has not reconciled yet', async () => {
    // As the API server returns it: no controller watches this namespace.
    await applyOrThrow(await seal('fresh', unwatched));
    const es = (await live('fresh', unwatched))!;
    expect(es.metadata.generation).toBe(1);
    // The CRD's status default: read back as not yet observed, with no controller write.
    expect(es.status).toEqual({ observedGeneration: 0 });
    expect(await health(es)).toEqual({ status: 'Progressing', message: 'Waiting for the envseal controller to observe generation 1' });
    // An object with no status at all (a CRD from before the status default).
    const { status: _status, ...withoutStatus } = es;
    expect(await health(withoutStatus)).toEqual({ status: 'Progressing', message: 'Waiting for the envseal controller' });
  });

  it('is Healthy or Degraded only for the current generation', async () => {
    const good = (await live('good'))!;
    expect(await health(withGeneration(good, good.metadata.generation + 1))).toEqual({
      status: 'Progressing',
      message: `Waiting for the envseal controller to observe generation ${good.metadata.generation + 1}`,
    });
    // Stalled about an older generation is not a verdict on the new spec either.
    const failed = (await live('moved'))!;
    expect((await health(withGeneration(failed, failed.metadata.generation + 1))).status).toBe('Progressing');
  });

  it('is Progressing while the controller reports Reconciling, with its reason', async () => {
    const keyArn = (
      await createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials }).createKey({ alias: `alias/${namespace}` })
    ).keyArn;
    const sealed = await sealFor({
      namespace,
      name: 'pending',
      values: { TOKEN: `${CANARY_MARKER}argocd-kms` },
      targets: [{ provider: 'aws-kms', target: keyArn }],
      providers: new ProviderRegistry({ 'aws-kms': { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials } }),
    });
    await kms.stop(); // the KMS is down when the controller tries to unwrap: retried, not terminal
    await applyOrThrow(sealed);
    const es = await waitFor('pending Reconciling', async () => {
      const object = await live('pending');
      return condition(object, 'Reconciling')?.status === 'True' ? object : undefined;
    });
    const reconciling = condition(es, 'Reconciling')!;
    expect(condition(es, 'Stalled')?.status ?? 'False').toBe('False');
    expect(await health(es)).toEqual({ status: 'Progressing', message: `${reconciling.reason}: ${reconciling.message}` });
    // Ready=False with Reconciling=False and no Stalled condition: still not a verdict.
    const notReconciling = (es.status?.conditions ?? []).map((c) => (c.type === 'Reconciling' ? { ...c, status: 'False' as const } : c));
    expect((await health(withConditions(es, notReconciling))).status).toBe('Progressing');
  });

  it('reads objects written by a controller that set Ready only', async () => {
    const es = (await live('good'))!;
    expect(await health(withConditions(es, [{ type: 'Ready', status: 'True', reason: 'Synced', message: 'Secret good is up to date (1 keys)' }]))).toEqual({
      status: 'Healthy',
      message: 'Secret good is up to date (1 keys)',
    });
    expect(await health(withConditions(es, [{ type: 'Ready', status: 'False', reason: 'ContextMismatch', message: 'sealed for another namespace' }]))).toEqual({
      status: 'Degraded',
      message: 'ContextMismatch: sealed for another namespace',
    });
  });

  it('is Progressing without a Ready condition, or with Ready=Unknown', async () => {
    const es = (await live('good'))!;
    expect(await health({ ...es, status: { observedGeneration: es.metadata.generation } })).toEqual({
      status: 'Progressing',
      message: 'Waiting for the Ready condition',
    });
    expect(await health(withConditions(es, []))).toEqual({ status: 'Progressing', message: 'Waiting for the Ready condition' });
    expect(await health(withConditions(es, [{ type: 'Ready', status: 'Unknown', reason: 'Pending', message: 'first look' }]))).toEqual({
      status: 'Progressing',
      message: 'Pending: first look',
    });
  });

  it('is the script docs/gitops.md tells to put in argocd-cm', async () => {
    const [doc, script] = await Promise.all([readFile(path.join(repoRoot, 'docs/gitops.md'), 'utf8'), readFile(scriptPath, 'utf8')]);
    const key = '  resource.customizations.health.envseal.dev_EnvelopeSecret: |\n';
    const start = doc.indexOf(key);
    expect(start, 'docs/gitops.md shows the argocd-cm key').toBeGreaterThan(0);
    const block: string[] = [];
    for (const line of doc.slice(start + key.length).split('\n')) {
      if (line !== '' && !line.startsWith('    ')) break;
      block.push(line.slice(4));
    }
    expect(block.join('\n').trimEnd()).toBe(script.trimEnd());
  });
});
