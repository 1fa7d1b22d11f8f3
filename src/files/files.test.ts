import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../envelope/random.ts';
import { decryptBuffer, MessageDecryptor } from './decrypt.ts';
import { encryptBuffer, MessageEncryptor, prepareMessage } from './encrypt.ts';
import { FileFormatError, type FileFormatErrorCode } from './errors.ts';
import { type EncryptedDataKey, parseHeader } from './header.ts';
import { AtomicFileSink, HeldSink, type Sink } from './sinks.ts';
import { fileSource, readFileChunks } from './sources.ts';
import { pumpDecrypt, pumpEncrypt } from './pump.ts';
import { deriveMessageKeys } from './kdf.ts';
import { parseSuite, SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384, type Suite } from './suites.ts';

const EDKS: EncryptedDataKey[] = [
  { providerId: 'aws-kms', providerInfo: Buffer.from('arn:aws:kms:eu-west-1:111122223333:key/test'), ciphertext: Buffer.from('blob') },
];

function message(suite: Suite, plaintext: Uint8Array, options: { frameLength?: number; context?: Record<string, string>; seed?: string } = {}) {
  const random = seededRandom(options.seed ?? 'files-test');
  const prepared = prepareMessage({ suite, encryptionContext: options.context ?? { purpose: 'test' }, random });
  const dataKey = Buffer.from(random(32));
  const bytes = encryptBuffer(plaintext, { ...prepared, dataKey, encryptedDataKeys: EDKS, frameLength: options.frameLength ?? 64 });
  return { bytes, dataKey };
}

function decryptCode(bytes: Uint8Array, dataKey: Uint8Array): FileFormatErrorCode | 'ok' {
  try {
    decryptBuffer(bytes, () => dataKey);
    return 'ok';
  } catch (error) {
    if (error instanceof FileFormatError) return error.code;
    throw error;
  }
}

const SUITES = [SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384];

describe.each(SUITES)('suite $name', (suite) => {
  it('round-trips any plaintext, any frame length, any chunking (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.integer({ min: 1, max: 700 }),
        fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 1, maxLength: 8 }),
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !k.startsWith('aws-crypto-')),
          fc.string({ maxLength: 8 }),
          { maxKeys: 4 },
        ),
        (plaintext, frameLength, cuts, context) => {
          const { bytes, dataKey } = message(suite, plaintext, { frameLength, context });
          // Encrypting in pieces gives the same bytes for the unsigned suite (signatures are randomized).
          const random = seededRandom('files-test');
          const prepared = prepareMessage({ suite, encryptionContext: context, random });
          const encryptor = new MessageEncryptor({ ...prepared, dataKey: Buffer.from(random(32)), encryptedDataKeys: EDKS, frameLength });
          const parts = [encryptor.header()];
          let offset = 0;
          let i = 0;
          while (offset < plaintext.length) {
            const n = cuts[i++ % cuts.length]!;
            parts.push(...encryptor.push(plaintext.subarray(offset, offset + n)));
            offset += n;
          }
          parts.push(...encryptor.end());
          const chunked = Buffer.concat(parts);
          if (!suite.signed) expect(chunked.equals(bytes)).toBe(true);
          // Decrypt, also fed in pieces.
          for (const msg of [bytes, chunked]) {
            const decryptor = new MessageDecryptor();
            const out: Buffer[] = [];
            let o = 0;
            let j = 0;
            while (o < msg.length) {
              const n = cuts[j++ % cuts.length]!;
              out.push(...decryptor.push(msg.subarray(o, o + n)));
              if (decryptor.header !== undefined && out.length === 0 && !(decryptor as unknown as { begun?: boolean }).begun) {
                try {
                  decryptor.begin(dataKey);
                  (decryptor as unknown as { begun?: boolean }).begun = true;
                  out.push(...decryptor.push(new Uint8Array(0)));
                } catch (error) {
                  if (!(error instanceof FileFormatError && error.message.includes('called once'))) throw error;
                }
              }
              o += n;
            }
            out.push(...decryptor.end());
            expect(Buffer.concat(out).equals(Buffer.from(plaintext))).toBe(true);
            expect(decryptor.header!.encryptionContext).toMatchObject(context);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses every single-bit flip anywhere in the message (header, frames, footer)', () => {
    const plaintext = Buffer.from(seededRandom('pt')(200));
    const { bytes, dataKey } = message(suite, plaintext, { frameLength: 64 });
    for (let i = 0; i < bytes.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const tampered = Buffer.from(bytes);
        tampered[i]! ^= bit;
        expect(decryptCode(tampered, dataKey), `byte ${i} bit ${bit}`).not.toBe('ok');
      }
    }
  });

  it('refuses every truncation and any trailing byte', () => {
    const { bytes, dataKey } = message(suite, Buffer.alloc(300, 7), { frameLength: 64 });
    expect(decryptCode(bytes, dataKey)).toBe('ok');
    for (let n = 0; n < bytes.length; n++) expect(decryptCode(bytes.subarray(0, n), dataKey), `prefix ${n}`).not.toBe('ok');
    expect(decryptCode(Buffer.concat([bytes, Buffer.of(0)]), dataKey)).toBe('TrailingData');
  });

  it('refuses reordered, duplicated and dropped frames, and the wrong data key', () => {
    const frameLength = 16;
    const plaintext = Buffer.alloc(frameLength * 3 + 5, 1);
    const { bytes, dataKey } = message(suite, plaintext, { frameLength });
    const headerLength = parseHeader(bytes)!.length;
    const regular = 4 + 12 + frameLength + 16;
    const frame = (k: number) => bytes.subarray(headerLength + k * regular, headerLength + (k + 1) * regular);
    const rest = bytes.subarray(headerLength + 3 * regular);
    const head = bytes.subarray(0, headerLength);
    expect(decryptCode(Buffer.concat([head, frame(1), frame(0), frame(2), rest]), dataKey)).toBe('FrameOutOfOrder');
    expect(decryptCode(Buffer.concat([head, frame(0), frame(0), frame(1), frame(2), rest]), dataKey)).toBe('FrameOutOfOrder');
    expect(decryptCode(Buffer.concat([head, frame(0), frame(2), rest]), dataKey)).toBe('FrameOutOfOrder');
    expect(decryptCode(Buffer.concat([head, frame(0), frame(1), frame(2)]), dataKey)).toBe('Truncated');
    const other = Buffer.from(dataKey);
    other[0]! ^= 1;
    expect(decryptCode(bytes, other)).toBe('CommitmentMismatch');
    // A frame of another message with the same key and sequence number does not authenticate.
    const second = message(suite, plaintext, { frameLength, seed: 'another message' });
    const spliced = Buffer.concat([
      head,
      second.bytes.subarray(parseHeader(second.bytes)!.length, parseHeader(second.bytes)!.length + regular),
      frame(1),
      frame(2),
      rest,
    ]);
    expect(decryptCode(spliced, dataKey)).toBe('FrameAuthenticationFailed');
  });

  it('withholds the final frame of a signed message until the signature verifies', () => {
    const { bytes, dataKey } = message(suite, Buffer.alloc(100, 3), { frameLength: 64 });
    const decryptor = new MessageDecryptor();
    decryptor.push(bytes.subarray(0, parseHeader(bytes)!.length));
    decryptor.begin(dataKey);
    const beforeFooter = decryptor.push(bytes.subarray(parseHeader(bytes)!.length, bytes.length - (suite.signed ? 10 : 0)));
    const released = Buffer.concat(beforeFooter).length;
    expect(released).toBe(suite.signed ? 64 : 100);
  });
});

describe('header', () => {
  const { bytes, dataKey } = message(SUITE_COMMIT, Buffer.from('hello'), { frameLength: 64 });

  it('names what it does not understand', () => {
    const v1 = Buffer.from(bytes);
    v1[0] = 0x01;
    expect(decryptCode(v1, dataKey)).toBe('UnsupportedVersion');
    const suite = Buffer.from(bytes);
    suite.writeUInt16BE(0x0378, 1);
    expect(decryptCode(suite, dataKey)).toBe('UnknownSuite');
    const header = parseHeader(bytes)!;
    const contentTypeAt = header.body.length - 32 - 4 - 1;
    const nonFramed = Buffer.from(bytes);
    nonFramed[contentTypeAt] = 0x01;
    expect(decryptCode(nonFramed, dataKey)).toBe('UnsupportedContentType');
    const bigFrames = Buffer.from(bytes);
    bigFrames.writeUInt32BE(0xffffffff, contentTypeAt + 1);
    expect(decryptCode(bigFrames, dataKey)).toBe('FrameTooLarge');
    const zeroFrames = Buffer.from(bytes);
    zeroFrames.writeUInt32BE(0, contentTypeAt + 1);
    expect(decryptCode(zeroFrames, dataKey)).toBe('InvalidHeader');
  });

  it('checks the public key against the suite, and reserves aws-crypto- keys', () => {
    expect(() => prepareMessage({ suite: SUITE_COMMIT, encryptionContext: { 'aws-crypto-public-key': 'x' }, random: seededRandom('r') })).toThrow(/reserved/);
    const signed = message(SUITE_COMMIT_ECDSA_P384, Buffer.from('x')).bytes;
    const swapped = Buffer.from(signed);
    swapped.writeUInt16BE(0x0478, 1);
    expect(() => parseHeader(swapped)).toThrow(/has aws-crypto-public-key/);
  });

  it('derives the keys as HKDF-SHA512 extract once, expand twice', async () => {
    const { hkdfSync } = await import('node:crypto');
    const id = Buffer.alloc(32, 9);
    const key = Buffer.alloc(32, 5);
    const derived = deriveMessageKeys(key, id, SUITE_COMMIT);
    expect(derived.encryptionKey).toEqual(Buffer.from(hkdfSync('sha512', key, id, Buffer.concat([Buffer.of(0x04, 0x78), Buffer.from('DERIVEKEY')]), 32)));
    expect(derived.commitKey).toEqual(Buffer.from(hkdfSync('sha512', key, id, Buffer.from('COMMITKEY'), 32)));
  });

  it('parses suite names', () => {
    expect(parseSuite('0x0578')).toBe(SUITE_COMMIT_ECDSA_P384);
    expect(parseSuite('AES_256_GCM_HKDF_SHA512_COMMIT_KEY')).toBe(SUITE_COMMIT);
    expect(() => parseSuite('0x0378')).toThrow(FileFormatError);
  });
});

describe('output sinks', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'envseal-files-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function decryptFile(input: string, output: string, dataKey: Uint8Array): Promise<unknown> {
    const sink = new AtomicFileSink(output, { mode: 0o600 });
    await sink.open();
    try {
      await pumpDecrypt(readFileChunks(input), new MessageDecryptor(), async () => Buffer.from(dataKey), sink);
      await sink.commit();
      return undefined;
    } catch (error) {
      await sink.abort();
      return error;
    }
  }

  it('writes the output file only when the whole message authenticated, and leaves no temporary file', async () => {
    const plaintext = randomBytes(3 * 1024 * 1024 + 17);
    const { bytes, dataKey } = message(SUITE_COMMIT_ECDSA_P384, plaintext, { frameLength: 4096 });
    await writeFile(path.join(dir, 'good.enc'), bytes);
    expect(await decryptFile(path.join(dir, 'good.enc'), path.join(dir, 'good.out'), dataKey)).toBeUndefined();
    expect((await readFile(path.join(dir, 'good.out'))).equals(plaintext)).toBe(true);
    for (const [name, mutate] of [
      ['flip-late', (b: Buffer) => flipByte(b, b.length - 200)],
      ['flip-signature', (b: Buffer) => flipByte(b, b.length - 1)],
      ['truncated', (b: Buffer) => b.subarray(0, b.length - 5000)],
    ] as const) {
      let tampered: Buffer = Buffer.from(bytes);
      tampered = (mutate(tampered) as Buffer | undefined) ?? tampered;
      await writeFile(path.join(dir, `${name}.enc`), tampered);
      const error = await decryptFile(path.join(dir, `${name}.enc`), path.join(dir, `${name}.out`), dataKey);
      expect(error, name).toBeInstanceOf(FileFormatError);
    }
    const left = (await readdir(dir)).sort();
    expect(left).toEqual(['flip-late.enc', 'flip-signature.enc', 'good.enc', 'good.out', 'truncated.enc']);
  });

  it('HeldSink releases nothing on failure and everything on success, spilling past its memory limit', async () => {
    const chunks: Buffer[] = [];
    const writer = { write: (b: Uint8Array) => chunks.push(Buffer.from(b)) };
    const held = new HeldSink(writer, { memoryLimit: 1000, directory: dir });
    await held.write([Buffer.alloc(600, 1)]);
    await held.write([Buffer.alloc(600, 2), Buffer.alloc(10, 3)]);
    expect(held.spilled).toBe(true);
    expect(chunks).toEqual([]);
    await held.commit();
    expect(Buffer.concat(chunks)).toEqual(Buffer.concat([Buffer.alloc(600, 1), Buffer.alloc(600, 2), Buffer.alloc(10, 3)]));
    const failed: Buffer[] = [];
    const other = new HeldSink({ write: (b: Uint8Array) => failed.push(Buffer.from(b)) }, { memoryLimit: 10, directory: dir });
    await other.write([Buffer.alloc(100)]);
    await other.abort();
    expect(failed).toEqual([]);
    // The spill file was unlinked at once: nothing of it in the directory.
    expect((await readdir(dir)).filter((f) => f.startsWith('.envseal-'))).toEqual([]);
  });
});

describe('pumps in batches', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'envseal-pumps-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const frameLength = 64;
  // Four frames a batch: sizes on and around batch and frame boundaries.
  const batchBytes = 4 * frameLength;
  const SIZES = [0, 1, frameLength, batchBytes - 1, batchBytes, batchBytes + 1, 2 * batchBytes, 3 * batchBytes + frameLength + 5];

  function memorySink(): Sink & { bytes(): Buffer } {
    const parts: Buffer[] = [];
    return {
      write: async (buffers) => void parts.push(...buffers.map((b) => Buffer.from(b))),
      commit: async () => {},
      abort: async () => {},
      bytes: () => Buffer.concat(parts),
    };
  }

  async function* oddChunks(bytes: Buffer): AsyncGenerator<Buffer> {
    for (let o = 0, i = 0; o < bytes.length; i++) {
      const n = [1, 7, 100, 333][i % 4]!;
      yield bytes.subarray(o, o + n);
      o += n;
    }
  }

  it.each(SUITES)('encrypt the bytes push() writes, and decrypt them back, from a file or a stream ($name)', async (suite) => {
    for (const size of SIZES) {
      const plaintext = randomBytes(size);
      const file = path.join(dir, `plain-${suite.id}-${size}`);
      await writeFile(file, plaintext);
      const random = seededRandom(`pump-${size}`);
      const prepared = prepareMessage({ suite, encryptionContext: { purpose: 'pump' }, random });
      const dataKey = Buffer.from(random(32));
      const sink = memorySink();
      await pumpEncrypt(fileSource(file), new MessageEncryptor({ ...prepared, dataKey: Buffer.from(dataKey), encryptedDataKeys: EDKS, frameLength }), sink, {
        batchBytes,
      });
      const bytes = sink.bytes();
      if (!suite.signed) {
        expect(
          bytes.equals(encryptBuffer(plaintext, { ...prepared, dataKey: Buffer.from(dataKey), encryptedDataKeys: EDKS, frameLength })),
          `size ${size}`,
        ).toBe(true);
      }
      expect(decryptBuffer(bytes, () => dataKey).plaintext.equals(plaintext), `size ${size}`).toBe(true);
      const enc = `${file}.enc`;
      await writeFile(enc, bytes);
      // Small batches, and the default (the whole message then comes with the header's read).
      for (const [source, options] of [
        [fileSource(enc), { batchBytes }],
        [oddChunks(bytes), { batchBytes }],
        [fileSource(enc), {}],
      ] as const) {
        const out = memorySink();
        await pumpDecrypt(source, new MessageDecryptor(), async () => Buffer.from(dataKey), out, options);
        expect(out.bytes().equals(plaintext), `size ${size}`).toBe(true);
      }
    }
  });

  it.each(SUITES)('refuses what decryptBuffer refuses, with the same code, and releases no frame that did not authenticate ($name)', async (suite) => {
    const plaintext = randomBytes(3 * batchBytes + 10);
    const { bytes, dataKey } = message(suite, plaintext, { frameLength });
    const headerLength = parseHeader(bytes)!.length;
    const regular = 4 + 12 + frameLength + 16;
    const cases: [string, Buffer][] = [
      [
        'flip in the third batch',
        (() => {
          const b = Buffer.from(bytes);
          b[headerLength + 9 * regular + 20]! ^= 1;
          return b;
        })(),
      ],
      [
        'flip in the final frame',
        (() => {
          const b = Buffer.from(bytes);
          b[bytes.length - (suite.signed ? 120 : 20)]! ^= 1;
          return b;
        })(),
      ],
      ['truncated at a batch boundary', bytes.subarray(0, headerLength + 8 * regular)],
      ['truncated in a frame', bytes.subarray(0, headerLength + 5 * regular + 7)],
      [
        'frames swapped',
        Buffer.concat([
          bytes.subarray(0, headerLength),
          bytes.subarray(headerLength + regular, headerLength + 2 * regular),
          bytes.subarray(headerLength, headerLength + regular),
          bytes.subarray(headerLength + 2 * regular),
        ]),
      ],
      ['trailing byte', Buffer.concat([bytes, Buffer.of(0)])],
    ];
    for (const [name, tampered] of cases) {
      const expected = decryptCode(tampered, dataKey);
      expect(expected, name).not.toBe('ok');
      const file = path.join(dir, `bad-${suite.id}`);
      await writeFile(file, tampered);
      const out = memorySink();
      const error = await pumpDecrypt(fileSource(file), new MessageDecryptor(), async () => Buffer.from(dataKey), out, { batchBytes }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, name).toBeInstanceOf(FileFormatError);
      expect((error as FileFormatError).code, name).toBe(expected);
      // Whatever reached the sink (which publishes nothing without commit) is authenticated
      // frames, a prefix of the plaintext; never the final frame of a signed message.
      const released = out.bytes();
      expect(plaintext.subarray(0, released.length).equals(released), name).toBe(true);
      if (released.length < plaintext.length) expect(released.length % frameLength, name).toBe(0);
      if (suite.signed) expect(released.length, name).toBeLessThan(plaintext.length);
    }
  });
});

function flipByte(bytes: Buffer, at: number): void {
  bytes[at] = bytes[at]! ^ 1;
}
