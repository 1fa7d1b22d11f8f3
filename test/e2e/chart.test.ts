// The Helm chart: lint, render in each mode, schema, then `helm install` into the real
// control plane and the controller run with a token of the chart's ServiceAccount, to prove
// that the chart's RBAC is enough for everything the controller does, and no more.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_SECRET_TYPES, parseTenantPolicy, type TenantPolicy } from '../../src/api/policy.ts';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { ANNOTATION_DATA_HASH } from '../../src/controller/desired.ts';
import { generateAgeIdentity } from '../../src/providers/age.ts';
import { KubeApiError, KubeClient } from '../../src/kube/client.ts';
import { sharedCluster, tokenKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { freePort, startTestController, type TestController, withControllerProcess } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, crdPath, createNamespace, getOrUndefined, kubectl, kubectlApply, type KubectlResult, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const chartDir = path.join(repoRoot, 'charts/envseal');
const client = adminClient();
// Every sealed value carries the marker that the suite-wide leak check looks for.
const FIRST = `${CANARY_MARKER}chart-first`;
const SECOND = `${CANARY_MARKER}chart-second`;
const CANARY = `${CANARY_MARKER}chart`;

// ---------------------------------------------------------------------------------------
// helm and rendering

type CommandResult = KubectlResult;

async function helm(args: string[]): Promise<CommandResult> {
  const cluster = sharedCluster();
  return new Promise((resolve) => {
    execFile(
      cluster.helmPath,
      [...args, '--kubeconfig', cluster.kubeconfigPath],
      {
        maxBuffer: 16 * 1024 * 1024,
        env: {
          ...process.env,
          HELM_CACHE_HOME: path.join(cluster.dir, 'helm-cache'),
          HELM_CONFIG_HOME: path.join(cluster.dir, 'helm-config'),
          HELM_DATA_HOME: path.join(cluster.dir, 'helm-data'),
        },
      },
      (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  resourceNames?: string[];
  verbs: string[];
}

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  rules?: Rule[];
  roleRef?: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
  automountServiceAccountToken?: boolean;
  spec?: Record<string, unknown>;
}

interface Container {
  name: string;
  image: string;
  args: string[];
  env: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
}

interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  securityContext: Record<string, unknown>;
  containers: Container[];
}

const RELEASE_NAMESPACE = 'envseal-system';

async function render(sets: string[] = [], namespace = RELEASE_NAMESPACE): Promise<Manifest[]> {
  const result = await helm(['template', 'envseal', chartDir, '--namespace', namespace, ...sets.flatMap((s) => ['--set', s])]);
  if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

const kindsOf = (manifests: Manifest[]) => manifests.map((m) => `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`).sort();
const one = (manifests: Manifest[], kind: string, name?: string, namespace?: string) => {
  const found = manifests.filter(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name) && (namespace === undefined || m.metadata.namespace === namespace),
  );
  expect(found, `${kind} ${namespace ?? ''}/${name ?? '*'}`).toHaveLength(1);
  return found[0]!;
};
const podSpec = (manifests: Manifest[]) => (one(manifests, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;

/** What the controller may do in each namespace it watches: exactly these rules. */
const WORKLOAD_RULES: Rule[] = [
  { apiGroups: ['envseal.dev'], resources: ['envelopesecrets'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['envseal.dev'], resources: ['envelopesecrets/status'], verbs: ['patch'] },
  { apiGroups: ['envseal.dev'], resources: ['envelopesecrets/finalizers'], verbs: ['update'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'daemonsets'], verbs: ['get', 'patch'] },
];

/** In its own namespace: its age identity, its recipient ConfigMap, its Lease. */
const SELF_RULES: Rule[] = [
  { apiGroups: [''], resources: ['secrets'], resourceNames: ['envseal-age-identity'], verbs: ['get'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['create'] },
  { apiGroups: [''], resources: ['configmaps'], resourceNames: ['envseal-age-recipient'], verbs: ['get', 'patch'] },
  { apiGroups: [''], resources: ['configmaps'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['envseal-controller'], verbs: ['get', 'update'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
];

const RECIPIENT_READER_RULES: Rule[] = [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['envseal-age-recipient'], verbs: ['get'] }];

// Prometheus's rule-file parser (what `promtool check rules` runs), built from
// test/chart/promql-check with Go from the module proxy, once per run.
let promqlCheckBinary: Promise<string> | undefined;
function buildPromqlCheck(): Promise<string> {
  promqlCheckBinary ??= new Promise((resolve, reject) => {
    const output = path.join(sharedCluster().dir, 'promql-check');
    execFile(
      'go',
      ['build', '-o', output, '.'],
      { cwd: path.join(repoRoot, 'test/chart/promql-check'), env: { ...process.env, GOFLAGS: '-buildvcs=false', GOWORK: 'off' }, timeout: 590_000 },
      (error, _stdout, stderr) => (error ? reject(new Error(`go build test/chart/promql-check failed: ${stderr || error.message}`)) : resolve(output)),
    );
  });
  return promqlCheckBinary;
}

async function promqlCheck(ruleGroups: string): Promise<CommandResult> {
  const binary = await buildPromqlCheck();
  return new Promise((resolve) => {
    const child = execFile(binary, [], (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }));
    child.stdin?.end(ruleGroups);
  });
}

// ---------------------------------------------------------------------------------------
// static checks

describe('the Helm chart', () => {
  beforeAll(async () => {
    await buildPromqlCheck();
  });

  it('keeps its CRD identical to crds/ (resync: scripts/sync-chart-crd.sh)', async () => {
    const [source, copy] = await Promise.all([readFile(crdPath, 'utf8'), readFile(path.join(chartDir, 'crds', path.basename(crdPath)), 'utf8')]);
    expect(copy === source, 'charts/envseal/crds/ differs from crds/: run scripts/sync-chart-crd.sh').toBe(true);
  });

  it('has appVersion = the package version', async () => {
    const chart = parse(await readFile(path.join(chartDir, 'Chart.yaml'), 'utf8')) as { appVersion: string; apiVersion: string; name: string };
    const pkg = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'envseal', appVersion: pkg.version });
  });

  it.each([
    ['defaults', []],
    ['namespaced', ['watchNamespaces={team-a,team-b}']],
    ['monitoring', ['metrics.serviceMonitor.enabled=true', 'metrics.prometheusRule.enabled=true']],
    ['monitoring with the data-key age alert', ['metrics.prometheusRule.enabled=true', 'metrics.prometheusRule.dataKeyAge.maxDays=90']],
    ['no age, no leader election', ['providers.age.enabled=false', 'leaderElection.enabled=false', 'replicaCount=1']],
    ['tenancy', ['tenancy.secretTypes.allowed.team-a={example.com/a,helm.sh/release.v1}', 'tenancy.secretTypes.allowed.*={example.com/all}']],
    ['no admission policy', ['tenancy.admissionPolicy.enabled=false']],
  ])('lints clean with --strict (%s)', async (_mode, sets) => {
    const result = await helm(['lint', '--strict', chartDir, ...sets.flatMap((s) => ['--set', s])]);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toContain('0 chart(s) failed');
    expect(result.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
  });

  it('renders cluster-wide mode: a hardened Deployment, a ClusterRole with least privilege, Roles for its own objects', async () => {
    const manifests = await render();
    expect(kindsOf(manifests)).toEqual(
      [
        'ClusterRole//envseal',
        'ClusterRole//envseal-edit',
        'ClusterRole//envseal-view',
        'ClusterRoleBinding//envseal',
        `Deployment/${RELEASE_NAMESPACE}/envseal`,
        `PodDisruptionBudget/${RELEASE_NAMESPACE}/envseal`,
        `Role/${RELEASE_NAMESPACE}/envseal-recipient-reader`,
        `Role/${RELEASE_NAMESPACE}/envseal-self`,
        `RoleBinding/${RELEASE_NAMESPACE}/envseal-recipient-reader`,
        `RoleBinding/${RELEASE_NAMESPACE}/envseal-self`,
        `Service/${RELEASE_NAMESPACE}/envseal-metrics`,
        `ServiceAccount/${RELEASE_NAMESPACE}/envseal`,
        'ValidatingAdmissionPolicy//envseal-secret-types',
        'ValidatingAdmissionPolicyBinding//envseal-secret-types',
      ].sort(),
    );
    expect(one(manifests, 'ClusterRole', 'envseal').rules).toEqual(WORKLOAD_RULES);
    expect(one(manifests, 'ClusterRoleBinding')).toMatchObject({
      roleRef: { kind: 'ClusterRole', name: 'envseal' },
      subjects: [{ kind: 'ServiceAccount', name: 'envseal', namespace: RELEASE_NAMESPACE }],
    });
    expect(one(manifests, 'Role', 'envseal-self').rules).toEqual(SELF_RULES);
    expect(one(manifests, 'Role', 'envseal-recipient-reader').rules).toEqual(RECIPIENT_READER_RULES);
    expect(one(manifests, 'RoleBinding', 'envseal-recipient-reader').subjects).toEqual([
      { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:authenticated' },
    ]);
    expect(one(manifests, 'ServiceAccount').automountServiceAccountToken).toBe(false);

    const deployment = one(manifests, 'Deployment');
    expect(deployment.spec?.replicas).toBe(2);
    const pod = podSpec(manifests);
    expect(pod.serviceAccountName).toBe('envseal');
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: 'RuntimeDefault' } });
    const container = pod.containers[0]!;
    expect(pod.containers).toHaveLength(1);
    expect(container.image).toBe('ghcr.io/envseal/envseal:0.1.0');
    expect(container.securityContext).toEqual({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.args[0]).toBe('controller');
    expect(container.args).toEqual(
      expect.arrayContaining([
        '--metrics-address=0.0.0.0:8080',
        '--lease-name=envseal-controller',
        '--age-secret=envseal-age-identity',
        '--age-configmap=envseal-age-recipient',
      ]),
    );
    expect(container.args.some((a) => a.startsWith('--namespaces'))).toBe(false);
    expect(container.args).not.toContain('--no-leader-elect');
    expect(container.env).toEqual(
      expect.arrayContaining([
        { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
        { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        // V8's heap bounded below the memory limit (docs/benchmarks.md).
        { name: 'NODE_OPTIONS', value: '--max-semi-space-size=2 --max-old-space-size=160' },
      ]),
    );
    expect(container.ports).toEqual([{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(container.resources.requests).toBeDefined();
    expect(container.resources.limits?.memory).toBeDefined();
    expect(one(manifests, 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 });
  });

  it('renders namespaced mode: a Role per listed namespace and no cluster-wide grant', async () => {
    const manifests = await render(['watchNamespaces={team-a,team-b}']);
    // Cluster-wide, only the user roles aggregated into admin/edit/view, bound to nobody.
    expect(kindsOf(manifests.filter((m) => m.kind.startsWith('Cluster')))).toEqual(['ClusterRole//envseal-edit', 'ClusterRole//envseal-view']);
    for (const namespace of ['team-a', 'team-b']) {
      expect(one(manifests, 'Role', 'envseal', namespace).rules).toEqual(WORKLOAD_RULES);
      expect(one(manifests, 'RoleBinding', 'envseal', namespace)).toMatchObject({
        roleRef: { kind: 'Role', name: 'envseal' },
        subjects: [{ kind: 'ServiceAccount', name: 'envseal', namespace: RELEASE_NAMESPACE }],
      });
    }
    expect(one(manifests, 'Role', 'envseal-self', RELEASE_NAMESPACE).rules).toEqual(SELF_RULES);
    // Nothing but the recipient reader is granted to anyone outside the ServiceAccount.
    const bindings = manifests.filter((m) => m.kind === 'RoleBinding');
    expect(bindings.flatMap((b) => b.subjects ?? []).filter((s) => s.kind !== 'ServiceAccount')).toEqual([
      { apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:authenticated' },
    ]);
    expect(podSpec(manifests).containers[0]!.args).toContain('--namespaces=team-a,team-b');
  });

  it('adds EnvelopeSecrets to the built-in admin/edit and view roles (not their status), unless told not to', async () => {
    const manifests = await render();
    expect(one(manifests, 'ClusterRole', 'envseal-edit')).toMatchObject({
      metadata: { labels: { 'rbac.authorization.k8s.io/aggregate-to-admin': 'true', 'rbac.authorization.k8s.io/aggregate-to-edit': 'true' } },
      rules: [
        {
          apiGroups: ['envseal.dev'],
          resources: ['envelopesecrets'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete', 'deletecollection'],
        },
      ],
    });
    expect(one(manifests, 'ClusterRole', 'envseal-view')).toMatchObject({
      metadata: { labels: { 'rbac.authorization.k8s.io/aggregate-to-view': 'true' } },
      rules: [{ apiGroups: ['envseal.dev'], resources: ['envelopesecrets'], verbs: ['get', 'list', 'watch'] }],
    });
    const without = await render(['rbac.aggregateToDefaultRoles=false']);
    expect(without.some((m) => m.metadata.name === 'envseal-edit' || m.metadata.name === 'envseal-view')).toBe(false);
  });

  it('renders only what is enabled: no age, no leader election, no rollout restart, no recipient reader', async () => {
    const manifests = await render(['providers.age.enabled=false', 'leaderElection.enabled=false', 'replicaCount=1', 'rbac.rolloutRestart=false']);
    expect(kindsOf(manifests).filter((k) => k.startsWith('Role'))).toEqual([]);
    expect(one(manifests, 'ClusterRole', 'envseal').rules).toEqual(WORKLOAD_RULES.filter((r) => r.apiGroups[0] !== 'apps'));
    expect(podSpec(manifests).containers[0]!.args).toEqual(expect.arrayContaining(['--no-age', '--no-leader-elect']));

    const selfOnlyLease = await render(['providers.age.enabled=false']);
    expect(one(selfOnlyLease, 'Role', 'envseal-self').rules).toEqual(SELF_RULES.filter((r) => r.resources[0] === 'leases'));
    expect(selfOnlyLease.some((m) => m.metadata.name === 'envseal-recipient-reader')).toBe(false);
    // OpenShift assigns the UID: the fixed IDs can be removed (docs/helm.md).
    const openShift = await render(['podSecurityContext.runAsUser=null', 'podSecurityContext.runAsGroup=null', 'podSecurityContext.fsGroup=null']);
    expect(podSpec(openShift).securityContext).toEqual({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const privateRecipient = await render(['providers.age.publicRecipient=false']);
    expect(privateRecipient.some((m) => m.metadata.name === 'envseal-recipient-reader')).toBe(false);
  });

  it('passes the provider configuration and identity annotations through', async () => {
    const manifests = await render([
      'providers.awsKms.region=eu-west-1',
      'providers.awsKms.endpoint=https://kms.eu-west-1.amazonaws.com',
      'serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/envseal',
      `image.digest=sha256:${'a'.repeat(64)}`,
      'metrics.port=9090',
    ]);
    const container = podSpec(manifests).containers[0]!;
    expect(container.args).toEqual(
      expect.arrayContaining(['--region=eu-west-1', '--kms-endpoint=https://kms.eu-west-1.amazonaws.com', '--metrics-address=0.0.0.0:9090']),
    );
    expect(container.image).toBe(`ghcr.io/envseal/envseal@sha256:${'a'.repeat(64)}`);
    expect(one(manifests, 'ServiceAccount').metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::111122223333:role/envseal' });
    expect(one(manifests, 'Service').spec).toMatchObject({ ports: [{ name: 'metrics', port: 9090, targetPort: 'metrics' }] });
  });

  it('passes the vault-transit settings (Kubernetes auth) only when an address is set', async () => {
    const defaults = podSpec(await render()).containers[0]!;
    expect(defaults.args!.filter((a: string) => a.startsWith('--vault'))).toEqual([]);
    const vault = podSpec(
      await render([
        'providers.vaultTransit.address=https://vault.vault.svc:8200',
        'providers.vaultTransit.authRole=envseal-prod',
        'providers.vaultTransit.namespace=team-a',
      ]),
    ).containers[0]!;
    expect(vault.args).toEqual(
      expect.arrayContaining(['--vault-addr=https://vault.vault.svc:8200', '--vault-auth-role=envseal-prod', '--vault-auth-mount=kubernetes']),
    );
    expect(vault.env).toEqual(expect.arrayContaining([{ name: 'VAULT_NAMESPACE', value: 'team-a' }]));
  });

  it('configures aws-kms, vault-transit with a private CA and an audience-bound token, and age at once', async () => {
    const sets = [
      'providers.awsKms.region=eu-west-1',
      'providers.vaultTransit.address=https://vault.vault.svc:8200',
      'providers.vaultTransit.authRole=envseal-prod',
      'providers.vaultTransit.tokenAudience=vault',
    ];
    type Mounted = PodSpec & { volumes: Record<string, unknown>[]; containers: (Container & { volumeMounts: Record<string, unknown>[] })[] };
    for (const [source, volume] of [
      ['secret', { name: 'vault-ca', secret: { secretName: 'vault-tls', items: [{ key: 'bundle.pem', path: 'ca.crt' }] } }],
      ['configMap', { name: 'vault-ca', configMap: { name: 'vault-tls', items: [{ key: 'bundle.pem', path: 'ca.crt' }] } }],
    ] as const) {
      const pod = podSpec(
        await render([...sets, `providers.vaultTransit.caCert.${source}=vault-tls`, 'providers.vaultTransit.caCert.key=bundle.pem']),
      ) as Mounted;
      const container = pod.containers[0]!;
      expect(container.args.filter((a) => /^--(region|kms-endpoint|vault-|age-|no-age)/.test(a))).toEqual([
        '--age-secret=envseal-age-identity',
        '--age-configmap=envseal-age-recipient',
        '--region=eu-west-1',
        '--vault-addr=https://vault.vault.svc:8200',
        '--vault-auth-role=envseal-prod',
        '--vault-auth-mount=kubernetes',
        '--vault-auth-token-file=/var/run/secrets/envseal/vault/token',
        '--vault-ca-cert=/etc/envseal/vault-ca/ca.crt',
      ]);
      expect(pod.volumes).toContainEqual(volume);
      expect(container.volumeMounts).toContainEqual({ name: 'vault-ca', mountPath: '/etc/envseal/vault-ca', readOnly: true });
      // The token Vault sees is for Vault's audience only, refreshed by the kubelet.
      expect(pod.volumes).toContainEqual({
        name: 'vault-token',
        projected: { sources: [{ serviceAccountToken: { audience: 'vault', expirationSeconds: 3600, path: 'token' } }] },
      });
      expect(container.volumeMounts).toContainEqual({ name: 'vault-token', mountPath: '/var/run/secrets/envseal/vault', readOnly: true });
    }
    // Without a CA or an audience: no flags, no volumes (Node's trusted CAs, the pod's own token).
    const plain = podSpec(await render(sets.filter((s) => !s.includes('tokenAudience')))) as Mounted;
    expect(plain.containers[0]!.args.filter((a) => /^--vault-(ca-cert|auth-token-file)/.test(a))).toEqual([]);
    expect(plain.volumes.map((v) => v.name)).toEqual(['tmp']);
  });

  it('passes the alibaba-kms region and endpoint, and annotates the ServiceAccount for RRSA', async () => {
    const defaults = await render();
    expect(podSpec(defaults).containers[0]!.args!.filter((a: string) => a.startsWith('--alibaba-kms'))).toEqual([]);
    expect(one(defaults, 'ServiceAccount').metadata.annotations).toBeUndefined();
    const manifests = await render([
      'providers.alibabaKms.region=cn-hangzhou',
      'providers.alibabaKms.endpoint=https://kms-vpc.cn-hangzhou.aliyuncs.com',
      'providers.alibabaKms.rrsa.roleName=envseal-controller',
      'serviceAccount.annotations.team=a',
    ]);
    expect(podSpec(manifests).containers[0]!.args).toEqual(
      expect.arrayContaining(['--alibaba-kms-region=cn-hangzhou', '--alibaba-kms-endpoint=https://kms-vpc.cn-hangzhou.aliyuncs.com']),
    );
    expect(one(manifests, 'ServiceAccount').metadata.annotations).toEqual({ 'pod-identity.alibabacloud.com/role-name': 'envseal-controller', team: 'a' });
  });

  it('passes the per-namespace budget of key-provider calls, or turns it off', async () => {
    expect(podSpec(await render()).containers[0]!.args).toContain('--unwrap-budget=50/1000');
    expect(podSpec(await render(['controller.unwrapBudget.perSecond=5', 'controller.unwrapBudget.burst=20'])).containers[0]!.args).toContain(
      '--unwrap-budget=5/20',
    );
    expect(podSpec(await render(['controller.unwrapBudget.perSecond=0'])).containers[0]!.args).toContain('--unwrap-budget=0');
  });

  it('passes the restart window, 0 included, and refuses one the controller would not read', async () => {
    expect(podSpec(await render()).containers[0]!.args).toContain('--restart-window=10s');
    expect(podSpec(await render(['controller.restartWindow=1m'])).containers[0]!.args).toContain('--restart-window=1m');
    expect(podSpec(await render(['controller.restartWindow=0'])).containers[0]!.args).toContain('--restart-window=0');
    const refused = await helm(['template', 'envseal', chartDir, '--set', 'controller.restartWindow=soon']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('restartWindow');
  });

  it('renders monitoring: a ServiceMonitor on the metrics Service and a PrometheusRule with the alerts', async () => {
    const manifests = await render([
      'metrics.serviceMonitor.enabled=true',
      'metrics.prometheusRule.enabled=true',
      'metrics.serviceMonitor.labels.release=prom',
    ]);
    const monitor = one(manifests, 'ServiceMonitor');
    expect(monitor.metadata.labels).toMatchObject({ release: 'prom' });
    expect(monitor.spec).toMatchObject({
      endpoints: [{ port: 'metrics', path: '/metrics' }],
      selector: { matchLabels: { 'app.kubernetes.io/name': 'envseal', 'app.kubernetes.io/instance': 'envseal' } },
    });
    const service = one(manifests, 'Service');
    const selector = (monitor.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
    expect(service.metadata.labels).toMatchObject(selector);

    const rule = one(manifests, 'PrometheusRule');
    const rules = (
      rule.spec as {
        groups: {
          rules: { alert: string; expr: string; for: string; labels: { severity: string }; annotations: { summary: string; description: string } }[];
        }[];
      }
    ).groups[0]!.rules;
    expect(rules.map((r) => r.alert)).toEqual(['EnvsealReconcileErrors', 'EnvsealKMSAccessDenied', 'EnvsealEnvelopeSecretsNotReady', 'EnvsealNoLeader']);
    const byName = Object.fromEntries(rules.map((r) => [r.alert, r]));
    expect(byName.EnvsealReconcileErrors!.expr).toContain('envseal_reconcile_total{job="envseal-metrics", namespace="envseal-system", result="error"}');
    expect(byName.EnvsealKMSAccessDenied!.expr).toContain('reason="KMSAccessDenied"');
    expect(byName.EnvsealKMSAccessDenied!.expr).toContain('outcome="AccessDenied"');
    expect(byName.EnvsealEnvelopeSecretsNotReady!.expr).toContain('ready!="True"');
    expect(byName.EnvsealNoLeader!.expr).toContain('absent(envseal_leader{');
    for (const r of rules) {
      expect(r.for).toMatch(/^\d+m$/);
      // Prometheus templates reach Prometheus unexpanded; no Helm syntax is left over.
      expect(r.annotations.description).not.toMatch(/\{\{-|\.Values|\.Release/);
    }
    expect(byName.EnvsealEnvelopeSecretsNotReady!.annotations.description).toContain('{{ $labels.reason }}');
    // Every metric the alerts use is one the controller exports (src/controller/metrics.ts).
    const metricsSource = await readFile(path.join(repoRoot, 'src/controller/metrics.ts'), 'utf8');
    for (const metric of new Set(rules.flatMap((r) => [...r.expr.matchAll(/\b(envseal_[a-z_]+)\{/g)].map((m) => m[1]!)))) {
      expect(metricsSource, metric).toContain(`'${metric}'`);
    }
  });

  it('renders alert rules that Prometheus accepts (its own rule-file parser: PromQL, durations, templates)', async () => {
    const rule = one(await render(['metrics.prometheusRule.enabled=true']), 'PrometheusRule');
    const checked = await promqlCheck(stringify(rule.spec));
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout.trim()).toBe('ok: 1 groups, 4 rules');
    // The checker catches what it should.
    const broken = await promqlCheck(
      stringify({ groups: [{ name: 'x', rules: [{ alert: 'A', expr: 'sum(rate(x[5m]) > 0', annotations: { d: '{{ $value' } }] }] }),
    );
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('unclosed left parenthesis');
    expect(broken.stdout).toContain('annotation "d"');
  });

  it('renders the optional data-key age alert: off by default, then with the expr, for, severity and description asked for', async () => {
    type Rule = { alert: string; expr: string; for: string; labels: { severity: string }; annotations: { summary: string; description: string } };
    const rulesOf = async (sets: string[]) =>
      (one(await render(['metrics.prometheusRule.enabled=true', ...sets]), 'PrometheusRule').spec as { groups: { rules: Rule[] }[] }).groups[0]!.rules;
    expect((await rulesOf([])).map((r) => r.alert)).not.toContain('EnvsealDataKeyTooOld');
    const rules = await rulesOf([
      'metrics.prometheusRule.dataKeyAge.maxDays=90',
      'metrics.prometheusRule.dataKeyAge.severity=info',
      'metrics.prometheusRule.for.dataKeyAge=2h',
    ]);
    expect(rules.map((r) => r.alert)).toEqual([
      'EnvsealReconcileErrors',
      'EnvsealKMSAccessDenied',
      'EnvsealEnvelopeSecretsNotReady',
      'EnvsealNoLeader',
      'EnvsealDataKeyTooOld',
    ]);
    const alert = rules.at(-1)!;
    expect(alert.expr).toBe('max by (namespace, job) (envseal_data_key_oldest_seconds{job="envseal-metrics", namespace="envseal-system"}) > 7776000');
    expect(alert.for).toBe('2h');
    expect(alert.labels).toEqual({ severity: 'info' });
    expect(alert.annotations.summary).toBe('An envseal data key is older than 90 days');
    expect(alert.annotations.description).toContain('{{ $value | humanizeDuration }}');
    expect(alert.annotations.description).toContain('envseal inventory');
    expect(alert.annotations.description).not.toMatch(/\{\{-|\.Values|\.Release/);
    expect(await readFile(path.join(repoRoot, 'src/controller/metrics.ts'), 'utf8')).toContain("'envseal_data_key_oldest_seconds'");
    // Prometheus's own rule parser accepts it.
    const checked = await promqlCheck(stringify({ groups: [{ name: 'envseal', rules }] }));
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout.trim()).toBe('ok: 1 groups, 5 rules');
    // The schema refuses a negative or fractional age.
    for (const bad of ['-1', '1.5']) {
      const refused = await helm([
        'template',
        'envseal',
        chartDir,
        '--set',
        'metrics.prometheusRule.enabled=true',
        '--set',
        `metrics.prometheusRule.dataKeyAge.maxDays=${bad}`,
      ]);
      expect(refused.code, bad).not.toBe(0);
      expect(refused.stderr).toContain('maxDays');
    }
  });

  it('renders the tenancy values: one --allowed-secret-types flag per namespace and an admission policy with the same lists', async () => {
    const sets = ['tenancy.secretTypes.allowed.team-a={example.com/a,helm.sh/release.v1}', 'tenancy.secretTypes.allowed.*={example.com/all}'];
    const manifests = await render(sets);
    const flags = podSpec(manifests).containers[0]!.args.filter((a) => a.startsWith('--allowed-secret-types='));
    expect(flags).toEqual(['--allowed-secret-types=*=example.com/all', '--allowed-secret-types=team-a=example.com/a,helm.sh/release.v1']);
    // What the controller reads from those flags.
    const policy: TenantPolicy = parseTenantPolicy(flags.map((f) => f.slice('--allowed-secret-types='.length)));
    expect(policy).toEqual({ extraSecretTypes: { '*': ['example.com/all'], 'team-a': ['example.com/a', 'helm.sh/release.v1'] } });

    const vap = one(manifests, 'ValidatingAdmissionPolicy', 'envseal-secret-types');
    const spec = vap.spec as {
      failurePolicy: string;
      matchConstraints: unknown;
      variables: { name: string; expression: string }[];
      validations: { expression: string }[];
    };
    expect(spec.failurePolicy).toBe('Fail');
    expect(spec.matchConstraints).toEqual({
      resourceRules: [{ apiGroups: ['envseal.dev'], apiVersions: ['*'], operations: ['CREATE', 'UPDATE'], resources: ['envelopesecrets'] }],
    });
    const allowed = spec.variables.find((v) => v.name === 'allowed')!.expression;
    // The chart's defaults are the controller's (src/api/policy.ts).
    const everywhere = /^\[(.*?)\]/
      .exec(allowed)![1]!
      .split(', ')
      .map((t) => t.slice(1, -1));
    expect(everywhere).toEqual([...DEFAULT_SECRET_TYPES, 'example.com/all']);
    expect(allowed).toContain("{'team-a': ['example.com/a', 'helm.sh/release.v1']}[request.namespace]");
    expect(one(manifests, 'ValidatingAdmissionPolicyBinding').spec).toEqual({ policyName: 'envseal-secret-types', validationActions: ['Deny'] });

    // Namespaced mode binds the policy to the watched namespaces only.
    const namespaced = await render([...sets, 'watchNamespaces={team-a,team-b}']);
    expect(one(namespaced, 'ValidatingAdmissionPolicyBinding').spec).toMatchObject({
      matchResources: { namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'In', values: ['team-a', 'team-b'] }] } },
    });
    // Defaults: no flag, a policy with the default list only; and it can be left out.
    const defaults = await render();
    expect(podSpec(defaults).containers[0]!.args.some((a) => a.startsWith('--allowed-secret-types'))).toBe(false);
    expect((one(defaults, 'ValidatingAdmissionPolicy').spec as typeof spec).variables.find((v) => v.name === 'allowed')!.expression).toBe(
      `[${DEFAULT_SECRET_TYPES.map((t) => `'${t}'`).join(', ')}] + (request.namespace in {} ? {}[request.namespace] : [])`,
    );
    const without = await render(['tenancy.admissionPolicy.enabled=false']);
    expect(without.some((m) => m.kind.startsWith('ValidatingAdmissionPolicy'))).toBe(false);
  });

  it.each([
    ['an unknown key', 'replicas=2', "additional properties 'replicas' not allowed"],
    ['zero replicas', 'replicaCount=0', '/replicaCount'],
    ['a namespace that is not a DNS label', 'watchNamespaces={Team_A}', '/watchNamespaces/0'],
    ['a bad duration', 'controller.resync=10 minutes', '/controller/resync'],
    ['an unknown log level', 'controller.logLevel=verbose', '/controller/logLevel'],
    ['a privileged container', 'securityContext.privileged=true', '/securityContext/privileged'],
    ['privilege escalation', 'securityContext.allowPrivilegeEscalation=true', '/securityContext/allowPrivilegeEscalation'],
    ['running as root', 'podSecurityContext.runAsNonRoot=false', '/podSecurityContext/runAsNonRoot'],
    ['a port out of range', 'metrics.port=70000', '/metrics/port'],
    ['a bad image digest', 'image.digest=latest', '/image/digest'],
    ['a KMS endpoint that is not a URL', 'providers.awsKms.endpoint=kms.local', '/providers/awsKms/endpoint'],
    ['a Vault address that is not a URL', 'providers.vaultTransit.address=vault:8200', '/providers/vaultTransit/address'],
    ['a Vault CA Secret name that is not a DNS name', 'providers.vaultTransit.caCert.secret=Vault_CA', '/providers/vaultTransit/caCert/secret'],
    ['a Vault CA key with a slash', 'providers.vaultTransit.caCert.key=a/ca.crt', '/providers/vaultTransit/caCert/key'],
    ['a Vault token audience with a space', 'providers.vaultTransit.tokenAudience=a b', '/providers/vaultTransit/tokenAudience'],
    ['an Alibaba Cloud KMS endpoint that is not a URL', 'providers.alibabaKms.endpoint=kms.cn-hangzhou.aliyuncs.com', '/providers/alibabaKms/endpoint'],
    ['an Alibaba Cloud region in capitals', 'providers.alibabaKms.region=Hangzhou', '/providers/alibabaKms/region'],
    ['a string for a boolean', 'leaderElection.enabled=yes', '/leaderElection/enabled'],
    ['a typo in a nested key', 'providers.age.secretname=x', "additional properties 'secretname' not allowed"],
    ['a Secret type with a space', 'tenancy.secretTypes.allowed.team-a={has space}', '/tenancy/secretTypes/allowed/team-a/0'],
    ['a tenancy namespace that is not a DNS label', 'tenancy.secretTypes.allowed.Team_A={a.b/c}', "invalid propertyName 'Team_A'"],
  ])('values.schema.json rejects %s', async (_what, set, message) => {
    const result = await helm(['template', 'envseal', chartDir, '--set', set]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("values don't meet the specifications of the schema");
    expect(result.stderr).toContain(message);
  });

  it.each([
    ['several replicas without leader election', ['leaderElection.enabled=false'], 'needs leaderElection.enabled=true'],
    ['a namespace listed twice', ['watchNamespaces={a,a}'], 'lists a namespace twice'],
    ['a ServiceMonitor without the Service', ['metrics.serviceMonitor.enabled=true', 'metrics.service.enabled=false'], 'needs metrics.service.enabled'],
    [
      'a service-account token type',
      ['tenancy.secretTypes.allowed.team-a={kubernetes.io/service-account-token}'],
      'tenancy.secretTypes.allowed.team-a lists kubernetes.io/service-account-token: the cluster mints the content of that type (credentials); it is never sealed data and cannot be allowed',
    ],
    [
      'a Vault CA from both a ConfigMap and a Secret',
      ['providers.vaultTransit.address=https://vault:8200', 'providers.vaultTransit.caCert.configMap=a', 'providers.vaultTransit.caCert.secret=b'],
      'providers.vaultTransit.caCert: set configMap or secret, not both',
    ],
    [
      'a Vault CA with a plain-HTTP address',
      ['providers.vaultTransit.address=http://vault:8200', 'providers.vaultTransit.caCert.secret=b'],
      'providers.vaultTransit.address is not an https:// URL',
    ],
    [
      'a bootstrap token type, even for every namespace',
      ['tenancy.secretTypes.allowed.*={bootstrap.kubernetes.io/token}'],
      'lists bootstrap.kubernetes.io/token: the cluster mints',
    ],
  ])('refuses to render %s', async (_what, sets, message) => {
    const result = await helm(['template', 'envseal', chartDir, ...sets.flatMap((s) => ['--set', s])]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});

// ---------------------------------------------------------------------------------------
// installed into the real control plane

interface SecretObject {
  metadata: {
    name: string;
    uid: string;
    resourceVersion: string;
    ownerReferences?: { kind: string; name: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  };
  type: string;
  data?: Record<string, string>;
}
type LiveEnvelopeSecret = EnvelopeSecret & { metadata: { generation: number } };

const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

async function helmInstall(release: string, namespace: string, sets: string[]): Promise<CommandResult> {
  const result = await helm(['install', release, chartDir, '--namespace', namespace, '--create-namespace', ...sets.flatMap((s) => ['--set', s])]);
  if (result.code !== 0) throw new Error(`helm install failed: ${result.stderr}`);
  const established = await kubectl(['wait', '--for=condition=Established', '--timeout=60s', 'crd/envelopesecrets.envseal.dev']);
  if (established.code !== 0) throw new Error(`CRD not established: ${established.stderr}`);
  return result;
}

/** A token of a ServiceAccount, from the TokenRequest API (what the kubelet projects into the pod). */
async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  const response = await client.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds: 3600 } },
  });
  return response.status.token;
}

/** How the API server words an RBAC denial: `User "system:serviceaccount:ns:sa" cannot patch resource "x"`. */
const RBAC_DENIED = /\bcannot [a-z]+ resource\b/;

/** The HTTP status of a GET: 200, or the API server's error status. */
const getStatus = (as: KubeClient, objectPath: string) =>
  as.request({ method: 'GET', path: objectPath }).then(
    () => 200,
    (error: unknown) => (error instanceof KubeApiError ? error.status : 0),
  );

/** `kubectl auth can-i` as someone else (admin impersonates): true for yes, false for no. */
async function canI(as: string[], args: string[]): Promise<boolean> {
  const result = await kubectl(['auth', 'can-i', ...as, ...args]);
  const answer = result.stdout.trim();
  if (answer !== 'yes' && answer !== 'no') throw new Error(`kubectl auth can-i ${args.join(' ')}: ${result.stdout} ${result.stderr}`);
  return answer === 'yes';
}

async function sealForAge(
  recipient: string,
  namespace: string,
  name: string,
  values: Record<string, string>,
  extra: Partial<EnvelopeSecret['spec']> = {},
  type?: string,
): Promise<EnvelopeSecret> {
  const sealed = await sealFor({ namespace, name, values, targets: [ageTarget(recipient)], ...(type ? { template: { type } } : {}) });
  return { ...sealed, spec: { ...sealed.spec, ...extra } };
}

async function apply(object: unknown): Promise<void> {
  const result = await kubectlApply(object);
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
}

const getSecret = (namespace: string, name: string) => getOrUndefined<SecretObject>(client, paths.secret(namespace, name));
const readyOf = async (namespace: string, name: string) => {
  const es = await getOrUndefined<LiveEnvelopeSecret>(client, paths.envelopeSecret(namespace, name));
  const ready = es?.status?.conditions?.find((c) => c.type === 'Ready');
  return ready && es?.status?.observedGeneration === es?.metadata.generation ? ready : undefined;
};
const waitReady = (namespace: string, name: string, reason = 'Synced') =>
  waitFor(`${namespace}/${name} Ready ${reason}`, async () => ((await readyOf(namespace, name))?.reason === reason ? true : undefined));
const eventReasons = async (namespace: string, name: string) =>
  (await client.request<{ items: { reason: string; involvedObject: { name: string } }[] }>({ method: 'GET', path: paths.events(namespace) })).items
    .filter((e) => e.involvedObject.name === name)
    .map((e) => e.reason);

interface Deployment {
  metadata: { generation: number };
  spec: { template: { metadata?: { annotations?: Record<string, string> } } };
}

/** Proves every behaviour of the controller under the chart's RBAC, in `namespace`. */
async function exerciseController(options: { controller: TestController; releaseNamespace: string; namespace: string; identity: string }): Promise<string> {
  const { controller, releaseNamespace, namespace, identity } = options;

  // Age identity created, recipient published, lease taken: all with the ServiceAccount's token.
  const identitySecret = await waitFor('the age identity Secret', () => getSecret(releaseNamespace, 'envseal-age-identity'));
  expect(identitySecret.data?.['identity.agekey']).toBeDefined();
  expect(controller.logs.some((l) => l.includes('created the cluster age identity'))).toBe(true);
  const configMap = await waitFor('the recipient ConfigMap', () =>
    getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(releaseNamespace, 'envseal-age-recipient')),
  );
  const recipient = configMap.data.recipient;
  expect(recipient).toMatch(/^age1/);
  const lease = await waitFor('the Lease', () =>
    getOrUndefined<{ spec: { holderIdentity: string } }>(client, paths.lease(releaseNamespace, 'envseal-controller')),
  );
  expect(lease.spec.holderIdentity).toBe(identity);
  await waitFor('leading', async () => (await controller.metric('envseal_leader')) === 1);

  // A sealed EnvelopeSecret becomes a Secret (server-side apply, owner reference with
  // blockOwnerDeletion), Ready, with an Event, and restarts the listed Deployment.
  const deploymentPath = `/apis/apps/v1/namespaces/${namespace}/deployments/web`;
  await apply({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'web', image: 'example.invalid/web:1', envFrom: [{ secretRef: { name: 'app' } }] }] },
      },
    },
  });
  const restart = {
    restartWorkloads: [
      { kind: 'Deployment' as const, name: 'web' },
      { kind: 'StatefulSet' as const, name: 'absent' },
    ],
  };
  await apply(await sealForAge(recipient, namespace, 'app', { TOKEN: FIRST }, restart));
  await waitReady(namespace, 'app');
  const secret = (await getSecret(namespace, 'app'))!;
  expect(decode(secret.data)).toEqual({ TOKEN: FIRST });
  expect(secret.metadata.ownerReferences).toEqual([
    expect.objectContaining({ kind: 'EnvelopeSecret', name: 'app', controller: true, blockOwnerDeletion: true }),
  ]);
  const first = (await getOrUndefined<Deployment>(client, deploymentPath))!;
  expect(first.spec.template.metadata?.annotations?.[ANNOTATION_DATA_HASH]).toMatch(/^sha256:/);
  await waitFor('events Synced, RolloutRestarted and WorkloadNotFound', async () => {
    const reasons = await eventReasons(namespace, 'app');
    return ['Synced', 'RolloutRestarted', 'WorkloadNotFound'].every((r) => reasons.includes(r));
  });

  // New data: the Secret follows and the Deployment is restarted again.
  await apply(await sealForAge(recipient, namespace, 'app', { TOKEN: SECOND }, restart));
  await waitFor('the new value', async () => decode((await getSecret(namespace, 'app'))?.data).TOKEN === SECOND);
  await waitFor('a second restart', async () => {
    const d = await getOrUndefined<Deployment>(client, deploymentPath);
    return d && d.metadata.generation > first.metadata.generation;
  });

  // Drift: an edited value is restored and a key added by someone else removed (JSON
  // patch); a deleted Secret is recreated.
  await kubectl([
    'patch',
    'secret',
    '-n',
    namespace,
    'app',
    '--type=merge',
    '-p',
    JSON.stringify({ data: { TOKEN: Buffer.from('tampered').toString('base64'), EXTRA: 'eA==' } }),
  ]);
  await waitFor('the drift repaired', async () => {
    const data = decode((await getSecret(namespace, 'app'))?.data);
    return data.TOKEN === SECOND && !('EXTRA' in data);
  });
  const before = (await getSecret(namespace, 'app'))!;
  await kubectl(['delete', 'secret', '-n', namespace, 'app']);
  await waitFor('the deleted Secret recreated', async () => {
    const s = await getSecret(namespace, 'app');
    return s && s.metadata.uid !== before.metadata.uid && decode(s.data).TOKEN === SECOND;
  });

  // A type change cannot be applied in place: the Secret is deleted and created again. The
  // custom type is allowed in this namespace (TYPED_POLICY; the chart was installed with it).
  await apply(await sealForAge(recipient, namespace, 'typed', { K: `${CANARY}-k` }));
  await waitReady(namespace, 'typed');
  const opaque = (await getSecret(namespace, 'typed'))!;
  await apply(await sealForAge(recipient, namespace, 'typed', { K: `${CANARY}-k` }, {}, TYPED));
  await waitFor('the Secret replaced with the new type', async () => {
    const s = await getSecret(namespace, 'typed');
    return s && s.type === TYPED && s.metadata.uid !== opaque.metadata.uid;
  });
  await waitReady(namespace, 'typed');

  // Failures are reported in the status and as Warning events.
  const moved = await sealForAge(recipient, 'elsewhere', 'moved', { K: `${CANARY}-k` });
  await apply({ ...moved, metadata: { name: 'moved', namespace } });
  await waitReady(namespace, 'moved', 'ContextMismatch');
  await waitFor('a ContextMismatch event', async () => (await eventReasons(namespace, 'moved')).includes('ContextMismatch'));

  // RBAC refused nothing the controller tried (event and lease errors are only logged).
  expect(controller.logs.filter((l) => RBAC_DENIED.test(l))).toEqual([]);

  // Graceful stop releases the lease (an update).
  await controller.stop();
  const released = await getOrUndefined<{ spec: { holderIdentity?: string } }>(client, paths.lease(releaseNamespace, 'envseal-controller'));
  expect(released?.spec.holderIdentity ?? '').toBe('');
  return recipient;
}

/** exerciseController changes a Secret's type to this one, allowed in its namespace only. */
const TYPED = 'example.com/typed';
const typedValue = (namespace: string) => `tenancy.secretTypes.allowed.${namespace}={${TYPED}}`;
const typedPolicy = (namespace: string) => parseTenantPolicy([`${namespace}=${TYPED}`]);

/** An EnvelopeSecret of `type` applied as the cluster admin: the admission policy binds everyone. */
async function applyTyped(recipient: string, namespace: string, name: string, type: string): Promise<KubectlResult> {
  return kubectlApply(await sealForAge(recipient, namespace, name, { K: `${CANARY}-${name}` }, {}, type));
}

async function cleanup(release: string, namespaces: string[]): Promise<void> {
  await helm(['uninstall', release, '--namespace', namespaces[0]!]);
  await kubectl(['delete', 'namespace', '--wait=false', ...namespaces]);
}

describe('installed with helm, cluster-wide mode', () => {
  const release = uniqueName('envseal');
  const releaseNamespace = uniqueName('envseal-cw');
  const team = uniqueName('team');
  const serviceAccount = release; // the release name contains the chart name
  const sa = ['--as', `system:serviceaccount:${releaseNamespace}:${serviceAccount}`];
  let controller: TestController | undefined;
  let installOutput: CommandResult;
  let recipient: string;

  beforeAll(async () => {
    await createNamespace(client, team);
    // The release namespace enforces the restricted Pod Security Standard.
    await client.request({
      method: 'POST',
      path: '/api/v1/namespaces',
      body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: releaseNamespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted' } } },
    });
    installOutput = await helmInstall(release, releaseNamespace, [typedValue(team)]);
  });

  afterAll(async () => {
    await controller?.stop();
    await cleanup(release, [releaseNamespace, team]);
  });

  it('installs: the API server accepts every object, and NOTES say what to do next', async () => {
    const stored = await client.request<{ spec: { replicas: number; template: { spec: PodSpec } } }>({
      method: 'GET',
      path: `/apis/apps/v1/namespaces/${releaseNamespace}/deployments/${release}`,
    });
    expect(stored.spec.replicas).toBe(2);
    expect(stored.spec.template.spec.containers[0]!.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    for (const object of [`clusterrole/${release}`, `clusterrolebinding/${release}`]) expect((await kubectl(['get', object])).code, object).toBe(0);
    for (const object of [
      `serviceaccount/${serviceAccount}`,
      `role/${release}-self`,
      `rolebinding/${release}-recipient-reader`,
      `service/${release}-metrics`,
      `poddisruptionbudget/${release}`,
    ]) {
      expect((await kubectl(['get', '-n', releaseNamespace, object])).code, object).toBe(0);
    }
    expect(installOutput.stdout).toContain('NOTES:');
    expect(installOutput.stdout).toContain(`envseal seal --controller-namespace ${releaseNamespace}`);
    expect(installOutput.stdout).toContain('BACK UP the age identity');
  });

  it('refuses at apply time a Secret type the namespace may not have (its ValidatingAdmissionPolicy, from the values)', async () => {
    const { recipient: published } = await generateAgeIdentity();
    // A new policy is in force once the API server has loaded it (about a second after
    // helm install): wait for it with server-side dry runs, which store nothing.
    const probe = await sealForAge(published, team, 'vap-probe', { K: `${CANARY}-probe` }, {}, 'example.com/other');
    await waitFor('the admission policy in force', async () => (await kubectl(['apply', '--dry-run=server', '-f', '-'], stringify(probe))).code !== 0, {
      timeoutMs: 30_000,
    });
    const other = await applyTyped(published, team, 'vap-other', 'example.com/other');
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain(
      `Secret type example.com/other is not allowed in namespace ${team} (allowed: ${[...DEFAULT_SECRET_TYPES, TYPED].join(', ')}; the chart value tenancy.secretTypes.allowed adds types)`,
    );
    const elsewhere = await applyTyped(published, releaseNamespace, 'vap-elsewhere', TYPED);
    expect(elsewhere.code).not.toBe(0);
    expect(elsewhere.stderr).toContain(`Secret type ${TYPED} is not allowed in namespace ${releaseNamespace}`);
    for (const [namespace, name] of [
      [team, 'vap-other'],
      [releaseNamespace, 'vap-elsewhere'],
    ] as const)
      expect(await getOrUndefined(client, paths.envelopeSecret(namespace, name))).toBeUndefined();
    const allowed = await applyTyped(published, team, 'vap-allowed', TYPED);
    expect(allowed.code, allowed.stderr).toBe(0);
    const basicAuth = await applyTyped(published, team, 'vap-default', 'kubernetes.io/basic-auth');
    expect(basicAuth.code, basicAuth.stderr).toBe(0);
    for (const name of ['vap-allowed', 'vap-default']) await kubectl(['delete', 'esec', '-n', team, name]);
  });

  it('creates pods that the restricted Pod Security Standard admits (they stay Pending: no kubelet)', async () => {
    const pods = await waitFor('two controller pods', async () => {
      const list = await client.request<{ items: { metadata: { name: string }; spec: PodSpec }[] }>({
        method: 'GET',
        path: `/api/v1/namespaces/${releaseNamespace}/pods`,
        query: { labelSelector: `app.kubernetes.io/instance=${release}` },
      });
      return list.items.length === 2 ? list.items : undefined;
    });
    for (const pod of pods) expect(pod.spec.containers[0]!.securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true });
  });

  it('grants the ServiceAccount what the controller needs', async () => {
    const yes = [
      ['list', 'envelopesecrets', '--all-namespaces'],
      ['watch', 'envelopesecrets', '--all-namespaces'],
      ['patch', 'envelopesecrets', '--subresource=status', '-n', team],
      ['update', 'envelopesecrets', '--subresource=finalizers', '-n', team],
      ['watch', 'secrets', '--all-namespaces'],
      ['create', 'secrets', '-n', team],
      ['patch', 'secrets', '-n', team],
      ['delete', 'secrets', '-n', team],
      ['create', 'events', '-n', team],
      ['patch', 'deployments.apps', '-n', team],
      ['patch', 'daemonsets.apps', '-n', team],
      ['get', 'secrets/envseal-age-identity', '-n', releaseNamespace],
      ['patch', 'configmaps/envseal-age-recipient', '-n', releaseNamespace],
      ['update', 'leases.coordination.k8s.io/envseal-controller', '-n', releaseNamespace],
      ['create', 'leases.coordination.k8s.io', '-n', releaseNamespace],
    ];
    for (const args of yes) expect(await canI(sa, args), args.join(' ')).toBe(true);
  });

  it('and no more: no namespaces, no spec writes, no other ConfigMaps or Leases, no workload creation, no RBAC', async () => {
    const no = [
      ['delete', 'namespaces'],
      ['create', 'namespaces'],
      ['list', 'nodes'],
      ['create', 'pods', '-n', team],
      ['create', 'pods', '--subresource=exec', '-n', team],
      ['create', 'deployments.apps', '-n', team],
      ['delete', 'deployments.apps', '-n', team],
      ['update', 'envelopesecrets', '-n', team],
      ['patch', 'envelopesecrets', '-n', team],
      ['delete', 'envelopesecrets', '-n', team],
      ['create', 'envelopesecrets', '-n', team],
      ['update', 'secrets', '-n', team],
      ['deletecollection', 'secrets', '-n', team],
      ['get', 'configmaps', '-n', team],
      ['get', 'configmaps/kube-root-ca.crt', '-n', releaseNamespace],
      ['patch', 'configmaps/other', '-n', releaseNamespace],
      ['update', 'leases.coordination.k8s.io/kube-controller-manager', '-n', 'kube-system'],
      ['update', 'leases.coordination.k8s.io/other', '-n', releaseNamespace],
      ['delete', 'leases.coordination.k8s.io/envseal-controller', '-n', releaseNamespace],
      ['create', 'rolebindings.rbac.authorization.k8s.io', '-n', team],
      ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
      ['escalate', 'clusterroles.rbac.authorization.k8s.io'],
      ['impersonate', 'serviceaccounts'],
      ['create', 'serviceaccounts/token', '-n', releaseNamespace],
      ['update', 'customresourcedefinitions.apiextensions.k8s.io'],
      ['delete', 'events', '-n', team],
    ];
    for (const args of no) expect(await canI(sa, args), args.join(' ')).toBe(false);
    // Cluster-wide mode reads Secrets everywhere, kube-system included: RBAC cannot limit
    // a list/watch to the label the controller selects. Namespaced mode (below) is the
    // answer where that is too much.
    expect(await canI(sa, ['get', 'secrets', '-n', 'kube-system'])).toBe(true);
  });

  it('lets any authenticated user read the recipient ConfigMap, and nothing else in the release namespace', async () => {
    const user = ['--as', 'alice@example.com', '--as-group', 'system:authenticated'];
    expect(await canI(user, ['get', 'configmaps/envseal-age-recipient', '-n', releaseNamespace])).toBe(true);
    expect(await canI(user, ['get', 'secrets/envseal-age-identity', '-n', releaseNamespace])).toBe(false);
    expect(await canI(user, ['list', 'configmaps', '-n', releaseNamespace])).toBe(false);
    expect(await canI(user, ['get', 'configmaps/kube-root-ca.crt', '-n', releaseNamespace])).toBe(false);
    expect(await canI(user, ['update', 'configmaps/envseal-age-recipient', '-n', releaseNamespace])).toBe(false);
  });

  it('lets namespace editors apply EnvelopeSecrets and viewers read them, through the built-in roles', async () => {
    for (const [role, user] of [
      ['edit', 'dev@example.com'],
      ['view', 'auditor@example.com'],
    ]) {
      const result = await kubectl(['create', 'rolebinding', `${role}-${release}`, `--clusterrole=${role}`, `--user=${user}`, '-n', team]);
      expect(result.code, result.stderr).toBe(0);
    }
    const dev = ['--as', 'dev@example.com'];
    const auditor = ['--as', 'auditor@example.com'];
    // The aggregation controller (kube-controller-manager) folds the chart's rules into edit and view.
    await waitFor('aggregated into edit', () => canI(dev, ['create', 'envelopesecrets', '-n', team]));
    await waitFor('aggregated into view', () => canI(auditor, ['list', 'envelopesecrets', '-n', team]));
    expect(await canI(dev, ['delete', 'envelopesecrets', '-n', team])).toBe(true);
    expect(await canI(dev, ['patch', 'envelopesecrets', '--subresource=status', '-n', team])).toBe(false);
    expect(await canI(dev, ['create', 'envelopesecrets', '-n', releaseNamespace])).toBe(false);
    expect(await canI(auditor, ['create', 'envelopesecrets', '-n', team])).toBe(false);
    expect(await canI(auditor, ['get', 'secrets', '-n', team])).toBe(false);
  });

  it('runs the controller with a token of the chart ServiceAccount: every behaviour works', async () => {
    const token = await serviceAccountToken(releaseNamespace, serviceAccount);
    const identity = uniqueName('chart-cw');
    controller = await startTestController({
      kubeConfig: tokenKubeConfig(token, releaseNamespace),
      config: { namespace: releaseNamespace, identity, tenantPolicy: typedPolicy(team) },
    });
    recipient = await exerciseController({ controller, releaseNamespace, namespace: team, identity });

    // What `envseal seal --controller-namespace` does, as an ordinary ServiceAccount of
    // another namespace (a real token, group system:authenticated).
    await client.request({
      method: 'POST',
      path: `/api/v1/namespaces/${team}/serviceaccounts`,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'developer' } },
    });
    const developer = new KubeClient(tokenKubeConfig(await serviceAccountToken(team, 'developer'), team));
    const published = await developer.request<{ data: { recipient: string } }>({
      method: 'GET',
      path: paths.configMap(releaseNamespace, 'envseal-age-recipient'),
    });
    expect(published.data.recipient).toMatch(/^age1/);
    expect(await getStatus(developer, paths.secret(releaseNamespace, 'envseal-age-identity'))).toBe(403);
  });

  it('restores a backed-up age identity as docs/helm.md says: the controller opens what was sealed before', async () => {
    // Backup (docs/helm.md, "Back up the identity").
    const backup = await kubectl(['-n', releaseNamespace, 'get', 'secret', 'envseal-age-identity', '-o', 'jsonpath={.data.identity\\.agekey}']);
    expect(backup.code, backup.stderr).toBe(0);
    const keyFile = path.join(sharedCluster().dir, `${release}.agekey`);
    await writeFile(keyFile, Buffer.from(backup.stdout, 'base64'), { mode: 0o600 });
    // Disaster: the identity and the published recipient are gone, and so is a Secret.
    for (const object of ['secret/envseal-age-identity', 'configmap/envseal-age-recipient'])
      expect((await kubectl(['-n', releaseNamespace, 'delete', object])).code).toBe(0);
    expect((await kubectl(['-n', team, 'delete', 'secret', 'app'])).code).toBe(0);
    // Restore (docs/helm.md, "Recover"), before the controller starts again.
    expect(
      (await kubectl(['-n', releaseNamespace, 'create', 'secret', 'generic', 'envseal-age-identity', `--from-file=identity.agekey=${keyFile}`])).code,
    ).toBe(0);
    expect(
      (
        await kubectl([
          '-n',
          releaseNamespace,
          'label',
          'secret',
          'envseal-age-identity',
          'app.kubernetes.io/managed-by=envseal',
          'envseal.dev/role=age-identity',
        ])
      ).code,
    ).toBe(0);

    const token = await serviceAccountToken(releaseNamespace, serviceAccount);
    controller = await startTestController({
      kubeConfig: tokenKubeConfig(token, releaseNamespace),
      config: { namespace: releaseNamespace, identity: uniqueName('chart-restored'), tenantPolicy: typedPolicy(team) },
    });
    const republished = await waitFor('the recipient published again', () =>
      getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(releaseNamespace, 'envseal-age-recipient')),
    );
    expect(republished.data.recipient).toBe(recipient);
    await waitFor('the Secret recreated with the restored identity', async () => decode((await getSecret(team, 'app'))?.data).TOKEN === SECOND);
    expect(controller.logs.some((l) => l.includes('created the cluster age identity'))).toBe(false);
    await controller.stop();
  });

  it("runs `envseal controller` with exactly the installed Deployment's args and env, as its ServiceAccount", async () => {
    const deployment = await client.request<{ spec: { template: { spec: PodSpec } } }>({
      method: 'GET',
      path: `/apis/apps/v1/namespaces/${releaseNamespace}/deployments/${release}`,
    });
    const container = deployment.spec.template.spec.containers[0]!;
    // The pod's in-cluster config becomes a kubeconfig with the same kind of token; the
    // metrics port moves to a free loopback port; everything else is as rendered.
    const kubeconfigFile = path.join(sharedCluster().dir, `${release}.kubeconfig`);
    await writeFile(kubeconfigFile, tokenKubeConfig(await serviceAccountToken(releaseNamespace, serviceAccount), releaseNamespace).exportConfig(), {
      mode: 0o600,
    });
    const port = await freePort();
    const args = container.args.map((a) => (a.startsWith('--metrics-address=') ? `--metrics-address=127.0.0.1:${port}` : a));
    expect(args.filter((a, i) => a !== container.args[i])).toHaveLength(1);
    const podName = `${release}-7d9f8c6b5-abcde`;
    const env: Record<string, string> = { ...(process.env as Record<string, string>), POD_NAMESPACE: releaseNamespace, POD_NAME: podName };
    // Downward-API variables are set above; plain ones (NODE_OPTIONS: the V8 heap limits)
    // are passed as they are, so Node itself proves it accepts them.
    for (const variable of container.env) {
      if (variable.value !== undefined) env[variable.name] = variable.value;
      else expect(variable.valueFrom?.fieldRef?.fieldPath, variable.name).toMatch(/^metadata\.(namespace|name)$/);
    }
    expect(env.NODE_OPTIONS).toMatch(/--max-old-space-size=\d+/);
    // The CLI entry (what bin/envseal.js runs) from the sources, on this Node 24.
    const command = {
      args: [
        '--input-type=module',
        '-e',
        "import { main } from './src/cli/main.ts'; await main();",
        '--',
        'envseal',
        ...args,
        `--kubeconfig=${kubeconfigFile}`,
      ],
      cwd: repoRoot,
      env,
    };
    const { code, log } = await withControllerProcess(command, async (log) => {
      await waitFor('caches synced', () => log().includes('caches synced'), { timeoutMs: 60_000 });
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const lease = await getOrUndefined<{ spec: { holderIdentity: string } }>(client, paths.lease(releaseNamespace, 'envseal-controller'));
      expect(lease?.spec.holderIdentity).toBe(podName);
      await waitFor('the Secret kept in sync', async () => decode((await getSecret(team, 'app'))?.data).TOKEN === SECOND);
    });
    expect(code, log.slice(-2000)).toBe(0);
    expect(log).toContain('released the lease');
    expect(log).not.toMatch(RBAC_DENIED);
  });
});

describe('installed with helm, namespaced mode', () => {
  const release = uniqueName('envseal');
  const releaseNamespace = uniqueName('envseal-ns');
  const watched = [uniqueName('watched-a'), uniqueName('watched-b')];
  const unlisted = uniqueName('unlisted');
  const serviceAccount = release;
  const sa = ['--as', `system:serviceaccount:${releaseNamespace}:${serviceAccount}`];
  let controller: TestController | undefined;

  beforeAll(async () => {
    for (const namespace of [...watched, unlisted]) await createNamespace(client, namespace);
    await helmInstall(release, releaseNamespace, [`watchNamespaces={${watched.join(',')}}`, typedValue(watched[1]!)]);
  });

  afterAll(async () => {
    await controller?.stop();
    await cleanup(release, [releaseNamespace, ...watched, unlisted]);
  });

  it('creates no cluster-wide grant', async () => {
    expect((await kubectl(['get', `clusterrole/${release}`])).code).not.toBe(0);
    expect((await kubectl(['get', `clusterrolebinding/${release}`])).code).not.toBe(0);
    const bindings = await client.request<{ items: { metadata: { name: string }; subjects?: { kind: string; name: string; namespace?: string }[] }[] }>({
      method: 'GET',
      path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
    });
    expect(
      bindings.items.filter((b) => b.subjects?.some((s) => s.kind === 'ServiceAccount' && s.namespace === releaseNamespace)).map((b) => b.metadata.name),
    ).toEqual([]);
    for (const namespace of watched) expect((await kubectl(['get', '-n', namespace, `role/${release}`, `rolebinding/${release}`])).code).toBe(0);
  });

  it('grants the watched namespaces and its own objects, nothing elsewhere', async () => {
    for (const namespace of watched) {
      for (const args of [
        ['list', 'secrets'],
        ['watch', 'envelopesecrets'],
        ['patch', 'envelopesecrets', '--subresource=status'],
        ['create', 'events'],
        ['patch', 'deployments.apps'],
      ]) {
        expect(await canI(sa, [...args, '-n', namespace]), `${args.join(' ')} -n ${namespace}`).toBe(true);
      }
    }
    const no = [
      ['list', 'secrets', '--all-namespaces'],
      ['watch', 'secrets', '--all-namespaces'],
      ['list', 'envelopesecrets', '--all-namespaces'],
      ['list', 'secrets', '-n', unlisted],
      ['get', 'secrets', '-n', unlisted],
      ['get', 'secrets', '-n', 'kube-system'],
      ['get', 'secrets', '-n', 'default'],
      ['list', 'envelopesecrets', '-n', unlisted],
      ['create', 'events', '-n', unlisted],
      ['patch', 'deployments.apps', '-n', unlisted],
      // In its own namespace: only its identity Secret, not the others (e.g. Helm's release Secrets).
      ['list', 'secrets', '-n', releaseNamespace],
      ['get', `secrets/sh.helm.release.v1.${release}.v1`, '-n', releaseNamespace],
      ['delete', 'namespaces'],
    ];
    for (const args of no) expect(await canI(sa, args), args.join(' ')).toBe(false);
    expect(await canI(sa, ['get', 'secrets/envseal-age-identity', '-n', releaseNamespace])).toBe(true);
  });

  it('runs the controller with a token of the chart ServiceAccount: every behaviour works in the watched namespaces', async () => {
    const token = await serviceAccountToken(releaseNamespace, serviceAccount);
    const identity = uniqueName('chart-ns');
    controller = await startTestController({
      kubeConfig: tokenKubeConfig(token, releaseNamespace),
      config: { namespace: releaseNamespace, namespaces: watched, identity, tenantPolicy: typedPolicy(watched[1]!) },
    });
    await exerciseController({ controller, releaseNamespace, namespace: watched[1]!, identity });
  });

  it('runs two replicas as the chart does: the standby waits (ready, not leading) and stops cleanly', async () => {
    const token = await serviceAccountToken(releaseNamespace, serviceAccount);
    const kubeConfig = tokenKubeConfig(token, releaseNamespace);
    const leader = await startTestController({ kubeConfig, config: { namespace: releaseNamespace, namespaces: watched, identity: uniqueName('replica-a') } });
    await waitFor('replica a leading', async () => (await leader.metric('envseal_leader')) === 1);
    const standby = await startTestController({ kubeConfig, config: { namespace: releaseNamespace, namespaces: watched, identity: uniqueName('replica-b') } });
    try {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      expect(await standby.metric('envseal_leader')).toBe(0);
      expect((await fetch(standby.metricsUrl.replace(/\/metrics$/, '/readyz'))).status).toBe(200);
      // SIGTERM to the standby (a rolling update, a drain) is a graceful stop, not an error.
      await standby.stop();
      await expect(standby.done).resolves.toBeUndefined();
      expect(await leader.metric('envseal_leader')).toBe(1);
      expect(standby.logs.filter((l) => RBAC_DENIED.test(l))).toEqual([]);
    } finally {
      await standby.stop();
      await leader.stop();
    }
    await expect(leader.done).resolves.toBeUndefined();
  });

  it('binds its admission policy to the watched namespaces only', async () => {
    const { recipient } = await generateAgeIdentity();
    const refused = await applyTyped(recipient, watched[0]!, 'vap-watched', TYPED);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(`Secret type ${TYPED} is not allowed in namespace ${watched[0]}`);
    // Another release (or none) serves the unlisted namespace: this one's policy does not apply there.
    const unlistedResult = await applyTyped(recipient, unlisted, 'vap-unlisted', 'example.com/anything');
    expect(unlistedResult.code, unlistedResult.stderr).toBe(0);
    await kubectl(['delete', 'esec', '-n', unlisted, 'vap-unlisted']);
  });

  it('cannot read Secrets elsewhere with that token', async () => {
    const asController = new KubeClient(tokenKubeConfig(await serviceAccountToken(releaseNamespace, serviceAccount), releaseNamespace));
    const status = (p: string) => getStatus(asController, p);
    expect(await status(paths.secrets(unlisted))).toBe(403);
    expect(await status(paths.secrets())).toBe(403);
    expect(await status(paths.secrets('kube-system'))).toBe(403);
    expect(await status(paths.envelopeSecrets())).toBe(403);
    expect(await status(paths.secrets(watched[0]))).toBe(200);
  });
});
