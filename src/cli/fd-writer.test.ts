import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fdWriter } from './fd-writer.ts';

describe('fdWriter', () => {
  let work: string;
  const fds: number[] = [];
  beforeEach(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'envseal-fd-writer-'));
  });
  afterEach(() => {
    for (const fd of fds.splice(0)) closeSync(fd);
    rmSync(work, { recursive: true, force: true });
  });
  const neverStream = () => {
    throw new Error('the stream was made');
  };

  it('writes text and bytes to the descriptor in order, without making the stream', async () => {
    const file = path.join(work, 'out');
    const fd = openSync(file, 'w');
    fds.push(fd);
    const writer = fdWriter({ fd, stream: neverStream });
    expect(writer.write('one\n')).toBe(true);
    writer.write(Buffer.from('two\n'));
    await writer.flush();
    expect(readFileSync(file, 'utf8')).toBe('one\ntwo\n');
    expect(writer.isTTY).toBe(false);
  });

  it('a full non-blocking pipe (EAGAIN) hands the rest over to the stream, in order', async () => {
    // A FIFO opened non-blocking on both ends: the kernel's pipe buffer (64 KiB) fills up.
    const fifo = path.join(work, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    fds.push(reader);
    const fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    fds.push(fd);
    const handedOver: Buffer[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        handedOver.push(Buffer.from(chunk));
        callback();
      },
    });
    const writer = fdWriter({ fd, stream: () => stream });
    const first = Buffer.alloc(1 << 20, 'a');
    writer.write(first);
    writer.write('after');
    await writer.flush();
    const drained = Buffer.alloc(1 << 20);
    let inPipe = 0;
    for (;;) {
      try {
        const n = readSync(reader, drained, inPipe, drained.length - inPipe, null);
        if (n === 0) break;
        inPipe += n;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw error;
      }
    }
    expect(inPipe).toBeGreaterThan(0);
    expect(inPipe).toBeLessThan(first.length);
    // Every byte once, in order: what the pipe took, then what the stream took.
    expect(Buffer.concat([drained.subarray(0, inPipe), ...handedOver]).toString()).toBe(`${first.toString()}after`);
  });

  it('a closed reader (EPIPE) drops the rest quietly', () => {
    const fifo = path.join(work, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    fds.push(fd);
    closeSync(reader);
    const writer = fdWriter({ fd, stream: neverStream });
    expect(writer.write('lost\n')).toBe(true);
    expect(writer.write('also lost\n')).toBe(true);
  });

  it('any other error is thrown', () => {
    const fd = openSync(path.join(work, 'read-only'), 'w+');
    closeSync(fd);
    const readOnly = openSync(path.join(work, 'read-only'), 'r');
    fds.push(readOnly);
    const writer = fdWriter({ fd: readOnly, stream: neverStream });
    expect(() => writer.write('x')).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});
