import { TemplateError } from '../api/template.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import { KubeApiError } from '../kube/client.ts';
import { ProviderError } from '../providers/types.ts';
import { Reason, type ReasonName } from './conditions.ts';

export interface Classified {
  reason: ReasonName;
  message: string;
  /** Not retried until the object changes (or, for the KMS's answers, the next resync); absent: retried with backoff. */
  terminal?: true;
}

/**
 * Maps an error to the Ready reason a user sees, and says which failures are terminal:
 * anything else, an unknown error included, is retried (controller-runtime's polarity). Messages come from envseal's own errors
 * and the API server's Status messages, which carry names and codes, never values.
 */
export function classifyError(error: unknown): Classified {
  if (error instanceof ProviderError) {
    const code = error.serviceCode ? ` (${error.serviceCode})` : '';
    const message = `${error.message}${code && !error.message.includes(error.serviceCode!) ? code : ''}`;
    switch (error.code) {
      case 'AccessDenied':
        return { reason: Reason.KMSAccessDenied, message, terminal: true };
      case 'InvalidCiphertext':
        return { reason: error.contextBound ? Reason.ContextMismatch : Reason.DecryptFailed, message, terminal: true };
      case 'KeyUnavailable':
        return { reason: Reason.KMSKeyUnavailable, message, terminal: true };
      case 'KeyNotFound':
        return { reason: Reason.KMSKeyNotFound, message, terminal: true };
      case 'Throttled':
        return { reason: Reason.KMSThrottled, message };
      case 'Unavailable':
        return { reason: Reason.KMSUnavailable, message };
      case 'NoIdentity':
        return { reason: Reason.NoUsableRecipient, message, terminal: true };
      case 'UnknownProvider':
      case 'InvalidRecipient':
        return { reason: Reason.InvalidSpec, message, terminal: true };
      default:
        return { reason: Reason.ProviderError, message };
    }
  }
  if (error instanceof EnvelopeError) {
    switch (error.code) {
      case 'CommitmentMismatch':
        return { reason: Reason.CommitmentMismatch, message: error.message, terminal: true };
      case 'ContextMismatch':
        return { reason: Reason.ContextMismatch, message: error.message, terminal: true };
      case 'ValueAuthenticationFailed':
        return { reason: Reason.DecryptFailed, message: error.message, terminal: true };
      default:
        return { reason: Reason.InvalidSpec, message: error.message, terminal: true };
    }
  }
  // A value a template's function cannot take (b64dec of text that is not base64): only a new spec cures it.
  if (error instanceof TemplateError)
    return { reason: error.code === 'InvalidTemplate' ? Reason.InvalidSpec : Reason.TemplateFailed, message: error.message, terminal: true };
  if (error instanceof KubeApiError) {
    if (error.status === 422 || error.status === 400) return { reason: Reason.SecretRejected, message: error.message, terminal: true };
    return { reason: Reason.KubernetesError, message: error.message };
  }
  return { reason: Reason.ReconcileError, message: error instanceof Error ? `${error.name}: ${error.message}` : 'unexpected error' };
}
