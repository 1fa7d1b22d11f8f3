import { describe, expect, it } from 'vitest';
import { EnvelopeError } from '../envelope/errors.ts';
import { KubeApiError } from '../kube/client.ts';
import { ProviderError, type ProviderErrorCode } from '../providers/types.ts';
import { classifyError } from './classify.ts';

const provider = (code: ProviderErrorCode, extra: { contextBound?: boolean; serviceCode?: string } = {}) =>
  new ProviderError(code, `aws-kms: key k: ${code}`, { provider: 'aws-kms', ...extra });

describe('classifyError', () => {
  it.each([
    [provider('AccessDenied', { serviceCode: 'AccessDeniedException' }), 'KMSAccessDenied'],
    [provider('InvalidCiphertext', { contextBound: true }), 'ContextMismatch'],
    [provider('InvalidCiphertext'), 'DecryptFailed'],
    [provider('KeyUnavailable'), 'KMSKeyUnavailable'],
    [provider('KeyNotFound'), 'KMSKeyNotFound'],
    [provider('NoIdentity'), 'NoUsableRecipient'],
    [provider('UnknownProvider'), 'InvalidSpec'],
    [new EnvelopeError('CommitmentMismatch', 'envelope #0: commitment'), 'CommitmentMismatch'],
    [new EnvelopeError('ValueAuthenticationFailed', 'envelope #0: "A" did not authenticate'), 'DecryptFailed'],
    [new KubeApiError(422, 'Invalid', 'Secret "db" is invalid'), 'SecretRejected'],
  ] as const)('%s is terminal: %s', (error, reason) => {
    expect(classifyError(error)).toMatchObject({ reason, terminal: true });
  });

  // Errors retry by default: only the ones above say they are terminal.
  it.each([
    [provider('Throttled'), 'KMSThrottled'],
    [provider('Unavailable'), 'KMSUnavailable'],
    [provider('Internal'), 'ProviderError'],
    [new KubeApiError(409, 'Conflict', 'the object has been modified'), 'KubernetesError'],
    [new KubeApiError(500, 'InternalError', 'etcd'), 'KubernetesError'],
    [new TypeError('x is undefined'), 'ReconcileError'],
    ['a string thrown', 'ReconcileError'],
  ] as const)('%s is retried: %s', (error, reason) => {
    const classified = classifyError(error);
    expect(classified.reason).toBe(reason);
    expect(classified.terminal).toBeUndefined();
  });

  it('names the KMS error code once', () => {
    expect(classifyError(provider('AccessDenied', { serviceCode: 'AccessDeniedException' })).message).toBe(
      'aws-kms: key k: AccessDenied (AccessDeniedException)',
    );
    const named = new ProviderError('AccessDenied', 'AccessDeniedException: no kms:Decrypt', { provider: 'aws-kms', serviceCode: 'AccessDeniedException' });
    expect(classifyError(named).message).toBe('AccessDeniedException: no kms:Decrypt');
  });
});
