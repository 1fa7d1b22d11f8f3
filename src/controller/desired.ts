import { createHash } from 'node:crypto';
import { API_VERSION, type EnvelopeSecret, KIND } from '../api/types.ts';
import { renderTemplates } from '../api/template-render.ts';
import { bindingOf } from '../api/validation.ts';
import type { KubeObject } from '../kube/client.ts';

export const FIELD_MANAGER = 'envseal';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'envseal';
/** The hash of the EnvelopeSecret spec a Secret was built from. */
export const ANNOTATION_SPEC_HASH = 'envseal.dev/spec-hash';
/** Set to "true" on an existing Secret to let envseal take it over. */
export const ANNOTATION_ADOPT = 'envseal.dev/adopt';

export interface SecretManifest extends KubeObject {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: NonNullable<KubeObject['metadata']> & { name: string; namespace: string };
  type: string;
  immutable?: boolean;
  data: Record<string, string>;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Identifies the source a Secret was built from: the spec and the binding. Computed from
 * ciphertext only, so it reveals nothing about the values.
 */
export function specHash(source: EnvelopeSecret): string {
  const digest = createHash('sha256')
    .update(canonicalJson({ binding: bindingOf(source), spec: source.spec }))
    .digest('hex');
  return `sha256:${digest}`;
}

/** On restartable workloads' pod templates: a digest of the sealed data and templates (restarts.ts: of every Secret restarted together). */
export const ANNOTATION_DATA_HASH = 'envseal.dev/data-hash';

/**
 * A digest of the sealed values (ciphertext) and templates, which changes whenever the
 * data is re-sealed or a template changes, and reveals nothing about the values (a hash of plaintext would let anyone
 * who can read a Deployment test guesses of a weak password).
 */
export function sealedDataDigest(source: EnvelopeSecret): string {
  const data = source.spec.envelopes.map((e) => [e.id, e.data]);
  // Templates change the Secret's data too; without any, the digest is what it always was.
  const templates = source.spec.template?.data;
  const digested = templates === undefined ? data : [data, templates];
  return `sha256:${createHash('sha256').update(canonicalJson(digested)).digest('hex')}`;
}

export interface DesiredSecretInput {
  source: EnvelopeSecret;
  data: Record<string, Uint8Array>;
  specHash: string;
}

/**
 * The Secret's data: the sealed values, and the templates of spec.template.data rendered
 * from them (a validated spec never has a key in both). Throws a TemplateError when a
 * value cannot go through a template's function.
 */
export function secretData(source: EnvelopeSecret, values: Readonly<Record<string, Uint8Array>>): Record<string, string> {
  const encode = (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  const data = Object.fromEntries(Object.entries(values).map(([key, value]) => [key, encode(value)]));
  const templates = source.spec.template?.data;
  if (templates === undefined) return data;
  const rendered = renderTemplates({ templates, values });
  for (const [key, value] of Object.entries(rendered)) {
    data[key] = encode(value);
    value.fill(0);
  }
  return data;
}

/** The Secret an EnvelopeSecret stands for: the apply configuration envseal writes. */
export function desiredSecret(input: DesiredSecretInput): SecretManifest {
  const { source } = input;
  const template = source.spec.template ?? {};
  const namespace = source.metadata.namespace ?? '';
  const data = secretData(source, input.data);
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: source.metadata.name,
      namespace,
      labels: { ...template.metadata?.labels, [LABEL_MANAGED_BY]: MANAGED_BY },
      annotations: { ...template.metadata?.annotations, [ANNOTATION_SPEC_HASH]: input.specHash },
      ownerReferences: [
        { apiVersion: API_VERSION, kind: KIND, name: source.metadata.name, uid: source.metadata.uid ?? '', controller: true, blockOwnerDeletion: true },
      ],
    },
    type: template.type ?? 'Opaque',
    ...(template.immutable === undefined ? {} : { immutable: template.immutable }),
    data,
  };
}

export type Ownership = 'owned' | 'adoptable' | 'foreign';

/**
 * Whose a live Secret is: ours when it is controlled by an EnvelopeSecret of the same
 * name (a recreated owner has another uid but the same name), adoptable when it carries
 * the adopt annotation, foreign otherwise.
 */
export function ownershipOf(secret: KubeObject, source: { metadata: { name: string } }): Ownership {
  const owners = secret.metadata?.ownerReferences ?? [];
  const controller = owners.find((o) => o.controller);
  if (controller && controller.kind === KIND && controller.apiVersion.startsWith('envseal.dev/') && controller.name === source.metadata.name) return 'owned';
  if (secret.metadata?.annotations?.[ANNOTATION_ADOPT] === 'true' && !controller) return 'adoptable';
  return 'foreign';
}

/** Whether writing `desired` over `live` needs a delete and create: immutable Secrets and type changes. */
export function needsReplace(live: KubeObject & { type?: string; immutable?: boolean; data?: Record<string, string> }, desired: SecretManifest): boolean {
  if ((live.type ?? 'Opaque') !== desired.type) return true;
  if (live.immutable !== true) return false;
  const liveData = live.data ?? {};
  const keys = new Set([...Object.keys(liveData), ...Object.keys(desired.data)]);
  for (const key of keys) if (liveData[key] !== desired.data[key]) return true;
  return desired.immutable !== true;
}
