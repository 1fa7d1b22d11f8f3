// The controller end to end on the real control plane, with the cluster age identity.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTenantPolicy } from '../../src/api/policy.ts';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ANNOTATION_ADOPT, ANNOTATION_SPEC_HASH } from '../../src/controller/desired.ts';
import { seededRandom } from '../../src/envelope/random.ts';
import { createAgeProvider, parseAgeIdentityFile } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { mergeValues } from '../../src/sealing/edit.ts';
import type { Scope } from '../../src/envelope/context.ts';
import { uniqueName, waitFor } from '../harness/cluster.ts';
import { adminKubeConfig } from '../harness/cluster.ts';
import { allControllerLogs, startTestController, type TestController } from '../harness/controller.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectl, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const CANARY = 'CANARY-e2e-3b9f1c7d';
const client = adminClient();
const controllerNamespace = uniqueName('envseal-system');
const nsA = uniqueName('team-a');
const nsB = uniqueName('team-b');
const sealer = new ProviderRegistry({});
let recipient: string;
let controller: TestController;

interface SecretObject {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
  };
  type: string;
  immutable?: boolean;
  data?: Record<string, string>;
}
type Live = EnvelopeSecret & { metadata: { uid: string; generation: number } };

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const bytes = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));

const seal = (options: {
  namespace: string;
  name: string;
  values: Record<string, string>;
  scope?: Scope;
  template?: EnvelopeSecret['spec']['template'];
}): Promise<EnvelopeSecret> => sealFor({ ...options, targets: [ageTarget(recipient)], providers: sealer });
const apply = applyOrThrow;

const getSecret = (namespace: string, name: string) => getOrUndefined<SecretObject>(client, paths.secret(namespace, name));
const getEnvelopeSecret = (namespace: string, name: string) => getOrUndefined<Live>(client, paths.envelopeSecret(namespace, name));
const ready = (es: Live | undefined) => es?.status?.conditions?.find((c) => c.type === 'Ready');

async function waitReady(namespace: string, name: string, reason = 'Synced', status: 'True' | 'False' = reason === 'Synced' ? 'True' : 'False') {
  return waitFor(`${namespace}/${name} Ready=${status} ${reason}`, async () => {
    const es = await getEnvelopeSecret(namespace, name);
    const condition = ready(es);
    return condition?.status === status && condition.reason === reason && es?.status?.observedGeneration === es?.metadata.generation ? es : undefined;
  });
}

async function eventsFor(namespace: string, name: string): Promise<{ reason: string; type: string; message: string }[]> {
  const list = await client.request<{ items: { reason: string; type: string; message: string; involvedObject: { name: string } }[] }>({
    method: 'GET',
    path: paths.events(namespace),
  });
  return list.items.filter((e) => e.involvedObject.name === name);
}

// The custom Secret type a test below materializes, allowed in its namespace as an
// operator would (--allowed-secret-types; docs/helm.md, tenancy).
const customTypePolicy = () => parseTenantPolicy([`${nsA}=example.com/db`]);

beforeAll(async () => {
  await installCrd();
  for (const ns of [controllerNamespace, nsA, nsB]) await createNamespace(client, ns);
  controller = await startTestController({
    kubeConfig: adminKubeConfig(),
    config: { namespace: controllerNamespace, namespaces: [nsA, nsB], tenantPolicy: customTypePolicy() },
  });
  const configMap = await waitFor('the published age recipient', () =>
    getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')),
  );
  recipient = configMap.data.recipient;
  expect(recipient).toMatch(/^age1/);
});

afterAll(async () => {
  await controller?.stop();
});

describe('the envseal controller', () => {
  it('creates its age identity once and publishes the recipient', async () => {
    const identity = await getSecret(controllerNamespace, 'envseal-age-identity');
    expect(identity?.data?.['identity.agekey']).toBeDefined();
    expect(controller.logs.some((l) => l.includes('created the cluster age identity'))).toBe(true);
  });

  it('materializes a Secret with data, type, labels, annotations and an owner reference, and reports Ready', async () => {
    const name = 'db';
    const sealed = await seal({
      namespace: nsA,
      name,
      values: { DB_PASSWORD: `${CANARY}-db`, USER: 'app' },
      template: { type: 'example.com/db', metadata: { labels: { team: 'a' }, annotations: { note: 'kept' } } },
    });
    await apply(sealed);
    const es = await waitReady(nsA, name);
    const secret = await waitFor('the Secret', () => getSecret(nsA, name));
    expect(decode(secret.data)).toEqual({ DB_PASSWORD: `${CANARY}-db`, USER: 'app' });
    expect(secret.type).toBe('example.com/db');
    expect(secret.metadata.labels).toMatchObject({ team: 'a', 'app.kubernetes.io/managed-by': 'envseal' });
    expect(secret.metadata.annotations).toMatchObject({ note: 'kept' });
    expect(secret.metadata.annotations?.[ANNOTATION_SPEC_HASH]).toMatch(/^sha256:/);
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'EnvelopeSecret', name, uid: es.metadata.uid, controller: true })]);
    expect(ready(es)?.message).toContain('up to date');
    // Events are sent in the background, right after the status.
    await waitFor('a Normal Synced event', async () => (await eventsFor(nsA, name)).some((e) => e.reason === 'Synced' && e.type === 'Normal'));
    const printed = await kubectl(['get', 'envelopesecrets', '-n', nsA, name]);
    expect(printed.stdout).toMatch(/READY\s+REASON/);
    expect(printed.stdout).toMatch(/True\s+Synced/);
  });

  it('repairs drift: an edited Secret is restored, a deleted one recreated', async () => {
    const name = 'drift';
    await apply(await seal({ namespace: nsA, name, values: { TOKEN: `${CANARY}-drift` } }));
    await waitReady(nsA, name);
    await kubectl([
      'patch',
      'secret',
      '-n',
      nsA,
      name,
      '--type=merge',
      '-p',
      JSON.stringify({ data: { TOKEN: Buffer.from('tampered').toString('base64'), EXTRA: 'eA==' } }),
    ]);
    await waitFor('the edited value restored', async () => {
      const data = decode((await getSecret(nsA, name))?.data);
      return data.TOKEN === `${CANARY}-drift` && !('EXTRA' in data);
    });
    const before = await getSecret(nsA, name);
    await kubectl(['delete', 'secret', '-n', nsA, name]);
    await waitFor('the deleted Secret recreated', async () => {
      const secret = await getSecret(nsA, name);
      return secret && secret.metadata.uid !== before?.metadata.uid && decode(secret.data).TOKEN === `${CANARY}-drift`;
    });
  });

  it('follows spec changes: a merged value (sealed without Decrypt) reaches the Secret', async () => {
    const name = 'update';
    const first = await seal({ namespace: nsA, name, values: { A: 'one' } });
    await apply(first);
    await waitReady(nsA, name);
    const merged = await mergeValues({ secret: first, values: bytes({ B: 'two', A: 'uno' }), providers: sealer, random: seededRandom('m') });
    await apply(merged);
    await waitFor('the merged values', async () => {
      const data = decode((await getSecret(nsA, name))?.data);
      return data.A === 'uno' && data.B === 'two';
    });
    await waitReady(nsA, name);
  });

  it('never overwrites a Secret it does not own, until it is annotated for adoption', async () => {
    const name = 'foreign';
    await client.request({
      method: 'POST',
      path: paths.secrets(nsA),
      body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: nsA }, stringData: { KEEP: 'mine' } },
    });
    const original = (await getSecret(nsA, name))!;
    await apply(await seal({ namespace: nsA, name, values: { KEEP: 'theirs' } }));
    const es = await waitReady(nsA, name, 'SecretNotOwned');
    expect(ready(es)?.message).toContain('envseal.dev/adopt');
    const untouched = (await getSecret(nsA, name))!;
    expect(untouched.metadata.resourceVersion).toBe(original.metadata.resourceVersion);
    expect(decode(untouched.data)).toEqual({ KEEP: 'mine' });
    await waitFor('a Warning SecretNotOwned event', async () =>
      (await eventsFor(nsA, name)).some((e) => e.reason === 'SecretNotOwned' && e.type === 'Warning'),
    );

    await kubectl(['annotate', 'secret', '-n', nsA, name, `${ANNOTATION_ADOPT}=true`]);
    // Foreign Secrets are looked at again periodically; a spec touch makes it immediate.
    await kubectl(['annotate', 'envelopesecret', '-n', nsA, name, 'touch=1']);
    await waitFor('the adopted Secret', async () => decode((await getSecret(nsA, name))?.data).KEEP === 'theirs', { timeoutMs: 90_000 });
    const adopted = (await getSecret(nsA, name))!;
    expect(adopted.metadata.ownerReferences?.[0]?.kind).toBe('EnvelopeSecret');
  });

  it.each(['strict', 'namespace'] as const)('refuses a %s-scoped manifest moved to another namespace, and writes no Secret', async (scope) => {
    const name = `moved-${scope}`;
    const sealed = await seal({ namespace: nsA, name, scope, values: { K: `${CANARY}-moved` } });
    await apply({ ...sealed, metadata: { name, namespace: nsB } });
    const es = await waitReady(nsB, name, 'ContextMismatch');
    expect(ready(es)?.message).toContain('another namespace, name or scope');
    expect(await getSecret(nsB, name)).toBeUndefined();
  });

  it('refuses a strict manifest renamed within its namespace, but lets namespace scope be renamed', async () => {
    const strict = await seal({ namespace: nsA, name: 'orig-strict', values: { K: 'v' } });
    await apply({ ...strict, metadata: { name: 'renamed-strict', namespace: nsA } });
    await waitReady(nsA, 'renamed-strict', 'ContextMismatch');
    expect(await getSecret(nsA, 'renamed-strict')).toBeUndefined();

    const loose = await seal({ namespace: nsA, name: 'orig-ns', scope: 'namespace', values: { K: 'v' } });
    await apply({ ...loose, metadata: { name: 'renamed-ns', namespace: nsA } });
    await waitReady(nsA, 'renamed-ns');
    expect(decode((await getSecret(nsA, 'renamed-ns'))?.data)).toEqual({ K: 'v' });
  });

  it('applies a cluster-scoped manifest anywhere', async () => {
    const sealed = await seal({ namespace: nsA, name: 'shared', scope: 'cluster', values: { K: 'everywhere' } });
    await apply({ ...sealed, metadata: { name: 'copied', namespace: nsB } });
    await waitReady(nsB, 'copied');
    expect(decode((await getSecret(nsB, 'copied'))?.data)).toEqual({ K: 'everywhere' });
  });

  it('refuses a tampered value and names the key, writing no Secret', async () => {
    const name = 'tampered';
    const sealed = await seal({ namespace: nsA, name, values: { GOOD: 'g', BAD: `${CANARY}-bad` } });
    const envelope = sealed.spec.envelopes[0]!;
    const raw = Buffer.from(envelope.data.BAD!, 'base64');
    raw[raw.length - 1]! ^= 0x01;
    envelope.data.BAD = raw.toString('base64');
    await apply(sealed);
    const es = await waitReady(nsA, name, 'DecryptFailed');
    expect(ready(es)?.message).toContain('"BAD"');
    expect(ready(es)?.message).not.toContain('"GOOD"');
    expect(await getSecret(nsA, name)).toBeUndefined();
  });

  it('refuses an envelope whose recipients wrap different data keys (CommitmentMismatch)', async () => {
    const name = 'forged';
    const honest = await seal({ namespace: nsA, name, values: { K: 'honest' } });
    const other = await seal({ namespace: nsA, name, values: { K: 'forged' } });
    // The cluster's recipient now unwraps a data key that does not match the commitment.
    honest.spec.envelopes[0]!.recipients = other.spec.envelopes[0]!.recipients;
    await apply(honest);
    await waitReady(nsA, name, 'CommitmentMismatch');
    expect(await getSecret(nsA, name)).toBeUndefined();
  });

  it('reports a spec that passes the CRD but not the format as InvalidSpec', async () => {
    const name = 'noncanonical';
    const sealed = await seal({ namespace: nsA, name, values: { K: 'v' } });
    const id = sealed.spec.envelopes[0]!.id;
    // Same bytes, but a non-zero trailing bit: valid to the CRD pattern, refused by the format.
    const last = id.at(-2)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    sealed.spec.envelopes[0]!.id = `${id.slice(0, -2)}${alphabet[alphabet.indexOf(last) ^ 1]}=`;
    await apply(sealed);
    const es = await waitReady(nsA, name, 'InvalidSpec');
    expect(ready(es)?.message).toContain('spec.envelopes[0].id');
  });

  it('replaces an immutable Secret whose data must change', async () => {
    const name = 'frozen';
    const first = await seal({ namespace: nsA, name, values: { K: 'v1' }, template: { immutable: true } });
    await apply(first);
    await waitReady(nsA, name);
    const before = (await getSecret(nsA, name))!;
    expect(before.immutable).toBe(true);
    await apply(await seal({ namespace: nsA, name, values: { K: 'v2' }, template: { immutable: true } }));
    const after = await waitFor('the replaced Secret', async () => {
      const secret = await getSecret(nsA, name);
      return secret && decode(secret.data).K === 'v2' ? secret : undefined;
    });
    expect(after.metadata.uid).not.toBe(before.metadata.uid);
    expect(after.immutable).toBe(true);
  });

  it('deletes the Secret through garbage collection when the EnvelopeSecret is deleted', async () => {
    const name = 'collected';
    await apply(await seal({ namespace: nsA, name, values: { K: 'v' } }));
    await waitReady(nsA, name);
    await kubectl(['delete', 'envelopesecret', '-n', nsA, name]);
    await waitFor('the Secret garbage-collected', async () => (await getSecret(nsA, name)) === undefined, { timeoutMs: 60_000 });
  });

  it('makes no key-provider call after a restart for resources already in sync', async () => {
    const names = ['steady-1', 'steady-2', 'steady-3'];
    for (const name of names) await apply(await seal({ namespace: nsB, name, values: { K: name } }));
    for (const name of names) await waitReady(nsB, name);
    const secretsBefore = await Promise.all(names.map((n) => getSecret(nsB, n)));
    await controller.stop();
    controller = await startTestController({
      kubeConfig: adminKubeConfig(),
      config: { namespace: controllerNamespace, namespaces: [nsA, nsB], tenantPolicy: customTypePolicy() },
    });
    // Wait for the new leader to have looked at every object once.
    await waitFor('the restarted controller to reconcile everything', async () => (await controller.metric('envseal_reconcile_total')) >= names.length, {
      timeoutMs: 60_000,
    });
    expect(await controller.metric('envseal_kms_requests_total', { operation: 'unwrap' })).toBe(0);
    const secretsAfter = await Promise.all(names.map((n) => getSecret(nsB, n)));
    expect(secretsAfter.map((s) => s?.metadata.resourceVersion)).toEqual(secretsBefore.map((s) => s?.metadata.resourceVersion));
    // A change after the restart does call the provider.
    await apply(await seal({ namespace: nsB, name: 'steady-1', values: { K: 'changed' } }));
    await waitFor('the changed value', async () => decode((await getSecret(nsB, 'steady-1'))?.data).K === 'changed');
    expect(await controller.metric('envseal_kms_requests_total', { operation: 'unwrap' })).toBe(1);
  });

  it('never puts a secret value or data key in a log line, event or status', async () => {
    const identityFile = Buffer.from((await getSecret(controllerNamespace, 'envseal-age-identity'))!.data!['identity.agekey']!, 'base64').toString();
    const age = createAgeProvider({ identities: parseAgeIdentityFile(identityFile, 'cluster identity') });
    const needles = [CANARY, Buffer.from(CANARY).toString('base64'), identityFile.trim().split('\n').at(-1)!];
    const list = await client.request<{ items: Live[] }>({ method: 'GET', path: paths.envelopeSecrets() });
    for (const es of list.items) {
      for (const envelope of es.spec.envelopes) {
        for (const r of envelope.recipients) {
          const dataKey = await age.unwrap({ recipient: r, encryptionContext: {} }).catch(() => undefined);
          if (dataKey) needles.push(Buffer.from(dataKey).toString('base64'), Buffer.from(dataKey).toString('hex'));
        }
      }
    }
    expect(needles.length).toBeGreaterThan(10);
    const statuses = list.items.map((es) => JSON.stringify(es.status ?? {}));
    const events: string[] = [];
    for (const ns of [nsA, nsB, controllerNamespace]) {
      const items = (await client.request<{ items: unknown[] }>({ method: 'GET', path: paths.events(ns) })).items;
      events.push(...items.map((e) => JSON.stringify(e)));
    }
    const metrics = await fetch(controller.metricsUrl).then((r) => r.text());
    const haystacks = { logs: allControllerLogs.join('\n'), statuses: statuses.join('\n'), events: events.join('\n'), metrics };
    expect(allControllerLogs.length).toBeGreaterThan(20);
    expect(events.length).toBeGreaterThan(5);
    for (const [where, text] of Object.entries(haystacks)) {
      for (const needle of needles) expect(text.includes(needle), `${where} contains a secret`).toBe(false);
    }
  });
});
