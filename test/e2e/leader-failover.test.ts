// Two controller processes share a lease; the leader is SIGKILLed (no chance to release
// the lease) and the standby takes over once the lease runs out.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { freePort } from '../harness/controller.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, kubectlApply, paths, publishedRecipient } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const LEASE_MS = 4000;
const RETRY_MS = 500;
const envseal = fileURLToPath(new URL('../../bin/envseal.js', import.meta.url));
const client = adminClient();
const controllerNamespace = uniqueName('envseal-ha');
const ns = uniqueName('ha');

interface Replica {
  process: ChildProcess;
  metricsUrl: string;
  stderr: string[];
}
const replicas: Replica[] = [];

async function startReplica(): Promise<Replica> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      envseal,
      'controller',
      '--kubeconfig',
      sharedCluster().kubeconfigPath,
      '--controller-namespace',
      controllerNamespace,
      '--namespaces',
      ns,
      '--metrics-address',
      `127.0.0.1:${port}`,
      '--lease-duration',
      `${LEASE_MS}ms`,
      '--renew-deadline',
      '3s',
      '--retry-period',
      `${RETRY_MS}ms`,
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const replica = { process: child, metricsUrl: `http://127.0.0.1:${port}/metrics`, stderr: [] as string[] };
  child.stderr?.on('data', (chunk: Buffer) => replica.stderr.push(chunk.toString()));
  replicas.push(replica);
  return replica;
}

async function leading(replica: Replica): Promise<number | undefined> {
  const text = await fetch(replica.metricsUrl).then(
    (r) => r.text(),
    () => undefined,
  );
  const match = text && /^envseal_leader (\d+)$/m.exec(text);
  return match ? Number(match[1]) : undefined;
}

beforeAll(async () => {
  await installCrd();
  for (const name of [controllerNamespace, ns]) await createNamespace(client, name);
});

afterAll(() => {
  for (const r of replicas) r.process.kill('SIGKILL');
});

describe('leader election across processes', () => {
  it('lets a standby take over within the lease terms when the leader is killed', async () => {
    const a = await startReplica();
    const b = await startReplica();
    const [leader, standby] = await waitFor(
      'one leader and one standby',
      async () => {
        const [la, lb] = [await leading(a), await leading(b)];
        if (la === 1 && lb === 0) return [a, b] as const;
        if (la === 0 && lb === 1) return [b, a] as const;
        return undefined;
      },
      { timeoutMs: 60_000 },
    );

    const killedAt = Date.now();
    leader.process.kill('SIGKILL');
    await waitFor('the standby to lead', async () => (await leading(standby)) === 1, { timeoutMs: 20_000, intervalMs: 100 });
    const takeoverMs = Date.now() - killedAt;
    // It must wait for the lease to run out (it was not released), and not much longer.
    expect(takeoverMs).toBeGreaterThanOrEqual(LEASE_MS - 2 * RETRY_MS);
    expect(takeoverMs).toBeLessThan(LEASE_MS + 4 * RETRY_MS + 2000);

    const recipient = await publishedRecipient(client, controllerNamespace);
    const sealed = await sealFor({ namespace: ns, name: 'ha', values: { K: 'after failover' }, targets: [ageTarget(recipient)] });
    expect((await kubectlApply(sealed)).code).toBe(0);
    const secret = await waitFor('the new leader to write the Secret', () => getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'ha')), {
      timeoutMs: 30_000,
    });
    expect(Buffer.from(secret.data.K!, 'base64').toString()).toBe('after failover');
    expect(standby.stderr.join('')).not.toContain('after failover');
  });
});
