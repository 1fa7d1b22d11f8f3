import { describe, expect, it } from 'vitest';
import { KubeApiError, retryAfterMs, throttledBy } from './client.ts';
import { RequestGate } from './request-gate.ts';

const tooMany = (retryAfter?: number) => new KubeApiError(429, 'TooManyRequests', 'GET /api/v1/secrets: 429 TooManyRequests', { retryAfterMs: retryAfter });

/** A send the test settles by hand. */
function deferred<T = string>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((a, b) => {
    resolve = a;
    reject = b;
  });
  return { promise, resolve, reject };
}

/** A send answered 429 once `first` settles, and 'ok' when sent again. */
function throttledOnce(first: Promise<unknown>): () => Promise<string> {
  let sent = 0;
  return () => (++sent === 1 ? first.then(() => Promise.reject(tooMany(1))) : Promise.resolve('ok'));
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

function gate(options: { attempts?: number } = {}) {
  const sleeps: number[] = [];
  const limits: number[] = [];
  let throttled = 0;
  let now = 0;
  const g = new RequestGate({
    throttled: throttledBy,
    attempts: options.attempts,
    onThrottled: () => throttled++,
    onLimit: (limit) => limits.push(limit),
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    random: () => 0,
  });
  return { g, sleeps, limits, throttledCount: () => throttled, tick: (ms: number) => (now += ms) };
}

describe('RequestGate', () => {
  it('sets no limit while the server answers', async () => {
    const { g, limits } = gate();
    const sends = Array.from({ length: 50 }, () => deferred());
    const calls = sends.map((s) => g.run(() => s.promise));
    await flush();
    expect(g.inFlight).toBe(50);
    for (const [i, s] of sends.entries()) s.resolve(`r${i}`);
    expect(await Promise.all(calls)).toEqual(sends.map((_, i) => `r${i}`));
    expect(g.limit).toBe(Number.POSITIVE_INFINITY);
    expect(limits).toEqual([]);
  });

  it('waits out a 429 for its Retry-After and sends the request again', async () => {
    const { g, sleeps, throttledCount } = gate();
    let sent = 0;
    const result = await g.run(async () => {
      sent++;
      if (sent === 1) throw tooMany(2000);
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(sent).toBe(2);
    expect(sleeps).toEqual([2000]);
    expect(throttledCount()).toBe(1);
  });

  it('waits 1 s when a 429 has no Retry-After, and caps a long one at 10 s', async () => {
    const { g, sleeps } = gate();
    const answers = [tooMany(undefined), tooMany(3_600_000)];
    await g.run(async () => {
      const next = answers.shift();
      if (next) throw next;
      return 'ok';
    });
    expect(sleeps).toEqual([1000, 10_000]);
  });

  it('gives up after its attempts with the 429 itself (the caller retries later)', async () => {
    const { g } = gate({ attempts: 3 });
    let sent = 0;
    const error = await g
      .run(async () => {
        sent++;
        throw tooMany(1000);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).status).toBe(429);
    expect(sent).toBe(3);
    expect(g.inFlight).toBe(0);
  });

  it('passes every other error through at once', async () => {
    const { g, sleeps } = gate();
    let sent = 0;
    const conflict = new KubeApiError(409, 'Conflict', 'PATCH x: 409 Conflict');
    await expect(
      g.run(async () => {
        sent++;
        throw conflict;
      }),
    ).rejects.toBe(conflict);
    expect(sent).toBe(1);
    expect(sleeps).toEqual([]);
  });

  it('halves what is in flight on a 429, once per window, and holds the rest back', async () => {
    const { g, limits } = gate();
    const first = Array.from({ length: 8 }, () => deferred());
    const calls = first.map((s, i) => g.run(i < 3 ? throttledOnce(s.promise) : () => s.promise));
    await flush();
    expect(g.inFlight).toBe(8);
    first[0]!.resolve('');
    await flush();
    // 8 in flight at the first 429: the limit is 4.
    expect(g.limit).toBe(4);
    // Two more 429s from requests sent before the decrease: no further decrease.
    first[1]!.resolve('');
    first[2]!.resolve('');
    await flush();
    expect(g.limit).toBe(4);
    expect(limits).toEqual([4]);
    // The three throttled requests wait for their slots: 5 of the first sends are still
    // in flight, above the limit, so none of them may be sent again yet.
    expect(g.inFlight).toBe(5);
    for (const s of first.slice(3)) s.resolve('ok');
    await flush();
    expect(g.inFlight).toBeLessThanOrEqual(4);
    await Promise.all(calls);
  });

  it('grows the limit back by one per window of successes, and lifts it above the peak', async () => {
    const { g, limits } = gate();
    const sends = Array.from({ length: 4 }, () => deferred());
    const calls = sends.map((s, i) => g.run(i === 0 ? throttledOnce(s.promise) : () => s.promise));
    await flush();
    sends[0]!.resolve('');
    await flush();
    expect(g.limit).toBe(2);
    for (const s of sends.slice(1)) s.resolve('ok');
    await Promise.all(calls);
    // Successes since: 3 sends plus the retried one; the limit grew, one step per window.
    for (let i = 0; i < 20 && Number.isFinite(g.limit); i++) await g.run(async () => 'ok');
    expect(g.limit).toBe(Number.POSITIVE_INFINITY);
    expect(limits[0]).toBe(2);
    expect(limits.at(-1)).toBe(Number.POSITIVE_INFINITY);
    expect(limits.slice(1, -1).every((l, i, all) => i === 0 || l > all[i - 1]!)).toBe(true);
  });

  it('lets an abort take a waiting request out of the line', async () => {
    const { g } = gate();
    const throttle = deferred();
    const busy = Array.from({ length: 3 }, () => deferred());
    const calls = [g.run(throttledOnce(throttle.promise)), ...busy.map((s) => g.run(() => s.promise))];
    await flush();
    throttle.resolve('');
    await flush();
    // 4 in flight at the 429: the limit is 2, and 3 are still in flight.
    expect(g.limit).toBe(2);
    const controller = new AbortController();
    let sent = false;
    const waiting = g.run(async () => {
      sent = true;
      return 'sent';
    }, controller.signal);
    await flush();
    controller.abort(new Error('stopping'));
    await expect(waiting).rejects.toThrow('stopping');
    for (const s of busy) s.resolve('ok');
    await Promise.all(calls);
    expect(sent).toBe(false);
    expect(g.inFlight).toBe(0);
  });
});

describe('retryAfterMs', () => {
  it('reads seconds, and nothing else', () => {
    expect(retryAfterMs('1')).toBe(1000);
    expect(retryAfterMs(' 30 ')).toBe(30_000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:00 GMT')).toBeUndefined();
    expect(retryAfterMs('')).toBeUndefined();
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs('-1')).toBeUndefined();
  });
});
