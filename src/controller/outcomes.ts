import type { Logger } from 'pino';
import { type Outcome, ReportedError } from './controller.ts';
import { KmsOutageTracker } from './kms-recovery.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { ReconcileResult } from './reconciler.ts';

/**
 * What the controller does with each finished reconcile of an EnvelopeSecret: counts it,
 * times it, and ends the wait after a KMS outage -- when an object that failed because
 * its KMS was down or throttling syncs again, the others waiting on a KMS are retried at
 * once instead of each waiting out its own backoff.
 */
export function envelopeSecretOutcomes(options: {
  metrics: Pick<ControllerMetrics, 'reconciles' | 'reconcileSeconds' | 'queueRetries'>;
  logger: Logger;
  /** Reconciles these keys now, their backoff reset (Controller.retryNow). */
  retryNow: (keys: readonly string[]) => void;
}): (key: string, outcome: Outcome<ReconcileResult>, seconds: number) => void {
  const { metrics, logger } = options;
  const kmsOutage = new KmsOutageTracker();
  return (key, outcome, seconds) => {
    metrics.reconcileSeconds.observe(seconds);
    if (outcome.kind === 'error') {
      metrics.reconciles.inc({ result: 'error' });
      // Stopped mid-reconcile: not retried, says nothing about the KMS.
      if (outcome.retryInMs === undefined) return;
      metrics.queueRetries.inc();
      if (outcome.error instanceof ReportedError) kmsOutage.failed(key, outcome.error.reason);
      return;
    }
    metrics.reconciles.inc({ result: outcome.kind === 'terminal' ? 'terminal' : outcome.result.outcome });
    // Only a KMS-sealed object that synced again says its KMS answers; terminal or gone ones say nothing.
    if (outcome.kind === 'terminal' || outcome.result.outcome !== 'synced') {
      kmsOutage.forget(key);
      return;
    }
    const recovered = kmsOutage.succeeded(key);
    if (recovered.length > 0) {
      logger.info({ retrying: recovered.length }, 'the KMS answers again; retrying the objects that waited on it');
      options.retryNow(recovered);
    }
  };
}
