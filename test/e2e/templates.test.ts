// spec.template.data end to end on the real control plane: the controller renders config
// files from the opened values, re-renders when a value changes, refuses a bad template
// with a clear reason and keeps the Secret it wrote, and the API server refuses at apply
// time what the CRD can see (a key both templated and sealed, too many or too long
// templates). No value in a status, Event, log line or metric.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { MAX_TEMPLATE_LENGTH, MAX_TEMPLATES } from '../../src/api/validation.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { allControllerLogs, startTestController, type TestController } from '../harness/controller.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectlApply, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const CANARY = 'CANARY-e2e-templates-5d1e';
const client = adminClient();
const controllerNamespace = uniqueName('envseal-system');
const ns = uniqueName('tmpl');
let recipient: string;
let controller: TestController;

interface SecretObject {
  metadata: { resourceVersion: string };
  type: string;
  data?: Record<string, string>;
}
type Live = EnvelopeSecret & { metadata: { generation: number } };

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const getSecret = (name: string) => getOrUndefined<SecretObject>(client, paths.secret(ns, name));
const getEnvelopeSecret = (name: string) => getOrUndefined<Live>(client, paths.envelopeSecret(ns, name));

const seal = (name: string, values: Record<string, string>, template: EnvelopeSecret['spec']['template']) =>
  sealFor({ namespace: ns, name, values, template, targets: [ageTarget(recipient)] });

async function waitReady(name: string, reason: string, status: 'True' | 'False') {
  return waitFor(`${ns}/${name} Ready=${status} ${reason}`, async () => {
    const es = await getEnvelopeSecret(name);
    const ready = es?.status?.conditions?.find((c) => c.type === 'Ready');
    return ready?.status === status && ready.reason === reason && es?.status?.observedGeneration === es?.metadata.generation ? ready : undefined;
  });
}

const CONFIG = 'database:\n  host: db.internal\n  user: {{ .USER }}\n  password: {{ .DB_PASSWORD | json }}\n';

beforeAll(async () => {
  await installCrd();
  for (const namespace of [controllerNamespace, ns]) await createNamespace(client, namespace);
  controller = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace: controllerNamespace, namespaces: [ns] } });
  recipient = (
    await waitFor('the published age recipient', () =>
      getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'envseal-age-recipient')),
    )
  ).data.recipient;
});

afterAll(async () => {
  await controller?.stop();
});

describe('templates on the real control plane', () => {
  it('materializes the rendered key beside the sealed keys, and renders again when a value changes', async () => {
    await applyOrThrow(await seal('app', { DB_PASSWORD: `${CANARY}-1`, USER: 'app' }, { data: { 'config.yaml': CONFIG } }));
    await waitReady('app', 'Synced', 'True');
    expect(decode((await getSecret('app'))?.data)).toEqual({
      DB_PASSWORD: `${CANARY}-1`,
      USER: 'app',
      'config.yaml': `database:\n  host: db.internal\n  user: app\n  password: "${CANARY}-1"\n`,
    });

    await applyOrThrow(await seal('app', { DB_PASSWORD: `${CANARY}-2 "quoted"`, USER: 'app' }, { data: { 'config.yaml': CONFIG } }));
    const secret = await waitFor('the re-rendered config', async () => {
      const live = await getSecret('app');
      return decode(live?.data)['config.yaml']?.includes(`${CANARY}-2`) ? live : undefined;
    });
    expect(decode(secret.data)['config.yaml']).toBe(`database:\n  host: db.internal\n  user: app\n  password: "${CANARY}-2 \\"quoted\\""\n`);
    await waitReady('app', 'Synced', 'True');
  });

  it('a changed template alone (same ciphertext) re-renders the key', async () => {
    const live = (await getEnvelopeSecret('app'))!;
    const changed = {
      apiVersion: live.apiVersion,
      kind: live.kind,
      metadata: { name: 'app', namespace: ns },
      spec: { ...live.spec, template: { data: { 'config.yaml': CONFIG, 'dsn.txt': 'postgres://{{ .USER }}@db.internal/app' } } },
    };
    await applyOrThrow(changed);
    const secret = await waitFor('the new template key', async () => {
      const s = await getSecret('app');
      return decode(s?.data)['dsn.txt'] ? s : undefined;
    });
    expect(decode(secret.data)['dsn.txt']).toBe('postgres://app@db.internal/app');
    expect(decode(secret.data)['config.yaml']).toContain(`${CANARY}-2`);
    await waitReady('app', 'Synced', 'True');
  });

  it('a template whose function cannot take a value: Ready=False TemplateFailed naming the place, and the Secret is not clobbered', async () => {
    const before = await getSecret('app');
    expect(before).toBeDefined();
    await applyOrThrow(
      await seal('app', { DB_PASSWORD: `${CANARY}-3!`, USER: 'app' }, { data: { 'config.yaml': CONFIG, 'tls.crt': 'x\n{{ .DB_PASSWORD | b64dec }}' } }),
    );
    const ready = await waitReady('app', 'TemplateFailed', 'False');
    expect(ready.message).toBe('template "tls.crt" line 2 column 19: the value piped to b64dec is not standard padded base64');
    const after = await getSecret('app');
    expect(after?.metadata.resourceVersion).toBe(before!.metadata.resourceVersion);
    expect(decode(after?.data)['config.yaml']).toContain(`${CANARY}-2`);
    const es = await getEnvelopeSecret('app');
    expect(es?.status?.conditions?.find((c) => c.type === 'Stalled')).toMatchObject({ status: 'True', reason: 'TemplateFailed' });
  });

  it('a template reading a key that is not sealed: Ready=False InvalidSpec naming the template, the line and the key', async () => {
    await applyOrThrow(await seal('missing', { A: `${CANARY}-a` }, { data: { 'app.ini': '[db]\npassword = {{ .PASSWORD }}\n' } }));
    const ready = await waitReady('missing', 'InvalidSpec', 'False');
    expect(ready.message).toBe(
      'spec.template.data["app.ini"]: template "app.ini" line 2 column 15: references key "PASSWORD", which is not sealed in this EnvelopeSecret',
    );
    expect(await getSecret('missing')).toBeUndefined();
  });

  it('the API server refuses at apply time a key both templated and sealed, too many templates, a template too long', async () => {
    const collide = await seal('collide', { TOKEN: `${CANARY}-t` }, { data: { TOKEN: 'x{{ .TOKEN }}' } });
    const refused = await kubectlApply(collide);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('a key of template.data is also a sealed key');

    const many = Object.fromEntries(Array.from({ length: MAX_TEMPLATES + 1 }, (_, i) => [`t${i}`, 'x']));
    const tooMany = await kubectlApply(await seal('many', { A: 'a' }, { data: many }));
    expect(tooMany.code).not.toBe(0);
    expect(tooMany.stderr).toMatch(/spec.template.data: Too many: 65: must have at most 64 items/);
    expect((await kubectlApply(await seal('many', { A: 'a' }, { data: Object.fromEntries(Object.entries(many).slice(1)) }))).code).toBe(0);

    const long = await kubectlApply(await seal('long', { A: 'a' }, { data: { k: 'x'.repeat(MAX_TEMPLATE_LENGTH + 1) } }));
    expect(long.code).not.toBe(0);
    expect(long.stderr).toMatch(/spec.template.data.k: Too long: may not be (longer than|more than) 65536/);
    for (const name of ['collide', 'long']) expect(await getEnvelopeSecret(name)).toBeUndefined();
    await waitReady('many', 'Synced', 'True');
  });

  it('never puts a value in a status, an Event, a log line or a metric', async () => {
    const list = await client.request<{ items: Live[] }>({ method: 'GET', path: paths.envelopeSecrets(ns) });
    const events = (await client.request<{ items: unknown[] }>({ method: 'GET', path: paths.events(ns) })).items.map((e) => JSON.stringify(e));
    const metrics = await fetch(controller.metricsUrl).then((r) => r.text());
    const haystacks = {
      statuses: list.items.map((es) => JSON.stringify(es.status ?? {})).join('\n'),
      events: events.join('\n'),
      logs: allControllerLogs.join('\n'),
      metrics,
    };
    expect(events.length).toBeGreaterThan(3);
    expect(haystacks.logs).toContain('secret synced');
    for (const [where, text] of Object.entries(haystacks)) {
      for (const needle of [CANARY, Buffer.from(CANARY).toString('base64').slice(0, 16), 'CANARY-'])
        expect(text.includes(needle), `${where} holds a value`).toBe(false);
    }
  });
});
