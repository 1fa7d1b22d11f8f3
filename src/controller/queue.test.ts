import { describe, expect, it } from 'vitest';
import { type Clock, WorkQueue } from './queue.ts';

function fakeClock() {
  let now = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let next = 1;
  const clock: Clock & { advance(ms: number): void } = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = next++;
      timers.set(id, { at: now + ms, fn });
      return id as unknown as { unref(): void };
    },
    clearTimeout: (id) => void timers.delete(id as number),
    advance(ms) {
      now += ms;
      for (const [id, t] of [...timers].sort((a, b) => a[1].at - b[1].at)) {
        if (t.at <= now) {
          timers.delete(id);
          t.fn();
        }
      }
    },
  };
  return clock;
}

describe('WorkQueue', () => {
  it('deduplicates keys that are waiting', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.depth).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('never hands one key to two workers; a key added while processing comes back after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a');
    expect(q.depth).toBe(0);
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await Promise.resolve();
    expect(second).toBeUndefined();
    q.done(first!);
    await Promise.resolve();
    expect(second).toBe('a');
  });

  it('backs off exponentially per key and resets on forget', () => {
    const clock = fakeClock();
    const q = new WorkQueue({ clock, limits: { baseDelayMs: 100, maxDelayMs: 1000, burst: 1000 } });
    expect([1, 2, 3, 4, 5].map(() => q.addRateLimited('k'))).toEqual([100, 200, 400, 800, 1000]);
    q.forget('k');
    expect(q.addRateLimited('k')).toBe(100);
    expect(q.addRateLimited('other')).toBe(100);
  });

  it('throttles retries globally with a token bucket', () => {
    const clock = fakeClock();
    const q = new WorkQueue({ clock, limits: { baseDelayMs: 1, retriesPerSecond: 10, burst: 2 } });
    expect(q.addRateLimited('a')).toBe(1);
    expect(q.addRateLimited('b')).toBe(1);
    expect(q.addRateLimited('c')).toBe(100);
    expect(q.addRateLimited('d')).toBe(200);
  });

  it('adds delayed keys when their time comes, the earliest request winning', () => {
    const clock = fakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 500);
    q.addAfter('a', 100);
    q.addAfter('a', 900);
    clock.advance(99);
    expect(q.depth).toBe(0);
    clock.advance(1);
    expect(q.depth).toBe(1);
    clock.advance(1000);
    expect(q.depth).toBe(1);
  });

  it('releases waiting workers on shutdown', async () => {
    const q = new WorkQueue();
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
    q.add('x');
    expect(await q.get()).toBeUndefined();
  });

  it('serves namespaces in turn: a namespace with 1,000 waiting keys does not delay another', async () => {
    const q = new WorkQueue();
    for (let i = 0; i < 1000; i++) q.add(`busy/obj-${i}`);
    q.add('quiet/new');
    q.add('other/new');
    const first = [await q.get(), await q.get(), await q.get(), await q.get()];
    expect(first).toEqual(['busy/obj-0', 'quiet/new', 'other/new', 'busy/obj-1']);
    expect(q.depth).toBe(998);
  });

  it('passes over a namespace at its in-flight limit while another has work, but never idles', async () => {
    const q = new WorkQueue({ maxInFlightPerNamespace: 2 });
    for (let i = 0; i < 5; i++) q.add(`slow/obj-${i}`);
    expect(await q.get()).toBe('slow/obj-0');
    expect(await q.get()).toBe('slow/obj-1');
    q.add('fast/obj');
    // slow has 2 in flight: fast goes first although slow is next in turn.
    expect(await q.get()).toBe('fast/obj');
    // Only slow has work left: it is served beyond its limit rather than leaving a worker idle.
    expect(await q.get()).toBe('slow/obj-2');
    q.done('slow/obj-0');
    q.done('slow/obj-1');
    q.done('slow/obj-2');
    q.add('fast/obj-2');
    expect([await q.get(), await q.get()]).toEqual(['slow/obj-3', 'fast/obj-2']);
  });

  it('keeps FIFO order within a namespace', async () => {
    const q = new WorkQueue();
    for (const key of ['a/1', 'b/1', 'a/2', 'a/3', 'b/2']) q.add(key);
    const order: string[] = [];
    for (let i = 0; i < 5; i++) order.push((await q.get())!);
    expect(order.filter((k) => k.startsWith('a/'))).toEqual(['a/1', 'a/2', 'a/3']);
    expect(order.filter((k) => k.startsWith('b/'))).toEqual(['b/1', 'b/2']);
  });

  it('counts a heavy key as several: a key heavier than the share waits while another namespace can start one', async () => {
    const q = new WorkQueue({ maxInFlightPerNamespace: 2, weightOf: (key) => (key.startsWith('big/') ? 6 : 1) });
    for (let i = 0; i < 3; i++) q.add(`big/obj-${i}`);
    for (let i = 0; i < 3; i++) q.add(`small/obj-${i}`);
    // big is first in turn, but its next key weighs 6, over the share of 2: small goes.
    expect([await q.get(), await q.get()]).toEqual(['small/obj-0', 'small/obj-1']);
    // small is at its share too: no namespace can start within its share, so the next in
    // turn is served rather than leaving a worker idle.
    expect(await q.get()).toBe('big/obj-0');
    q.done('small/obj-0');
    expect(await q.get()).toBe('small/obj-2');
    // Only big has work left: served anyway.
    expect(await q.get()).toBe('big/obj-1');
  });

  it('serves event keys before resync keys: a new object does not wait behind a resync of 10,000', async () => {
    const q = new WorkQueue();
    for (let i = 0; i < 10_000; i++) q.add(`ns-${i % 100}/obj-${i}`, 'resync');
    q.add('tenant/new-object', 'event');
    expect(q.depthOf('event')).toBe(1);
    expect(q.depthOf('resync')).toBe(10_000);
    expect(await q.get()).toBe('tenant/new-object');
    expect(await q.get()).toBe('ns-0/obj-0');
    expect(q.depth).toBe(9_999);
  });

  it('processes a key waiting in both classes once, in the event class', async () => {
    const q = new WorkQueue();
    for (const key of ['a/1', 'a/2', 'b/1']) q.add(key, 'resync');
    q.add('a/2', 'event');
    // Adding as resync what waits as an event changes nothing.
    q.add('a/2', 'resync');
    expect(q.depth).toBe(3);
    expect([q.depthOf('event'), q.depthOf('resync')]).toEqual([1, 2]);
    const order: string[] = [];
    for (let i = 0; i < 3; i++) order.push((await q.get())!);
    expect(order).toEqual(['a/2', 'a/1', 'b/1']);
    expect(q.depth).toBe(0);
    // Nothing left over: the next key is whatever comes next.
    q.add('c/1', 'resync');
    expect(await q.get()).toBe('c/1');
    expect(q.depth).toBe(0);
  });

  it('keeps the dirty-set rule across classes: a key added while processing comes back once, in its highest class', async () => {
    const q = new WorkQueue();
    q.add('a/1', 'resync');
    q.add('a/2', 'resync');
    expect(await q.get()).toBe('a/1');
    q.add('a/1', 'resync');
    q.add('a/1', 'event');
    expect(q.depth).toBe(1);
    q.done('a/1');
    expect(q.depthOf('event')).toBe(1);
    expect(await q.get()).toBe('a/1');
    expect(await q.get()).toBe('a/2');
    q.done('a/1');
    expect(q.depth).toBe(0);
  });

  it('never hands a key that moved up to two workers', async () => {
    const q = new WorkQueue();
    q.add('a/1', 'resync');
    q.add('a/1', 'event');
    expect(await q.get()).toBe('a/1');
    // Re-added as resync while it is processed: its old resync entry must not start it again.
    q.add('a/1', 'resync');
    q.add('b/1', 'resync');
    expect(await q.get()).toBe('b/1');
    let next: string | undefined;
    void q.get().then((k) => (next = k));
    await Promise.resolve();
    expect(next).toBeUndefined();
    q.done('a/1');
    await Promise.resolve();
    expect(next).toBe('a/1');
    expect(q.depth).toBe(0);
  });

  it('shares one in-flight limit per namespace across both classes', async () => {
    const q = new WorkQueue({ maxInFlightPerNamespace: 1 });
    q.add('busy/1', 'event');
    q.add('busy/2', 'event');
    q.add('quiet/1', 'resync');
    expect(await q.get()).toBe('busy/1');
    // busy is at its share: the event line has only busy keys, so it is served anyway (no idle worker)...
    expect(await q.get()).toBe('busy/2');
    q.done('busy/1');
    q.done('busy/2');
    q.add('quiet/2', 'event');
    q.add('busy/3', 'event');
    expect(await q.get()).toBe('quiet/2');
    // ...and quiet, with one in flight, is passed over for busy within the event line.
    q.add('quiet/3', 'event');
    expect(await q.get()).toBe('busy/3');
  });
});
