// The controller with the alibaba-kms provider against our Alibaba Cloud KMS emulator,
// authenticated as on ACK with RRSA: its ServiceAccount token (TokenRequest from the
// harness API server, audience sts.aliyuncs.com) is exchanged with the emulated STS
// (AssumeRoleWithOIDC over HTTPS, checked against the API server's JWKS) for temporary
// credentials; the KMS takes them only with their SecurityToken. Sealers use an AccessKey.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import type { AlibabaKms } from '../harness/alibaba-kms.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { declaringDataKeys } from '../harness/faults-leaks.ts';
import { adminClient, applyOrThrow, createNamespace, decodeSecretData as decode, getOrUndefined, installCrd, kubectlOk, paths } from '../harness/kube.ts';
import { alibabaKmsOptions, startAlibabaKmsForRrsa } from '../harness/provider-setup.ts';
import { sealAndApply as sealAndApplyFor, sealFor } from '../harness/seal.ts';
import { waitForReason } from '../harness/tenant.ts';

const client = adminClient();
type Live = EnvelopeSecret & { metadata: { generation: number } };

describe('controller with alibaba-kms (RRSA through the emulated STS)', () => {
  let kms: AlibabaKms;
  let controller: TestController;
  let sealer: ProviderRegistry;
  let dir: string;
  let keyId: string;
  const alias = `alias/envseal-${randomUUID().slice(0, 8)}`;
  const roleArn = 'acs:ram::1234567890123456:role/envseal-controller';
  const ns = uniqueName('alibaba');
  const other = uniqueName('alibaba-other');
  const controllerNamespace = uniqueName('envseal-alibaba');

  const waitReason = (namespace: string, name: string, reason: string) => waitForReason(client, namespace, name, reason);
  const sealAndApply = (options: { name: string; namespace: string; values: Record<string, string>; appliedAs?: { name: string; namespace: string } }) =>
    sealAndApplyFor({ ...options, targets: [{ provider: 'alibaba-kms', target: alias }], providers: sealer });

  async function rrsaController(serviceAccount: string): Promise<TestController> {
    const tokenPath = path.join(dir, `${serviceAccount}-token`);
    await writeFile(
      tokenPath,
      await kubectlOk(['create', 'token', serviceAccount, '-n', controllerNamespace, '--audience=sts.aliyuncs.com', '--duration=1h']),
      { mode: 0o600 },
    );
    return startTestController({
      kubeConfig: adminKubeConfig(),
      config: {
        namespace: controllerNamespace,
        namespaces: [ns, other],
        providers: {
          'alibaba-kms': {
            endpoint: kms.endpoint,
            maxAttempts: 2,
            credentials: { kind: 'rrsa', roleArn, oidcProviderArn: kms.sts!.oidcProviderArn, oidcTokenFile: tokenPath, stsEndpoint: kms.sts!.endpoint },
          },
        },
      },
    });
  }

  beforeAll(async () => {
    await installCrd();
    for (const name of [ns, other, controllerNamespace]) await createNamespace(client, name);
    for (const name of ['envseal-controller', 'intruder']) await kubectlOk(['create', 'serviceaccount', name, '-n', controllerNamespace]);
    kms = await startAlibabaKmsForRrsa({ roleArn, namespace: controllerNamespace, serviceAccount: 'envseal-controller' });
    keyId = await kms.createKey({ alias });
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-alibaba-ctl-'));
    // Data keys are declared for the suite's final leak scan (they cannot be recovered once the emulator is gone).
    sealer = new ProviderRegistry({ 'alibaba-kms': alibabaKmsOptions(kms) }, { decorate: declaringDataKeys });
    controller = await rrsaController('envseal-controller');
  });

  afterAll(async () => {
    await controller?.stop();
    await kms?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('materializes a Secret sealed for an alibaba-kms key, with credentials from its ServiceAccount token', async () => {
    await sealAndApply({ name: 'db', namespace: ns, values: { PASSWORD: 'CANARY-alibaba-ctl-1' } });
    await waitReason(ns, 'db', 'Synced');
    expect(decode((await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'db')))?.data)).toEqual({
      PASSWORD: 'CANARY-alibaba-ctl-1',
    });
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'alibaba-kms', operation: 'unwrap', outcome: 'success' })).toBe(1);
    const calls = await kms.calls();
    expect(calls['AssumeRoleWithOIDC Success']).toBe(1);
    expect(calls['Decrypt Success']).toBeGreaterThanOrEqual(1);
  });

  it('is refused by the KMS when applied in another namespace (EncryptionContext): ContextMismatch, no Secret', async () => {
    await sealAndApply({ name: 'moved', namespace: ns, values: { K: 'CANARY-alibaba-ctl-2' }, appliedAs: { name: 'moved', namespace: other } });
    const ready = await waitReason(other, 'moved', 'ContextMismatch');
    expect(ready.message).toContain(`key/${keyId}`);
    expect(ready.message).not.toContain('CANARY-');
    expect(await getOrUndefined(client, paths.secret(other, 'moved'))).toBeUndefined();
  });

  it('a disabled key is KMSKeyUnavailable; a KMS outage is KMSUnavailable and retried until the Secret appears', async () => {
    const disabled = await sealFor({
      name: 'disabled',
      namespace: ns,
      values: { K: 'v' },
      targets: [{ provider: 'alibaba-kms', target: alias }],
      providers: sealer,
    });
    await kms.api('DisableKey', { KeyId: keyId });
    try {
      await applyOrThrow(disabled);
      const ready = await waitReason(ns, 'disabled', 'KMSKeyUnavailable');
      expect(ready.message).toMatch(/disabled/);
      expect(ready.message).toMatch(/Rejected\.Disabled/);
    } finally {
      await kms.api('EnableKey', { KeyId: keyId });
    }

    const sealed = await sealFor({
      name: 'outage',
      namespace: ns,
      values: { K: 'after-outage' },
      targets: [{ provider: 'alibaba-kms', target: alias }],
      providers: sealer,
    });
    await kms.faults({ unavailable: 1_000_000 });
    try {
      await applyOrThrow(sealed);
      const down = await waitReason(ns, 'outage', 'KMSUnavailable');
      expect(down.message).toMatch(/ServiceUnavailableTemporary/);
      expect(await getOrUndefined(client, paths.secret(ns, 'outage'))).toBeUndefined();
    } finally {
      await kms.faults({});
    }
    await waitReason(ns, 'outage', 'Synced');
    expect(decode((await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'outage')))?.data)).toEqual({ K: 'after-outage' });
  });

  it('a ServiceAccount the role does not trust is refused by STS (KMSAccessDenied), nothing is written', async () => {
    await controller.stop();
    controller = await rrsaController('intruder');
    await sealAndApply({ name: 'denied', namespace: ns, values: { K: 'v' } });
    const ready = await waitFor('denied not Synced', async () => {
      const es = await getOrUndefined<Live>(client, paths.envelopeSecret(ns, 'denied'));
      const condition = es?.status?.conditions?.find((c) => c.type === 'Ready');
      return condition && condition.status === 'False' ? condition : undefined;
    });
    expect(ready.reason).toBe('KMSAccessDenied');
    expect(ready.message).toMatch(/RRSA: STS refused AssumeRoleWithOIDC/);
    expect(ready.message).toMatch(/AuthenticationFail\.NoPermission/);
    expect(await getOrUndefined(client, paths.secret(ns, 'denied'))).toBeUndefined();
  });
});
