// The controller with the aws-kms provider, against both KMS emulators.
import { DisableKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Scope } from '../../src/envelope/context.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { KMS_EMULATORS, type KmsEmulator } from '../harness/kms-emulators.ts';
import { adminClient, createNamespace, decodeSecretData as decode, getOrUndefined, installCrd, kubectl, paths } from '../harness/kube.ts';
import { awsKmsOptions, createAwsKmsKey } from '../harness/provider-setup.ts';
import { sealAndApply as sealAndApplyFor } from '../harness/seal.ts';
import { waitForReason } from '../harness/tenant.ts';

const client = adminClient();

describe.each(KMS_EMULATORS.map((e) => [e.name, e] as const))('controller with aws-kms on %s', (emulatorName, emulator) => {
  let kms: KmsEmulator;
  let controller: TestController;
  let keyArn: string;
  let otherKeyArn: string;
  let sealer: ProviderRegistry;
  const ns = uniqueName(`kms-${emulatorName}`);
  const other = uniqueName(`kms-other-${emulatorName}`);
  const controllerNamespace = uniqueName('envseal-kms');

  const sealAndApply = (options: {
    name: string;
    namespace: string;
    values: Record<string, string>;
    key?: string;
    scope?: Scope;
    appliedAs?: { name: string; namespace: string };
  }) => sealAndApplyFor({ ...options, targets: [{ provider: 'aws-kms', target: options.key ?? keyArn }], providers: sealer });
  const waitReason = (namespace: string, name: string, reason: string) => waitForReason(client, namespace, name, reason);

  const startController = () =>
    startTestController({
      kubeConfig: adminKubeConfig(),
      config: {
        namespace: controllerNamespace,
        namespaces: [ns, other],
        providers: { 'aws-kms': awsKmsOptions(kms, { maxAttempts: 2 }) },
      },
    });

  beforeAll(async () => {
    await installCrd();
    kms = await emulator.start();
    keyArn = await createAwsKmsKey(kms, { aliasPrefix: `alias/envseal-${ns}` });
    otherKeyArn = await createAwsKmsKey(kms, { aliasPrefix: `alias/envseal-${ns}` });
    sealer = new ProviderRegistry({ 'aws-kms': awsKmsOptions(kms) });
    for (const name of [ns, other, controllerNamespace]) await createNamespace(client, name);
    controller = await startController();
  });

  afterAll(async () => {
    await controller?.stop();
    await kms?.stop();
  });

  it('materializes a Secret sealed for a KMS key, with one Decrypt per envelope', async () => {
    await sealAndApply({ name: 'db', namespace: ns, values: { PASSWORD: 'kms-sealed' } });
    await waitReason(ns, 'db', 'Synced');
    expect(decode((await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'db')))?.data)).toEqual({ PASSWORD: 'kms-sealed' });
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'aws-kms', operation: 'unwrap', outcome: 'success' })).toBe(1);
  });

  it('is refused by the KMS when applied in another namespace (encryption context)', async () => {
    await sealAndApply({ name: 'moved', namespace: ns, values: { K: 'v' }, appliedAs: { name: 'moved', namespace: other } });
    const ready = await waitReason(other, 'moved', 'ContextMismatch');
    expect(ready.message).toContain(keyArn);
    expect(await getOrUndefined(client, paths.secret(other, 'moved'))).toBeUndefined();
  });

  it('opens a namespace-scoped manifest under another name through the KMS', async () => {
    await sealAndApply({ name: 'orig', namespace: ns, scope: 'namespace', values: { K: 'ns-scope' }, appliedAs: { name: 'renamed', namespace: ns } });
    await waitReason(ns, 'renamed', 'Synced');
  });

  it('makes no KMS call after a restart while everything is in sync', async () => {
    await controller.stop();
    controller = await startController();
    await waitFor(
      'a pass over every object',
      async () => (await controller.metric('envseal_reconcile_total')) >= 3 && (await controller.metric('envseal_workqueue_depth')) === 0,
      { timeoutMs: 60_000 },
    );
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'aws-kms' })).toBe(0);
  });

  // moto does not enforce key states (docs/kms-emulators.md): only local-kms can show this.
  if (emulatorName === 'local-kms') {
    it('reports a disabled key as KMSKeyUnavailable, naming the key, and writes nothing new', async () => {
      await sealAndApply({ name: 'disabled', namespace: ns, values: { K: 'before' }, key: otherKeyArn });
      await waitReason(ns, 'disabled', 'Synced');
      const raw = new KMSClient({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials });
      await raw.send(new DisableKeyCommand({ KeyId: otherKeyArn }));
      raw.destroy();
      // A fresh controller has no cached data key; a spec change makes it ask the KMS.
      await controller.stop();
      controller = await startController();
      await kubectl([
        'patch',
        'envelopesecret',
        '-n',
        ns,
        'disabled',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { template: { metadata: { labels: { touched: 'yes' } } } } }),
      ]);
      const ready = await waitReason(ns, 'disabled', 'KMSKeyUnavailable');
      expect(ready.message).toContain(otherKeyArn);
      const secret = await getOrUndefined<{ data: Record<string, string>; metadata: { labels?: Record<string, string> } }>(
        client,
        paths.secret(ns, 'disabled'),
      );
      expect(decode(secret?.data)).toEqual({ K: 'before' });
      expect(secret?.metadata.labels?.touched).toBeUndefined();
    });
  }
});
