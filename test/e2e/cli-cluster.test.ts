// The built CLI sealing for the age recipient a cluster's controller publishes
// (`--controller-namespace NS`), against the shared control plane.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PUBLISHED_RECIPIENT_CONFIGMAP, PUBLISHED_RECIPIENT_KEY } from '../../src/kube/cluster-recipient.ts';
import { formatAgeIdentityFile, generateAgeIdentity } from '../../src/providers/age.ts';
import { sharedCluster, uniqueName } from '../harness/cluster.ts';
import { type CliResult, ensureBuilt, runCli } from './cli-support.ts';

describe('envseal seal --controller-namespace', () => {
  let dir: string;
  let kubectl: (...args: string[]) => string;
  let controllerNamespace: string;
  let clusterRecipient: string;

  function envseal(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return runCli(args, { cwd: dir, env });
  }

  beforeAll(async () => {
    ensureBuilt();
    const cluster = sharedCluster();
    kubectl = (...args) => execFileSync(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfigPath, ...args], { encoding: 'utf8' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-cli-cluster-'));
    // Stand in for a controller: publish a recipient whose identity the test holds.
    const generated = await generateAgeIdentity();
    clusterRecipient = generated.recipient;
    await writeFile(path.join(dir, 'cluster.key'), formatAgeIdentityFile(generated, new Date()), { mode: 0o600 });
    controllerNamespace = uniqueName('envseal-cli');
    kubectl('create', 'namespace', controllerNamespace);
    kubectl('create', 'configmap', PUBLISHED_RECIPIENT_CONFIGMAP, '-n', controllerNamespace, `--from-literal=${PUBLISHED_RECIPIENT_KEY}=${clusterRecipient}`);
  });
  afterAll(async () => {
    if (controllerNamespace) kubectl('delete', 'namespace', controllerNamespace, '--wait=false');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('seals for the published recipient too (kubeconfig from --kubeconfig or KUBECONFIG)', async () => {
    const mine = await envseal(['keys', 'create', '-o', 'mine.key']);
    expect(mine.code).toBe(0);
    const sealed = await envseal([
      'seal',
      '--name',
      'db',
      '-n',
      'demo',
      '--from-literal',
      'K=v',
      '-r',
      `age:${mine.stdout.trim()}`,
      '--controller-namespace',
      controllerNamespace,
      '--kubeconfig',
      sharedCluster().kubeconfigPath,
      '-w',
      'db.yaml',
    ]);
    expect(sealed.stderr).toMatch(/for 2 recipients/);
    expect(sealed.code).toBe(0);
    const secret = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    expect(secret.spec.envelopes[0].recipients.map((r: { recipient: string }) => r.recipient)).toEqual([mine.stdout.trim(), clusterRecipient]);
    expect((await envseal(['unseal', '-f', 'db.yaml', '--key', 'K', '-i', 'cluster.key'])).stdout).toBe('v');

    const viaEnv = await envseal(
      ['seal', '--name', 'api', '-n', 'demo', '--from-literal', 'K=w', '--controller-namespace', controllerNamespace, '-w', 'api.yaml'],
      { KUBECONFIG: sharedCluster().kubeconfigPath },
    );
    expect(viaEnv.code).toBe(0);
    expect((await envseal(['unseal', '-f', 'api.yaml', '--key', 'K', '-i', 'cluster.key'])).stdout).toBe('w');

    // add-recipient: give the cluster access to a manifest sealed for someone else only.
    expect((await envseal(['seal', '--name', 'solo', '-n', 'demo', '--from-literal', 'K=x', '-r', `age:${mine.stdout.trim()}`, '-w', 'solo.yaml'])).code).toBe(
      0,
    );
    expect((await envseal(['unseal', '-f', 'solo.yaml', '-i', 'cluster.key'])).code).toBe(4);
    const added = await envseal(['add-recipient', '-f', 'solo.yaml', '--in-place', '--controller-namespace', controllerNamespace, '-i', 'mine.key'], {
      KUBECONFIG: sharedCluster().kubeconfigPath,
    });
    expect(added.stderr).toMatch(/added "age:age1/);
    expect(added.code).toBe(0);
    expect((await envseal(['unseal', '-f', 'solo.yaml', '--key', 'K', '-i', 'cluster.key'])).stdout).toBe('x');
  });

  it('fails clearly (exit 4, nothing written) when no controller publishes a recipient there', async () => {
    const result = await envseal(
      ['seal', '--name', 'db', '-n', 'demo', '--from-literal', 'K=v', '--controller-namespace', 'no-such-namespace', '-w', 'never.yaml'],
      { KUBECONFIG: sharedCluster().kubeconfigPath },
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(
      /^envseal: error: cannot get the cluster's age recipient from namespace "no-such-namespace": no envseal controller publishes a recipient/,
    );
    expect(existsSync(path.join(dir, 'never.yaml'))).toBe(false);
  });
});
