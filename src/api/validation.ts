import { isStandardBase64 } from '../envelope/base64.ts';
import { type Binding, isScope, type Scope } from '../envelope/context.ts';
import { COMMITMENT_LENGTH as COMMITMENT_BYTES, SUPPORTED_SUITES, VALUE_OVERHEAD_BYTES } from '../envelope/envelope.ts';
import { ENVELOPE_ID_LENGTH as ENVELOPE_ID_BYTES } from '../envelope/kdf.ts';
import { PROVIDERS } from '../providers/registry.ts';
import { checkNamespacesScope, MAX_NAMESPACES_SCOPE_RECIPIENTS, MAX_NAMESPACES_SCOPE_RECIPIENTS_PER_ENVELOPE } from './namespaces-scope.ts';
import { labelValueProblem, namespaceProblem, objectNameProblem, qualifiedNameProblem, quoteName, secretKeyProblem } from './names.ts';
import { CREDENTIAL_MINTING_SECRET_TYPES, reservedKeyIssues } from './policy.ts';
import { checkTemplates } from './template-render.ts';
import { API_VERSION, type EnvelopeSecret, KIND, RESTARTABLE_KINDS, type ValidationCheck, type ValidationIssue } from './types.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';

export type { ValidationCheck, ValidationIssue } from './types.ts';

// Limits. The CRD (crds/envelopesecrets.envseal.dev.yaml) states each one again, so that
// the API server refuses an oversize object at apply time; src/api/limits.test.ts reads
// the CRD and fails when a number there differs from the constant here. They bound what
// one object can cost the controller (memory, CPU per recipient) and follow docs/format.md.

/** A Secret's data may total at most 1 MiB (of plaintext). */
export const MAX_SECRET_DATA_BYTES = 1024 * 1024;
export { VALUE_OVERHEAD_BYTES };
/** The base64 length of `bytes` bytes (padded). */
export const base64Length = (bytes: number): number => 4 * Math.ceil(bytes / 3);
/** One sealed value: at most the whole 1 MiB, sealed. */
export const MAX_SEALED_VALUE_LENGTH = base64Length(MAX_SECRET_DATA_BYTES + VALUE_OVERHEAD_BYTES);
export const MAX_ENVELOPES = 32;
export const MAX_RECIPIENTS_PER_ENVELOPE = 16;
/** Recipients over all envelopes: each one may cost the controller an unwrap attempt. */
export const MAX_RECIPIENTS = 64;
/** Data keys per envelope (several envelopes hold more: test/e2e/adversarial.test.ts materializes 10,000). */
export const MAX_DATA_KEYS_PER_ENVELOPE = 1024;
/** A recipient's keyId (the AWS KMS API's own bound on KeyId; other services' ids are shorter). */
export const MAX_KEY_ID_LENGTH = 2048;
/** A recorded public recipient; the longest age kind (age1tagpq1...) is 2,015 characters. */
export const MAX_RECIPIENT_LENGTH = 2048;
export const MAX_SECRET_TYPE_LENGTH = 253;
export const MAX_TEMPLATE_LABELS = 64;
export const MAX_TEMPLATE_ANNOTATIONS = 64;
/** Template annotations, keys and values, in UTF-8 bytes (Kubernetes itself allows 256 KiB on the Secret). */
export const MAX_TEMPLATE_ANNOTATIONS_BYTES = 64 * 1024;
export const MAX_RESTART_WORKLOADS = 32;
/** Templates in spec.template.data, and the characters of one (rendered output is bounded apart). */
export const MAX_TEMPLATES = 64;
export const MAX_TEMPLATE_LENGTH = 65536;

/** Per provider, the largest encryptedKey in bytes. */
export const MAX_ENCRYPTED_KEY_BYTES: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(PROVIDERS.map((p) => [p.name, p.maxEncryptedKeyBytes])),
);
/** The CRD's bound on any encryptedKey, in base64 characters: the largest provider's. */
export const MAX_ENCRYPTED_KEY_LENGTH = base64Length(Math.max(...Object.values(MAX_ENCRYPTED_KEY_BYTES)));

export class ManifestError extends EnvsealError {
  readonly code = 'InvalidManifest';
  readonly issues: readonly ValidationIssue[];

  constructor(issues: readonly ValidationIssue[], source?: string) {
    const where = source ? `${source}: ` : '';
    const shown = issues.slice(0, 10).map((i) => `  ${i.path}: ${i.message}`);
    if (issues.length > 10) shown.push(`  ... and ${issues.length - 10} more`);
    super(`${where}invalid EnvelopeSecret:\n${shown.join('\n')}`);
    this.name = 'ManifestError';
    this.issues = issues;
  }

  override get exitClass(): ExitClass {
    return 'invalidInput';
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): value is Record<string, string> {
  return isRecord(value) && Object.values(value).every((v) => typeof v === 'string');
}

/**
 * Every problem of an EnvelopeSecret document, offline: structure, base64, sizes, key
 * names unique across envelopes, known suites and providers. Messages quote names, never
 * values.
 */
export function validateEnvelopeSecret(doc: unknown): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const add = (check: ValidationCheck, path: string, message: string) => issues.push({ check, path, message });

  if (!isRecord(doc)) {
    add('structure', '$', 'must be an object (an EnvelopeSecret manifest)');
    return issues;
  }
  if (doc.apiVersion !== API_VERSION) add('structure', 'apiVersion', `must be ${API_VERSION}`);
  if (doc.kind !== KIND) add('structure', 'kind', `must be ${KIND}`);

  const metadata = doc.metadata;
  let scope: Scope = 'strict';
  const spec = doc.spec;
  if (isRecord(spec) && spec.scope !== undefined) {
    if (isScope(spec.scope)) scope = spec.scope;
    else add('structure', 'spec.scope', 'must be one of strict, namespace, cluster, namespaces');
  }
  if (!isRecord(metadata)) {
    add('structure', 'metadata', 'must be an object with a name');
  } else {
    if (typeof metadata.name !== 'string') add('structure', 'metadata.name', 'is required');
    else {
      const problem = objectNameProblem(metadata.name);
      if (problem) add('structure', 'metadata.name', problem);
    }
    if (metadata.namespace === undefined) {
      if (scope !== 'cluster') add('structure', 'metadata.namespace', `is required for scope ${scope}`);
    } else if (typeof metadata.namespace !== 'string') {
      add('structure', 'metadata.namespace', 'must be a string');
    } else {
      const problem = namespaceProblem(metadata.namespace);
      if (problem) add('structure', 'metadata.namespace', problem);
    }
  }

  if (!isRecord(spec)) {
    add('structure', 'spec', 'must be an object');
    return issues;
  }
  const template = spec.template;
  if (template !== undefined) {
    if (!isRecord(template)) add('structure', 'spec.template', 'must be an object');
    else {
      if (template.type !== undefined) {
        if (typeof template.type !== 'string' || template.type === '' || template.type.length > MAX_SECRET_TYPE_LENGTH)
          add('structure', 'spec.template.type', `must be a non-empty string of at most ${MAX_SECRET_TYPE_LENGTH} characters`);
        else if (CREDENTIAL_MINTING_SECRET_TYPES.includes(template.type))
          add('structure', 'spec.template.type', `${template.type} asks the cluster to mint credentials; envseal never creates such a Secret`);
      }
      if (template.immutable !== undefined && typeof template.immutable !== 'boolean') add('structure', 'spec.template.immutable', 'must be true or false');
      if (template.metadata !== undefined) {
        if (!isRecord(template.metadata)) add('structure', 'spec.template.metadata', 'must be an object');
        else checkTemplateMetadata(template.metadata, add);
      }
    }
  }

  const workloads = spec.restartWorkloads;
  if (workloads !== undefined) {
    if (!Array.isArray(workloads)) add('structure', 'spec.restartWorkloads', 'must be a list');
    else if (workloads.length > MAX_RESTART_WORKLOADS)
      add('size', 'spec.restartWorkloads', `lists ${workloads.length} workloads; at most ${MAX_RESTART_WORKLOADS}`);
    else
      workloads.forEach((w: unknown, i) => {
        const at = `spec.restartWorkloads[${i}]`;
        if (!isRecord(w)) {
          add('structure', at, 'must be an object with kind and name');
          return;
        }
        if (typeof w.kind !== 'string' || !(RESTARTABLE_KINDS as readonly string[]).includes(w.kind))
          add('structure', `${at}.kind`, `must be one of ${RESTARTABLE_KINDS.join(', ')}`);
        const problem = typeof w.name === 'string' ? objectNameProblem(w.name) : 'is required';
        if (problem) add('structure', `${at}.name`, problem);
      });
  }

  checkNamespacesScope(spec, scope, add);
  // Scope namespaces: a KMS key wraps once per listed namespace (what one reader may try
  // is bounded in namespaces-scope.ts).
  const maxPerEnvelope = scope === 'namespaces' ? MAX_NAMESPACES_SCOPE_RECIPIENTS_PER_ENVELOPE : MAX_RECIPIENTS_PER_ENVELOPE;
  const maxRecipients = scope === 'namespaces' ? MAX_NAMESPACES_SCOPE_RECIPIENTS : MAX_RECIPIENTS;
  const envelopes = spec.envelopes;
  if (!Array.isArray(envelopes) || envelopes.length === 0) {
    add('structure', 'spec.envelopes', 'must be a non-empty list');
    return issues;
  }
  if (envelopes.length > MAX_ENVELOPES) {
    add('size', 'spec.envelopes', `has ${envelopes.length} envelopes; at most ${MAX_ENVELOPES} (envseal compact folds them into one)`);
    return issues;
  }
  const keyOwner = new Map<string, number>();
  const valueLengths = new Map<string, number>();
  let totalBytes = 0;
  let totalRecipients = 0;
  envelopes.forEach((envelope: unknown, e) => {
    const at = `spec.envelopes[${e}]`;
    if (!isRecord(envelope)) {
      add('structure', at, 'must be an object');
      return;
    }
    checkFixedBase64(envelope.id, `${at}.id`, ENVELOPE_ID_BYTES, add);
    checkFixedBase64(envelope.commitment, `${at}.commitment`, COMMITMENT_BYTES, add);
    if (envelope.sealedAt !== undefined && !isSealedAt(envelope.sealedAt))
      add('structure', `${at}.sealedAt`, 'must be a UTC time to the second, YYYY-MM-DDTHH:MM:SSZ');
    if (typeof envelope.suite !== 'string') add('structure', `${at}.suite`, 'is required');
    else if (!SUPPORTED_SUITES.includes(envelope.suite))
      add('suite', `${at}.suite`, `unknown suite ${quoteName(envelope.suite)} (known: ${SUPPORTED_SUITES.join(', ')})`);

    const recipients = envelope.recipients;
    if (!Array.isArray(recipients) || recipients.length === 0) add('structure', `${at}.recipients`, 'must be a non-empty list');
    else if (recipients.length > maxPerEnvelope) add('size', `${at}.recipients`, `has ${recipients.length} recipients; at most ${maxPerEnvelope} per envelope`);
    else {
      totalRecipients += recipients.length;
      recipients.forEach((recipient: unknown, r) => {
        const rat = `${at}.recipients[${r}]`;
        if (!isRecord(recipient)) {
          add('structure', rat, 'must be an object');
          return;
        }
        if (typeof recipient.provider !== 'string') {
          add('structure', `${rat}.provider`, 'is required');
          return;
        }
        const definition = PROVIDERS.find((p) => p.name === recipient.provider);
        if (definition === undefined) add('provider', `${rat}.provider`, `unknown provider ${quoteName(recipient.provider)}`);
        if (typeof recipient.keyId === 'string' && recipient.keyId.length > MAX_KEY_ID_LENGTH)
          add('size', `${rat}.keyId`, `is longer than ${MAX_KEY_ID_LENGTH} characters`);
        if (recipient.recipient !== undefined) {
          if (typeof recipient.recipient !== 'string') add('structure', `${rat}.recipient`, 'must be a string');
          else if (recipient.recipient.length > MAX_RECIPIENT_LENGTH) add('size', `${rat}.recipient`, `is longer than ${MAX_RECIPIENT_LENGTH} characters`);
        }
        let encryptedKey: Buffer | undefined;
        if (typeof recipient.encryptedKey !== 'string' || recipient.encryptedKey === '') add('structure', `${rat}.encryptedKey`, 'is required');
        else if (recipient.encryptedKey.length > MAX_ENCRYPTED_KEY_LENGTH)
          add('size', `${rat}.encryptedKey`, `is longer than ${MAX_ENCRYPTED_KEY_LENGTH} characters`);
        else if (!isStandardBase64(recipient.encryptedKey)) add('base64', `${rat}.encryptedKey`, 'is not standard padded base64');
        else encryptedKey = Buffer.from(recipient.encryptedKey, 'base64');
        // The provider checks its own fields (key ids, the shape of its wrapped keys).
        for (const problem of definition?.checkRecipient(recipient, encryptedKey) ?? []) add(problem.check, `${rat}.${problem.field}`, problem.message);
      });
    }

    const data = envelope.data;
    if (!isRecord(data) || Object.keys(data).length === 0) {
      add('structure', `${at}.data`, 'must map at least one key to a sealed value');
      return;
    }
    if (Object.keys(data).length > MAX_DATA_KEYS_PER_ENVELOPE) {
      add('size', `${at}.data`, `has ${Object.keys(data).length} keys; at most ${MAX_DATA_KEYS_PER_ENVELOPE} per envelope`);
      return;
    }
    for (const [key, value] of Object.entries(data)) {
      const kat = `${at}.data[${quoteName(key)}]`;
      const problem = secretKeyProblem(key);
      if (problem) add('structure', kat, `invalid key name: ${problem}`);
      const previous = keyOwner.get(key);
      if (previous !== undefined) add('duplicate-key', kat, `key ${quoteName(key)} is also in spec.envelopes[${previous}]`);
      else keyOwner.set(key, e);
      if (typeof value !== 'string') add('structure', kat, 'must be a base64 string');
      else if (value.length > MAX_SEALED_VALUE_LENGTH) add('size', kat, `is longer than ${MAX_SEALED_VALUE_LENGTH} characters (1 MiB sealed)`);
      else if (!isStandardBase64(value)) add('base64', kat, 'is not standard padded base64');
      else {
        const bytes = Buffer.byteLength(value, 'base64');
        if (bytes < VALUE_OVERHEAD_BYTES) add('size', kat, 'is shorter than a nonce and a tag (truncated?)');
        else {
          totalBytes += bytes - VALUE_OVERHEAD_BYTES;
          valueLengths.set(key, bytes - VALUE_OVERHEAD_BYTES);
        }
      }
    }
  });
  if (totalRecipients > maxRecipients) add('size', 'spec.envelopes', `has ${totalRecipients} recipients in all; at most ${maxRecipients}`);
  if (totalBytes > MAX_SECRET_DATA_BYTES) add('size', 'spec.envelopes', `values total ${totalBytes} bytes; a Secret holds at most ${MAX_SECRET_DATA_BYTES}`);
  else if (isRecord(template) && template.data !== undefined) checkTemplateData(template, keyOwner, valueLengths, MAX_SECRET_DATA_BYTES - totalBytes, add);
  return issues;
}

/** spec.template.data: key names, counts, no key both sealed and templated, then the templates themselves. */
function checkTemplateData(
  template: Record<string, unknown>,
  keyOwner: ReadonlyMap<string, number>,
  valueLengths: ReadonlyMap<string, number>,
  budget: number,
  add: (c: ValidationCheck, p: string, m: string) => void,
): void {
  const at = 'spec.template.data';
  const data = template.data;
  if (!isStringMap(data)) {
    add('structure', at, 'must map Secret keys to template text');
    return;
  }
  const keys = Object.keys(data);
  if (keys.length > MAX_TEMPLATES) {
    add('size', at, `has ${keys.length} templates; at most ${MAX_TEMPLATES}`);
    return;
  }
  let fine = true;
  for (const key of keys) {
    const kat = `${at}[${quoteName(key)}]`;
    const problem = secretKeyProblem(key);
    const owner = keyOwner.get(key);
    if (problem) add('structure', kat, `invalid key name: ${problem}`);
    else if (owner !== undefined)
      add(
        'duplicate-key',
        kat,
        `key ${quoteName(key)} is also sealed in spec.envelopes[${owner}]; a Secret key comes from a template or a sealed value, not both`,
      );
    // The API server counts characters (code points), as here; a UTF-16 length is never less.
    else if (data[key]!.length > MAX_TEMPLATE_LENGTH && [...data[key]!].length > MAX_TEMPLATE_LENGTH)
      add('size', kat, `is longer than ${MAX_TEMPLATE_LENGTH} characters`);
    else continue;
    fine = false;
  }
  if (!fine) return;
  const type = typeof template.type === 'string' ? template.type : undefined;
  for (const problem of checkTemplates({ templates: data, valueLengths, budget, ...(type ? { type } : {}) }))
    add(problem.check, problem.key === '' ? at : `${at}[${quoteName(problem.key)}]`, problem.message);
}

function checkTemplateMetadata(metadata: Record<string, unknown>, add: (c: ValidationCheck, p: string, m: string) => void): void {
  const { labels, annotations } = metadata;
  for (const [field, map, max] of [
    ['labels', labels, MAX_TEMPLATE_LABELS],
    ['annotations', annotations, MAX_TEMPLATE_ANNOTATIONS],
  ] as const) {
    const at = `spec.template.metadata.${field}`;
    if (map === undefined) continue;
    if (!isStringMap(map)) {
      add('structure', at, 'must map strings to strings');
      continue;
    }
    const keys = Object.keys(map);
    if (keys.length > max) {
      add('size', at, `has ${keys.length} keys; at most ${max}`);
      continue;
    }
    for (const key of keys) {
      const problem = qualifiedNameProblem(key);
      if (problem) add('structure', `${at}[${quoteName(key)}]`, `invalid key: ${problem}`);
      // Label values are names, not secrets; still, the message never quotes one.
      else if (field === 'labels' && labelValueProblem(map[key]!))
        add('structure', `${at}[${quoteName(key)}]`, `invalid value: ${labelValueProblem(map[key]!)}`);
    }
    if (field === 'annotations') {
      const bytes = keys.reduce((sum, key) => sum + Buffer.byteLength(key) + Buffer.byteLength(map[key]!), 0);
      if (bytes > MAX_TEMPLATE_ANNOTATIONS_BYTES) add('size', at, `total ${bytes} bytes; at most ${MAX_TEMPLATE_ANNOTATIONS_BYTES}`);
    }
  }
  for (const issue of reservedKeyIssues({ labels, annotations })) add(issue.check, issue.path, issue.message);
}

function checkFixedBase64(value: unknown, path: string, bytes: number, add: (c: ValidationCheck, p: string, m: string) => void): void {
  if (typeof value !== 'string' || value === '') add('structure', path, 'is required');
  else if (!isStandardBase64(value)) add('base64', path, 'is not standard padded base64');
  else if (Buffer.byteLength(value, 'base64') !== bytes) add('size', path, `must decode to ${bytes} bytes`);
}

const SEALED_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

/** Whether `value` is a sealedAt time: the exact form `YYYY-MM-DDTHH:MM:SSZ` of a real date and time. */
export function isSealedAt(value: unknown): value is string {
  if (typeof value !== 'string' || !SEALED_AT.test(value)) return false;
  const time = Date.parse(value);
  // Date.parse rolls over (Feb 30 -> Mar 2) in some forms; the round trip refuses that.
  return Number.isFinite(time) && formatSealedAt(new Date(time)) === value;
}

/** `date` as a sealedAt time (UTC, to the second). */
export function formatSealedAt(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** Returns the document typed, or throws a ManifestError listing every issue. */
export function parseEnvelopeSecret(doc: unknown, source?: string): EnvelopeSecret {
  const issues = validateEnvelopeSecret(doc);
  if (issues.length > 0) throw new ManifestError(issues, source);
  return doc as EnvelopeSecret;
}

/**
 * The binding of a valid EnvelopeSecret: namespace and name from its metadata, never its
 * spec; for scope namespaces, the list of spec.namespaces (which every value's AAD
 * authenticates).
 */
export function bindingOf(secret: EnvelopeSecret): Binding {
  const binding: Binding = {
    scope: secret.spec.scope ?? 'strict',
    namespace: secret.metadata.namespace ?? '',
    name: secret.metadata.name,
  };
  if (binding.scope === 'namespaces') binding.namespaces = secret.spec.namespaces ?? [];
  return binding;
}
