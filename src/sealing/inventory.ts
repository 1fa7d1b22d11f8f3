import { quoteName } from '../api/names.ts';
import type { EnvelopeSecret, Recipient } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { isSealedAt, validateEnvelopeSecret } from '../api/validation.ts';
import { PROVIDERS, parseRecipientTarget, providerDefinition } from '../providers/registry.ts';
import type { ProviderDefinition } from '../providers/types.ts';

/** The `schema` of `envseal inventory --output json` (docs/cli.md): a new version for any incompatible change. */
export const INVENTORY_SCHEMA = 'envseal.dev/inventory/v1';

/** A key an envelope depends on: `PROVIDER:TARGET`, as `--recipient` and `--key` name it. */
export interface KeyRef {
  /** `PROVIDER:TARGET`; TARGET is what the manifest records (a key ARN, an age recipient). */
  key: string;
  provider: string;
  target: string;
  /** The provider's short name for it, as messages and the controller's metrics show it. */
  description: string;
}

export interface InventoryEnvelope {
  /** Its position in spec.envelopes. */
  index: number;
  id: string;
  /** When its data key was made; null when the manifest does not say (sealed before sealedAt existed). */
  sealedAt: string | null;
  /** Whole seconds from sealedAt to the inventory's time; null when unknown. */
  ageSeconds: number | null;
  /** Where the age came from: the manifest's sealedAt, Git history (--git), or nowhere. */
  ageSource: 'sealedAt' | 'git' | 'unknown';
  /** The names of the values it holds (names are not secret; values are never read). */
  values: string[];
  /** `PROVIDER:TARGET` of each recipient: any one of them opens every value of this envelope. */
  keys: string[];
}

export interface InventoryManifest {
  file: string;
  /** Position of the document in its file, from 0 (multi-document YAML). */
  document: number;
  namespace: string | null;
  name: string;
  scope: string;
  /** Scope `namespaces`: the namespaces its values are sealed for; null for other scopes. */
  namespaces: string[] | null;
  envelopes: InventoryEnvelope[];
}

export interface InventoryKey extends KeyRef {
  /** The manifests it opens, and in each the envelopes it opens. */
  manifests: { file: string; document: number; namespace: string | null; name: string; envelopes: number[] }[];
}

export interface InventoryProblem {
  file: string;
  /** The document, when the file itself could be read; null for the whole file. */
  document: number | null;
  message: string;
}

export interface Inventory {
  schema: typeof INVENTORY_SCHEMA;
  /** The time ages are counted to (UTC, to the second). */
  generatedAt: string;
  manifests: InventoryManifest[];
  /** The reverse index: every key, with the manifests it opens. */
  keys: InventoryKey[];
  problems: InventoryProblem[];
  /** Documents that are not EnvelopeSecrets (Deployments, kustomizations...). */
  skippedDocuments: number;
}

/** One parsed document of a manifest file. */
export interface InventoryDocument {
  file: string;
  document: number;
  value: unknown;
}

/** The key reference of a manifest recipient (provider known or not: an unknown one is reported by validation first). */
export function keyRefOf(recipient: Recipient, definitions: readonly ProviderDefinition[] = PROVIDERS): KeyRef {
  const definition = definitions.find((d) => d.name === recipient.provider);
  const target = definition ? definition.targetOf(recipient) : '';
  return {
    key: `${recipient.provider}:${target}`,
    provider: recipient.provider,
    target,
    description: definition ? definition.describe(recipient) : `provider ${quoteName(recipient.provider.slice(0, 40))}`,
  };
}

/**
 * Checks `--key PROVIDER:TARGET` offline (no alias is resolved: the manifest records
 * key ARNs): throws InvalidRecipient or UnknownProvider naming the problem.
 */
export function parseKeyFilter(text: string): string {
  const { provider, target } = parseRecipientTarget(text);
  providerDefinition(provider).parseTarget(target);
  return `${provider}:${target}`;
}

function isEnvelopeSecretDocument(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const { apiVersion, kind } = value as { apiVersion?: unknown; kind?: unknown };
  return kind === KIND && (apiVersion === API_VERSION || (typeof apiVersion === 'string' && apiVersion.startsWith('envseal.dev/')));
}

export interface BuildInventoryRequest {
  documents: readonly InventoryDocument[];
  /** Problems found while reading files (unreadable, malformed YAML), reported as they are. */
  problems?: readonly InventoryProblem[];
  now: Date;
  /** Only the envelopes this key (`PROVIDER:TARGET`) opens. */
  key?: string;
  /** The creation time of an envelope without sealedAt, from another record (Git history); undefined if none. */
  fallbackSealedAt?: (manifest: { file: string; envelopeId: string }) => string | undefined;
}

/**
 * The inventory of a tree of manifests, offline: the keys every envelope depends on, the
 * age of its data key, and the reverse index from key to manifests. Reads no value and no
 * wrapped key; documents that are not EnvelopeSecrets are counted and skipped, invalid
 * ones become problems (with validation's own messages, which quote names, never values).
 */
export function buildInventory(request: BuildInventoryRequest): Inventory {
  const now = request.now.getTime();
  const manifests: InventoryManifest[] = [];
  const problems: InventoryProblem[] = [...(request.problems ?? [])];
  const keys = new Map<string, InventoryKey>();
  let skippedDocuments = 0;

  for (const { file, document, value } of request.documents) {
    if (!isEnvelopeSecretDocument(value)) {
      skippedDocuments++;
      continue;
    }
    const issues = validateEnvelopeSecret(value);
    if (issues.length > 0) {
      const shown = issues.slice(0, 3).map((i) => `${i.path}: ${i.message}`);
      if (issues.length > 3) shown.push(`and ${issues.length - 3} more`);
      problems.push({ file, document, message: `invalid EnvelopeSecret: ${shown.join('; ')}` });
      continue;
    }
    const secret = value as EnvelopeSecret;
    const namespace = secret.metadata.namespace ?? null;
    const name = secret.metadata.name;
    const envelopes: InventoryEnvelope[] = [];
    for (const [index, envelope] of secret.spec.envelopes.entries()) {
      const refs = envelope.recipients.map((r) => keyRefOf(r));
      if (request.key !== undefined && !refs.some((r) => r.key === request.key)) continue;
      const fromGit = envelope.sealedAt === undefined ? request.fallbackSealedAt?.({ file, envelopeId: envelope.id }) : undefined;
      const sealedAt = envelope.sealedAt ?? (isSealedAt(fromGit) ? fromGit : undefined);
      envelopes.push({
        index,
        id: envelope.id,
        sealedAt: sealedAt ?? null,
        ageSeconds: sealedAt === undefined ? null : Math.floor((now - Date.parse(sealedAt)) / 1000),
        ageSource: envelope.sealedAt !== undefined ? 'sealedAt' : sealedAt !== undefined ? 'git' : 'unknown',
        values: Object.keys(envelope.data),
        keys: [...new Set(refs.map((r) => r.key))],
      });
      for (const ref of refs) {
        if (request.key !== undefined && ref.key !== request.key) continue;
        let entry = keys.get(ref.key);
        if (entry === undefined) {
          entry = { ...ref, manifests: [] };
          keys.set(ref.key, entry);
        }
        const last = entry.manifests.at(-1);
        if (last && last.file === file && last.document === document) {
          if (!last.envelopes.includes(index)) last.envelopes.push(index);
        } else entry.manifests.push({ file, document, namespace, name, envelopes: [index] });
      }
    }
    if (envelopes.length > 0 || request.key === undefined)
      manifests.push({ file, document, namespace, name, scope: secret.spec.scope ?? 'strict', namespaces: secret.spec.namespaces ?? null, envelopes });
  }
  return {
    schema: INVENTORY_SCHEMA,
    generatedAt: `${request.now.toISOString().slice(0, 19)}Z`,
    manifests,
    keys: [...keys.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)),
    problems,
    skippedDocuments,
  };
}

/** The oldest known data key of a manifest (its sealedAt), or null. */
export function oldestSealedAt(manifest: InventoryManifest): string | null {
  let oldest: string | null = null;
  for (const envelope of manifest.envelopes) if (envelope.sealedAt !== null && (oldest === null || envelope.sealedAt < oldest)) oldest = envelope.sealedAt;
  return oldest;
}
