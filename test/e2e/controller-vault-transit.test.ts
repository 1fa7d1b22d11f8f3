// The controller with the vault-transit provider against a real OpenBao, logging in
// through OpenBao's Kubernetes auth method: its ServiceAccount token (TokenRequest from
// the harness API server) is verified by that API server through TokenReview, and the
// Vault token it gets holds only the controller's policy (decrypt on one key).
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { adminKubeConfig, sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import {
  adminClient,
  applyOrThrow,
  createNamespace,
  decodeSecretData as decode,
  getOrUndefined,
  installCrd,
  kubectl,
  kubectlOk,
  paths,
} from '../harness/kube.ts';
import { startOpenBao, type OpenBao } from '../harness/openbao.ts';
import { vaultTransitSealerToken } from '../harness/provider-setup.ts';
import { sealAndApply as sealAndApplyFor, sealFor } from '../harness/seal.ts';
import { waitForReason } from '../harness/tenant.ts';

const client = adminClient();
type Live = EnvelopeSecret & { metadata: { generation: number } };

describe('controller with vault-transit on OpenBao (Kubernetes auth)', () => {
  let bao: OpenBao;
  let controller: TestController;
  let sealer: ProviderRegistry;
  let dir: string;
  const key = `envseal-${randomUUID().slice(0, 8)}`;
  const ns = uniqueName('vault');
  const other = uniqueName('vault-other');
  const controllerNamespace = uniqueName('envseal-vault');

  const waitReason = (namespace: string, name: string, reason: string) => waitForReason(client, namespace, name, reason);
  const sealAndApply = (options: { name: string; namespace: string; values: Record<string, string>; appliedAs?: { name: string; namespace: string } }) =>
    sealAndApplyFor({ ...options, targets: [{ provider: 'vault-transit', target: key }], providers: sealer });

  beforeAll(async () => {
    await installCrd();
    for (const name of [ns, other, controllerNamespace]) await createNamespace(client, name);
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-vault-ctl-'));
    bao = await startOpenBao();
    await bao.createTransitKey(key);
    // Sealers: a token that reads the key's settings and makes data keys; no decrypt.
    const sealerToken = await vaultTransitSealerToken(bao, { key });
    sealer = new ProviderRegistry({ 'vault-transit': { address: bao.address, token: sealerToken } });

    // OpenBao's Kubernetes auth against the harness API server: a reviewer ServiceAccount
    // allowed to create TokenReviews, and a role for the controller's ServiceAccount.
    await kubectlOk(['create', 'serviceaccount', 'vault-reviewer', '-n', controllerNamespace]);
    await kubectlOk(['create', 'serviceaccount', 'envseal-controller', '-n', controllerNamespace]);
    await kubectlOk([
      'create',
      'clusterrolebinding',
      `${controllerNamespace}-vault-reviewer`,
      '--clusterrole=system:auth-delegator',
      `--serviceaccount=${controllerNamespace}:vault-reviewer`,
    ]);
    const reviewerJwt = (await kubectlOk(['create', 'token', 'vault-reviewer', '-n', controllerNamespace, '--duration=1h'])).trim();
    const cluster = sharedCluster();
    await bao.api('POST', 'sys/auth/kubernetes', { type: 'kubernetes' });
    await bao.api('POST', 'auth/kubernetes/config', {
      kubernetes_host: cluster.server,
      kubernetes_ca_cert: await readFile(cluster.caCertPath, 'utf8'),
      token_reviewer_jwt: reviewerJwt,
      disable_local_ca_jwt: true,
    });
    await bao.api('PUT', 'sys/policies/acl/envseal-controller', { policy: `path "transit/decrypt/${key}" { capabilities = ["update"] }` });
    await bao.api('POST', 'auth/kubernetes/role/envseal-controller', {
      bound_service_account_names: ['envseal-controller'],
      bound_service_account_namespaces: [controllerNamespace],
      token_policies: ['envseal-controller'],
      token_ttl: '10m',
    });
    const tokenPath = path.join(dir, 'token');
    await writeFile(tokenPath, await kubectlOk(['create', 'token', 'envseal-controller', '-n', controllerNamespace, '--duration=1h']), { mode: 0o600 });

    controller = await startTestController({
      kubeConfig: adminKubeConfig(),
      config: {
        namespace: controllerNamespace,
        namespaces: [ns, other],
        providers: { 'vault-transit': { address: bao.address, kubernetesAuth: { role: 'envseal-controller', tokenPath }, maxAttempts: 2 } },
      },
    });
  });

  afterAll(async () => {
    await controller?.stop();
    await bao?.stop();
    await kubectl(['delete', 'clusterrolebinding', `${controllerNamespace}-vault-reviewer`, '--ignore-not-found']);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('materializes a Secret sealed for a transit key, logging in with its ServiceAccount token', async () => {
    await sealAndApply({ name: 'db', namespace: ns, values: { PASSWORD: 'vault-sealed' } });
    await waitReason(ns, 'db', 'Synced');
    expect(decode((await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'db')))?.data)).toEqual({ PASSWORD: 'vault-sealed' });
    expect(await controller.metric('envseal_kms_requests_total', { provider: 'vault-transit', operation: 'unwrap', outcome: 'success' })).toBe(1);
    // The controller logged in through the Kubernetes auth method: OpenBao holds one token
    // issued to its ServiceAccount (checked by the API server) with only its policy.
    const accessors = await bao.api<{ data: { keys: string[] } }>('LIST', 'auth/token/accessors');
    const tokens = await Promise.all(
      accessors.data.keys.map((accessor) =>
        bao.api<{ data: { meta: Record<string, string> | null; policies: string[] } }>('POST', 'auth/token/lookup-accessor', { accessor }),
      ),
    );
    const issued = tokens.filter((t) => t.data.meta?.service_account_name === 'envseal-controller');
    expect(issued).toHaveLength(1);
    expect(issued[0]!.data.meta).toMatchObject({ service_account_namespace: controllerNamespace, role: 'envseal-controller' });
    expect(issued[0]!.data.policies).toEqual(['default', 'envseal-controller']);
  });

  it('is refused by Vault when applied in another namespace (transit context): ContextMismatch, no Secret', async () => {
    await sealAndApply({ name: 'moved', namespace: ns, values: { K: 'v' }, appliedAs: { name: 'moved', namespace: other } });
    const ready = await waitReason(other, 'moved', 'ContextMismatch');
    expect(ready.message).toContain(`transit/keys/${key}`);
    expect(await getOrUndefined(client, paths.secret(other, 'moved'))).toBeUndefined();
  });

  it('a sealed Vault is KMSUnavailable and retried; once unsealed the Secret appears', async () => {
    expect(bao.unsealKey).not.toBe('');
    const sealed = await sealFor({
      name: 'outage',
      namespace: ns,
      values: { K: 'after-outage' },
      targets: [{ provider: 'vault-transit', target: key }],
      providers: sealer,
    });
    await bao.api('PUT', 'sys/seal');
    try {
      await applyOrThrow(sealed);
      const down = await waitReason(ns, 'outage', 'KMSUnavailable');
      expect(down.message).toMatch(/Vault is sealed/);
      expect(down.message).toMatch(/HTTP 503/);
      expect(await getOrUndefined(client, paths.secret(ns, 'outage'))).toBeUndefined();
    } finally {
      await bao.api('PUT', 'sys/unseal', { key: bao.unsealKey });
    }
    await waitReason(ns, 'outage', 'Synced');
    expect(decode((await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'outage')))?.data)).toEqual({ K: 'after-outage' });
  });

  it('a ServiceAccount token of another account is refused at login (AccessDenied), nothing is written', async () => {
    await kubectlOk(['create', 'serviceaccount', 'intruder', '-n', controllerNamespace]);
    const tokenPath = path.join(dir, 'intruder-token');
    await writeFile(tokenPath, await kubectlOk(['create', 'token', 'intruder', '-n', controllerNamespace, '--duration=1h']), { mode: 0o600 });
    await controller.stop();
    controller = await startTestController({
      kubeConfig: adminKubeConfig(),
      config: {
        namespace: controllerNamespace,
        namespaces: [ns, other],
        providers: { 'vault-transit': { address: bao.address, kubernetesAuth: { role: 'envseal-controller', tokenPath }, maxAttempts: 1 } },
      },
    });
    await sealAndApply({ name: 'denied', namespace: ns, values: { K: 'v' } });
    const ready = await waitFor('denied not Synced', async () => {
      const es = await getOrUndefined<Live>(client, paths.envelopeSecret(ns, 'denied'));
      const condition = es?.status?.conditions?.find((c) => c.type === 'Ready');
      return condition && condition.status === 'False' ? condition : undefined;
    });
    expect(ready.reason).toBe('KMSAccessDenied');
    expect(ready.message).toMatch(/login/);
    expect(ready.message).toMatch(/HTTP 403/);
    expect(await getOrUndefined(client, paths.secret(ns, 'denied'))).toBeUndefined();
  });
});
