// Issue 17: "a client rate that the API server's priority-and-fairness accepts". The
// controller runs as a ServiceAccount that a FlowSchema puts in a priority level of its own
// with the smallest share there is (a few seats) and no queue (Reject): the API server
// answers 429 whenever more of its requests are in flight. A user would check that every
// Secret still arrives, that no EnvelopeSecret went Ready=False or got a Warning Event on
// the way, and that the controller says it was throttled (envseal_api_throttled_total).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { DEFAULT_CONTROLLER_CONFIG } from '../../src/controller/manager.ts';
import { tokenKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';
import { serviceAccountToken } from '../harness/tenant.ts';

const admin = adminClient();
const controllerNamespace = uniqueName('envseal-apf');
const namespace = uniqueName('apf-team');
const level = uniqueName('envseal-test-tiny');
const COUNT = 60;
const WORKERS = 16;
let controller: TestController;

const flowcontrol = '/apis/flowcontrol.apiserver.k8s.io/v1';
const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const valuesOf = (i: number) => ({ token: `apf-value-${i}`, other: `apf-other-${i}` });

beforeAll(async () => {
  await installCrd();
  await createNamespace(admin, controllerNamespace);
  await createNamespace(admin, namespace);
  const serviceAccount = 'envseal-controller';
  await admin.request({
    method: 'POST',
    path: `/api/v1/namespaces/${controllerNamespace}/serviceaccounts`,
    body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: serviceAccount } },
  });
  await admin.request({
    method: 'POST',
    path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
    body: {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: level },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace: controllerNamespace }],
    },
  });
  // The smallest share (1 of the ~246 the default levels hold: about 3 of the server's
  // 600 seats), nothing lent or borrowed, and no queue: a request beyond the seats is 429.
  await admin.request({
    method: 'POST',
    path: `${flowcontrol}/prioritylevelconfigurations`,
    body: {
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'PriorityLevelConfiguration',
      metadata: { name: level },
      spec: {
        type: 'Limited',
        limited: { nominalConcurrencyShares: 1, lendablePercent: 0, borrowingLimitPercent: 0, limitResponse: { type: 'Reject' } },
      },
    },
  });
  await admin.request({
    method: 'POST',
    path: `${flowcontrol}/flowschemas`,
    body: {
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'FlowSchema',
      metadata: { name: level },
      spec: {
        priorityLevelConfiguration: { name: level },
        matchingPrecedence: 500,
        distinguisherMethod: { type: 'ByUser' },
        rules: [
          {
            subjects: [{ kind: 'ServiceAccount', serviceAccount: { name: serviceAccount, namespace: controllerNamespace } }],
            resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], clusterScope: true, namespaces: ['*'] }],
            nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
          },
        ],
      },
    },
  });
  // The API server's flow-control configuration has taken the FlowSchema in when it marks it not dangling.
  await waitFor('the FlowSchema in effect', async () => {
    const schema = await getOrUndefined<{ status?: { conditions?: { type: string; status: string }[] } }>(admin, `${flowcontrol}/flowschemas/${level}`);
    return schema?.status?.conditions?.some((c) => c.type === 'Dangling' && c.status === 'False');
  });
  const token = await serviceAccountToken(admin, controllerNamespace, serviceAccount);
  controller = await startTestController({
    kubeConfig: tokenKubeConfig(token, controllerNamespace),
    // One replica: a Lease under this tiny level is not what the test is about.
    config: {
      namespace: controllerNamespace,
      namespaces: [namespace],
      workers: WORKERS,
      leaderElection: { ...DEFAULT_CONTROLLER_CONFIG.leaderElection, enabled: false },
    },
  });
}, 120_000);

afterAll(async () => {
  await controller?.stop();
  for (const path of [
    `${flowcontrol}/flowschemas/${level}`,
    `${flowcontrol}/prioritylevelconfigurations/${level}`,
    `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${level}`,
  ]) {
    await admin.request({ method: 'DELETE', path }).catch(() => undefined);
  }
  for (const ns of [namespace, controllerNamespace]) await admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${ns}` }).catch(() => undefined);
});

describe('the API server throttles the controller (priority and fairness)', () => {
  it('waits out the 429s: every Secret arrives, and no EnvelopeSecret fails or gets a warning on the way', async () => {
    const configMap = await waitFor('the published age recipient', () =>
      getOrUndefined<{ data: { recipient: string } }>(admin, paths.configMap(controllerNamespace, 'envseal-age-recipient')),
    );
    const sealed: EnvelopeSecret[] = [];
    for (let i = 0; i < COUNT; i++) {
      sealed.push(await sealFor({ namespace, name: `apf-${i}`, values: valuesOf(i), targets: [ageTarget(configMap.data.recipient)] }));
    }
    await Promise.all(sealed.map((object) => applyOrThrow(object)));

    await waitFor(
      `all ${COUNT} Secrets`,
      async () => {
        const list = await admin.request<{ items: { metadata: { name: string }; data?: Record<string, string> }[] }>({
          method: 'GET',
          path: paths.secrets(namespace),
        });
        const correct = list.items.filter((s) => {
          const i = Number(s.metadata.name.slice('apf-'.length));
          const got = decode(s.data);
          const want = valuesOf(i);
          return Object.keys(got).length === 2 && got.token === want.token && got.other === want.other;
        });
        return correct.length === COUNT;
      },
      { timeoutMs: 240_000, intervalMs: 1000 },
    );

    // The precondition: the API server really did throttle this controller.
    expect(await controller.metric('envseal_api_throttled_total')).toBeGreaterThan(0);
    // What a user checks: no object ever reported a failure, and no Warning Event.
    expect(await controller.metric('envseal_reconcile_total', { result: 'error' })).toBe(0);
    const events = await admin.request<{ items: { type: string; reason: string; involvedObject: { kind: string } }[] }>({
      method: 'GET',
      path: paths.events(namespace),
    });
    expect(events.items.filter((e) => e.type === 'Warning').map((e) => e.reason)).toEqual([]);
    await waitFor('every EnvelopeSecret Ready=True', async () => {
      const list = await admin.request<{ items: { status?: { conditions?: { type: string; status: string; reason: string }[] } }[] }>({
        method: 'GET',
        path: paths.envelopeSecrets(namespace),
      });
      return list.items.length === COUNT && list.items.every((es) => es.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
    });
  }, 300_000);
});
