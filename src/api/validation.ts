import { isStandardBase64 } from '../envelope/base64.ts';
import { type Binding, isScope, type Scope } from '../envelope/context.ts';
import { SUPPORTED_SUITES } from '../envelope/envelope.ts';
import { isKnownProvider } from '../providers/registry.ts';
import { namespaceProblem, objectNameProblem, quoteName, secretKeyProblem } from './names.ts';
import { API_VERSION, type EnvelopeSecret, KIND, RESTARTABLE_KINDS } from './types.ts';

/** What a check is about; `envseal verify` maps each to its own exit code. */
export type ValidationCheck = 'structure' | 'base64' | 'size' | 'duplicate-key' | 'suite' | 'provider';

export interface ValidationIssue {
  check: ValidationCheck;
  /** JSON-path-like location, e.g. spec.envelopes[0].data.DB_PASSWORD */
  path: string;
  message: string;
}

/** A Secret's data may total at most 1 MiB. */
export const MAX_SECRET_DATA_BYTES = 1024 * 1024;
const ENVELOPE_ID_BYTES = 32;
const COMMITMENT_BYTES = 32;
const VALUE_OVERHEAD_BYTES = 12 + 16;
const MAX_ENCRYPTED_KEY_BYTES = 64 * 1024;

export class ManifestError extends Error {
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
    else add('structure', 'spec.scope', 'must be one of strict, namespace, cluster');
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
      if (template.type !== undefined && (typeof template.type !== 'string' || template.type === '')) add('structure', 'spec.template.type', 'must be a non-empty string');
      if (template.immutable !== undefined && typeof template.immutable !== 'boolean') add('structure', 'spec.template.immutable', 'must be true or false');
      if (template.metadata !== undefined) {
        if (!isRecord(template.metadata)) add('structure', 'spec.template.metadata', 'must be an object');
        else {
          for (const field of ['labels', 'annotations'] as const) {
            const map = template.metadata[field];
            if (map !== undefined && !isStringMap(map)) add('structure', `spec.template.metadata.${field}`, 'must map strings to strings');
          }
        }
      }
    }
  }

  const workloads = spec.restartWorkloads;
  if (workloads !== undefined) {
    if (!Array.isArray(workloads)) add('structure', 'spec.restartWorkloads', 'must be a list');
    else
      workloads.forEach((w: unknown, i) => {
        const at = `spec.restartWorkloads[${i}]`;
        if (!isRecord(w)) return add('structure', at, 'must be an object with kind and name');
        if (typeof w.kind !== 'string' || !(RESTARTABLE_KINDS as readonly string[]).includes(w.kind)) add('structure', `${at}.kind`, `must be one of ${RESTARTABLE_KINDS.join(', ')}`);
        const problem = typeof w.name === 'string' ? objectNameProblem(w.name) : 'is required';
        if (problem) add('structure', `${at}.name`, problem);
      });
  }

  const envelopes = spec.envelopes;
  if (!Array.isArray(envelopes) || envelopes.length === 0) {
    add('structure', 'spec.envelopes', 'must be a non-empty list');
    return issues;
  }
  const keyOwner = new Map<string, number>();
  let totalBytes = 0;
  envelopes.forEach((envelope: unknown, e) => {
    const at = `spec.envelopes[${e}]`;
    if (!isRecord(envelope)) {
      add('structure', at, 'must be an object');
      return;
    }
    checkFixedBase64(envelope.id, `${at}.id`, ENVELOPE_ID_BYTES, add);
    checkFixedBase64(envelope.commitment, `${at}.commitment`, COMMITMENT_BYTES, add);
    if (typeof envelope.suite !== 'string') add('structure', `${at}.suite`, 'is required');
    else if (!SUPPORTED_SUITES.includes(envelope.suite)) add('suite', `${at}.suite`, `unknown suite ${quoteName(envelope.suite)} (known: ${SUPPORTED_SUITES.join(', ')})`);

    const recipients = envelope.recipients;
    if (!Array.isArray(recipients) || recipients.length === 0) add('structure', `${at}.recipients`, 'must be a non-empty list');
    else {
      recipients.forEach((recipient: unknown, r) => {
        const rat = `${at}.recipients[${r}]`;
        if (!isRecord(recipient)) return add('structure', rat, 'must be an object');
        if (typeof recipient.provider !== 'string') return add('structure', `${rat}.provider`, 'is required');
        if (!isKnownProvider(recipient.provider)) add('provider', `${rat}.provider`, `unknown provider ${quoteName(recipient.provider)}`);
        if (recipient.provider === 'aws-kms' && (typeof recipient.keyId !== 'string' || !recipient.keyId.startsWith('arn:'))) {
          add('structure', `${rat}.keyId`, 'must be the full key ARN');
        }
        if (recipient.provider === 'age' && recipient.recipient !== undefined && typeof recipient.recipient !== 'string') {
          add('structure', `${rat}.recipient`, 'must be a string');
        }
        if (typeof recipient.encryptedKey !== 'string' || recipient.encryptedKey === '') add('structure', `${rat}.encryptedKey`, 'is required');
        else if (!isStandardBase64(recipient.encryptedKey)) add('base64', `${rat}.encryptedKey`, 'is not standard padded base64');
        else if ((recipient.encryptedKey.length / 4) * 3 > MAX_ENCRYPTED_KEY_BYTES) add('size', `${rat}.encryptedKey`, 'is larger than 64 KiB');
      });
    }

    const data = envelope.data;
    if (!isRecord(data) || Object.keys(data).length === 0) {
      add('structure', `${at}.data`, 'must map at least one key to a sealed value');
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
      else if (!isStandardBase64(value)) add('base64', kat, 'is not standard padded base64');
      else {
        const bytes = Buffer.byteLength(value, 'base64');
        if (bytes < VALUE_OVERHEAD_BYTES) add('size', kat, 'is shorter than a nonce and a tag (truncated?)');
        else totalBytes += bytes - VALUE_OVERHEAD_BYTES;
      }
    }
  });
  if (totalBytes > MAX_SECRET_DATA_BYTES) add('size', 'spec.envelopes', `values total ${totalBytes} bytes; a Secret holds at most ${MAX_SECRET_DATA_BYTES}`);
  return issues;
}

function checkFixedBase64(value: unknown, path: string, bytes: number, add: (c: ValidationCheck, p: string, m: string) => void): void {
  if (typeof value !== 'string' || value === '') add('structure', path, 'is required');
  else if (!isStandardBase64(value)) add('base64', path, 'is not standard padded base64');
  else if (Buffer.byteLength(value, 'base64') !== bytes) add('size', path, `must decode to ${bytes} bytes`);
}

/** Returns the document typed, or throws a ManifestError listing every issue. */
export function parseEnvelopeSecret(doc: unknown, source?: string): EnvelopeSecret {
  const issues = validateEnvelopeSecret(doc);
  if (issues.length > 0) throw new ManifestError(issues, source);
  return doc as EnvelopeSecret;
}

/** The binding of a valid EnvelopeSecret: from its metadata, never its spec values. */
export function bindingOf(secret: EnvelopeSecret): Binding {
  return {
    scope: secret.spec.scope ?? 'strict',
    namespace: secret.metadata.namespace ?? '',
    name: secret.metadata.name,
  };
}
