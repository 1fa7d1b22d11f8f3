import { describe, expect, it } from 'vitest';
import { Reason } from './conditions.ts';
import { KmsOutageTracker } from './kms-recovery.ts';

describe('KmsOutageTracker', () => {
  it('hands back every object that waited on the KMS once one of them succeeds', () => {
    const tracker = new KmsOutageTracker();
    expect(tracker.failed('ns/a', Reason.KMSUnavailable)).toBe(true);
    expect(tracker.failed('ns/b', Reason.KMSThrottled)).toBe(true);
    expect(tracker.failed('ns/c', Reason.KMSUnavailable)).toBe(true);
    expect(tracker.succeeded('ns/b').sort()).toEqual(['ns/a', 'ns/c']);
    expect(tracker.size).toBe(0);
  });

  it('does not react to objects that never waited on the KMS', () => {
    const tracker = new KmsOutageTracker();
    tracker.failed('ns/a', Reason.KMSUnavailable);
    expect(tracker.succeeded('ns/age-sealed')).toEqual([]);
    expect(tracker.size).toBe(1);
  });

  it('forgets an object that ended another way, and then does not react to it', () => {
    const tracker = new KmsOutageTracker();
    tracker.failed('ns/a', Reason.KMSUnavailable);
    tracker.failed('ns/b', Reason.KMSUnavailable);
    tracker.forget('ns/a');
    expect(tracker.size).toBe(1);
    expect(tracker.succeeded('ns/a')).toEqual([]);
  });

  it('forgets an object whose failure is no longer a KMS outage', () => {
    const tracker = new KmsOutageTracker();
    tracker.failed('ns/a', Reason.KMSUnavailable);
    tracker.failed('ns/b', Reason.KMSUnavailable);
    expect(tracker.failed('ns/a', Reason.KubernetesError)).toBe(false);
    expect(tracker.succeeded('ns/a')).toEqual([]);
    expect(tracker.succeeded('ns/b')).toEqual([]);
  });
});
