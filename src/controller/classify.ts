import { EnvelopeError } from '../envelope/errors.ts';
import { KubeApiError } from '../kube/client.ts';
import { ProviderError } from '../providers/types.ts';
import { Reason, type ReasonName } from './conditions.ts';

export interface Classified {
  reason: ReasonName;
  message: string;
  /** Retry with backoff; otherwise terminal until the object changes. */
  retryable: boolean;
}

/**
 * Maps an error to the Ready reason a user sees. Messages come from envseal's own errors
 * and the API server's Status messages, which carry names and codes, never values.
 */
export function classifyError(error: unknown): Classified {
  if (error instanceof ProviderError) {
    const code = error.serviceCode ? ` (${error.serviceCode})` : '';
    const message = `${error.message}${code && !error.message.includes(error.serviceCode!) ? code : ''}`;
    switch (error.code) {
      case 'AccessDenied':
        return { reason: Reason.KMSAccessDenied, message, retryable: false };
      case 'InvalidCiphertext':
        return { reason: error.contextBound ? Reason.ContextMismatch : Reason.DecryptFailed, message, retryable: false };
      case 'KeyUnavailable':
        return { reason: Reason.KMSKeyUnavailable, message, retryable: false };
      case 'KeyNotFound':
        return { reason: Reason.KMSKeyNotFound, message, retryable: false };
      case 'Throttled':
        return { reason: Reason.KMSThrottled, message, retryable: true };
      case 'Unavailable':
        return { reason: Reason.KMSUnavailable, message, retryable: true };
      case 'NoIdentity':
        return { reason: Reason.NoUsableRecipient, message, retryable: false };
      case 'UnknownProvider':
      case 'InvalidRecipient':
        return { reason: Reason.InvalidSpec, message, retryable: false };
      default:
        return { reason: Reason.ProviderError, message, retryable: true };
    }
  }
  if (error instanceof EnvelopeError) {
    switch (error.code) {
      case 'CommitmentMismatch':
        return { reason: Reason.CommitmentMismatch, message: error.message, retryable: false };
      case 'ContextMismatch':
        return { reason: Reason.ContextMismatch, message: error.message, retryable: false };
      case 'ValueAuthenticationFailed':
        return { reason: Reason.DecryptFailed, message: error.message, retryable: false };
      default:
        return { reason: Reason.InvalidSpec, message: error.message, retryable: false };
    }
  }
  if (error instanceof KubeApiError) {
    if (error.status === 422 || error.status === 400) return { reason: Reason.SecretRejected, message: error.message, retryable: false };
    return { reason: Reason.KubernetesError, message: error.message, retryable: true };
  }
  return { reason: Reason.ReconcileError, message: error instanceof Error ? `${error.name}: ${error.message}` : 'unexpected error', retryable: true };
}
