import type { Scope } from '../envelope/context.ts';

export const GROUP = 'envseal.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'EnvelopeSecret';
export const PLURAL = 'envelopesecrets';

export type { Recipient } from '../providers/types.ts';
import type { Recipient } from '../providers/types.ts';

export interface Envelope {
  id: string;
  suite: string;
  commitment: string;
  /** When the data key was made, `YYYY-MM-DDTHH:MM:SSZ`; informative, not authenticated (docs/format.md). */
  sealedAt?: string;
  recipients: Recipient[];
  data: Record<string, string>;
}

export interface SecretTemplate {
  type?: string;
  /** Secret key -> template text, rendered from the opened values (docs/format.md, "Templates"). */
  data?: Record<string, string>;
  immutable?: boolean;
  metadata?: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

export const RESTARTABLE_KINDS = ['Deployment', 'StatefulSet', 'DaemonSet'] as const;

/** A workload in the same namespace whose pods restart when the Secret's data changes. */
export interface WorkloadRef {
  kind: (typeof RESTARTABLE_KINDS)[number];
  name: string;
}

export interface EnvelopeSecretSpec {
  scope?: Scope;
  /** Scope `namespaces` only: the sorted, unique namespaces the values are sealed for. */
  namespaces?: string[];
  envelopes: Envelope[];
  template?: SecretTemplate;
  /** Opt-in rollout restart of these workloads when the data changes. */
  restartWorkloads?: WorkloadRef[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface EnvelopeSecretStatus {
  observedGeneration?: number;
  /** The Secret's resourceVersion as the controller last wrote it; another one means drift. */
  secretResourceVersion?: string;
  conditions?: Condition[];
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  [extra: string]: unknown;
}

export interface EnvelopeSecret {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: EnvelopeSecretSpec;
  status?: EnvelopeSecretStatus;
}

/** What a check is about; `envseal verify` maps each to its own exit code. */
export type ValidationCheck = 'structure' | 'base64' | 'size' | 'duplicate-key' | 'suite' | 'provider';

export interface ValidationIssue {
  check: ValidationCheck;
  /** JSON-path-like location, e.g. spec.envelopes[0].data.DB_PASSWORD */
  path: string;
  message: string;
}
