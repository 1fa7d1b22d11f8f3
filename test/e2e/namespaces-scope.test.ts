// Scope namespaces on the real control plane, with aws-kms on local-kms (which enforces
// the encryption context, not IAM): one sealed document materializes in each listed
// namespace and nowhere else, through the wrapping made for that namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { systemRandom } from '../../src/envelope/random.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { addRecipient, compactEnvelopes, removeRecipient } from '../../src/sealing/edit.ts';
import { sealEnvelopeSecret } from '../../src/sealing/seal.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { type KmsEmulator, startLocalKms } from '../harness/kms-emulators.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectlApply, paths } from '../harness/kube.ts';
import { asBytes } from '../harness/seal.ts';

const client = adminClient();
type Live = EnvelopeSecret & { metadata: { generation: number } };
const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

describe('scope namespaces', () => {
  let kms: KmsEmulator;
  let controller: TestController;
  let keyArn: string;
  let sealer: ProviderRegistry;
  // Sorted: the list is canonical. `unlisted` is watched by the controller but not in the list.
  const [first, second] = [uniqueName('nss-a'), uniqueName('nss-b')].sort() as [string, string];
  const listed = [first, second];
  const unlisted = uniqueName('nss-c');
  const controllerNamespace = uniqueName('envseal-nss');

  const seal = (name: string, values: Record<string, string>) =>
    sealEnvelopeSecret({
      values: asBytes(values),
      binding: { scope: 'namespaces', namespace: first, name, namespaces: listed },
      targets: [{ provider: 'aws-kms', target: keyArn }],
      providers: sealer,
      random: systemRandom,
    });
  const inNamespace = (secret: EnvelopeSecret, namespace: string): EnvelopeSecret => ({ ...secret, metadata: { ...secret.metadata, namespace } });
  const secretData = async (namespace: string, name: string) =>
    (await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(namespace, name)))?.data;

  async function waitReason(namespace: string, name: string, reason: string) {
    return waitFor(`${namespace}/${name} ${reason}`, async () => {
      const es = await getOrUndefined<Live>(client, paths.envelopeSecret(namespace, name));
      const ready = es?.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.reason === reason && es?.status?.observedGeneration === es?.metadata.generation ? ready : undefined;
    });
  }

  beforeAll(async () => {
    await installCrd();
    kms = await startLocalKms();
    const admin = createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials });
    keyArn = (await admin.createKey({ alias: `alias/envseal-${first}` })).keyArn;
    sealer = new ProviderRegistry({ 'aws-kms': { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials } });
    for (const name of [first, second, unlisted, controllerNamespace]) await createNamespace(client, name);
    controller = await startTestController({
      kubeConfig: adminKubeConfig(),
      config: {
        namespace: controllerNamespace,
        namespaces: [first, second, unlisted],
        providers: { 'aws-kms': { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials, maxAttempts: 2 } },
      },
    });
  });

  afterAll(async () => {
    await controller?.stop();
    await kms?.stop();
  });

  it('wraps the data key once per listed namespace, and the same document materializes in each, each through its own wrapping', async () => {
    const sealed = await seal('registry', { TOKEN: 'shared-token', USER: 'robot' });
    expect(sealed.spec.envelopes[0]!.recipients.map((r) => [r.keyId, r.namespace])).toEqual(listed.map((ns) => [keyArn, ns]));
    for (const namespace of listed) await applyOrThrow(inNamespace(sealed, namespace));
    for (const namespace of listed) {
      await waitReason(namespace, 'registry', 'Synced');
      expect(decode(await secretData(namespace, 'registry'))).toEqual({ TOKEN: 'shared-token', USER: 'robot' });
    }
    // One Decrypt per namespace: each reader unwrapped its own namespace's wrapping.
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'aws-kms', operation: 'unwrap', outcome: 'success' })).toBe(2);
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'aws-kms', operation: 'unwrap', outcome: 'error' })).toBe(0);
  });

  it('refuses a copy applied in an unlisted namespace: ContextMismatch, no Secret, no KMS call', async () => {
    const sealed = await seal('copied', { TOKEN: 'not-for-c' });
    await applyOrThrow(inNamespace(sealed, unlisted));
    const ready = await waitReason(unlisted, 'copied', 'ContextMismatch');
    expect(ready.status).toBe('False');
    expect(ready.message).toContain(`namespace "${unlisted}" is not one of the namespaces the manifest is sealed for`);
    expect(await secretData(unlisted, 'copied')).toBeUndefined();
    expect(await controller.metric('envseal_unwrap_attempts_total', { namespace: unlisted })).toBe(0);
  });

  it("uses the per-namespace wrapping: wrappings relabelled for each other's namespace are refused by the KMS", async () => {
    const sealed = await seal('swapped', { TOKEN: 'swap' });
    const envelope = sealed.spec.envelopes[0]!;
    const swapped = envelope.recipients.map((r) => ({ ...r, namespace: r.namespace === first ? second : first }));
    await applyOrThrow(inNamespace({ ...sealed, spec: { ...sealed.spec, envelopes: [{ ...envelope, recipients: swapped }] } }, second));
    const ready = await waitReason(second, 'swapped', 'ContextMismatch');
    expect(ready.message).toContain(keyArn);
    expect(await secretData(second, 'swapped')).toBeUndefined();
  });

  it('refuses a value moved from another document, and a list widened to take in another namespace', async () => {
    const target = await seal('target', { KEEP: 'kept', MOVED: 'original' });
    const donor = await seal('donor', { MOVED: 'from-the-donor' });
    const envelope = target.spec.envelopes[0]!;
    const moved = { ...envelope, data: { ...envelope.data, MOVED: donor.spec.envelopes[0]!.data.MOVED! } };
    await applyOrThrow(inNamespace({ ...target, spec: { ...target.spec, envelopes: [moved] } }, first));
    const ready = await waitReason(first, 'target', 'DecryptFailed');
    expect(ready.message).toContain('"MOVED"');
    expect(ready.message).not.toContain('"KEEP"');
    expect(await secretData(first, 'target')).toBeUndefined();

    const widened = await seal('widened', { TOKEN: 'w' });
    await applyOrThrow(inNamespace({ ...widened, spec: { ...widened.spec, namespaces: [...listed, unlisted].sort() } }, unlisted));
    // The list is canonical, so the API server takes it; the key has no wrapping for the
    // added namespace, so the controller refuses it before any KMS call (and every value's
    // AAD binds the original list anyway).
    const refused = await waitReason(unlisted, 'widened', 'InvalidSpec');
    expect(refused.message).toContain(`has no wrapping for namespace "${unlisted}"`);
    expect(await secretData(unlisted, 'widened')).toBeUndefined();
  });

  it('add-recipient wraps a second KMS key once per namespace, and after removing the first key and compacting, each namespace still opens it', async () => {
    const admin = createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials });
    const secondKey = (await admin.createKey({ alias: `alias/envseal-${second}` })).keyArn;
    const sealed = await seal('rotated', { TOKEN: 'rotate-me' });
    const added = await addRecipient({ secret: sealed, target: { provider: 'aws-kms', target: secondKey }, providers: sealer });
    expect(added.spec.envelopes[0]!.recipients.map((r) => [r.keyId, r.namespace])).toEqual([
      ...listed.map((ns) => [keyArn, ns]),
      ...listed.map((ns) => [secondKey, ns]),
    ]);
    const removed = await removeRecipient({ secret: added, target: { provider: 'aws-kms', target: keyArn }, providers: sealer });
    const compacted = await compactEnvelopes({ secret: removed, providers: sealer, random: systemRandom });
    expect(compacted.spec.envelopes[0]!.recipients.map((r) => [r.keyId, r.namespace])).toEqual(listed.map((ns) => [secondKey, ns]));
    for (const namespace of listed) await applyOrThrow(inNamespace(compacted, namespace));
    for (const namespace of listed) {
      await waitReason(namespace, 'rotated', 'Synced');
      expect(decode(await secretData(namespace, 'rotated'))).toEqual({ TOKEN: 'rotate-me' });
    }
  });

  it('the API server refuses, at apply time, an unsorted list, a list without the scope, and a recipient namespace in another scope', async () => {
    const sealed = await seal('schema', { TOKEN: 's' });
    const unsorted = await kubectlApply(inNamespace({ ...sealed, spec: { ...sealed.spec, namespaces: [second, first] } }, first));
    expect(unsorted.code).not.toBe(0);
    expect(unsorted.stderr).toContain('spec.namespaces must be sorted');
    const strict = await kubectlApply(
      inNamespace({ ...sealed, metadata: { ...sealed.metadata, name: 'schema-strict' }, spec: { ...sealed.spec, scope: 'strict' } }, first),
    );
    expect(strict.code).not.toBe(0);
    expect(strict.stderr).toContain('spec.namespaces is required with scope namespaces and allowed with no other scope');
    const { namespaces: _dropped, ...withoutList } = sealed.spec;
    const recipientNamespace = await kubectlApply(
      inNamespace({ ...sealed, metadata: { ...sealed.metadata, name: 'schema-recipient' }, spec: { ...withoutList, scope: 'strict' } }, first),
    );
    expect(recipientNamespace.code).not.toBe(0);
    expect(recipientNamespace.stderr).toContain("a recipient's namespace is only allowed with scope namespaces");
  });
});
