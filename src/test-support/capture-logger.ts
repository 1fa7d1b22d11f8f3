import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';

/** A pino logger whose lines (JSON text) land in `lines`, for tests that check what was logged. */
export function captureLogger(level = 'debug'): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}
