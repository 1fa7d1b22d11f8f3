// Issue 12: a hostile tenant gains nothing and disturbs no one. The chart is installed with
// helm and the controller runs exactly as its Deployment would (its args, env and
// ServiceAccount token, bin/envseal.js as a process). The tenant is a ServiceAccount whose
// Role grants EnvelopeSecret rights in one namespace and nothing else; every attack below
// is made with its token, and each test asserts the safe outcome a cluster admin would
// check. docs/security.md points at these tests.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret, SecretTemplate } from '../../src/api/types.ts';
import { ANNOTATION_DATA_HASH, ANNOTATION_SPEC_HASH } from '../../src/controller/desired.ts';
import { KubeApiError, paths } from '../../src/kube/client.ts';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, getOrUndefined, kubectl, publishedRecipient } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';
import {
  type ChartController,
  type ChartRelease,
  conditionsOf,
  countResourceVersions,
  createTenant,
  currentReady,
  admits,
  chartDir,
  eventsAbout,
  forgedAgeKey,
  helm,
  installChart,
  startChartController,
  type Tenant,
  waitForReason,
} from '../harness/tenant.ts';

const admin = adminClient();
// The release name contains the chart's name, so its ServiceAccount is named after it.
const release = uniqueName('envseal');
const releaseNamespace = uniqueName('envseal-tenancy');
const tenantNamespace = uniqueName('tenant');
const neighbourNamespace = uniqueName('neighbour');
const RESYNC_S = 10;
let chart: ChartRelease;
let controller: ChartController;
let tenant: Tenant;
let recipient: string;
let scratch: string;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const canary = (label: string) => `${CANARY_MARKER}tenant-${label}-${randomBytes(6).toString('hex')}`;
const b64 = (text: string) => Buffer.from(text).toString('base64');

interface Secret {
  metadata: { name: string; uid: string; resourceVersion: string; annotations?: Record<string, string>; ownerReferences?: { kind: string; name: string }[] };
  type?: string;
  data?: Record<string, string>;
}
const getSecret = (namespace: string, name: string) => getOrUndefined<Secret>(admin, paths.secret(namespace, name));
const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

function seal(
  name: string,
  values: Record<string, string>,
  extra: { template?: SecretTemplate; restartWorkloads?: EnvelopeSecret['spec']['restartWorkloads']; namespace?: string } = {},
): Promise<EnvelopeSecret> {
  return sealFor({
    namespace: extra.namespace ?? tenantNamespace,
    name,
    values,
    targets: [ageTarget(recipient)],
    ...(extra.template ? { template: extra.template } : {}),
  }).then((sealed) => (extra.restartWorkloads ? { ...sealed, spec: { ...sealed.spec, restartWorkloads: extra.restartWorkloads } } : sealed));
}

/** Key-provider unwrap calls the controller made for the tenant's namespace so far. */
const tenantUnwrapCalls = () => controller.metric('envseal_unwrap_attempts_total', { namespace: tenantNamespace });

/** `kubectl apply --server-side` as the tenant (server-side: no 256 KiB last-applied annotation). */
function tenantApply(object: unknown, extraArgs: readonly string[] = []) {
  return tenant.kubectl(['apply', '--server-side', '--field-manager=tenant', ...extraArgs, '-f', '-'], JSON.stringify(object));
}

async function tenantApplyOrThrow(object: unknown): Promise<void> {
  const result = await tenantApply(object);
  if (result.code !== 0) throw new Error(`the tenant's kubectl apply failed: ${result.stderr}`);
}

/** Secrets of a type in a namespace, listed as admin. */
async function secretsOfType(namespace: string, type: string): Promise<string[]> {
  const list = await admin.request<{ items: Secret[] }>({ method: 'GET', path: paths.secrets(namespace), query: { fieldSelector: `type=${type}` } });
  return list.items.map((s) => s.metadata.name);
}

beforeAll(async () => {
  scratch = path.join(sharedCluster().dir, 'tenant-isolation', randomBytes(3).toString('hex'));
  fs.mkdirSync(scratch, { recursive: true, mode: 0o700 });
  for (const namespace of [tenantNamespace, neighbourNamespace]) await createNamespace(admin, namespace);
  chart = await installChart({
    release,
    namespace: releaseNamespace,
    watchNamespaces: [tenantNamespace, neighbourNamespace],
    sets: [`controller.resync=${RESYNC_S}s`],
  });
  controller = await startChartController(chart, { identity: `${release}-0`, dir: scratch });
  recipient = await publishedRecipient(admin, releaseNamespace);
  tenant = await createTenant({ namespace: tenantNamespace, name: 'team', dir: scratch });
});

afterAll(async () => {
  await controller?.stop();
  await chart?.uninstall();
  await kubectl(['delete', 'namespace', '--wait=false', tenantNamespace, neighbourNamespace, releaseNamespace]);
});

describe('a tenant with EnvelopeSecret rights in one namespace only', () => {
  it('has exactly those rights: no Secrets, no workloads, no status, nothing next door', async () => {
    const status = (call: Promise<unknown>) =>
      call.then(
        () => 200,
        (error: unknown) => (error instanceof KubeApiError ? error.status : 0),
      );
    expect(await status(tenant.client.request({ method: 'GET', path: paths.envelopeSecrets(tenantNamespace) }))).toBe(200);
    expect(await status(tenant.client.request({ method: 'GET', path: paths.secrets(tenantNamespace) }))).toBe(403);
    expect(await status(tenant.client.request({ method: 'GET', path: `/apis/apps/v1/namespaces/${tenantNamespace}/deployments` }))).toBe(403);
    expect(await status(tenant.client.request({ method: 'GET', path: paths.envelopeSecrets(neighbourNamespace) }))).toBe(403);
    expect(
      await status(
        tenant.client.request({ method: 'PATCH', path: `${paths.envelopeSecret(tenantNamespace, 'x')}/status`, body: { status: {} }, patchType: 'merge' }),
      ),
    ).toBe(403);
  });

  it('cannot make the cluster mint a ServiceAccount or bootstrap token: refused at apply time, no token Secret anywhere', async () => {
    // A powerful ServiceAccount in the tenant's namespace, whose token is the prize.
    await admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${tenantNamespace}/serviceaccounts`,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'powerful' } },
    });
    await admin.request({
      method: 'POST',
      path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${tenantNamespace}/rolebindings`,
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'powerful-admin' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' },
        subjects: [{ kind: 'ServiceAccount', name: 'powerful', namespace: tenantNamespace }],
      },
    });
    const saAnnotation = { 'kubernetes.io/service-account.name': 'powerful' };

    const saToken = await tenantApply(
      await seal('sa-token', { token: canary('sa') }, { template: { type: 'kubernetes.io/service-account-token', metadata: { annotations: saAnnotation } } }),
    );
    expect(saToken.code, 'a service-account-token EnvelopeSecret was admitted').not.toBe(0);
    expect(saToken.stderr).toMatch(/service-account-token/);
    // The annotation alone, on an allowed type: a reserved prefix.
    const annotated = await tenantApply(
      await seal('sa-annotated', { token: canary('sa') }, { template: { type: 'Opaque', metadata: { annotations: saAnnotation } } }),
    );
    expect(annotated.code, 'a kubernetes.io/ annotation in the template was admitted').not.toBe(0);
    expect(annotated.stderr).toMatch(/kubernetes\.io\//);

    // An existing, valid object edited into a token request: the edit is refused, the
    // Secret stays what it was; deleting with --cascade=orphan leaves an Opaque Secret.
    await tenantApplyOrThrow(await seal('sa-edit', { token: canary('edit') }));
    await waitForReason(admin, tenantNamespace, 'sa-edit', 'Synced');
    const edit = await tenantApply(
      await seal('sa-edit', { token: canary('edit2') }, { template: { type: 'kubernetes.io/service-account-token', metadata: { annotations: saAnnotation } } }),
    );
    expect(edit.code, 'the edit into a service-account-token was admitted').not.toBe(0);
    const orphan = await tenant.kubectl(['delete', 'envelopesecret', 'sa-edit', '-n', tenantNamespace, '--cascade=orphan']);
    expect(orphan.code, orphan.stderr).toBe(0);
    const left = await getSecret(tenantNamespace, 'sa-edit');
    expect(left?.type).toBe('Opaque');

    // bootstrap.kubernetes.io/token: kube-system is out of the tenant's reach; in its own
    // namespace the type is refused.
    const bootstrapValues = {
      'token-id': 'abcdef',
      'token-secret': canary('boot')
        .slice(0, 16)
        .toLowerCase()
        .replace(/[^a-z0-9]/g, 'x'),
      'usage-bootstrap-authentication': 'true',
    };
    const inKubeSystem = await tenantApply(
      await seal('bootstrap-token-abcdef', bootstrapValues, { namespace: 'kube-system', template: { type: 'bootstrap.kubernetes.io/token' } }),
    );
    expect(inKubeSystem.code).not.toBe(0);
    expect(inKubeSystem.stderr).toMatch(/forbidden/i);
    const bootstrapOwn = await tenantApply(await seal('bootstrap-token-abcdef', bootstrapValues, { template: { type: 'bootstrap.kubernetes.io/token' } }));
    expect(bootstrapOwn.code, 'a bootstrap.kubernetes.io/token EnvelopeSecret was admitted').not.toBe(0);
    expect(bootstrapOwn.stderr).toMatch(/bootstrap\.kubernetes\.io\/token/);

    // Give kube-controller-manager's token controller time to fill anything that slipped through.
    await sleep(5000);
    expect(await secretsOfType(tenantNamespace, 'kubernetes.io/service-account-token')).toEqual([]);
    expect(await secretsOfType(tenantNamespace, 'bootstrap.kubernetes.io/token')).toEqual([]);
    expect(await secretsOfType('kube-system', 'bootstrap.kubernetes.io/token')).toEqual([]);
    const withSaAnnotation = (await admin.request<{ items: Secret[] }>({ method: 'GET', path: paths.secrets(tenantNamespace) })).items.filter(
      (s) => s.metadata.annotations?.['kubernetes.io/service-account.name'],
    );
    expect(withSaAnnotation.map((s) => s.metadata.name)).toEqual([]);
  });

  it('refuses a Secret type the chart does not allow in its namespace: at apply time (admission policy), and in the controller without it (PolicyViolation)', async () => {
    // Not one of the default types, and the chart's values allow none here.
    const custom = await seal('custom-type', { K: canary('custom') }, { template: { type: 'example.com/not-allowed' } });
    // A policy is in force once the API server has loaded it (about a second after install).
    const policyRefuses = () =>
      admits(tenant.client, tenantNamespace, custom).then(
        () => false,
        (error: unknown) => error instanceof KubeApiError && error.status === 403 && error.message.includes('example.com/not-allowed'),
      );
    await waitFor('the admission policy in force', policyRefuses, { timeoutMs: 30_000 });
    const refused = await tenantApply(custom);
    expect(refused.code, "the chart's ValidatingAdmissionPolicy admitted a type the namespace may not have").not.toBe(0);
    expect(refused.stderr).toMatch(/example\.com\/not-allowed/);
    // Without the admission policy (tenancy.admissionPolicy.enabled=false, or a cluster
    // older than 1.30), the controller refuses it before decrypting anything.
    const upgrade = await helm([
      'upgrade',
      release,
      chartDir,
      '--namespace',
      releaseNamespace,
      '--reuse-values',
      '--set',
      'tenancy.admissionPolicy.enabled=false',
    ]);
    expect(upgrade.code, upgrade.stderr).toBe(0);
    await waitFor('the admission policy gone', async () => (await admits(tenant.client, tenantNamespace, custom)) === undefined);
    const before = await tenantUnwrapCalls();
    await tenantApplyOrThrow(custom);
    const violation = await waitForReason(admin, tenantNamespace, 'custom-type', 'PolicyViolation');
    expect(violation.status).toBe('False');
    expect(violation.message).toContain('example.com/not-allowed');
    expect(await tenantUnwrapCalls()).toBe(before);
    expect(await getSecret(tenantNamespace, 'custom-type')).toBeUndefined();
  });

  it('cannot start an endless write fight: against another writer the Secret settles, and the status says Conflict naming it', async () => {
    const name = 'fight';
    const value = canary('fight');
    await tenantApplyOrThrow(await seal(name, { A: value }));
    await waitForReason(admin, tenantNamespace, name, 'Synced');
    // Another writer keeps a key of its own in the Secret (server-side apply, field
    // manager "intruder"), once a second for 30 s: a controller that prunes it each time
    // makes two resourceVersions a second.
    const counter = countResourceVersions(admin, tenantNamespace, name);
    let writes = 0;
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      await admin.request({
        method: 'PATCH',
        path: paths.secret(tenantNamespace, name),
        query: { fieldManager: 'intruder', force: true },
        body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: tenantNamespace }, data: { EXTRA: b64('intruder-was-here') } },
        patchType: 'apply',
      });
      writes++;
      await sleep(1000);
    }
    const { versions } = await counter.stop();
    process.stderr.write(`[tenant-isolation] write fight: ${writes} writes by another field manager in 30 s; the Secret had ${versions} resourceVersions\n`);
    expect(versions, 'the Secret kept changing: a write loop').toBeLessThanOrEqual(20);
    const ready = await waitForReason(admin, tenantNamespace, name, 'Conflict', 30_000);
    expect(ready.status).toBe('False');
    expect(ready.message).toContain('intruder');
    expect(ready.message).not.toContain(value);
    // The sealed key was never touched.
    expect(decode((await getSecret(tenantNamespace, name))?.data).A).toBe(value);
    await admin.request({ method: 'DELETE', path: paths.envelopeSecret(tenantNamespace, name) });
  });

  it('never reports Ready=True for a Secret that was deleted right after the controller wrote it (after an edit, and across a resync)', async () => {
    const name = 'racy';
    const deleted: string[] = [];
    // Each time the Secret appears with a new spec hash, another actor deletes it at
    // once. To make the race real, the controller is frozen (SIGSTOP, as in a long GC
    // pause) from the moment its write lands until the delete is done: when it runs
    // again, its write's answer and the watch's DELETED event are both waiting.
    const abort = new AbortController();
    const seenHashes = new Set<string>();
    let pending: Promise<void> = Promise.resolve();
    const deleter = (async () => {
      while (!abort.signal.aborted) {
        try {
          await admin.watch<Secret>({
            path: paths.secrets(tenantNamespace),
            query: { fieldSelector: `metadata.name=${name}` },
            idleTimeoutMs: 60_000,
            signal: abort.signal,
            onEvent: (event) => {
              const hash = event.object.metadata.annotations?.[ANNOTATION_SPEC_HASH];
              if ((event.type === 'ADDED' || event.type === 'MODIFIED') && hash && !seenHashes.has(hash)) {
                seenHashes.add(hash);
                controller.pause();
                const uid = event.object.metadata.uid;
                pending = (async () => {
                  try {
                    await admin.request({ method: 'DELETE', path: paths.secret(tenantNamespace, name), body: { preconditions: { uid } } }).catch(() => {});
                    deleted.push(uid);
                    await sleep(300);
                  } finally {
                    controller.resume();
                  }
                })();
              }
            },
          });
        } catch {
          if (!abort.signal.aborted) await sleep(100);
        }
      }
    })();
    /** Ready=True on the current generation implies the Secret exists with these values. */
    const neverLies = async (values: Record<string, string>, samples: number) => {
      for (let i = 0; i < samples; i++) {
        const ready = await currentReady(admin, tenantNamespace, name);
        if (ready?.status === 'True') {
          const secret = await getSecret(tenantNamespace, name);
          expect(secret, 'Ready=True while the Secret is gone').toBeDefined();
          expect(decode(secret?.data)).toEqual(values);
        }
        await sleep(500);
      }
    };
    let values: Record<string, string> = {};
    try {
      // Three rounds: the controller repairs up to 3 outside changes a minute at once;
      // more count as a writer fighting it (Conflict, see the write-fight test).
      for (let round = 1; round <= 3; round++) {
        values = { ROUND: String(round), V: canary(`racy-${round}`) };
        const before = deleted.length;
        await tenantApplyOrThrow(await seal(name, values));
        await waitFor(`round ${round}: the first write deleted by the other actor`, () => deleted.length > before, { timeoutMs: 60_000 });
        await pending;
        let seen = '';
        await waitFor(
          `round ${round}: the Secret back with the new values and Ready=True`,
          async () => {
            const secret = await getSecret(tenantNamespace, name);
            const ready = await currentReady(admin, tenantNamespace, name);
            seen = `Secret ${secret ? `round ${decode(secret.data).ROUND}` : 'absent'}, Ready ${ready?.status}/${ready?.reason}: ${ready?.message}`;
            return secret !== undefined && decode(secret.data).ROUND === String(round) && ready?.status === 'True';
          },
          { timeoutMs: 45_000 },
        ).catch((error: unknown) => {
          throw new Error(`${(error as Error).message}; last seen: ${seen}`, { cause: error });
        });
        await neverLies(values, 4);
      }
    } finally {
      abort.abort();
      await deleter;
      await pending;
      controller.resume();
    }
    // Across a resync (every RESYNC_S seconds), the status and the Secret still agree.
    await neverLies(values, 2 * RESYNC_S + 4);
    await admin.request({ method: 'DELETE', path: paths.envelopeSecret(tenantNamespace, name) });
  });

  it('restarts only workloads whose pod template references the Secret; others are refused with RestartRefused and left untouched', async () => {
    const name = 'restarts';
    const container = (extra: Record<string, unknown>) => ({ name: 'app', image: 'example.invalid/app:1', ...extra });
    const deployments: Record<string, Record<string, unknown>> = {
      unrelated: { containers: [container({ env: [{ name: 'X', value: 'y' }] })] },
      'env-ref': { containers: [container({ env: [{ name: 'A', valueFrom: { secretKeyRef: { name, key: 'A' } } }] })] },
      'envfrom-ref': { containers: [container({ envFrom: [{ secretRef: { name } }] })] },
      'volume-ref': { containers: [container({ volumeMounts: [{ name: 's', mountPath: '/s' }] })], volumes: [{ name: 's', secret: { secretName: name } }] },
      'projected-ref': {
        containers: [container({ volumeMounts: [{ name: 's', mountPath: '/s' }] })],
        volumes: [{ name: 's', projected: { sources: [{ secret: { name } }] } }],
      },
    };
    for (const [deployment, podSpec] of Object.entries(deployments)) {
      await admin.request({
        method: 'POST',
        path: `/apis/apps/v1/namespaces/${tenantNamespace}/deployments`,
        body: {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: deployment },
          spec: { replicas: 0, selector: { matchLabels: { app: deployment } }, template: { metadata: { labels: { app: deployment } }, spec: podSpec } },
        },
      });
    }
    type Deployment = { metadata: { generation: number }; spec: { template: { metadata?: { annotations?: Record<string, string> } } } };
    const getDeployment = (deployment: string) =>
      admin.request<Deployment>({ method: 'GET', path: `/apis/apps/v1/namespaces/${tenantNamespace}/deployments/${deployment}` });
    const unrelatedBefore = await getDeployment('unrelated');

    await tenantApplyOrThrow(
      await seal(name, { A: canary('restart') }, { restartWorkloads: Object.keys(deployments).map((d) => ({ kind: 'Deployment' as const, name: d })) }),
    );
    for (const consenting of ['env-ref', 'envfrom-ref', 'volume-ref', 'projected-ref']) {
      await waitFor(`${consenting} restarted`, async () =>
        (await getDeployment(consenting)).spec.template.metadata?.annotations?.[ANNOTATION_DATA_HASH]?.startsWith('sha256:'),
      );
    }
    const refused = await waitFor('a RestartRefused condition naming the unrelated Deployment', async () => {
      const live = await conditionsOf(admin, tenantNamespace, name);
      return live?.conditions.find((c) => c.reason === 'RestartRefused' && c.message.includes('unrelated'));
    });
    expect(refused.message).not.toMatch(/env-ref|envfrom-ref|volume-ref|projected-ref/);
    expect(refused.message.length).toBeLessThanOrEqual(1024);
    const unrelatedAfter = await getDeployment('unrelated');
    expect(unrelatedAfter.metadata.generation).toBe(unrelatedBefore.metadata.generation);
    expect(unrelatedAfter.spec.template).toEqual(unrelatedBefore.spec.template);
    // The Secret itself is written all the same.
    expect((await getSecret(tenantNamespace, name))?.data?.A).toBeDefined();
  });
});

describe('what one object can cost the controller, and what its messages can carry', () => {
  it('refuses an object of forged age stanzas cheaply, and does not try to open it again at resync', async () => {
    const name = 'forged';
    const sealed = await seal(name, { K: canary('forged') });
    const envelope = sealed.spec.envelopes[0]!;
    const genuine = envelope.recipients[0]!;
    // The most forged stanzas the API server admits: 16 recipients of 500 stanzas each
    // (~1 MB, about 2 s of X25519 work per attempt when nothing bounds it), down to 16
    // recipients of one forged stanza each.
    let forged: EnvelopeSecret | undefined;
    let admitted = '';
    const refusals: string[] = [];
    for (const [recipients, stanzas] of [
      [16, 500],
      [16, 100],
      [16, 10],
      [16, 2],
      [16, 1],
    ] as const) {
      const candidate: EnvelopeSecret = {
        ...sealed,
        spec: {
          ...sealed.spec,
          envelopes: [
            { ...envelope, recipients: Array.from({ length: recipients }, () => ({ ...genuine, encryptedKey: forgedAgeKey(genuine.encryptedKey, stanzas) })) },
          ],
        },
      };
      const refusal = await admits(tenant.client, tenantNamespace, candidate);
      if (refusal === undefined) {
        forged = candidate;
        admitted = `${recipients} recipients of ${stanzas} stanzas (${JSON.stringify(candidate).length} bytes)`;
        break;
      }
      refusals.push(`${recipients}x${stanzas}: ${refusal.slice(0, 300)}`);
    }
    process.stderr.write(`[tenant-isolation] forged stanzas refused at apply time: ${refusals.join(' | ') || 'none'}; admitted: ${admitted || 'none'}\n`);
    // An age key of hundreds of stanzas is refused at apply time.
    expect(refusals.length, 'the CRD admitted an age key of 500 forged stanzas').toBeGreaterThanOrEqual(1);
    expect(forged, 'the CRD refuses even one stanza per recipient').toBeDefined();
    // Whatever the CRD lets through is refused by the controller, at the cost of at most
    // one unwrap per recipient, once: not again at resync.
    const before = await tenantUnwrapCalls();
    await tenantApplyOrThrow(forged);
    const refused = await waitFor(`${name}: Ready=False`, async () => {
      const ready = await currentReady(admin, tenantNamespace, name);
      return ready?.status === 'False' ? ready : undefined;
    });
    expect(refused.message.length).toBeLessThanOrEqual(1024);
    const after = await tenantUnwrapCalls();
    process.stderr.write(`[tenant-isolation] forged stanzas: ${refused.reason} after ${after - before} unwrap calls: ${refused.message.slice(0, 200)}\n`);
    expect(after - before).toBeLessThanOrEqual(16);
    await sleep((2 * RESYNC_S + 3) * 1000);
    expect(await tenantUnwrapCalls(), 'the refused object was opened again at resync').toBe(after);
  });

  it('writes the status of a decrypt failure naming many long keys, with a message of at most 1 KiB', async () => {
    const name = 'many-keys';
    const keyName = (i: number) => `${'k'.repeat(248)}-${String(i).padStart(4, '0')}`;
    let tampered: EnvelopeSecret | undefined;
    for (const count of [1024, 256, 64]) {
      const sealed = await seal(name, Object.fromEntries(Array.from({ length: count }, (_, i) => [keyName(i), canary(`key${i}`)])));
      // Every value but the first altered (the last tag byte flipped): each of those keys
      // fails to authenticate. (With every value altered the verdict is ContextMismatch.)
      const data = Object.fromEntries(
        Object.entries(sealed.spec.envelopes[0]!.data).map(([k, v]) => {
          if (k === keyName(0)) return [k, v];
          const bytes = Buffer.from(v, 'base64');
          bytes[bytes.length - 1]! ^= 1;
          return [k, bytes.toString('base64')];
        }),
      );
      const candidate = { ...sealed, spec: { ...sealed.spec, envelopes: [{ ...sealed.spec.envelopes[0]!, data }] } };
      if ((await admits(tenant.client, tenantNamespace, candidate)) === undefined) {
        tampered = candidate;
        process.stderr.write(`[tenant-isolation] many keys: ${count} keys of 253 characters, all but one altered\n`);
        break;
      }
    }
    expect(tampered, 'the CRD admits not even 64 keys of 253 characters').toBeDefined();
    await tenant.client.request({ method: 'POST', path: paths.envelopeSecrets(tenantNamespace), body: tampered });
    const failed = await waitForReason(admin, tenantNamespace, name, 'DecryptFailed');
    expect(failed.status).toBe('False');
    expect(Buffer.byteLength(failed.message, 'utf8')).toBeLessThanOrEqual(1024);
    expect(failed.message).toContain(keyName(1));
    expect(failed.message).not.toContain(keyName(0));
    const live = await conditionsOf(admin, tenantNamespace, name);
    expect(live?.observedGeneration).toBe(live?.generation);
    for (const event of await eventsAbout(admin, tenantNamespace, name)) expect(Buffer.byteLength(event.message, 'utf8')).toBeLessThanOrEqual(1024);
  });

  it('leaks no byte of a dockerconfigjson value that is not JSON: not in the status, an Event, the log or a metric', async () => {
    const name = 'docker-not-json';
    // A value whose first bytes are distinctive: the API server's JSON error quotes the first one.
    const value = `~QZ${canary('docker')}`;
    const applied = await tenantApply(await seal(name, { '.dockerconfigjson': value }, { template: { type: 'kubernetes.io/dockerconfigjson' } }));
    // Refused at apply time (nothing to leak), or by the controller with a clean message.
    const texts: string[] = [];
    if (applied.code !== 0) {
      texts.push(applied.stderr);
    } else {
      const refused = await waitFor(`${name}: Ready=False`, async () => {
        const ready = await currentReady(admin, tenantNamespace, name);
        return ready?.status === 'False' ? ready : undefined;
      });
      texts.push(refused.message);
      await waitFor(`a Warning event about ${name}`, async () => (await eventsAbout(admin, tenantNamespace, name)).some((e) => e.type === 'Warning'));
      for (const event of await eventsAbout(admin, tenantNamespace, name)) texts.push(event.message);
      texts.push(...controller.logs.filter((line) => line.includes(name)));
      texts.push(await controller.scrape());
    }
    expect(await getSecret(tenantNamespace, name)).toBeUndefined();
    for (const text of texts) {
      expect(text).not.toContain("'~'");
      expect(text).not.toContain('~QZ');
      expect(text).not.toMatch(/invalid character/);
      expect(text).not.toContain(value.slice(3));
    }
  });
});
