import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { KubeObjectApi } from '../kube/object-api.ts';
import { EventRecorder } from './events.ts';

const object = { apiVersion: 'envseal.dev/v1alpha1', kind: 'EnvelopeSecret', namespace: 'ns', name: 'db', uid: 'u1' };

/** A client whose POSTs wait until released, recording their bodies in order. */
function gatedClient(options: { fail?: (reason: string) => boolean } = {}) {
  const posted: { reason: string; message: string }[] = [];
  const gates: (() => void)[] = [];
  const client = {
    create: async (body: { reason: string; message: string }) => {
      await new Promise<void>((resolve) => gates.push(resolve));
      if (options.fail?.(body.reason)) throw new Error('503 from the API server');
      posted.push({ reason: body.reason, message: body.message });
      return {};
    },
  } as unknown as Pick<KubeObjectApi, 'create'>;
  const releaseAll = async () => {
    for (let i = 0; i < 100 && (gates.length > 0 || i < 3); i++) {
      for (const open of gates.splice(0)) open();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { client, posted, releaseAll };
}

function capturingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  return { logger, lines };
}

describe('EventRecorder', () => {
  it('returns before the Event is sent, then sends every Event in order', async () => {
    const { client, posted, releaseAll } = gatedClient();
    const recorder = new EventRecorder({ client, logger: capturingLogger().logger, instance: 'test' });
    recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'first' });
    recorder.record(object, { type: 'Warning', reason: 'DecryptFailed', message: 'second' });
    recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'third' });
    expect(posted).toEqual([]);
    const flushed = recorder.flush();
    await releaseAll();
    await flushed;
    expect(posted.map((p) => p.message)).toEqual(['first', 'second', 'third']);
  });

  it('drops Events beyond its backlog, counts and logs it, and keeps sending the rest', async () => {
    const { client, posted, releaseAll } = gatedClient();
    const { logger, lines } = capturingLogger();
    const recorder = new EventRecorder({ client, logger, instance: 'test', backlog: 2 });
    // The first is taken by the sender at once; two wait; the fourth does not fit.
    for (const message of ['a', 'b', 'c', 'd']) recorder.record(object, { type: 'Normal', reason: 'Synced', message });
    expect(recorder.dropped).toBe(1);
    expect(lines.some((l) => l.includes('event backlog full'))).toBe(true);
    const flushed = recorder.flush();
    await releaseAll();
    await flushed;
    expect(posted.map((p) => p.message)).toEqual(['a', 'b', 'c']);
  });

  it('logs a failed post without the message and goes on with the next Event', async () => {
    const { client, posted, releaseAll } = gatedClient({ fail: (reason) => reason === 'DecryptFailed' });
    const { logger, lines } = capturingLogger();
    const recorder = new EventRecorder({ client, logger, instance: 'test' });
    recorder.record(object, { type: 'Warning', reason: 'DecryptFailed', message: 'value of key CANARY-x altered' });
    recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'ok' });
    const flushed = recorder.flush();
    await releaseAll();
    await flushed;
    expect(posted.map((p) => p.reason)).toEqual(['Synced']);
    const warning = lines.find((l) => l.includes('could not record event'));
    expect(warning).toContain('DecryptFailed');
    expect(warning).not.toContain('CANARY-x');
  });

  it('stops waiting in flush when its signal aborts', async () => {
    const { client } = gatedClient();
    const recorder = new EventRecorder({ client, logger: capturingLogger().logger, instance: 'test' });
    recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'never released' });
    const stop = new AbortController();
    const flushed = recorder.flush(stop.signal);
    stop.abort();
    await expect(flushed).resolves.toBeUndefined();
  });
});

describe('EventRecorder, an Event recorded as the sender finishes', () => {
  it('is sent, whatever the moment (no Event waits for a next one)', async () => {
    for (let delay = 0; delay < 12; delay++) {
      const posted: string[] = [];
      let release: (() => void) | undefined;
      const client = {
        create: async (body: { message: string }) => {
          if (body.message === 'first') await new Promise<void>((resolve) => (release = resolve));
          posted.push(body.message);
          return {};
        },
      } as unknown as Pick<KubeObjectApi, 'create'>;
      const recorder = new EventRecorder({ client, logger: capturingLogger().logger, instance: 'test' });
      recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'first' });
      await new Promise((resolve) => setImmediate(resolve));
      release!();
      // Record the second Event `delay` microtasks later: around the moment the sender ends.
      for (let i = 0; i < delay; i++) await Promise.resolve();
      recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'second' });
      await recorder.flush();
      for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
      expect(posted, `second recorded ${delay} microtasks after the release`).toEqual(['first', 'second']);
    }
  });

  it('stamps each Event with the time it was recorded, from the injected clock', async () => {
    const bodies: { firstTimestamp: string; lastTimestamp: string; reason: string }[] = [];
    const client = {
      create: async (body: (typeof bodies)[number]) => {
        bodies.push(body);
        return {};
      },
    } as unknown as Pick<KubeObjectApi, 'create'>;
    let now = Date.UTC(2026, 0, 1, 12, 0, 0);
    const recorder = new EventRecorder({ client, logger: capturingLogger().logger, instance: 'test', clock: { now: () => now } });
    recorder.record(object, { type: 'Normal', reason: 'Synced', message: 'first' });
    now += 90_000;
    recorder.record(object, { type: 'Warning', reason: 'Conflict', message: 'second' });
    await recorder.flush();
    expect(bodies.map((b) => [b.reason, b.firstTimestamp, b.lastTimestamp])).toEqual([
      ['Synced', '2026-01-01T12:00:00.000Z', '2026-01-01T12:00:00.000Z'],
      ['Conflict', '2026-01-01T12:01:30.000Z', '2026-01-01T12:01:30.000Z'],
    ]);
  });
});
