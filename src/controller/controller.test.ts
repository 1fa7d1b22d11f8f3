import { describe, expect, it } from 'vitest';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ManualClock, settle } from '../test-support/manual-clock.ts';
import { Controller, type Outcome, type ReconcileResult, ReportedError, TerminalError } from './controller.ts';
import { WorkQueue } from './queue.ts';

type Step = (key: string, signal: AbortSignal) => Promise<ReconcileResult>;

/** A Controller on a manual clock whose reconcile does what the test's `step` says, logging each call. */
function harness(options: { workers?: number; graceMs?: number } = {}) {
  const clock = new ManualClock();
  const queue = new WorkQueue({ clock, limits: { baseDelayMs: 200, maxDelayMs: 10_000, retriesPerSecond: 1000, burst: 1000 } });
  const calls: { key: string; at: number }[] = [];
  const outcomes: { key: string; outcome: Outcome<ReconcileResult> }[] = [];
  const { logger, lines: logs } = captureLogger();
  let step: Step = async () => ({});
  const controller = new Controller<ReconcileResult>({
    queue,
    workers: options.workers ?? 2,
    shutdownGraceMs: options.graceMs ?? 5000,
    clock,
    logger,
    reconcile: (key, signal) => {
      calls.push({ key, at: clock.now() });
      return step(key, signal);
    },
    onOutcome: (key, outcome) => outcomes.push({ key, outcome }),
  });
  const stop = new AbortController();
  let drained: AbortSignal | undefined;
  const running = controller.run(stop.signal, async (signal) => {
    drained = signal;
  });
  const start = clock.now();
  return {
    clock,
    queue,
    controller,
    calls: () => calls.map((c) => `${c.key}@${c.at - start}`),
    outcomes,
    logs,
    setStep: (next: Step) => (step = next),
    stop: () => stop.abort(),
    running,
    drained: () => drained,
  };
}

describe('Controller', () => {
  it('retries a failing key by default, with a per-key backoff that doubles, and resets it on success', async () => {
    const h = harness();
    let failures = 2;
    h.setStep(async () => {
      if (failures-- > 0) throw new Error('flaky');
      return {};
    });
    h.queue.add('ns/a');
    await h.clock.advance(199);
    expect(h.calls()).toEqual(['ns/a@0']);
    await h.clock.advance(1);
    expect(h.calls()).toEqual(['ns/a@0', 'ns/a@200']);
    await h.clock.advance(600);
    expect(h.calls()).toEqual(['ns/a@0', 'ns/a@200', 'ns/a@600']);
    expect(h.queue.failures('ns/a')).toBe(0);
    expect(h.outcomes.map((o) => o.outcome.kind)).toEqual(['error', 'error', 'result']);
    expect(h.logs.filter((l) => l.includes('reconcile failed unexpectedly'))).toHaveLength(2);
    h.stop();
    await h.running;
  });

  it('does not retry a TerminalError, and does not log a ReportedError again', async () => {
    const h = harness();
    h.setStep(async (key) => {
      if (key === 'ns/terminal') throw new TerminalError('InvalidSpec: spec.scope', { reason: 'InvalidSpec' });
      throw new ReportedError('KMSUnavailable: no answer', { reason: 'KMSUnavailable' });
    });
    h.queue.add('ns/terminal');
    h.queue.add('ns/reported');
    await h.clock.advance(10_000);
    expect(h.calls().filter((c) => c.startsWith('ns/terminal'))).toEqual(['ns/terminal@0']);
    expect(h.calls().filter((c) => c.startsWith('ns/reported')).length).toBeGreaterThan(3);
    expect(h.queue.failures('ns/terminal')).toBe(0);
    expect(h.logs.filter((l) => l.includes('reconcile failed unexpectedly'))).toEqual([]);
    expect(h.outcomes.find((o) => o.key === 'ns/terminal')?.outcome).toMatchObject({ kind: 'terminal' });
    h.stop();
    await h.running;
  });

  it('looks at a key again after requeueAfterMs', async () => {
    const h = harness();
    h.setStep(async () => ({ requeueAfterMs: 60_000 }));
    h.queue.add('ns/a');
    await h.clock.advance(59_999);
    expect(h.calls()).toEqual(['ns/a@0']);
    await h.clock.advance(1);
    expect(h.calls()).toEqual(['ns/a@0', 'ns/a@60000']);
    h.stop();
    await h.running;
  });

  it('never runs one key in two workers at once; a key added meanwhile runs again after', async () => {
    const h = harness({ workers: 4 });
    let release!: () => void;
    let running = 0;
    let most = 0;
    h.setStep(async () => {
      running++;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => (release = resolve));
      running--;
      return {};
    });
    h.queue.add('ns/a');
    await settle();
    h.queue.add('ns/a');
    h.queue.add('ns/a');
    await settle();
    release();
    await settle();
    release();
    await settle();
    expect(h.calls()).toEqual(['ns/a@0', 'ns/a@0']);
    expect(most).toBe(1);
    h.stop();
    await h.running;
  });

  it('retryNow reconciles keys at once, their backoff reset', async () => {
    const h = harness();
    let failing = true;
    h.setStep(async () => {
      if (failing) throw new ReportedError('KMSUnavailable', { reason: 'KMSUnavailable' });
      return {};
    });
    h.queue.add('ns/a');
    await h.clock.advance(200 + 400 + 800);
    expect(h.queue.failures('ns/a')).toBe(4);
    failing = false;
    h.controller.retryNow(['ns/a']);
    await settle();
    expect(h.calls().at(-1)).toBe('ns/a@1400');
    expect(h.queue.failures('ns/a')).toBe(0);
    h.stop();
    await h.running;
  });

  it('on stop: takes no new key, lets the reconcile in flight finish within the grace period, then drains', async () => {
    const h = harness({ graceMs: 5000 });
    let finish!: () => void;
    let seen: AbortSignal | undefined;
    h.setStep(async (_key, signal) => {
      seen = signal;
      await new Promise<void>((resolve) => (finish = resolve));
      return {};
    });
    h.queue.add('ns/a');
    await settle();
    h.stop();
    h.queue.add('ns/b');
    await h.clock.advance(4000);
    expect(seen?.aborted).toBe(false);
    finish();
    await h.running;
    expect(h.calls()).toEqual(['ns/a@0']);
    expect(h.drained()?.aborted).toBe(false);
    expect(h.clock.pending).toBe(0);
  });

  it('aborts the reconcile in flight when the grace period is over, and does not retry it', async () => {
    const h = harness({ graceMs: 5000 });
    h.setStep((_key, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })));
    h.queue.add('ns/a');
    await settle();
    h.stop();
    await h.clock.advance(5000);
    await h.running;
    expect(h.outcomes).toEqual([{ key: 'ns/a', outcome: expect.objectContaining({ kind: 'error', retryInMs: undefined }) }]);
    expect(h.drained()?.aborted).toBe(true);
    expect(h.queue.failures('ns/a')).toBe(0);
  });
});
