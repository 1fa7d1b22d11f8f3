import type { Condition } from '../api/types.ts';
import { capMessage } from '../util/message.ts';

/** Reasons of the Ready condition; docs/controller.md explains each. */
export const Reason = {
  Synced: 'Synced',
  InvalidSpec: 'InvalidSpec',
  PolicyViolation: 'PolicyViolation',
  SecretNotOwned: 'SecretNotOwned',
  Conflict: 'Conflict',
  RestartRefused: 'RestartRefused',
  RestartPending: 'RestartPending',
  DecryptFailed: 'DecryptFailed',
  ContextMismatch: 'ContextMismatch',
  CommitmentMismatch: 'CommitmentMismatch',
  TemplateFailed: 'TemplateFailed',
  KMSAccessDenied: 'KMSAccessDenied',
  KMSKeyUnavailable: 'KMSKeyUnavailable',
  KMSKeyNotFound: 'KMSKeyNotFound',
  KMSThrottled: 'KMSThrottled',
  KMSUnavailable: 'KMSUnavailable',
  NoUsableRecipient: 'NoUsableRecipient',
  SecretRejected: 'SecretRejected',
  KubernetesError: 'KubernetesError',
  ProviderError: 'ProviderError',
  ReconcileError: 'ReconcileError',
} as const;
export type ReasonName = (typeof Reason)[keyof typeof Reason];

/**
 * Failures that need a person (a new spec, a permission, the other writer stopped):
 * kstatus' `Stalled`, which Flux and kubectl wait read as failed at once. The others are
 * retried with backoff: `Reconciling`.
 */
const STALLED: ReadonlySet<string> = new Set<ReasonName>([
  Reason.InvalidSpec,
  Reason.PolicyViolation,
  Reason.SecretNotOwned,
  Reason.Conflict,
  Reason.RestartRefused,
  Reason.DecryptFailed,
  Reason.ContextMismatch,
  Reason.CommitmentMismatch,
  Reason.TemplateFailed,
  Reason.KMSAccessDenied,
  Reason.KMSKeyUnavailable,
  Reason.KMSKeyNotFound,
  Reason.NoUsableRecipient,
  Reason.SecretRejected,
]);

export interface ReadyState {
  ready: boolean;
  reason: ReasonName;
  message: string;
}

export const READY = 'Ready';
export const RECONCILING = 'Reconciling';
export const STALLED_TYPE = 'Stalled';

/**
 * The status conditions for a state, in kstatus' conventions: `Ready` always; `Stalled`
 * (True) for a failure that needs a person; `Reconciling` (True) while a retry is pending.
 * Absent abnormal-true conditions mean False. lastTransitionTime is kept when a
 * condition's status did not change; messages are capped at 1 KiB.
 */
export function statusConditions(state: ReadyState, previous: readonly Condition[] | undefined, generation: number | undefined, now: Date): Condition[] {
  const message = capMessage(state.message);
  const at = (type: string, status: Condition['status']) => {
    const before = previous?.find((c) => c.type === type);
    return before?.status === status && before.lastTransitionTime ? before.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  };
  const condition = (type: string, status: Condition['status']): Condition => ({
    type,
    status,
    reason: state.reason,
    message,
    lastTransitionTime: at(type, status),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  });
  const conditions = [condition(READY, state.ready ? 'True' : 'False')];
  if (!state.ready) conditions.push(condition(STALLED.has(state.reason) ? STALLED_TYPE : RECONCILING, 'True'));
  return conditions;
}

export function readyConditionOf(status: { conditions?: readonly Condition[] } | undefined): Condition | undefined {
  return status?.conditions?.find((c) => c.type === READY);
}
