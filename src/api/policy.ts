// What a tenant may ask for in an EnvelopeSecret: which Secret types, which label and
// annotation keys. Pure functions; the controller calls tenantPolicyIssues before it
// decrypts anything (docs/helm.md, "Tenancy").
import { namespaceProblem, quoteName } from './names.ts';
import type { EnvelopeSecret, ValidationIssue } from './types.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';

/** Secret types every namespace may ask for. */
export const DEFAULT_SECRET_TYPES: readonly string[] = Object.freeze([
  'Opaque',
  'kubernetes.io/tls',
  'kubernetes.io/dockerconfigjson',
  'kubernetes.io/dockercfg',
  'kubernetes.io/basic-auth',
  'kubernetes.io/ssh-auth',
]);

/**
 * Types whose content the cluster mints (kube-controller-manager fills a service-account
 * token; bootstrap tokens authenticate nodes): not sealed data, so never allowed, by the
 * CRD, the offline validation, the chart and any policy.
 */
export const CREDENTIAL_MINTING_SECRET_TYPES: readonly string[] = Object.freeze(['kubernetes.io/service-account-token', 'bootstrap.kubernetes.io/token']);

/** The namespace key of a policy entry that applies to every namespace. */
export const ALL_NAMESPACES = '*';

/** A Secret type a policy may name: a qualified name, as Kubernetes' own types are. */
const SECRET_TYPE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?(\/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const MAX_SECRET_TYPE_LENGTH = 253;

export interface TenantPolicy {
  /**
   * Secret types allowed beyond DEFAULT_SECRET_TYPES, by namespace; the key `*` applies
   * to every namespace.
   */
  readonly extraSecretTypes: Readonly<Record<string, readonly string[]>>;
}

export const DEFAULT_TENANT_POLICY: TenantPolicy = Object.freeze({ extraSecretTypes: Object.freeze({}) });

/** Why `type` cannot be named in a policy, or undefined. */
export function policySecretTypeProblem(type: string): string | undefined {
  if (CREDENTIAL_MINTING_SECRET_TYPES.includes(type)) return `${type} asks the cluster to mint credentials; no policy can allow it`;
  if (type.length === 0 || type.length > MAX_SECRET_TYPE_LENGTH || !SECRET_TYPE.test(type)) {
    return `${quoteName(type)} is not a Secret type (a name such as example.com/config, at most ${MAX_SECRET_TYPE_LENGTH} characters)`;
  }
  return undefined;
}

/** The Secret types `namespace` may ask for under `policy`: defaults first, then extras, each once. */
export function allowedSecretTypes(policy: TenantPolicy, namespace: string): string[] {
  const extras = [
    ...(Object.hasOwn(policy.extraSecretTypes, ALL_NAMESPACES) ? policy.extraSecretTypes[ALL_NAMESPACES]! : []),
    ...(Object.hasOwn(policy.extraSecretTypes, namespace) ? policy.extraSecretTypes[namespace]! : []),
  ];
  // A hand-built policy cannot smuggle a credential-minting type past the parser.
  return [...new Set([...DEFAULT_SECRET_TYPES, ...extras.filter((t) => !CREDENTIAL_MINTING_SECRET_TYPES.includes(t))])];
}

// kubernetes.io/ and k8s.io/ (and their subdomains) are reserved for Kubernetes'
// components, envseal.dev/ (and subdomains) for envseal's own; app.kubernetes.io/ holds
// the recommended labels meant for users, all but managed-by (the controller's selector).
const RESERVED_KEY = /^([^/]*\.)?(kubernetes\.io|k8s\.io|envseal\.dev)\//;
const USER_PREFIX = 'app.kubernetes.io/';
const MANAGED_BY = 'app.kubernetes.io/managed-by';

/** Whether a template label or annotation key is reserved for Kubernetes or envseal. */
export function isReservedKey(key: string): boolean {
  return RESERVED_KEY.test(key) && !(key.startsWith(USER_PREFIX) && key !== MANAGED_BY);
}

export const RESERVED_KEY_RULE =
  'prefixes kubernetes.io/, k8s.io/, envseal.dev/ and their subdomains are reserved (app.kubernetes.io/ is allowed, except app.kubernetes.io/managed-by)';

/** The reserved keys of a template's labels and annotations, as issues. */
export function reservedKeyIssues(metadata: { labels?: unknown; annotations?: unknown } | undefined): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  for (const field of ['labels', 'annotations'] as const) {
    const map = metadata?.[field];
    if (typeof map !== 'object' || map === null) continue;
    for (const key of Object.keys(map)) {
      if (isReservedKey(key))
        issues.push({
          check: 'structure',
          path: `spec.template.metadata.${field}[${quoteName(key)}]`,
          message: `${field === 'labels' ? 'label' : 'annotation'} ${quoteName(key)} is reserved: ${RESERVED_KEY_RULE}`,
        });
    }
  }
  return issues;
}

/**
 * What `source` asks for that its namespace may not have: a Secret type outside the
 * allow-list, reserved label or annotation keys. Messages name the type or key, never a
 * value. Empty when the object may be reconciled.
 */
export function tenantPolicyIssues(source: EnvelopeSecret, policy: TenantPolicy): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const namespace = source.metadata.namespace ?? '';
  const type = source.spec.template?.type ?? 'Opaque';
  const allowed = allowedSecretTypes(policy, namespace);
  if (!allowed.includes(type)) {
    const why = CREDENTIAL_MINTING_SECRET_TYPES.includes(type)
      ? `Secret type ${quoteName(type)} asks the cluster to mint credentials; envseal never creates it`
      : `Secret type ${quoteName(type)} is not allowed in namespace ${namespace} (allowed: ${allowed.join(', ')}; the chart value tenancy.secretTypes.allowed adds types)`;
    issues.push({ check: 'structure', path: 'spec.template.type', message: why });
  }
  issues.push(...reservedKeyIssues(source.spec.template?.metadata));
  return issues;
}

/** A malformed --allowed-secret-types entry; the message names the entry. */
export class TenantPolicyError extends EnvsealError {
  readonly code = 'InvalidTenantPolicy';
  constructor(message: string) {
    super(message);
    this.name = 'TenantPolicyError';
  }

  override get exitClass(): ExitClass {
    return 'usage';
  }
}

/**
 * Parses entries of the form `NS=TYPE[,TYPE...]` (NS a namespace or `*` for all) into a
 * policy; entries for the same namespace add up. Throws a TenantPolicyError naming the
 * first bad entry.
 */
export function parseTenantPolicy(entries: readonly string[]): TenantPolicy {
  const extra = new Map<string, Set<string>>();
  for (const raw of entries) {
    const entry = raw.trim();
    if (entry === '') continue;
    const eq = entry.indexOf('=');
    if (eq < 0) throw new TenantPolicyError(`${quoteName(entry)} is not NAMESPACE=TYPE[,TYPE] (use * for every namespace)`);
    const namespace = entry.slice(0, eq).trim();
    if (namespace !== ALL_NAMESPACES) {
      const problem = namespaceProblem(namespace);
      if (problem) throw new TenantPolicyError(`${quoteName(entry)}: namespace ${quoteName(namespace)} ${problem}`);
    }
    const types = entry
      .slice(eq + 1)
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
    if (types.length === 0) throw new TenantPolicyError(`${quoteName(entry)} names no Secret type`);
    for (const type of types) {
      const problem = policySecretTypeProblem(type);
      if (problem) throw new TenantPolicyError(`${quoteName(entry)}: ${problem}`);
    }
    const set = extra.get(namespace) ?? new Set<string>();
    for (const type of types) if (!DEFAULT_SECRET_TYPES.includes(type)) set.add(type);
    extra.set(namespace, set);
  }
  const extraSecretTypes: Record<string, readonly string[]> = {};
  for (const [namespace, types] of [...extra].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    if (types.size > 0) extraSecretTypes[namespace] = [...types].sort();
  return { extraSecretTypes };
}

/** The entries parseTenantPolicy reads back into `policy` (for logs and round trips). */
export function formatTenantPolicy(policy: TenantPolicy): string[] {
  return Object.entries(policy.extraSecretTypes)
    .filter(([, types]) => types.length > 0)
    .map(([namespace, types]) => `${namespace}=${types.join(',')}`);
}
