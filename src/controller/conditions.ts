import type { Condition } from '../api/types.ts';

/** Reasons of the Ready condition; docs/controller.md explains each. */
export const Reason = {
  Synced: 'Synced',
  InvalidSpec: 'InvalidSpec',
  SecretNotOwned: 'SecretNotOwned',
  DecryptFailed: 'DecryptFailed',
  ContextMismatch: 'ContextMismatch',
  CommitmentMismatch: 'CommitmentMismatch',
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

export interface ReadyState {
  ready: boolean;
  reason: ReasonName;
  message: string;
}

/** The Ready condition, keeping lastTransitionTime when the status did not change. */
export function readyCondition(state: ReadyState, previous: Condition | undefined, generation: number | undefined, now: Date): Condition {
  const status = state.ready ? 'True' : 'False';
  return {
    type: 'Ready',
    status,
    reason: state.reason,
    message: state.message,
    lastTransitionTime: previous?.status === status && previous.lastTransitionTime ? previous.lastTransitionTime : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    ...(generation === undefined ? {} : { observedGeneration: generation }),
  };
}
