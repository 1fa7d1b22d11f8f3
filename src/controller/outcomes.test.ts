import { describe, expect, it } from 'vitest';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ReportedError, TerminalError } from './controller.ts';
import { ControllerMetrics } from './metrics.ts';
import { envelopeSecretOutcomes } from './outcomes.ts';

function setup() {
  const metrics = new ControllerMetrics({ defaultMetrics: false });
  const retried: string[][] = [];
  const { logger, lines: logs } = captureLogger('info');
  const onOutcome = envelopeSecretOutcomes({ metrics, logger, retryNow: (keys) => retried.push([...keys]) });
  const count = async (result: string) => (await metrics.reconciles.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
  return { onOutcome, metrics, logs, retried, count };
}

const kmsDown = () => ({ kind: 'error' as const, error: new ReportedError('KMSUnavailable: no answer', { reason: 'KMSUnavailable' }), retryInMs: 200 });
const synced = { kind: 'result' as const, result: { outcome: 'synced' as const } };

describe('envelopeSecretOutcomes', () => {
  it('retries every object waiting on the KMS as soon as one of them syncs again', async () => {
    const s = setup();
    s.onOutcome('a/one', kmsDown(), 0.01);
    s.onOutcome('a/two', kmsDown(), 0.01);
    s.onOutcome('b/three', kmsDown(), 0.01);
    // An object that never waited on the KMS says nothing about it.
    s.onOutcome('c/other', synced, 0.01);
    expect(s.retried).toEqual([]);
    s.onOutcome('a/two', synced, 0.01);
    expect(s.retried).toEqual([['a/one', 'b/three']]);
    expect(s.logs.filter((l) => l.includes('the KMS answers again'))).toHaveLength(1);
    // Nobody waits any more: the next sync retries nothing.
    s.onOutcome('a/one', synced, 0.01);
    expect(s.retried).toHaveLength(1);
  });

  it('does not count a terminal failure, a failure of another kind or a deferred object as the KMS answering', () => {
    const s = setup();
    s.onOutcome('a/one', kmsDown(), 0.01);
    s.onOutcome('a/two', kmsDown(), 0.01);
    s.onOutcome('a/three', kmsDown(), 0.01);
    s.onOutcome('a/one', { kind: 'terminal', error: new TerminalError('KMSAccessDenied', { reason: 'KMSAccessDenied' }) }, 0.01);
    s.onOutcome('a/two', { kind: 'error', error: new ReportedError('KubernetesError', { reason: 'KubernetesError' }), retryInMs: 200 }, 0.01);
    s.onOutcome('a/three', { kind: 'result', result: { outcome: 'deferred', requeueAfterMs: 1000 } }, 0.01);
    expect(s.retried).toEqual([]);
  });

  it('counts results, terminal failures, errors and retries', async () => {
    const s = setup();
    s.onOutcome('a/one', synced, 0.01);
    s.onOutcome('a/one', { kind: 'result', result: { outcome: 'unchanged' } }, 0.001);
    s.onOutcome('a/two', { kind: 'terminal', error: new TerminalError('InvalidSpec') }, 0.001);
    s.onOutcome('a/three', kmsDown(), 0.001);
    s.onOutcome('a/four', { kind: 'error', error: new Error('stopped'), retryInMs: undefined }, 0.001);
    expect([await s.count('synced'), await s.count('unchanged'), await s.count('terminal'), await s.count('error')]).toEqual([1, 1, 1, 2]);
    expect((await s.metrics.queueRetries.get()).values[0]?.value).toBe(1);
    expect((await s.metrics.reconcileSeconds.get()).values.find((v) => v.metricName === 'envseal_reconcile_duration_seconds_count')?.value).toBe(5);
  });
});
