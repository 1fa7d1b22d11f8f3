/**
 * The pumps: read, encrypt or decrypt, and write a whole message in batches of whole
 * frames (1 MiB by default) through a few reused buffers, so memory stays bounded
 * whatever the size.
 */
import { type MessageDecryptor, reproduceContext } from './decrypt.ts';
import type { MessageEncryptor } from './encrypt.ts';
import { FileFormatError } from './errors.ts';
import { framesLength } from './frames.ts';
import type { MessageHeader } from './header.ts';
import type { CollectGarbage, Sink } from './sinks.ts';
import { type ByteSource, openFiller } from './sources.ts';

export interface PumpOptions {
  signal?: AbortSignal;
  /** Called with the input bytes consumed so far (for a progress bar). */
  onProgress?: (inputBytes: number) => void;
  /** Plaintext bytes per batch of frames (default 1 MiB, rounded down to whole frames, at least one frame). */
  batchBytes?: number;
  /** Called every `collectEveryBytes` input bytes (default: once per batch; 0: never, V8's own schedule). */
  collectGarbage?: CollectGarbage;
  collectEveryBytes?: number;
  /**
   * Decrypt only: the encryption context the reader reproduces (see reproduceContext):
   * pairs the header stores must match; pairs it lacks are bound through the header tag,
   * and dataKeyFor sees the header with the whole context.
   */
  reproducedContext?: Readonly<Record<string, string>>;
}

export const DEFAULT_BATCH_BYTES = 1024 * 1024;
/** Reads a source into the pumps' own buffers: a file directly (no copy), any other source by copying its chunks. */
class BufferPool {
  readonly size: number;
  readonly #free: ArrayBuffer[] = [];
  constructor(size: number) {
    this.size = size;
  }
  take(): Buffer {
    return Buffer.from(this.#free.pop() ?? new ArrayBuffer(this.size));
  }
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.size) this.#free.push(buffer);
  }
}

function collector(options: PumpOptions): (consumed: number) => void {
  const every = options.collectEveryBytes ?? options.batchBytes ?? DEFAULT_BATCH_BYTES;
  const collectGarbage = options.collectGarbage;
  if (every <= 0 || collectGarbage === undefined) return () => {};
  let at = every;
  return (consumed) => {
    if (consumed < at) return;
    at = consumed + every;
    collectGarbage();
  };
}

function framesPerBatch(frameLength: number, options: PumpOptions): number {
  return Math.max(1, Math.floor((options.batchBytes ?? DEFAULT_BATCH_BYTES) / frameLength));
}

/**
 * Encrypts `source` into `sink` (header, frames, footer). Does not commit or abort the
 * sink. Plaintext is read in batches of whole frames into reused buffers (the next read
 * runs while this batch is encrypted); each batch is encrypted into one reused output
 * buffer, signed and written while the next one is computed. Memory is a handful of
 * batch buffers whatever the size. The last frame of a full batch is the final frame
 * only when the next read finds nothing.
 */
export async function pumpEncrypt(source: ByteSource, encryptor: MessageEncryptor, sink: Sink, options: PumpOptions = {}): Promise<void> {
  const frameLength = encryptor.frameLength;
  const perBatch = framesPerBatch(frameLength, options);
  const inputs = new BufferPool(perBatch * frameLength);
  const outputs = new BufferPool(framesLength(frameLength, perBatch - 1, frameLength));
  const collect = collector(options);
  const filler = await openFiller(source);
  let consumed = 0;
  const read = async (): Promise<{ buffer: Buffer; length: number }> => {
    const buffer = inputs.take();
    return { buffer, length: await filler.fill(buffer, 0) };
  };
  let ahead: Promise<{ buffer: Buffer; length: number }> | undefined;
  try {
    await sink.write([encryptor.header()]);
    let written: Buffer | undefined;
    let current = await read();
    ahead = current.length === inputs.size ? read() : undefined;
    for (;;) {
      options.signal?.throwIfAborted();
      // A batch that is not full is the last; a full one is the last when the next read finds nothing.
      const next = ahead === undefined ? undefined : await ahead;
      ahead = next !== undefined && next.length === inputs.size ? read() : undefined;
      const final = next === undefined || next.length === 0;
      const sequenceNumber = encryptor.claimFrames(current.length, final);
      const output = outputs.take();
      const length = encryptor.frameCipher.encryptFrames(current.buffer.subarray(0, current.length), frameLength, sequenceNumber, final, output, 0);
      inputs.give(current.buffer.buffer as ArrayBuffer);
      const frames = output.subarray(0, length);
      encryptor.authenticate(frames);
      // Resolves once the previous batch is written: its buffer is free again.
      await sink.write([frames]);
      if (written !== undefined) outputs.give(written.buffer as ArrayBuffer);
      written = output;
      consumed += current.length;
      collect(consumed);
      options.onProgress?.(consumed);
      if (final) break;
      current = next!;
    }
    options.signal?.throwIfAborted();
    const footer = encryptor.end();
    if (footer.length > 0) await sink.write(footer);
  } finally {
    await ahead?.catch(() => {});
    await filler.close();
  }
}

/**
 * Decrypts `source` into `sink`: parses the header, asks `dataKeyFor` for the data key
 * (which it zeroes afterwards), then streams the authenticated frames: each batch of
 * whole frames is scanned (sequence, IV, lengths, signature input), decrypted into a
 * reused buffer and written once every tag in it verified; the final frame of a signed
 * message only once the signature verified. Throws FileFormatError on anything wrong;
 * the sink is neither committed nor aborted here.
 */
export async function pumpDecrypt(
  source: ByteSource,
  decryptor: MessageDecryptor,
  dataKeyFor: (header: MessageHeader) => Promise<Uint8Array>,
  sink: Sink,
  options: PumpOptions = {},
): Promise<MessageHeader> {
  const filler = await openFiller(source);
  const collect = collector(options);
  let consumed = 0;
  try {
    // The header: pushed in small reads until the decryptor has parsed it.
    const small = Buffer.allocUnsafe(64 * 1024);
    let eof = false;
    while (decryptor.header === undefined && !eof) {
      options.signal?.throwIfAborted();
      const n = await filler.fill(small, 0);
      consumed += n;
      eof = n < small.length;
      decryptor.push(small.subarray(0, n));
    }
    if (decryptor.header === undefined) {
      decryptor.end();
      throw new FileFormatError('Truncated', 'the input ends inside the message header');
    }
    const header = decryptor.header;
    const reproduced = options.reproducedContext === undefined ? undefined : reproduceContext(header, options.reproducedContext);
    const dataKey = await dataKeyFor(reproduced === undefined ? header : { ...header, encryptionContext: reproduced.context });
    try {
      decryptor.begin(dataKey, reproduced === undefined ? {} : { authenticateOnly: reproduced.authenticateOnly });
    } finally {
      dataKey.fill(0);
    }
    const frameLength = header.frameLength;
    const perBatch = framesPerBatch(frameLength, options);
    // Room for a batch of regular frames, or fewer and the final frame (its head is longer).
    const inputs = new BufferPool(framesLength(frameLength, perBatch - 1, frameLength));
    const outputs = new BufferPool(perBatch * frameLength);
    const cipher = decryptor.frameCipher;
    const input = inputs.take();
    let carry = decryptor.takeQueued();
    let written: Buffer | undefined;
    let withheld: Buffer | undefined;
    let final = false;
    while (!final) {
      options.signal?.throwIfAborted();
      let bytes: Buffer;
      let read = false;
      if (carry.length >= input.length) {
        // More than a batch was read with the header: decrypt that first.
        bytes = carry;
      } else {
        // What is left of the previous read (less than a frame) first, then the input.
        carry.copy(input, 0);
        const n = eof ? 0 : await filler.fill(input, carry.length);
        consumed += n;
        eof ||= n < input.length - carry.length;
        bytes = input.subarray(0, carry.length + n);
        read = true;
      }
      const scan = decryptor.scanFrames(bytes, perBatch);
      final = scan.final;
      if (scan.frames.length > 0) {
        const output = outputs.take();
        const length = cipher.decryptFrames(bytes, scan.frames, output, 0);
        const last = scan.frames[scan.frames.length - 1]!;
        // The signed suite's final frame waits for the signature.
        const withhold = last.final && header.suite.signed ? last.contentLength : 0;
        if (withhold > 0) withheld = Buffer.from(output.subarray(length - withhold, length));
        // Resolves once the previous batch is written: its buffer is free again.
        await sink.write([output.subarray(0, length - withhold)]);
        if (written !== undefined) outputs.give(written.buffer as ArrayBuffer);
        written = output;
      } else if (!eof) {
        throw new Error('a batch of the body holds no whole frame');
      }
      // A copy: the input buffer is read into again.
      carry = Buffer.from(bytes.subarray(scan.length));
      collect(consumed);
      options.onProgress?.(consumed);
      if (eof && read) break;
    }
    // What follows the frames (the footer, or a truncated frame) goes through the
    // decryptor, to the end of the input; it releases no frame (none is left whole).
    const tail = decryptor.push(carry);
    while (!eof) {
      options.signal?.throwIfAborted();
      const n = await filler.fill(small, 0);
      consumed += n;
      eof = n < small.length;
      tail.push(...decryptor.push(small.subarray(0, n)));
    }
    if (tail.length > 0) throw new Error('frames after the batches');
    options.signal?.throwIfAborted();
    // Checks the end (final frame, signature, no trailing bytes); the withheld final frame follows.
    const rest = decryptor.end();
    if (withheld !== undefined) rest.push(withheld);
    if (rest.length > 0) await sink.write(rest);
    options.onProgress?.(consumed);
    return header;
  } finally {
    await filler.close();
  }
}
