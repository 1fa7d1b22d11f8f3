// GitOps for real: Flux's own source-controller and kustomize-controller (v1.9.6, built
// from the Go module proxy by scripts/flux/build.sh) apply sealed manifests from a Git
// repository served on 127.0.0.1 by `git http-backend`. The Kustomization uses
// `wait: true` and `prune: true` and NO custom health expressions: Flux reads
// EnvelopeSecrets through kstatus alone. The envseal controller runs as a host process.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { Condition, EnvelopeSecret } from '../../src/api/types.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { adminKubeConfig, sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { type Flux, gitopsTools, startFlux } from '../harness/flux.ts';
import { type GitRepository, type GitServer, type GitWorkTree, removeWhenProcessExits, startGitServer } from '../harness/git-server.ts';
import { type KmsEmulator, startLocalKms } from '../harness/kms-emulators.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectl, paths, publishedRecipient } from '../harness/kube.ts';
import { ENVSEAL, ensureBuilt, NODE, runCli } from './cli-support.ts';

const client = adminClient();
const appNs = uniqueName('gitops-app');
const otherNs = uniqueName('gitops-other');
const controllerNs = uniqueName('gitops-envseal');
const fluxNs = 'flux-system';
const kustomizationName = uniqueName('secrets');
const sourceName = uniqueName('fleet');
const secretsDir = 'clusters/prod/secrets';
const docPath = path.join(repoRoot, 'docs/gitops.md');
/** The .gitattributes line docs/gitops.md gives (the last test checks the doc says it). */
const GITATTRIBUTES = '*.envelope.yaml text eol=lf';

type LiveEnvelopeSecret = EnvelopeSecret & { metadata: { generation: number } };
interface FluxCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}
interface Kustomization {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    lastHandledReconcileAt?: string;
    lastAppliedRevision?: string;
    lastAttemptedRevision?: string;
    conditions?: FluxCondition[];
    inventory?: { entries: { id: string }[] };
  };
}
interface SecretObject {
  data?: Record<string, string>;
}

let flux: Flux;
let git: GitServer;
let repository: GitRepository;
let work: GitWorkTree;
let kms: KmsEmulator;
let keyArn: string;
let controller: TestController | undefined;
let cliDir: string;
let cliDirGuard: { release(): void } | undefined;

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const secretData = async (ns: string, name: string) => decode((await getOrUndefined<SecretObject>(client, paths.secret(ns, name)))?.data);
const liveEs = (ns: string, name: string) => getOrUndefined<LiveEnvelopeSecret>(client, paths.envelopeSecret(ns, name));
const esCondition = (es: LiveEnvelopeSecret | undefined, type: string): Condition | undefined =>
  es?.status?.observedGeneration === es?.metadata.generation ? es?.status?.conditions?.find((c) => c.type === type) : undefined;
const DATA_HASH = 'envseal.dev/data-hash';
interface Deployment {
  metadata: { generation: number };
  spec: { template: { metadata?: { annotations?: Record<string, string> } } };
}
const webDataHash = async () =>
  (await getOrUndefined<Deployment>(client, `/apis/apps/v1/namespaces/${appNs}/deployments/web`))?.spec.template.metadata?.annotations?.[DATA_HASH];
const kustomization = () =>
  getOrUndefined<Kustomization>(client, `/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/${fluxNs}/kustomizations/${kustomizationName}`);
const fluxReady = (k: Kustomization | undefined) => k?.status?.conditions?.find((c) => c.type === 'Ready');

interface FluxObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: Record<string, unknown>;
}

/** The YAML block of docs/gitops.md that starts with "# flux-system/envseal-secrets.yaml". */
async function docFluxObjects(): Promise<[FluxObject, FluxObject]> {
  const doc = await readFile(docPath, 'utf8');
  const start = doc.indexOf('```yaml\n# flux-system/envseal-secrets.yaml\n');
  if (start < 0) throw new Error('docs/gitops.md has no flux-system/envseal-secrets.yaml block');
  const body = doc.slice(doc.indexOf('\n', start) + 1, doc.indexOf('\n```', start));
  const objects = parseAllDocuments(body).map((d) => d.toJS() as FluxObject);
  const source = objects.find((o) => o.kind === 'GitRepository');
  const kustomizationObject = objects.find((o) => o.kind === 'Kustomization');
  if (!source || !kustomizationObject || objects.length !== 2) throw new Error('the docs block should hold one GitRepository and one Kustomization');
  return [source, kustomizationObject];
}

function startController(): Promise<TestController> {
  return startTestController({
    kubeConfig: adminKubeConfig(),
    config: {
      namespace: controllerNs,
      namespaces: [appNs, otherNs],
      providers: { 'aws-kms': { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials, maxAttempts: 2 } },
    },
  });
}

/** The envseal CLI as a user runs it in CI: the cluster's recipient and a KMS key. */
async function envseal(args: string[]): Promise<string> {
  const result = await runCli(args, {
    cwd: cliDir,
    env: {
      KUBECONFIG: sharedCluster().kubeconfigPath,
      AWS_ACCESS_KEY_ID: kms.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: kms.credentials.secretAccessKey,
      AWS_REGION: kms.region,
      AWS_ENDPOINT_URL_KMS: kms.endpoint,
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  });
  if (result.code !== 0) throw new Error(`envseal ${args[0]} failed (${result.code}): ${result.stderr}`);
  return result.stderr;
}

/** Asks Flux to look at the repository now (what `flux reconcile source git` does). */
async function requestReconcile(): Promise<string> {
  const at = new Date().toISOString();
  for (const kind of [`gitrepositories.source.toolkit.fluxcd.io/${sourceName}`, `kustomizations.kustomize.toolkit.fluxcd.io/${kustomizationName}`]) {
    const result = await kubectl(['annotate', '--overwrite', '-n', fluxNs, kind, `reconcile.fluxcd.io/requestedAt=${at}`]);
    if (result.code !== 0) throw new Error(`kubectl annotate failed: ${result.stderr}`);
  }
  return at;
}

async function commit(message: string): Promise<string> {
  const sha = await work.commitAndPush(message);
  await requestReconcile();
  return sha;
}

/**
 * Waits for the Kustomization's verdict `expected` on `sha` (Ready True for that applied
 * revision, or False for that attempted one). Waiting for the expected verdict rather
 * than the first one read: while an attempt on a new revision runs, the status can show
 * the new lastAttemptedRevision next to the Ready condition of the previous attempt.
 * A verdict that never comes fails the wait.
 */
async function verdictFor(sha: string, expected: 'True' | 'False', timeoutMs = 120_000): Promise<{ ready: FluxCondition; at: number }> {
  return waitFor(
    `Kustomization Ready=${expected} on ${sha.slice(0, 7)}`,
    async () => {
      const k = await kustomization();
      const ready = fluxReady(k);
      if (k?.status?.observedGeneration !== k?.metadata.generation || ready?.status !== expected) return undefined;
      const revision = expected === 'True' ? k?.status?.lastAppliedRevision : k?.status?.lastAttemptedRevision;
      return revision?.endsWith(sha) ? { ready, at: Date.now() } : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

beforeAll(async () => {
  ensureBuilt();
  const tools = await gitopsTools(['source-controller', 'kustomize-controller']);
  await installCrd();
  const cluster = sharedCluster();
  flux = await startFlux(tools, { kubeconfigPath: cluster.kubeconfigPath, kubectlPath: cluster.kubectlPath, namespace: fluxNs });
  git = await startGitServer();
  repository = await git.createRepository('fleet');
  work = await repository.clone();
  kms = await startLocalKms();
  keyArn = (await createAwsKmsProvider({ endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials }).createKey({ alias: `alias/${appNs}` }))
    .keyArn;
  for (const ns of [appNs, otherNs, controllerNs]) await createNamespace(client, ns);
  cliDir = await mkdtemp(path.join(tmpdir(), 'envseal-gitops-cli-'));
  cliDirGuard = removeWhenProcessExits(cliDir);
  controller = await startController();
  await publishedRecipient(client, controllerNs);

  // The repository as docs/gitops.md lays it out: the chart, and the sealed secrets.
  await work.write('.gitattributes', `${GITATTRIBUTES}\n`);
  await work.write(`${secretsDir}/.keep`, '');
  await work.commitAndPush('empty layout');
  // The GitRepository and Kustomization exactly as docs/gitops.md gives them, with this
  // test's names and Git URL.
  const [source, kustomizationObject] = await docFluxObjects();
  await applyOrThrow({ ...source, metadata: { name: sourceName, namespace: fluxNs }, spec: { ...source.spec, url: repository.url } });
  await applyOrThrow({
    ...kustomizationObject,
    metadata: { name: kustomizationName, namespace: fluxNs },
    spec: { ...kustomizationObject.spec, sourceRef: { kind: 'GitRepository', name: sourceName } },
  });
});

afterAll(async () => {
  // While Flux runs, so that its finalizers (prune what the Kustomization applied) complete.
  await kubectl([
    'delete',
    '--ignore-not-found',
    '--timeout=60s',
    '-n',
    fluxNs,
    `kustomizations.kustomize.toolkit.fluxcd.io/${kustomizationName}`,
    `gitrepositories.source.toolkit.fluxcd.io/${sourceName}`,
  ]);
  await controller?.stop();
  await flux?.stop();
  await git?.close();
  await kms?.stop();
  if (cliDir) await rm(cliDir, { recursive: true, force: true });
  cliDirGuard?.release();
});

describe('Flux applies sealed manifests from Git, reading their status through kstatus alone', () => {
  const dbFile = `${secretsDir}/db.envelope.yaml`;
  const apiFile = `${secretsDir}/api.envelope.yaml`;
  const webFile = `${secretsDir}/web.yaml`;
  // No node runs pods here: 0 replicas, so that kstatus sees the Deployment Current.
  const webDeployment = () => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: appNs },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'web', image: 'registry.invalid/web:1', envFrom: [{ secretRef: { name: 'db' } }] }] },
      },
    },
  });

  it('is Ready only after every EnvelopeSecret is Ready, also when the controller is stopped at commit time', async () => {
    await controller!.stop();
    controller = undefined;
    // Sealed in CI: for the cluster's published age recipient, and for a KMS key.
    await envseal([
      'seal',
      '--name',
      'db',
      '-n',
      appNs,
      '--from-literal',
      `PASSWORD=${CANARY_MARKER}db-1`,
      '--from-literal',
      'USER=app',
      '--controller-namespace',
      controllerNs,
      '-w',
      path.join(work.dir, dbFile),
    ]);
    await envseal([
      'seal',
      '--name',
      'api',
      '-n',
      appNs,
      '--from-literal',
      `TOKEN=${CANARY_MARKER}api-1`,
      '-r',
      `aws-kms:${keyArn}`,
      '-w',
      path.join(work.dir, apiFile),
    ]);
    // The workload that reads db consents to restarts (it uses the Secret) and is listed.
    const dbText = await readFile(path.join(work.dir, dbFile), 'utf8');
    await work.write(dbFile, dbText.replace('\nspec:\n', '\nspec:\n  restartWorkloads:\n    - kind: Deployment\n      name: web\n'));
    await work.write(webFile, stringify(webDeployment()));
    for (const file of [dbFile, apiFile]) await envseal(['verify', '-f', path.join(work.dir, file)]);
    const sha = await commit('add db and api secrets, and the web workload');

    // Flux applies them, then waits: neither has been reconciled.
    try {
      await waitFor(
        'both EnvelopeSecrets applied by Flux',
        async () => (await liveEs(appNs, 'db')) !== undefined && (await liveEs(appNs, 'api')) !== undefined,
      );
      const watchUntil = Date.now() + 15_000;
      while (Date.now() < watchUntil) {
        const k = await kustomization();
        const ready = fluxReady(k);
        expect(ready?.status === 'True' && k?.status?.lastAppliedRevision?.endsWith(sha), 'Kustomization Ready before the controller ran').toBeFalsy();
        expect(ready?.status, `Kustomization failed: ${ready?.message}`).not.toBe('False');
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      const k = await kustomization();
      expect(fluxReady(k)?.status).toBe('Unknown');
      expect(k?.status?.conditions?.find((c) => c.type === 'Reconciling')?.status).toBe('True');
      for (const name of ['db', 'api']) expect((await liveEs(appNs, name))?.status).toEqual({ observedGeneration: 0 });
      expect(await getOrUndefined(client, paths.secret(appNs, 'db'))).toBeUndefined();
    } finally {
      controller = await startController();
    }
    const { ready } = await verdictFor(sha, 'True');
    expect(ready.status, ready.message).toBe('True');
    const readyAt = Date.parse(ready.lastTransitionTime);
    for (const name of ['db', 'api']) {
      const es = await liveEs(appNs, name);
      const esReady = esCondition(es, 'Ready');
      expect(esReady?.status, `${name}: ${esReady?.message}`).toBe('True');
      // Whole seconds on both sides: the Kustomization turned Ready no earlier than each EnvelopeSecret.
      expect(Date.parse(esReady!.lastTransitionTime!)).toBeLessThanOrEqual(readyAt);
    }
    expect(await secretData(appNs, 'db')).toEqual({ PASSWORD: `${CANARY_MARKER}db-1`, USER: 'app' });
    expect(await secretData(appNs, 'api')).toEqual({ TOKEN: `${CANARY_MARKER}api-1` });
    // Listed for the first time: annotated once.
    await waitFor('web annotated with the data hash', webDataHash);
  });

  it('rolls the Secret and restarts the consenting workload on a commit that changes one value; the diff touches only that value', async () => {
    const hashBefore = await webDataHash();
    expect(hashBefore).toBeDefined();
    const before = parse(await readFile(path.join(work.dir, dbFile), 'utf8')) as EnvelopeSecret;
    const oldPassword = before.spec.envelopes.flatMap((e) => Object.entries(e.data)).find(([k]) => k === 'PASSWORD')![1];
    await envseal(['seal', '--merge-into', path.join(work.dir, dbFile), '--from-literal', `PASSWORD=${CANARY_MARKER}db-2`]);
    const sha = await commit('rotate the db password');

    const diff = await work.git(['show', '--format=', '--unified=0', sha]);
    const removed = diff.split('\n').filter((l) => l.startsWith('-') && !l.startsWith('---'));
    const added = diff.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++'));
    expect(diff).toContain(`+++ b/${dbFile}`);
    expect(diff).not.toMatch(/^\+\+\+ b\/(?!clusters\/prod\/secrets\/db\.envelope\.yaml)/m);
    // Removed: the old PASSWORD ciphertext, nothing else. Added: one envelope holding PASSWORD only.
    expect(removed).toEqual([`-        PASSWORD: ${oldPassword}`]);
    const addedEnvelope = parse(added.map((l) => l.slice(1)).join('\n')) as EnvelopeSecret['spec']['envelopes'];
    expect(addedEnvelope).toHaveLength(1);
    expect(Object.keys(addedEnvelope[0]!.data)).toEqual(['PASSWORD']);
    expect(added.some((l) => l.includes('USER:'))).toBe(false);

    const { ready } = await verdictFor(sha, 'True');
    expect(ready.status, ready.message).toBe('True');
    const es = await liveEs(appNs, 'db');
    expect(esCondition(es, 'Ready')?.status).toBe('True');
    expect(await secretData(appNs, 'db')).toEqual({ PASSWORD: `${CANARY_MARKER}db-2`, USER: 'app' });

    // The consenting workload is restarted (its pod template's data hash changes) ...
    const rolled = await waitFor('web restarted for the new data', async () => {
      const hash = await webDataHash();
      return hash !== undefined && hash !== hashBefore ? hash : undefined;
    });
    // ... and Flux applying the Deployment from Git again keeps the controller's annotation.
    const token = await requestReconcile();
    await waitFor('Kustomization reconciled again', async () => {
      const k = await kustomization();
      return k?.status?.lastHandledReconcileAt === token && fluxReady(k)?.status === 'True';
    });
    expect(await webDataHash()).toBe(rolled);
  });

  it('fails within seconds when a manifest is copied into another namespace, and writes nothing there', async () => {
    const copied = parse(await readFile(path.join(work.dir, dbFile), 'utf8')) as EnvelopeSecret;
    await work.write(`${secretsDir}/db-copy.envelope.yaml`, stringify({ ...copied, metadata: { ...copied.metadata, namespace: otherNs } }));
    const started = Date.now();
    const sha = await commit('copy db into another namespace');
    const { ready, at } = await verdictFor(sha, 'False');
    expect(ready.status).toBe('False');
    expect(ready.reason).toBe('HealthCheckFailed');
    expect(ready.message).toContain(`EnvelopeSecret/${otherNs}/db`);
    // Not Flux's timeout (5m in the docs block): the EnvelopeSecret reported a failure no retry cures.
    expect(at - started).toBeLessThan(30_000);
    const es = await liveEs(otherNs, 'db');
    expect(esCondition(es, 'Stalled')).toMatchObject({ status: 'True', reason: 'ContextMismatch' });
    expect(esCondition(es, 'Ready')).toMatchObject({ status: 'False', reason: 'ContextMismatch' });
    expect(await getOrUndefined(client, paths.secret(otherNs, 'db'))).toBeUndefined();
    const secrets = await client.request<{ items: unknown[] }>({ method: 'GET', path: `/api/v1/namespaces/${otherNs}/secrets` });
    expect(secrets.items).toEqual([]);
  });

  it('prunes a deleted manifest’s EnvelopeSecret, and its Secret goes with it', async () => {
    await work.remove(`${secretsDir}/db-copy.envelope.yaml`);
    await work.remove(apiFile);
    const sha = await commit('drop the copy and the api secret');
    const { ready } = await verdictFor(sha, 'True');
    expect(ready.status, ready.message).toBe('True');
    expect(await liveEs(otherNs, 'db')).toBeUndefined();
    await waitFor('api EnvelopeSecret pruned', async () => (await liveEs(appNs, 'api')) === undefined);
    // The garbage collector removes the Secret the EnvelopeSecret owned.
    await waitFor('api Secret garbage-collected', async () => (await getOrUndefined(client, paths.secret(appNs, 'api'))) === undefined, { timeoutMs: 60_000 });
    expect(await secretData(appNs, 'db')).toEqual({ PASSWORD: `${CANARY_MARKER}db-2`, USER: 'app' });
    const inventory = (await kustomization())?.status?.inventory?.entries.map((e) => e.id) ?? [];
    expect(inventory.sort()).toEqual([`${appNs}_db_envseal.dev_EnvelopeSecret`, `${appNs}_web_apps_Deployment`]);
  });
});

describe('docs/gitops.md', () => {
  it('gives the Kustomization the test ran (wait and prune, no health expressions) and the .gitattributes line', async () => {
    const [, kustomizationObject] = await docFluxObjects();
    expect(kustomizationObject.spec).toMatchObject({ wait: true, prune: true, path: `./${secretsDir}` });
    expect(kustomizationObject.spec).not.toHaveProperty('healthChecks');
    expect(kustomizationObject.spec).not.toHaveProperty('healthCheckExprs');
    expect(await readFile(docPath, 'utf8')).toContain(`\n${GITATTRIBUTES}\n`);
  });

  it('gives a CI check that passes on the repository and refuses a broken manifest, naming it', async () => {
    const doc = await readFile(docPath, 'utf8');
    const intro = doc.indexOf('A CI job that refuses a broken manifest');
    const start = doc.indexOf('```sh\n', intro);
    expect(intro, 'docs/gitops.md has the CI job').toBeGreaterThan(0);
    const script = doc.slice(start + '```sh\n'.length, doc.indexOf('\n```', start));
    // `envseal` on PATH, as the CI image would have it.
    const binDir = path.join(cliDir, 'ci-bin');
    await mkdir(binDir, { recursive: true });
    await writeFile(path.join(binDir, 'envseal'), `#!/bin/sh\nexec '${NODE}' '${ENVSEAL}' "$@"\n`, { mode: 0o755 });
    const ci = () => runCommand('sh', ['-c', script], { PATH: `${binDir}:${process.env.PATH}` }, work.dir);
    const passing = await ci();
    expect(passing.code, passing.stderr).toBe(0);

    const good = await readFile(path.join(work.dir, secretsDir, 'db.envelope.yaml'), 'utf8');
    const broken = `${secretsDir}/broken.envelope.yaml`;
    await work.write(broken, good.replace(/^(\s+USER: ).*$/m, '$1not*base64'));
    await work.git(['add', broken]);
    try {
      const failing = await ci();
      expect(failing.code).not.toBe(0);
      expect(failing.stderr).toMatch(/USER/);
      expect(failing.stderr).toMatch(/base64/i);
    } finally {
      await work.git(['rm', '--quiet', '--force', broken]);
    }
  });
});

describe('the chart from Git, without helm-controller', () => {
  it('installs with helm from the HelmChart artifact source-controller packages', async () => {
    // helm-controller cannot be built here (the module proxy refuses it): source-controller
    // packages the chart from the Git repository, and helm installs that artifact.
    await copyIntoWorkTree(path.join(repoRoot, 'charts/envseal'), 'charts/envseal');
    const sha = await work.commitAndPush('add the envseal chart');
    const chartName = uniqueName('envseal-chart');
    await applyOrThrow({
      apiVersion: 'source.toolkit.fluxcd.io/v1',
      kind: 'HelmChart',
      metadata: { name: chartName, namespace: fluxNs },
      spec: { chart: './charts/envseal', sourceRef: { kind: 'GitRepository', name: sourceName }, interval: '10m', reconcileStrategy: 'Revision' },
    });
    await requestReconcile();
    const chart = await waitFor(
      'HelmChart artifact',
      async () => {
        const object = await getOrUndefined<{ status?: { artifact?: { url: string; revision: string }; conditions?: FluxCondition[] } }>(
          client,
          `/apis/source.toolkit.fluxcd.io/v1/namespaces/${fluxNs}/helmcharts/${chartName}`,
        );
        const ready = object?.status?.conditions?.find((c) => c.type === 'Ready');
        return ready?.status === 'True' && object?.status?.artifact ? object.status.artifact : undefined;
      },
      { timeoutMs: 120_000 },
    );
    const chartYaml = parse(await readFile(path.join(repoRoot, 'charts/envseal/Chart.yaml'), 'utf8')) as { version: string };
    // Revision strategy: the chart version carries the commit.
    expect(chart.revision).toContain(chartYaml.version);
    expect(chart.revision).toContain(sha.slice(0, 12));
    expect(new URL(chart.url).hostname).toBe('127.0.0.1');
    const response = await fetch(chart.url);
    expect(response.status).toBe(200);
    const tgz = path.join(cliDir, 'envseal-chart.tgz');
    await writeFile(tgz, Buffer.from(await response.arrayBuffer()));

    const release = uniqueName('gitops');
    const releaseNs = uniqueName('gitops-chart');
    const cluster = sharedCluster();
    const helm = (args: string[]) =>
      runCommand(cluster.helmPath, [...args, '--kubeconfig', cluster.kubeconfigPath], {
        HELM_CACHE_HOME: path.join(cliDir, 'helm-cache'),
        HELM_CONFIG_HOME: path.join(cliDir, 'helm-config'),
        HELM_DATA_HOME: path.join(cliDir, 'helm-data'),
      });
    const install = await helm(['install', release, tgz, '--namespace', releaseNs, '--create-namespace']);
    expect(install.code, install.stderr).toBe(0);
    try {
      const list = await helm(['list', '--namespace', releaseNs, '-o', 'json']);
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ name: release, status: 'deployed', chart: `envseal-${chart.revision}` })]);
      const deployments = await client.request<{ items: { metadata: { name: string } }[] }>({
        method: 'GET',
        path: `/apis/apps/v1/namespaces/${releaseNs}/deployments`,
      });
      expect(deployments.items.length).toBe(1);
    } finally {
      await helm(['uninstall', release, '--namespace', releaseNs]);
      await kubectl(['delete', '--ignore-not-found', '--timeout=60s', '-n', fluxNs, `helmcharts.source.toolkit.fluxcd.io/${chartName}`]);
      await kubectl(['delete', 'namespace', '--wait=false', releaseNs]);
    }
  });
});

async function copyIntoWorkTree(from: string, to: string): Promise<void> {
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = path.join(from, entry.name);
    if (entry.isDirectory()) await copyIntoWorkTree(source, path.join(to, entry.name));
    else await work.write(path.join(to, entry.name), await readFile(source, 'utf8'));
  }
}

function runCommand(command: string, args: string[], env: Record<string, string>, cwd = cliDir): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { PATH: process.env.PATH, HOME: cliDir, ...env }, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}
