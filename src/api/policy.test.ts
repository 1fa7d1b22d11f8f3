import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allowedSecretTypes,
  CREDENTIAL_MINTING_SECRET_TYPES,
  DEFAULT_SECRET_TYPES,
  DEFAULT_TENANT_POLICY,
  formatTenantPolicy,
  isReservedKey,
  parseTenantPolicy,
  TenantPolicyError,
  tenantPolicyIssues,
} from './policy.ts';
import { API_VERSION, type EnvelopeSecret, KIND } from './types.ts';

function source(namespace: string, template: EnvelopeSecret['spec']['template']): EnvelopeSecret {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { name: 'app', namespace }, spec: { envelopes: [], ...(template ? { template } : {}) } };
}

describe('the Secret type allow-list', () => {
  it.each(DEFAULT_SECRET_TYPES)('allows %s in every namespace by default', (type) => {
    expect(tenantPolicyIssues(source('team-a', { type }), DEFAULT_TENANT_POLICY)).toEqual([]);
  });

  it('treats a template without a type as Opaque', () => {
    expect(tenantPolicyIssues(source('team-a', undefined), DEFAULT_TENANT_POLICY)).toEqual([]);
  });

  it('refuses another type, naming it, the namespace and what is allowed', () => {
    const issues = tenantPolicyIssues(source('team-a', { type: 'example.com/config' }), DEFAULT_TENANT_POLICY);
    expect(issues).toEqual([
      {
        check: 'structure',
        path: 'spec.template.type',
        message:
          'Secret type "example.com/config" is not allowed in namespace team-a (allowed: Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg, kubernetes.io/basic-auth, kubernetes.io/ssh-auth; the chart value tenancy.secretTypes.allowed adds types)',
      },
    ]);
  });

  it('allows extra types per namespace, and for every namespace with *', () => {
    const policy = parseTenantPolicy(['team-a=example.com/config,helm.sh/release.v1', '*=example.com/shared']);
    const check = (namespace: string, type: string) => tenantPolicyIssues(source(namespace, { type }), policy).length === 0;
    expect(check('team-a', 'example.com/config')).toBe(true);
    expect(check('team-a', 'helm.sh/release.v1')).toBe(true);
    expect(check('team-b', 'example.com/config')).toBe(false);
    expect(check('team-b', 'example.com/shared')).toBe(true);
    expect(check('team-a', 'example.com/shared')).toBe(true);
    expect(allowedSecretTypes(policy, 'team-a')).toEqual([...DEFAULT_SECRET_TYPES, 'example.com/shared', 'example.com/config', 'helm.sh/release.v1']);
  });

  it.each(CREDENTIAL_MINTING_SECRET_TYPES)('never allows %s, not even through a hand-built policy', (type) => {
    const policy = { extraSecretTypes: { '*': [type], 'kube-system': [type] } };
    const issues = tenantPolicyIssues(source('kube-system', { type }), policy);
    expect(issues).toEqual([
      { check: 'structure', path: 'spec.template.type', message: `Secret type "${type}" asks the cluster to mint credentials; envseal never creates it` },
    ]);
    expect(() => parseTenantPolicy([`kube-system=${type}`])).toThrow(
      new TenantPolicyError(`"kube-system=${type}": ${type} asks the cluster to mint credentials; no policy can allow it`),
    );
  });

  it('looks up namespaces as own keys only', () => {
    expect(allowedSecretTypes(DEFAULT_TENANT_POLICY, 'constructor')).toEqual(DEFAULT_SECRET_TYPES);
    expect(allowedSecretTypes(parseTenantPolicy(['constructor=a.b/c']), 'constructor')).toContain('a.b/c');
  });
});

describe('reserved label and annotation keys', () => {
  it.each([
    ['kubernetes.io/service-account.name', true],
    ['kubernetes.io/anything', true],
    ['k8s.io/x', true],
    ['kubectl.kubernetes.io/last-applied-configuration', true],
    ['rbac.authorization.k8s.io/aggregate-to-admin', true],
    ['node-role.kubernetes.io/control-plane', true],
    ['envseal.dev/spec-hash', true],
    ['envseal.dev/adopt', true],
    ['sub.envseal.dev/x', true],
    ['app.kubernetes.io/managed-by', true],
    ['app.kubernetes.io/name', false],
    ['app.kubernetes.io/instance', false],
    ['app.kubernetes.io/part-of', false],
    ['app', false],
    ['kubernetes.io', false],
    ['example.com/kubernetes.io', false],
    ['notkubernetes.io/x', false],
    ['envseal.dev.example.com/x', false],
    ['team.example.com/owner', false],
  ])('%s reserved: %s', (key, reserved) => {
    expect(isReservedKey(key)).toBe(reserved);
  });

  it('refuses reserved keys in labels and annotations, naming each key and never a value', () => {
    const issues = tenantPolicyIssues(
      source('team-a', {
        metadata: {
          labels: { 'app.kubernetes.io/name': 'web', 'app.kubernetes.io/managed-by': 'CANARY-label-value' },
          annotations: { 'kubernetes.io/service-account.name': 'CANARY-annotation-value', note: 'ok' },
        },
      }),
      DEFAULT_TENANT_POLICY,
    );
    expect(issues.map((i) => i.path)).toEqual([
      'spec.template.metadata.labels["app.kubernetes.io/managed-by"]',
      'spec.template.metadata.annotations["kubernetes.io/service-account.name"]',
    ]);
    expect(issues[0]!.message).toMatch(/^label "app.kubernetes.io\/managed-by" is reserved: prefixes kubernetes.io\/, k8s.io\/, envseal.dev\//);
    expect(JSON.stringify(issues)).not.toContain('CANARY');
  });
});

describe('parseTenantPolicy', () => {
  it('reads NS=TYPE,TYPE entries, merges repeated namespaces, drops defaults and blanks', () => {
    expect(parseTenantPolicy(['team-a=b.c/d', ' team-a = a.b/c , Opaque ', '', '*=x.y/z'])).toEqual({
      extraSecretTypes: { '*': ['x.y/z'], 'team-a': ['a.b/c', 'b.c/d'] },
    });
    expect(parseTenantPolicy([])).toEqual(DEFAULT_TENANT_POLICY);
  });

  it.each([
    ['team-a', /"team-a" is not NAMESPACE=TYPE\[,TYPE\]/],
    ['Team_A=a.b/c', /namespace "Team_A" must be lowercase/],
    ['team-a=', /names no Secret type/],
    ['team-a=has space', /"has space" is not a Secret type/],
    ['team-a=a/b/c', /"a\/b\/c" is not a Secret type/],
    [`team-a=${'x'.repeat(254)}`, /is not a Secret type/],
  ])('refuses %s with a message naming the entry', (entry, message) => {
    expect(() => parseTenantPolicy([entry])).toThrow(TenantPolicyError);
    expect(() => parseTenantPolicy([entry])).toThrow(message);
  });

  it('round-trips through formatTenantPolicy', () => {
    const namespace = fc.oneof(fc.constant('*'), fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/));
    const type = fc.stringMatching(/^[a-z0-9]([-a-z0-9.]{0,8}[a-z0-9])?\/[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?$/);
    fc.assert(
      fc.property(fc.array(fc.tuple(namespace, fc.array(type, { minLength: 1, maxLength: 4 })), { maxLength: 6 }), (entries) => {
        const policy = parseTenantPolicy(entries.map(([ns, types]) => `${ns}=${types.join(',')}`));
        expect(parseTenantPolicy(formatTenantPolicy(policy))).toEqual(policy);
        // An entry for * allows its types anywhere, one for a namespace there.
        for (const [ns, types] of entries) for (const t of types) expect(allowedSecretTypes(policy, ns === '*' ? 'elsewhere' : ns)).toContain(t);
      }),
    );
  });
});
