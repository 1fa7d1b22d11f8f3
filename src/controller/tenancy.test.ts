// The controller's defences against a tenant: the drift backoff, restart consent, the
// per-namespace budget of key-provider calls, failures remembered per generation, and
// kstatus conditions.
import { describe, expect, it } from 'vitest';
import { NamespaceBudget } from './budget.ts';
import { statusConditions } from './conditions.ts';
import { podTemplateUsesSecret } from './consent.ts';
import { DriftTracker } from './drift.ts';
import { FailureMemo } from './failure-memo.ts';

describe('DriftTracker', () => {
  it('repairs a few times, then backs off with a doubling delay, and says so once per backoff', () => {
    let now = 0;
    const drift = new DriftTracker({ now: () => now, windowMs: 60_000, maxRepairs: 3, baseBackoffMs: 60_000, maxBackoffMs: 240_000 });
    for (let i = 0; i < 3; i++) {
      expect(drift.drifted('ns/a')).toEqual({ repair: true });
      now += 1000;
    }
    expect(drift.drifted('ns/a')).toEqual({ repair: false, retryAfterMs: 60_000, started: true, repairs: 3 });
    now += 10_000;
    expect(drift.drifted('ns/a')).toEqual({ repair: false, retryAfterMs: 50_000, started: false, repairs: 0 });
    now += 50_000;
    for (let i = 0; i < 3; i++) expect(drift.drifted('ns/a').repair).toBe(true);
    expect(drift.drifted('ns/a')).toMatchObject({ repair: false, retryAfterMs: 120_000, started: true });
    now += 120_000;
    for (let i = 0; i < 3; i++) drift.drifted('ns/a');
    expect(drift.drifted('ns/a')).toMatchObject({ retryAfterMs: 240_000 });
    now += 240_000;
    for (let i = 0; i < 3; i++) drift.drifted('ns/a');
    expect(drift.drifted('ns/a')).toMatchObject({ retryAfterMs: 240_000 });
    // Another object is not affected; a forgotten one starts over.
    expect(drift.drifted('ns/b')).toEqual({ repair: true });
    drift.forget('ns/a');
    expect(drift.drifted('ns/a')).toEqual({ repair: true });
  });

  it('does not count repairs older than the window', () => {
    let now = 0;
    const drift = new DriftTracker({ now: () => now, windowMs: 60_000, maxRepairs: 3 });
    for (let i = 0; i < 10; i++) {
      expect(drift.drifted('ns/slow').repair).toBe(true);
      now += 30_000;
    }
  });
});

describe('podTemplateUsesSecret', () => {
  const workload = (pod: object) => ({ spec: { template: { spec: pod } } });
  it.each([
    ['a volume', { volumes: [{ name: 'v', secret: { secretName: 'db' } }], containers: [] }],
    ['a projected volume', { volumes: [{ name: 'v', projected: { sources: [{ configMap: { name: 'x' } }, { secret: { name: 'db' } }] } }], containers: [] }],
    ['an env var', { containers: [{ name: 'c', env: [{ name: 'P', valueFrom: { secretKeyRef: { name: 'db', key: 'P' } } }] }] }],
    ['envFrom', { containers: [{ name: 'c', envFrom: [{ secretRef: { name: 'db' } }] }] }],
    ['an init container', { initContainers: [{ name: 'i', envFrom: [{ secretRef: { name: 'db' } }] }], containers: [{ name: 'c' }] }],
  ])('is true for a pod template that uses the Secret through %s', (_what, pod) => {
    expect(podTemplateUsesSecret(workload(pod), 'db')).toBe(true);
  });

  it.each([
    ['no reference', { containers: [{ name: 'c', image: 'x' }] }],
    [
      'another Secret',
      { volumes: [{ name: 'v', secret: { secretName: 'db-other' } }], containers: [{ name: 'c', envFrom: [{ secretRef: { name: 'api' } }] }] },
    ],
    ['a ConfigMap of the same name', { containers: [{ name: 'c', envFrom: [{ configMapRef: { name: 'db' } }] }] }],
  ])('is false with %s', (_what, pod) => {
    expect(podTemplateUsesSecret(workload(pod), 'db')).toBe(false);
  });

  it('is false for an object without a pod template', () => {
    expect(podTemplateUsesSecret({}, 'db')).toBe(false);
  });
});

describe('NamespaceBudget', () => {
  it('admits a namespace up to its burst, then spreads waiting objects at its rate', () => {
    let now = 0;
    const budget = new NamespaceBudget({ perSecond: 2, burst: 3, now: () => now });
    for (let i = 0; i < 3; i++) expect(budget.admit('greedy', `greedy/o${i}`)).toBe(0);
    // Out of tokens: each waiting object reserves the next slot, 500 ms apart.
    expect(budget.admit('greedy', 'greedy/a')).toBe(500);
    expect(budget.admit('greedy', 'greedy/b')).toBe(1000);
    // Asking again before its slot does not reserve another one.
    expect(budget.admit('greedy', 'greedy/a')).toBe(500);
    // Another namespace is not affected.
    expect(budget.admit('quiet', 'quiet/x')).toBe(0);
    now += 500;
    expect(budget.admit('greedy', 'greedy/a')).toBe(0);
    expect(budget.admit('greedy', 'greedy/b')).toBe(500);
    now += 500;
    expect(budget.admit('greedy', 'greedy/b')).toBe(0);
  });

  it('charges calls beyond the admitted one as debt, and refunds an admission that made no call', () => {
    let now = 0;
    const budget = new NamespaceBudget({ perSecond: 10, burst: 2, now: () => now });
    expect(budget.admit('ns', 'ns/a')).toBe(0);
    // The object tried 5 recipients: 4 more calls are owed.
    for (let i = 0; i < 4; i++) budget.charge('ns');
    expect(budget.admit('ns', 'ns/b')).toBe(400);
    now += 400;
    expect(budget.admit('ns', 'ns/b')).toBe(0);
    budget.refund('ns');
    expect(budget.admit('ns', 'ns/c')).toBe(0);
  });

  it('admits everything when disabled', () => {
    const budget = new NamespaceBudget({ perSecond: 0, burst: 0 });
    for (let i = 0; i < 10_000; i++) expect(budget.admit('any', `any/${i}`)).toBe(0);
    expect(budget.enabled).toBe(false);
  });
});

describe('FailureMemo', () => {
  it('holds for the same object and generation until it expires, and not after a change', () => {
    const memo = new FailureMemo();
    const object = { metadata: { uid: 'u', generation: 2 } };
    memo.remember('ns/a', object, 'NoUsableRecipient', 1000);
    expect(memo.holds('ns/a', object, 999)).toBe(true);
    expect(memo.holds('ns/a', { metadata: { uid: 'u', generation: 3 } }, 0)).toBe(false);
    memo.remember('ns/a', object, 'NoUsableRecipient', 1000);
    expect(memo.holds('ns/a', { metadata: { uid: 'other', generation: 2 } }, 0)).toBe(false);
    memo.remember('ns/a', object, 'KMSAccessDenied', 1000);
    expect(memo.holds('ns/a', object, 1000)).toBe(false);
  });
});

describe('statusConditions (kstatus)', () => {
  const now = new Date('2026-11-29T10:00:00Z');
  it('is Ready alone when synced', () => {
    const conditions = statusConditions({ ready: true, reason: 'Synced', message: 'ok' }, undefined, 4, now);
    expect(conditions.map((c) => [c.type, c.status])).toEqual([['Ready', 'True']]);
    expect(conditions[0]!.observedGeneration).toBe(4);
  });

  it('adds Stalled for a failure that needs a person, Reconciling for one that is retried', () => {
    expect(statusConditions({ ready: false, reason: 'ContextMismatch', message: 'm' }, undefined, 1, now).map((c) => [c.type, c.status, c.reason])).toEqual([
      ['Ready', 'False', 'ContextMismatch'],
      ['Stalled', 'True', 'ContextMismatch'],
    ]);
    expect(statusConditions({ ready: false, reason: 'KMSThrottled', message: 'm' }, undefined, 1, now).map((c) => [c.type, c.status])).toEqual([
      ['Ready', 'False'],
      ['Reconciling', 'True'],
    ]);
  });

  it('keeps lastTransitionTime while a status holds, and caps messages at 1 KiB', () => {
    const before = statusConditions({ ready: false, reason: 'Conflict', message: 'm' }, undefined, 1, new Date('2026-01-01T00:00:00Z'));
    const after = statusConditions({ ready: false, reason: 'Conflict', message: 'é'.repeat(5000) }, before, 1, now);
    expect(after[0]!.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(Buffer.byteLength(after[0]!.message)).toBeLessThanOrEqual(1024);
  });
});
