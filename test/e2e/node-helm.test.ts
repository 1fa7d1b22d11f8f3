// The chart as users run it: `helm install` of charts/envseal with the image built from
// the Dockerfile's recipe (scripts/image/build.ts), onto a real kubelet with containerd
// (test/harness/node.ts), default values except the image's repository, tag and pull
// policy. The pods run the chart's securityContext, probes, limits and two replicas.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ANNOTATION_DATA_HASH } from '../../src/controller/desired.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { uniqueName, waitFor } from '../harness/cluster.ts';
import { applyAll, roundItems, sealAll, waitAllCorrect, type ExpectedSecret, keyOf } from '../harness/faults.ts';
import { CANARY_MARKER, recordLeakText } from '../harness/faults-leaks.ts';
import { startNodeCluster, type NodeCluster } from '../harness/node.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import {
  applyManifest,
  chartDir,
  getJson,
  helmOrThrow,
  imageValues,
  isReady,
  kubectlOrThrow,
  livePods,
  nodeClient,
  restrictedContainer,
  restrictedNamespace,
  type Pod,
} from '../harness/node-kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const RELEASE = 'envseal';
const NS = 'envseal-system';
const SELECTOR = 'app.kubernetes.io/name=envseal';
const LEASE_SECONDS = 15; // the chart's leaderElection.leaseDuration

let node: NodeCluster;
let client: KubeClient;
let recipient: string;
const log = (message: string) => process.stderr.write(`[node-helm] ${message}\n`);

async function controllerPods(namespace = NS): Promise<Pod[]> {
  return livePods(node, namespace, SELECTOR);
}

async function leaseHolder(namespace = NS): Promise<string | undefined> {
  const lease = await getJson<{ spec: { holderIdentity?: string } }>(node, ['lease', 'envseal-controller', '-n', namespace]);
  return lease.spec.holderIdentity;
}

async function twoReady(namespace = NS, timeoutMs = 180_000): Promise<Pod[]> {
  return waitFor(
    '2 controller pods Running and Ready',
    async () => {
      const pods = await controllerPods(namespace);
      return pods.length === 2 && pods.every(isReady) ? pods : false;
    },
    { timeoutMs, intervalMs: 1_000 },
  );
}

/** Every controller pod's log, recorded for the suite-wide leak check and scanned here. */
async function scanControllerLogs(namespace = NS): Promise<string> {
  let all = '';
  for (const pod of await controllerPods(namespace)) {
    const logs = await node.kubectl(['logs', '-n', namespace, pod.metadata.name, '--all-containers']);
    for (const line of logs.stdout.split('\n')) if (line) recordLeakText('log', line);
    all += logs.stdout;
  }
  expect(all).not.toContain(CANARY_MARKER);
  return all;
}

async function sealAndApply(namespace: string, name: string, values: Record<string, string>, extra: Partial<EnvelopeSecret['spec']> = {}): Promise<void> {
  const sealed = await sealFor({ namespace, name, values, targets: [ageTarget(recipient)] });
  await applyManifest(node, { ...sealed, spec: { ...sealed.spec, ...extra } });
}

async function secretValue(namespace: string, name: string, key: string): Promise<string | undefined> {
  const result = await node.kubectl(['get', 'secret', name, '-n', namespace, '-o', `jsonpath={.data.${key}}`]);
  return result.code === 0 && result.stdout !== '' ? Buffer.from(result.stdout, 'base64').toString() : undefined;
}

/** Runs node inside a controller pod (the image has no shell): what the process really is. */
async function inPod(pod: string, script: string, namespace = NS): Promise<string> {
  return kubectlOrThrow(node, ['exec', '-n', namespace, pod, '--', '/usr/local/bin/node', '-e', script]);
}

beforeAll(async () => {
  node = await startNodeCluster({ log });
  client = nodeClient(node);
  log(
    `image ${node.controllerImage.reference}: rootfs ${(node.controllerImage.rootfsBytes / 1e6).toFixed(1)} MB, archive ${(node.controllerImage.archiveBytes / 1e6).toFixed(1)} MB`,
  );
}, 1_300_000); // starting may wait for another node on this machine (one at a time)

afterAll(async () => {
  await node?.stop();
});

describe('helm install with default values on a real node', () => {
  it('runs 2 replicas Running and Ready (probes pass), one holds the Lease, in a namespace that enforces restricted', async () => {
    await restrictedNamespace(node, NS);
    const started = Date.now();
    helmOrThrow(await node.helm(['install', RELEASE, chartDir, '--namespace', NS, ...imageValues(node), '--wait', '--timeout', '4m']), 'helm install');
    const pods = await twoReady();
    log(`helm install -> 2/2 Ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    for (const pod of pods) {
      expect(pod.spec.nodeName).toBe(node.nodeName);
      expect(pod.spec.containers[0]!.image).toBe(node.controllerImage.reference);
      expect(pod.status.containerStatuses?.[0]?.restartCount).toBe(0);
    }
    const holder = await waitFor('a Lease holder', () => leaseHolder());
    expect(pods.map((p) => p.metadata.name)).toContain(holder);
    // The namespace really enforces restricted: a privileged pod is refused.
    const refused = await node.kubectl([
      'run',
      'privileged',
      '-n',
      NS,
      `--image=${node.busyboxImage.reference}`,
      '--image-pull-policy=Never',
      '--overrides',
      JSON.stringify({ spec: { containers: [{ name: 'privileged', image: node.busyboxImage.reference, securityContext: { privileged: true } }] } }),
    ]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/violates PodSecurity "restricted:latest"/);
  });

  it('the pods run as 65532, non-root, read-only root filesystem, no capabilities, seccomp filtering', async () => {
    const [pod] = await controllerPods();
    const report = JSON.parse(
      await inPod(
        pod!.metadata.name,
        `
      const fs = require('node:fs');
      const status = fs.readFileSync('/proc/self/status', 'utf8');
      const field = (k) => status.match(new RegExp('^' + k + ':\\\\s*(.*)$', 'm'))[1].trim();
      let rootWrite = 'written';
      try { fs.writeFileSync('/app/x', 'x'); } catch (e) { rootWrite = e.code; }
      let tmpWrite = 'written';
      try { fs.writeFileSync('/tmp/x', 'x'); fs.rmSync('/tmp/x'); } catch (e) { tmpWrite = e.code; }
      const nameservers = fs.readFileSync('/etc/resolv.conf', 'utf8').match(/^nameserver\\s+\\S+/gm);
      console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), capEff: field('CapEff'), capBnd: field('CapBnd'), noNewPrivs: field('NoNewPrivs'), seccomp: field('Seccomp'), rootWrite, tmpWrite, nameservers }));
    `,
      ),
    );
    // The pod's only resolver is its own loopback: no DNS query leaves the pod.
    expect(report).toEqual({
      uid: 65532,
      gid: 65532,
      capEff: '0000000000000000',
      capBnd: '0000000000000000',
      noNewPrivs: '1',
      seccomp: '2',
      rootWrite: 'EROFS',
      tmpWrite: 'written',
      nameservers: ['nameserver 127.0.0.1'],
    });
  });

  it('the node network stays inside its namespace: no link to the host, every route on its own links', async () => {
    const ip = async (...args: string[]) =>
      new Promise<string>((resolve, reject) => {
        execFile('ip', ['-n', node.netns, ...args], { env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } }, (error, stdout) =>
          error ? reject(error) : resolve(stdout),
        );
      });
    const links = (await ip('-o', 'link', 'show'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(': ')[1]!.replace(/@.*/, ''));
    // lo, the veth pair (both ends here), the CNI bridge and the pods' veths.
    for (const link of links) expect(link).toMatch(/^(lo|envseal0|envseal1|cni0|veth[0-9a-f]+)$/);
    const routes = (await ip('route', 'show')).split('\n').filter(Boolean);
    expect(routes.filter((r) => r.startsWith('default '))).toEqual([expect.stringMatching(/^default dev envseal0 scope link\s*$/)]);
    for (const route of routes) expect(route).toMatch(/ dev (envseal0|cni0) /);
    // The kubernetes Service, which kube-proxy serves to the pods, leads to the namespace's address.
    const endpoint = (await kubectlOrThrow(node, ['get', 'endpoints', 'kubernetes', '-n', 'default', '-o', 'jsonpath={.subsets[0].addresses[0].ip}'])).trim();
    expect(endpoint).toBe(node.nodeAddress);
  });

  it('an EnvelopeSecret becomes a Secret', async () => {
    const configMap = await waitFor('the published age recipient', () =>
      getJson<{ data: { recipient: string } }>(node, ['configmap', 'envseal-age-recipient', '-n', NS]),
    );
    recipient = configMap.data.recipient;
    const namespace = uniqueName('apps');
    await restrictedNamespace(node, namespace);
    const started = Date.now();
    await sealAndApply(namespace, 'hello', { GREETING: `${CANARY_MARKER}hello from a pod` });
    await waitFor('the Secret', () => secretValue(namespace, 'hello', 'GREETING'), { timeoutMs: 60_000 });
    expect(await secretValue(namespace, 'hello', 'GREETING')).toBe(`${CANARY_MARKER}hello from a pod`);
    log(`EnvelopeSecret -> Secret in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    await scanControllerLogs();
  });
});

describe('leader failover in real pods', () => {
  it('kubectl delete pod of the leader: another replica takes over within the lease duration and keeps reconciling; a new replica comes back', async () => {
    const leader = (await leaseHolder())!;
    const other = (await controllerPods()).map((p) => p.metadata.name).find((n) => n !== leader)!;
    const deleted = Date.now();
    await kubectlOrThrow(node, ['delete', 'pod', leader, '-n', NS, '--wait=false']);
    // The leader releases the Lease on SIGTERM; whoever asks first gets it: the standby
    // (it retries every retryPeriod, 2 s) or the replacement pod (it asks as it starts).
    let seen = '';
    const holder = await waitFor(
      'another live replica to hold the Lease',
      async () => {
        const h = await leaseHolder();
        const live = (await controllerPods()).map((p) => p.metadata.name);
        seen = `holder ${h}; live pods ${live.join(', ')}`;
        return h !== undefined && h !== '' && h !== leader && live.includes(h) ? h : false;
      },
      { timeoutMs: LEASE_SECONDS * 1000, intervalMs: 250 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; deleted ${leader}; last seen: ${seen}`, { cause: err });
    });
    const takeoverMs = Date.now() - deleted;
    log(
      `leader ${leader} deleted; ${holder} (${holder === other ? 'the standby' : 'the replacement pod'}) holds the Lease after ${(takeoverMs / 1000).toFixed(1)} s`,
    );
    expect(takeoverMs).toBeLessThan(LEASE_SECONDS * 1000);
    const namespace = uniqueName('after-failover');
    await restrictedNamespace(node, namespace);
    await sealAndApply(namespace, 'still', { V: `${CANARY_MARKER}after failover` });
    expect(await waitFor('the Secret after failover', () => secretValue(namespace, 'still', 'V'), { timeoutMs: 60_000 })).toBe(
      `${CANARY_MARKER}after failover`,
    );
    const pods = await twoReady();
    expect(pods.map((p) => p.metadata.name)).not.toContain(leader);
    expect(pods.map((p) => p.metadata.name)).toContain(other);
    expect(pods.map((p) => p.metadata.name)).toContain(holder);
  });
});

describe('rollout restart for real', () => {
  it('a Deployment reading the Secret by env gets new pods that see the new value; one mounting it sees the file change without a restart', async () => {
    const namespace = uniqueName('rollout');
    await restrictedNamespace(node, namespace);
    const image = node.busyboxImage.reference;
    const podSpec = (container: Record<string, unknown>, volumes: unknown[] = []) => ({
      securityContext: { runAsNonRoot: true, runAsUser: 65534, seccompProfile: { type: 'RuntimeDefault' } },
      terminationGracePeriodSeconds: 1,
      containers: [{ name: 'app', image, imagePullPolicy: 'Never', securityContext: restrictedContainer, ...container }],
      volumes,
    });
    const deployment = (name: string, spec: unknown) => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace },
      spec: { replicas: 1, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec } },
    });
    // The workloads first (their pods wait for the Secret), then the EnvelopeSecret: its
    // first write annotates env-reader once. Values without the canary marker: these
    // workloads print what they read, as users' do.
    await applyManifest(
      node,
      deployment(
        'env-reader',
        podSpec({
          command: ['sh', '-c', 'echo "GREETING=$GREETING"; exec sleep 3600'],
          env: [{ name: 'GREETING', valueFrom: { secretKeyRef: { name: 'greeting', key: 'GREETING' } } }],
        }),
      ),
    );
    await applyManifest(
      node,
      deployment(
        'file-reader',
        podSpec(
          {
            command: ['sleep', '3600'],
            volumeMounts: [{ name: 'greeting', mountPath: '/etc/greeting', readOnly: true }],
          },
          [{ name: 'greeting', secret: { secretName: 'greeting' } }],
        ),
      ),
    );
    await sealAndApply(namespace, 'greeting', { GREETING: 'first value' }, { restartWorkloads: [{ kind: 'Deployment', name: 'env-reader' }] });
    await waitFor('the Secret', () => secretValue(namespace, 'greeting', 'GREETING'), { timeoutMs: 60_000 });
    const readyPod = (app: string, not?: string) =>
      waitFor(
        `a Ready ${app} pod${not ? ` other than ${not}` : ''}`,
        async () => {
          const pods = (await livePods(node, namespace, `app=${app}`)).filter((p) => isReady(p) && p.metadata.name !== not);
          return pods.length === 1 ? pods[0] : false;
        },
        { timeoutMs: 120_000, intervalMs: 1_000 },
      );
    const envLog = async (pod: Pod) => (await kubectlOrThrow(node, ['logs', '-n', namespace, pod.metadata.name])).trim();
    const fileOf = async (pod: Pod) => kubectlOrThrow(node, ['exec', '-n', namespace, pod.metadata.name, '--', 'cat', '/etc/greeting/GREETING']);

    // The first write annotated env-reader once (docs/controller.md): wait for that rollout to settle.
    const envBefore = await waitFor(
      'env-reader rolled with the data hash',
      async () => {
        const d = await getJson<{ spec: { template: { metadata: { annotations?: Record<string, string> } } } }>(node, [
          'deployment',
          'env-reader',
          '-n',
          namespace,
        ]);
        if (d.spec.template.metadata.annotations?.[ANNOTATION_DATA_HASH] === undefined) return false;
        const pods = await livePods(node, namespace, 'app=env-reader');
        return pods.length === 1 && isReady(pods[0]!) && pods[0]!.metadata.annotations?.[ANNOTATION_DATA_HASH] !== undefined ? pods[0] : false;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    const fileBefore = await readyPod('file-reader');
    expect(await envLog(envBefore)).toBe('GREETING=first value');
    expect(await fileOf(fileBefore)).toBe('first value');

    const changed = Date.now();
    await sealAndApply(namespace, 'greeting', { GREETING: 'second value' }, { restartWorkloads: [{ kind: 'Deployment', name: 'env-reader' }] });
    const envAfter = await readyPod('env-reader', envBefore.metadata.name);
    expect(await envLog(envAfter)).toBe('GREETING=second value');
    log(`env-reader: new pod with the new value ${((Date.now() - changed) / 1000).toFixed(1)} s after the change`);
    await waitFor('the mounted file to change', async () => (await fileOf(fileBefore)) === 'second value', { timeoutMs: 150_000, intervalMs: 2_000 });
    log(`file-reader: file changed ${((Date.now() - changed) / 1000).toFixed(1)} s after the change, same pod`);
    // Not restarted: the same pod, its container never restarted, and its template untouched.
    const fileNow = (await livePods(node, namespace, 'app=file-reader'))[0]!;
    expect(fileNow.metadata.uid).toBe(fileBefore.metadata.uid);
    expect(fileNow.status.containerStatuses?.[0]?.restartCount).toBe(0);
    const fileDeployment = await getJson<{ spec: { template: { metadata: { annotations?: Record<string, string> } } } }>(node, [
      'deployment',
      'file-reader',
      '-n',
      namespace,
    ]);
    expect(fileDeployment.spec.template.metadata.annotations?.[ANNOTATION_DATA_HASH]).toBeUndefined();
  });
});

// 1,000 EnvelopeSecrets, created by the memory test and checked again after the upgrade.
const load = {
  namespaces: ['load-a', 'load-b'],
  count: 1000,
  prefix: 'load',
  targets: [] as ReturnType<typeof ageTarget>[],
  providers: new ProviderRegistry({}),
};
const expected = new Map<string, ExpectedSecret>();

describe('the memory limit is real', () => {
  it('with the chart defaults the controller reconciles 1,000 EnvelopeSecrets and stays under its limit', async () => {
    for (const namespace of load.namespaces) await restrictedNamespace(node, namespace);
    load.targets.push(ageTarget(recipient));
    // Opaque only: the chart's admission policy (tenancy.secretTypes) refuses the fault
    // load's custom type under default values.
    const items = roundItems(load, 1).map((item) => ({ ...item, type: 'Opaque' }));
    const sealed = await sealAll(load, items);
    const started = Date.now();
    await applyAll(client, sealed);
    for (const item of items) expected.set(keyOf(item), item);
    await waitAllCorrect(client, expected, load.namespaces, 300_000, log);
    log(`1,000 EnvelopeSecrets right ${((Date.now() - started) / 1000).toFixed(1)} s after the first create`);
    // Restart both replicas, so that the leader's cold start covers all 1,000 at once.
    await kubectlOrThrow(node, ['rollout', 'restart', 'deployment/envseal', '-n', NS]);
    await kubectlOrThrow(node, ['rollout', 'status', 'deployment/envseal', '-n', NS, '--timeout=240s']);
    const pods = await twoReady();
    const holder = await waitFor(
      'a new Lease holder',
      async () => {
        const h = await leaseHolder();
        return h !== undefined && pods.some((p) => p.metadata.name === h) ? h : false;
      },
      { timeoutMs: 60_000 },
    );
    const annotate = Date.now();
    // Touch every object's metadata so the new leader reconciles all of them.
    await kubectlOrThrow(node, ['annotate', 'envelopesecrets', '--all', '-n', 'load-a', `touched=${annotate}`, '--overwrite']);
    await kubectlOrThrow(node, ['annotate', 'envelopesecrets', '--all', '-n', 'load-b', `touched=${annotate}`, '--overwrite']);
    await waitAllCorrect(client, expected, load.namespaces, 300_000, log);
    const limit = 256 * 1024 * 1024;
    for (const pod of await controllerPods()) {
      const peak = Number(
        await inPod(pod.metadata.name, `console.log(require('node:fs').readFileSync('/proc/1/status','utf8').match(/^VmHWM:\\s*(\\d+)/m)[1] * 1024)`),
      );
      log(`${pod.metadata.name}${pod.metadata.name === holder ? ' (leader)' : ''}: peak RSS ${(peak / 1048576).toFixed(0)} MiB, limit 256 MiB`);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThan(limit);
      expect(pod.status.containerStatuses?.[0]?.restartCount).toBe(0);
    }
  });

  it("a limit below the controller's footprint (48Mi; it uses about 110 MiB idle) ends in an OOM kill; back to the defaults, the Deployment recovers and every Secret is right", async () => {
    helmOrThrow(
      await node.helm([
        'upgrade',
        RELEASE,
        chartDir,
        '--namespace',
        NS,
        ...imageValues(node),
        '--set',
        'resources.limits.memory=48Mi',
        '--set',
        'resources.requests.memory=48Mi',
      ]),
      'helm upgrade (48Mi)',
    );
    const killed = await waitFor(
      'a controller container OOMKilled',
      async () => {
        const pods = await controllerPods();
        return pods.find((p) =>
          p.status.containerStatuses?.some((c) => c.lastState?.terminated?.reason === 'OOMKilled' || c.state?.terminated?.reason === 'OOMKilled'),
        );
      },
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    log(`${killed.metadata.name}: OOMKilled under a 48Mi limit`);
    expect(killed.spec.containers[0]!.resources?.limits?.memory).toBe('48Mi');
    helmOrThrow(
      await node.helm(['upgrade', RELEASE, chartDir, '--namespace', NS, ...imageValues(node), '--wait', '--timeout', '5m']),
      'helm upgrade (defaults)',
    );
    const pods = await twoReady();
    for (const pod of pods) expect(pod.spec.containers[0]!.resources?.limits?.memory).toBe('256Mi');
    const annotate = Date.now();
    for (const namespace of load.namespaces)
      await kubectlOrThrow(node, ['annotate', 'envelopesecrets', '--all', '-n', namespace, `touched=${annotate}`, '--overwrite']);
    await waitAllCorrect(client, expected, load.namespaces, 300_000, log);
    await scanControllerLogs();
  });
});

describe('helm upgrade and uninstall', () => {
  it('helm upgrade to a new image tag rolls the pods, with no EnvelopeSecret left unreconciled', async () => {
    const next = `${node.controllerImage.tag}-next`;
    const { buildControllerImage } = await import('../../scripts/image/build.ts');
    const image = await buildControllerImage({ tag: next });
    await node.importImage(image.archive);
    const before = (await controllerPods()).map((p) => p.metadata.name);
    const namespace = uniqueName('during-upgrade');
    await restrictedNamespace(node, namespace);
    const upgrade = node.helm(['upgrade', RELEASE, chartDir, '--namespace', NS, ...imageValues(node, next), '--wait', '--timeout', '5m']);
    // EnvelopeSecrets created while the pods roll.
    const names = Array.from({ length: 20 }, (_, i) => `during-${i}`);
    for (const name of names) await sealAndApply(namespace, name, { V: `${CANARY_MARKER}${name}` });
    helmOrThrow(await upgrade, 'helm upgrade (new tag)');
    const pods = await twoReady();
    for (const pod of pods) {
      expect(before).not.toContain(pod.metadata.name);
      expect(pod.spec.containers[0]!.image).toBe(`${image.reference}`);
    }
    for (const name of names) {
      expect(await waitFor(`Secret ${name}`, () => secretValue(namespace, name, 'V'), { timeoutMs: 120_000 })).toBe(`${CANARY_MARKER}${name}`);
    }
    await waitAllCorrect(client, expected, load.namespaces, 300_000, log);
    const notReady = (await getJson<{ items: EnvelopeSecret[] }>(node, ['envelopesecrets', '-A'])).items.filter(
      (es) => es.status?.conditions?.find((c) => c.type === 'Ready')?.status !== 'True' || es.status?.observedGeneration !== es.metadata.generation,
    );
    expect(notReady.map((es) => `${es.metadata.namespace}/${es.metadata.name}`)).toEqual([]);
    await scanControllerLogs();
  });

  it('helm uninstall leaves the Secrets and the CRD', async () => {
    const secretsBefore = await getJson<{ items: unknown[] }>(node, ['secrets', '-A', '-l', 'app.kubernetes.io/managed-by=envseal']);
    helmOrThrow(await node.helm(['uninstall', RELEASE, '--namespace', NS, '--wait', '--timeout', '2m']), 'helm uninstall');
    await waitFor('the controller pods to go', async () => (await controllerPods()).length === 0, { timeoutMs: 120_000, intervalMs: 1_000 });
    expect((await node.kubectl(['get', 'crd', 'envelopesecrets.envseal.dev'])).code).toBe(0);
    const secretsAfter = await getJson<{ items: unknown[] }>(node, ['secrets', '-A', '-l', 'app.kubernetes.io/managed-by=envseal']);
    expect(secretsAfter.items.length).toBe(secretsBefore.items.length);
    expect(secretsAfter.items.length).toBeGreaterThan(1000);
  });
});

describe('namespaced mode (watchNamespaces) in pods', () => {
  it('reconciles the listed namespace, and its pods cannot read Secrets elsewhere', async () => {
    const release = 'envseal-team';
    const releaseNs = 'envseal-team';
    const teamA = uniqueName('team-a');
    const teamB = uniqueName('team-b');
    for (const ns of [releaseNs, teamA, teamB]) await restrictedNamespace(node, ns);
    await applyManifest(node, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'elsewhere', namespace: teamB },
      stringData: { K: `${CANARY_MARKER}elsewhere` },
    });
    helmOrThrow(
      await node.helm([
        'install',
        release,
        chartDir,
        '--namespace',
        releaseNs,
        ...imageValues(node),
        '--set',
        `watchNamespaces={${teamA}}`,
        '--wait',
        '--timeout',
        '4m',
      ]),
      'helm install (namespaced)',
    );
    const pods = await twoReady(releaseNs);
    const configMap = await waitFor('the team recipient', () =>
      getJson<{ data: { recipient: string } }>(node, ['configmap', 'envseal-age-recipient', '-n', releaseNs]),
    );
    recipient = configMap.data.recipient;
    await sealAndApply(teamA, 'app', { K: `${CANARY_MARKER}team a` });
    expect(await waitFor('the Secret in the watched namespace', () => secretValue(teamA, 'app', 'K'), { timeoutMs: 60_000 })).toBe(`${CANARY_MARKER}team a`);
    await sealAndApply(teamB, 'app', { K: `${CANARY_MARKER}team b` });
    // From inside a controller pod, with its own ServiceAccount token, through the kubernetes Service.
    const statusOf = (namespace: string) =>
      inPod(
        pods[0]!.metadata.name,
        `
      const fs = require('node:fs'), https = require('node:https');
      const dir = '/var/run/secrets/kubernetes.io/serviceaccount/';
      https.get({ host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT, path: '/api/v1/namespaces/${namespace}/secrets',
        ca: fs.readFileSync(dir + 'ca.crt'), headers: { authorization: 'Bearer ' + fs.readFileSync(dir + 'token', 'utf8') } },
        (res) => { res.resume(); console.log(res.statusCode); }).on('error', (e) => console.log(e.code));
    `,
        releaseNs,
      );
    expect((await statusOf(teamB)).trim()).toBe('403');
    expect((await statusOf(teamA)).trim()).toBe('200');
    // Nothing was written in the namespace it does not watch.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(await secretValue(teamB, 'app', 'K')).toBeUndefined();
    await scanControllerLogs(releaseNs);
    helmOrThrow(await node.helm(['uninstall', release, '--namespace', releaseNs, '--wait']), 'helm uninstall (namespaced)');
  });
});

describe('no secret material leaks out of the pods', () => {
  it("the node cluster's Events and EnvelopeSecret statuses hold no canary value and no age identity", async () => {
    const events = await kubectlOrThrow(node, ['get', 'events', '-A', '-o', 'json']);
    const statuses = JSON.stringify((await getJson<{ items: EnvelopeSecret[] }>(node, ['envelopesecrets', '-A'])).items.map((es) => es.status));
    expect(JSON.parse(events).items.length).toBeGreaterThan(0);
    for (const text of [events, statuses]) {
      recordLeakText('log', text); // also scanned for data keys by zz-leaks
      expect(text).not.toContain(CANARY_MARKER);
      expect(text).not.toContain('AGE-SECRET-KEY-');
    }
  });
});
