// Micro-benchmarks of the file format's hot paths, each variant in a fresh process (so
// its peak RSS is its own), every figure with wall time, CPU time (user + sys, all
// threads) and the load average, beside `openssl speed -evp aes-256-gcm -bytes 65536`
// (CPU-time figure, the default, and -elapsed) run in the same process tree:
//
//   npx node bench/files/frames.ts [--mib 512] [--variants a,b,...] [--file /tmp/x]
//
// Variants:
//   gcm-buffer-key   createCipheriv per 64 KiB frame with the key as a Buffer (the old frame loop's crypto)
//   gcm-key-object   the same with a KeyObject (key schedule set up once)
//   frames-old       MessageEncryptor.push of 1 MiB chunks, output discarded (the old frame loop, when
//                    run against the old sources)
//   frames           FrameCipher.encryptFrames of 4 MiB batches into a reused buffer, output discarded
//                    (a minor GC every 1 MiB unless -gcN says otherwise)
//   frames-pieces    the same frames kept as [head, ciphertext, tag] pieces (no copy), dropped every 1 MiB
//   pump-null        pumpEncrypt from memory to a sink that discards: no file I/O
//   file             pumpEncrypt file -> file (AtomicFileSink)
//   dfile            pumpDecrypt of that output, file -> file
//   sha384           the signed suite's hash alone, 64 KiB updates
// Suffix -signed (pump-*, file-*, dfile-*) for suite 0x0578; -gc16 for a forced
// young-generation GC every 16 MiB (the old pumps did that; -gc4 every 4 MiB, -gc0
// never; the pumps' default is once per batch); -b4 for batches of 4 MiB (default 1);
// -nosync: the output file synced only at commit (the default starts a background
// fdatasync every 64 MiB).
import { execFileSync, spawnSync } from 'node:child_process';
import { createCipheriv, createHash, createSecretKey, randomBytes } from 'node:crypto';
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { seededRandom } from '../../src/envelope/random.ts';
import { MessageDecryptor } from '../../src/files/decrypt.ts';
import { MessageEncryptor, prepareMessage } from '../../src/files/encrypt.ts';
import { FrameCipher, framesLength } from '../../src/files/frames.ts';
import { fileSource } from '../../src/files/sources.ts';
import { AtomicFileSink, type Sink } from '../../src/files/sinks.ts';
import { pumpDecrypt, pumpEncrypt } from '../../src/files/pump.ts';
import { SUITE_COMMIT, SUITE_COMMIT_ECDSA_P384 } from '../../src/files/suites.ts';
import { youngGenerationCollector } from '../../src/cli/gc.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '512' },
    variants: {
      type: 'string',
      default: 'gcm-buffer-key,gcm-key-object,frames-gc0,frames,frames-pieces,pump-null,pump-null-gc0,file,dfile,file-signed,dfile-signed,sha384',
    },
    file: { type: 'string', default: '/tmp/envseal-frames-bench' },
    variant: { type: 'string' },
  },
});
const MIB = Number(values.mib);
const TOTAL = MIB * 1048576;
const FRAME = 65536;

function openssl(elapsed: boolean): number {
  const out = execFileSync('openssl', ['speed', ...(elapsed ? ['-elapsed'] : []), '-seconds', '2', '-evp', 'aes-256-gcm', '-bytes', '65536'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const row = out.split('\n').find((l) => /^AES-256-GCM/.test(l))!;
  return Number(row.trim().split(/\s+/).pop()!.replace(/k$/, '')) / 1000;
}

const EDKS = [{ providerId: 'aws-kms', providerInfo: Buffer.from('arn:aws:kms:eu-west-1:111122223333:key/bench'), ciphertext: Buffer.from('blob') }];
function encryptor(signed: boolean): { encryptor: MessageEncryptor; dataKey: Buffer } {
  const random = seededRandom('bench');
  const suite = signed ? SUITE_COMMIT_ECDSA_P384 : SUITE_COMMIT;
  const prepared = prepareMessage({ suite, encryptionContext: { purpose: 'bench' }, random });
  const dataKey = Buffer.from(random(32));
  return { encryptor: new MessageEncryptor({ ...prepared, dataKey: Buffer.from(dataKey), encryptedDataKeys: EDKS }), dataKey };
}

function minorGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (options: { type: 'minor'; execution: 'sync' }) => void;
  return () => gc({ type: 'minor', execution: 'sync' });
}

const nullSink: Sink = { write: async () => {}, commit: async () => {}, abort: async () => {} };

async function* memory(chunk: Buffer, total: number): AsyncGenerator<Buffer> {
  for (let n = 0; n < total; n += chunk.length) yield chunk;
}

async function runVariant(name: string): Promise<void> {
  const signed = name.includes('-signed');
  const gcMiB = /-gc(\d+)/.exec(name);
  const collectEveryBytes = gcMiB ? Number(gcMiB[1]) << 20 : undefined;
  // As the CLI does (src/cli/main.ts): the pumps collect with what the program gives them.
  const collectGarbage = youngGenerationCollector();
  const pumpGc = { ...(collectGarbage ? { collectGarbage } : {}), ...(collectEveryBytes === undefined ? {} : { collectEveryBytes }) };
  const batchMiB = /-b(\d+)/.exec(name);
  const batch = batchMiB ? { batchBytes: Number(batchMiB[1]) << 20 } : {};
  const sync = name.includes('-nosync') ? { syncEveryBytes: 0 } : {};
  const base = name.replace(/-signed|-gc\d+|-b\d+|-nosync/g, '');
  const input = randomBytes(4 << 20);
  let commitSeconds: number | undefined;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (base === 'gcm-buffer-key' || base === 'gcm-key-object') {
    const raw = randomBytes(32);
    const key = base === 'gcm-key-object' ? createSecretKey(raw) : raw;
    const iv = Buffer.alloc(12);
    const aad = Buffer.alloc(72);
    for (let i = 0; i < TOTAL / FRAME; i++) {
      iv.writeUInt32BE(i, 8);
      const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
      c.setAAD(aad);
      c.update(input.subarray((i % 64) * FRAME, (i % 64) * FRAME + FRAME));
      c.final();
      c.getAuthTag();
    }
  } else if (base === 'frames-old') {
    // Needs the old MessageEncryptor: run with a checkout of the old src/files.
    const { encryptor: e } = encryptor(signed);
    e.header();
    const chunk = input.subarray(0, 1 << 20);
    for (let n = 0; n < TOTAL; n += chunk.length) e.push(chunk);
    e.end();
  } else if (base === 'frames-pieces') {
    // The same frames without the copy into one buffer: [head, ciphertext, tag] per frame, as writev would take them.
    const key = createSecretKey(randomBytes(32));
    const iv = Buffer.alloc(12);
    const aad = Buffer.alloc(72);
    const every = collectEveryBytes ?? 1 << 20;
    const gc = every > 0 ? minorGc() : undefined;
    let pieces: Buffer[] = [];
    for (let i = 0; i < TOTAL / FRAME; i++) {
      iv.writeUInt32BE(i, 8);
      const c = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
      c.setAAD(aad);
      pieces.push(iv, c.update(input.subarray((i % 64) * FRAME, (i % 64) * FRAME + FRAME)));
      c.final();
      pieces.push(c.getAuthTag());
      if (((i + 1) * FRAME) % (1 << 20) === 0) pieces = [];
      if (gc !== undefined && ((i + 1) * FRAME) % every === 0) gc();
    }
  } else if (base === 'frames') {
    const cipher = new FrameCipher(createSecretKey(randomBytes(32)), randomBytes(32));
    const out = Buffer.allocUnsafe(framesLength(FRAME, 64));
    let seq = 1;
    const every = collectEveryBytes ?? 1 << 20;
    const gc = every > 0 ? minorGc() : undefined;
    for (let n = 0; n < TOTAL; n += input.length, seq += 64) {
      cipher.encryptFrames(input, FRAME, seq, false, out, 0);
      if (gc !== undefined && (n + input.length) % every === 0) gc();
    }
  } else if (base.startsWith('pump-null')) {
    const { encryptor: e } = encryptor(signed);
    await pumpEncrypt(memory(input, TOTAL), e, nullSink, { ...batch, ...pumpGc });
  } else if (base.startsWith('file')) {
    const plain = values.file!;
    const { encryptor: e } = encryptor(signed);
    const sink = new AtomicFileSink(`${plain}.enc${signed ? '-signed' : ''}`, { mode: 0o600, ...sync });
    await sink.open();
    await pumpEncrypt(fileSource(plain), e, sink, { ...batch, ...pumpGc });
    const c = process.hrtime.bigint();
    await sink.commit();
    commitSeconds = Number(process.hrtime.bigint() - c) / 1e9;
  } else if (base.startsWith('dfile')) {
    const plain = values.file!;
    const { dataKey } = encryptor(signed);
    const sink = new AtomicFileSink(`${plain}.dec`, { mode: 0o600, ...sync });
    await sink.open();
    await pumpDecrypt(fileSource(`${plain}.enc${signed ? '-signed' : ''}`), new MessageDecryptor(), async () => Buffer.from(dataKey), sink, {
      ...batch,
      ...pumpGc,
    });
    const c = process.hrtime.bigint();
    await sink.commit();
    commitSeconds = Number(process.hrtime.bigint() - c) / 1e9;
  } else if (base === 'sha384') {
    const h = createHash('sha384');
    for (let n = 0; n < TOTAL; n += FRAME) h.update(input.subarray(0, FRAME));
    h.digest();
  } else throw new Error(`unknown variant ${name}`);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  const mb = TOTAL / 1e6;
  process.stdout.write(
    `${JSON.stringify({ variant: name, wallMBps: Math.round(mb / wall), cpuMBps: Math.round(mb / cpu), user: +(c.user / 1e6).toFixed(2), sys: +(c.system / 1e6).toFixed(2), maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024), ...(commitSeconds === undefined ? {} : { fsyncRenameSeconds: +commitSeconds.toFixed(2) }), load: +loadavg()[0]!.toFixed(1) })}\n`,
  );
}

if (values.variant !== undefined) {
  await runVariant(values.variant);
} else {
  const variants = values.variants!.split(',');
  if (variants.some((v) => v.startsWith('file') || v.startsWith('dfile'))) {
    const block = randomBytes(64 << 20);
    const fd = openSync(values.file!, 'w');
    for (let written = 0; written < MIB; written += 64) writeSync(fd, block, 0, Math.min(64, MIB - written) << 20);
    closeSync(fd);
  }
  try {
    process.stdout.write(
      `openssl -bytes 65536: ${openssl(false).toFixed(0)} MB per CPU-s, ${openssl(true).toFixed(0)} MB/s wall (load ${loadavg()[0]!.toFixed(1)})\n`,
    );
    for (const v of variants) {
      const r = spawnSync(process.execPath, [new URL(import.meta.url).pathname, '--variant', v, '--mib', String(MIB), '--file', values.file!], {
        encoding: 'utf8',
      });
      process.stdout.write(r.status === 0 ? r.stdout : `${v}: failed ${r.stderr.slice(-500)}\n`);
    }
    process.stdout.write(
      `openssl -bytes 65536: ${openssl(false).toFixed(0)} MB per CPU-s, ${openssl(true).toFixed(0)} MB/s wall (load ${loadavg()[0]!.toFixed(1)})\n`,
    );
  } finally {
    for (const suffix of ['', '.enc', '.enc-signed', '.dec']) rmSync(`${values.file!}${suffix}`, { force: true });
  }
}
