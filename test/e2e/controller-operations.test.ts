// Operating the controller: rollout restarts, metrics and health, namespaced mode.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ANNOTATION_DATA_HASH } from '../../src/controller/desired.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectl, kubectlApply, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const client = adminClient();
const controllerNamespace = uniqueName('envseal-ops');
const ns = uniqueName('ops');
const otherNs = uniqueName('ops-other');
let controller: TestController;
let recipient: string;

interface Deployment {
  metadata: { generation: number };
  spec: { template: { metadata?: { annotations?: Record<string, string> } } };
}

async function sealAndApply(name: string, namespace: string, values: Record<string, string>, extra: Partial<EnvelopeSecret['spec']> = {}) {
  const sealed = await sealFor({ namespace, name, values, targets: [ageTarget(recipient)] });
  await applyOrThrow({ ...sealed, spec: { ...sealed.spec, ...extra } });
}

const deployment = (name: string) => getOrUndefined<Deployment>(client, `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
const readyReason = async (namespace: string, name: string) =>
  (await getOrUndefined<EnvelopeSecret>(client, paths.envelopeSecret(namespace, name)))?.status?.conditions?.find((c) => c.type === 'Ready')?.reason;

beforeAll(async () => {
  await installCrd();
  for (const name of [controllerNamespace, ns, otherNs]) await createNamespace(client, name);
  controller = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace: controllerNamespace, namespaces: [ns] } });
  recipient = (
    await waitFor('recipient', () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')))
  ).data.recipient;
});

afterAll(async () => {
  await controller?.stop();
});

describe('controller operations', () => {
  it('rolls listed workloads when the data changes, never on an unchanged resync', async () => {
    const created = await kubectlApply({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: ns },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: { containers: [{ name: 'web', image: 'example.invalid/web:1', envFrom: [{ secretRef: { name: 'web-env' } }] }] },
        },
      },
    });
    expect(created.code).toBe(0);
    const restart = { restartWorkloads: [{ kind: 'Deployment' as const, name: 'web' }] };
    await sealAndApply('web-env', ns, { TOKEN: 'v1' }, restart);
    const first = await waitFor('the data digest on the pod template', async () => {
      const d = await deployment('web');
      return d?.spec.template.metadata?.annotations?.[ANNOTATION_DATA_HASH] ? d : undefined;
    });
    const digest1 = first.spec.template.metadata!.annotations![ANNOTATION_DATA_HASH]!;
    expect(digest1).toMatch(/^sha256:[0-9a-f]{64}$/);

    // A metadata-only touch is reconciled but changes no data: no restart.
    await kubectl(['annotate', 'envelopesecret', '-n', ns, 'web-env', 'touched=yes']);
    await waitFor('the touch to be reconciled', async () => (await controller.metric('envseal_reconcile_total', { result: 'unchanged' })) >= 1);
    expect((await deployment('web'))?.metadata.generation).toBe(first.metadata.generation);

    await sealAndApply('web-env', ns, { TOKEN: 'v2' }, restart);
    const second = await waitFor('a new digest after the data changed', async () => {
      const d = await deployment('web');
      const digest = d?.spec.template.metadata?.annotations?.[ANNOTATION_DATA_HASH];
      return digest && digest !== digest1 ? d : undefined;
    });
    expect(second.metadata.generation).toBe(first.metadata.generation + 1);
    // Events are sent in the background, right after the reconcile.
    await waitFor('two RolloutRestarted events', async () => {
      const events = await client.request<{ items: { reason: string; involvedObject: { name: string } }[] }>({ method: 'GET', path: paths.events(ns) });
      return events.items.filter((e) => e.reason === 'RolloutRestarted' && e.involvedObject.name === 'web-env').length >= 2;
    });
  });

  it('watches only the listed namespaces in namespaced mode', async () => {
    await sealAndApply('inside', ns, { K: 'v' });
    await sealAndApply('outside', otherNs, { K: 'v' });
    await waitFor('the watched namespace reconciled', async () => (await readyReason(ns, 'inside')) === 'Synced');
    // Give the controller time to (wrongly) pick up the other namespace.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(await readyReason(otherNs, 'outside')).toBeUndefined();
    expect(await getOrUndefined(client, paths.secret(otherNs, 'outside'))).toBeUndefined();
  });

  it('serves Prometheus metrics, /healthz and /readyz', async () => {
    const base = controller.metricsUrl.replace(/\/metrics$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const text = await fetch(controller.metricsUrl).then((r) => r.text());
    for (const name of [
      'envseal_reconcile_total',
      'envseal_reconcile_duration_seconds_bucket',
      'envseal_kms_requests_total',
      'envseal_kms_request_duration_seconds_bucket',
      'envseal_dek_cache_total',
      'envseal_workqueue_depth',
      'envseal_workqueue_retries_total',
      'envseal_leader',
      'envseal_process_resident_memory_bytes',
    ]) {
      expect(text, name).toContain(name);
    }
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'age', operation: 'unwrap', outcome: 'success' })).toBeGreaterThanOrEqual(3);
    expect(await controller.metric('envseal_leader')).toBe(1);
    await waitFor('the Ready gauge', async () => (await controller.metric('envseal_envelopesecrets', { ready: 'True', reason: 'Synced' })) >= 2, {
      timeoutMs: 30_000,
    });
  });

  it('runs a standby that takes over at once when the leader shuts down gracefully (lease released)', async () => {
    const standby = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace: controllerNamespace, namespaces: [ns] } });
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await controller.metric('envseal_leader')).toBe(1);
      expect(await standby.metric('envseal_leader')).toBe(0);
      expect((await fetch(standby.metricsUrl.replace(/metrics$/, 'readyz'))).status).toBe(200);
      const lease = await getOrUndefined<{ spec: { holderIdentity: string; leaseTransitions: number } }>(
        client,
        `/apis/coordination.k8s.io/v1/namespaces/${controllerNamespace}/leases/envseal-controller`,
      );
      expect(lease?.spec.holderIdentity).toBeTruthy();

      const stoppedAt = Date.now();
      await controller.stop();
      const released = await getOrUndefined<{ spec: { holderIdentity?: string } }>(
        client,
        `/apis/coordination.k8s.io/v1/namespaces/${controllerNamespace}/leases/envseal-controller`,
      );
      expect(released?.spec.holderIdentity ?? '').toBe('');
      await waitFor('the standby to lead', async () => (await standby.metric('envseal_leader')) === 1, { timeoutMs: 10_000, intervalMs: 100 });
      // Well within the 4 s lease duration: the released lease is taken at the next retry.
      expect(Date.now() - stoppedAt).toBeLessThan(4000);
      await sealAndApply('after-failover', ns, { K: 'v' });
      await waitFor('the new leader to reconcile', async () => (await readyReason(ns, 'after-failover')) === 'Synced');
    } finally {
      controller = standby;
    }
  });
});
