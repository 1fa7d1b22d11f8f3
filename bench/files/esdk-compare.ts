// The file format: AWS's own Encryption SDK for Node (@aws-crypto/client-node) against
// src/files, on the same files in one run, with the same raw AES wrapping key (the
// SDK's RawAesKeyringNode; for src/files the test-only raw AES provider of
// test/harness/raw-keyrings.ts, which writes the same EDK), the same suite, frame
// length and encryption context. Each operation runs in its own process under GNU
// time (wall, CPU, peak RSS); the two implementations alternate, and the order flips
// every round. Every decrypted file is compared with the original.
//
//   npx node bench/files/esdk-compare.ts [--sizes 1024,4096] [--rounds 3] [--out bench/files/esdk-compare.json]
//
// Tampering: one byte of a valid message flipped in the middle of the body and, apart,
// the last byte (the final frame's tag, or the signature of 0x0578); both
// implementations decrypt the same tampered file (written by src/files; the SDK
// decrypts it, which also shows that the two raw AES EDKs agree). Recorded: whether it
// was refused, the time to refusal, and the bytes at the output path afterwards
// (released plaintext). src/files writes through its AtomicFileSink (temporary file,
// renamed on success) as `envseal decrypt -o FILE` does; the SDK decrypt stream is piped
// into a file stream, as its documentation shows, then fsynced (as src/files syncs
// before its rename, so both pay for durability).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';

const NAMESPACE = 'envseal-bench';
const KEY_NAME = 'bench-aes-256';
const FRAME = 65536;
const CONTEXT = { purpose: 'bench' };
const SUITES = { '0x0478': 0x0478, '0x0578': 0x0578 } as const;
type SuiteName = keyof typeof SUITES;
type Impl = 'envseal' | 'esdk';

// --- workers: one operation per process ---------------------------------------------

/** The young-generation collector `envseal` main hands the pumps (src/cli/gc.ts). */
async function collectorOption(): Promise<{ collectGarbage?: () => void }> {
  const { youngGenerationCollector } = await import('../../src/cli/gc.ts');
  const collectGarbage = youngGenerationCollector();
  return collectGarbage === undefined ? {} : { collectGarbage };
}

async function oursEncrypt(key: Buffer, suiteName: SuiteName, input: string, output: string): Promise<void> {
  const { rawAesProviderDefinition, rawKeyRegistry } = await import('../../test/harness/raw-keyrings.ts');
  const { MessageEncryptor, prepareMessage } = await import('../../src/files/encrypt.ts');
  const { generateDataKeyMaterials } = await import('../../src/files/materials.ts');
  const { pumpEncrypt } = await import('../../src/files/pump.ts');
  const { AtomicFileSink } = await import('../../src/files/sinks.ts');
  const { fileSource } = await import('../../src/files/sources.ts');
  const { parseSuite } = await import('../../src/files/suites.ts');
  const providers = rawKeyRegistry([rawAesProviderDefinition({ namespace: NAMESPACE, name: KEY_NAME, key })]);
  const prepared = prepareMessage({ suite: parseSuite(suiteName), encryptionContext: CONTEXT, random: randomBytes });
  const { dataKey, encryptedDataKeys } = await generateDataKeyMaterials({
    targets: [{ provider: 'raw-aes', target: KEY_NAME }],
    providers,
    encryptionContext: prepared.encryptionContext,
    random: randomBytes,
  });
  const encryptor = new MessageEncryptor({ ...prepared, dataKey, encryptedDataKeys, frameLength: FRAME });
  dataKey.fill(0);
  const sink = new AtomicFileSink(output, { mode: 0o644 });
  await sink.open();
  try {
    await pumpEncrypt(fileSource(input), encryptor, sink, await collectorOption());
    await sink.commit();
  } catch (error) {
    await sink.abort();
    throw error;
  }
}

async function oursDecrypt(key: Buffer, input: string, output: string): Promise<void> {
  const { rawAesProviderDefinition, rawKeyRegistry } = await import('../../test/harness/raw-keyrings.ts');
  const { MessageDecryptor } = await import('../../src/files/decrypt.ts');
  const { unwrapDataKey } = await import('../../src/files/materials.ts');
  const { pumpDecrypt } = await import('../../src/files/pump.ts');
  const { AtomicFileSink } = await import('../../src/files/sinks.ts');
  const { fileSource } = await import('../../src/files/sources.ts');
  const providers = rawKeyRegistry([rawAesProviderDefinition({ namespace: NAMESPACE, name: KEY_NAME, key })]);
  const sink = new AtomicFileSink(output, { mode: 0o600 });
  await sink.open();
  const decryptor = new MessageDecryptor();
  try {
    await pumpDecrypt(fileSource(input), decryptor, (header) => unwrapDataKey({ header, providers }), sink, await collectorOption());
    await sink.commit();
  } catch (error) {
    decryptor.destroy();
    await sink.abort();
    throw error;
  }
}

async function esdkClient(key: Buffer) {
  const { buildClient, CommitmentPolicy, RawAesKeyringNode, RawAesWrappingSuiteIdentifier } = await import('@aws-crypto/client-node');
  const keyring = new RawAesKeyringNode({
    keyNamespace: NAMESPACE,
    keyName: KEY_NAME,
    unencryptedMasterKey: new Uint8Array(key),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  return { keyring, client: buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT) };
}

/** Pipes `source` through `stages` into `output`, then fsyncs it (as src/files syncs before its rename). */
async function toSyncedFile(source: NodeJS.ReadableStream, stages: NodeJS.ReadWriteStream[], output: string): Promise<void> {
  await pipeline([source, ...stages, createWriteStream(output, { mode: 0o600 })]);
  const fd = openSync(output, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function esdkEncrypt(key: Buffer, suiteName: SuiteName, input: string, output: string): Promise<void> {
  const { keyring, client } = await esdkClient(key);
  const stream = client.encryptStream(keyring, { suiteId: SUITES[suiteName], encryptionContext: CONTEXT, frameLength: FRAME });
  await toSyncedFile(createReadStream(input, { highWaterMark: 1 << 20 }), [stream], output);
}

async function esdkDecrypt(key: Buffer, input: string, output: string): Promise<void> {
  const { keyring, client } = await esdkClient(key);
  await toSyncedFile(createReadStream(input, { highWaterMark: 1 << 20 }), [client.decryptStream(keyring)], output);
}

async function worker(args: string[]): Promise<void> {
  const [impl, op, suiteName, input, output] = args as [Impl, 'encrypt' | 'decrypt', SuiteName, string, string];
  // The throwaway wrapping key comes by environment, not on the command line (ps shows that).
  const key = Buffer.from(process.env.ESDK_COMPARE_KEY ?? '', 'hex');
  if (key.length !== 32) throw new Error('ESDK_COMPARE_KEY must hold 32 bytes in hex');
  const started = performance.now();
  const report = (error: string | undefined) =>
    process.stdout.write(`${JSON.stringify({ ok: error === undefined, error, ms: performance.now() - started })}\n`);
  // The SDK's stream internals (readable-stream) rethrow some errors outside the pipeline's promise.
  process.on('uncaughtException', (e) => {
    report(`uncaught ${e.name}: ${e.message}`);
    process.exit(1);
  });
  let error: string | undefined;
  try {
    if (impl === 'envseal' && op === 'encrypt') await oursEncrypt(key, suiteName, input, output);
    else if (impl === 'envseal') await oursDecrypt(key, input, output);
    else if (op === 'encrypt') await esdkEncrypt(key, suiteName, input, output);
    else await esdkDecrypt(key, input, output);
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  report(error);
}

// --- the driver ------------------------------------------------------------------------

interface Run {
  impl: Impl;
  op: 'encrypt' | 'decrypt';
  suite: SuiteName;
  sizeMiB: number;
  round: number;
  seconds: number;
  mbPerSecond: number;
  cpuSeconds: number;
  maxRssMiB: number;
  loadBefore: number;
}

interface TamperRun {
  impl: Impl;
  suite: SuiteName;
  sizeMiB: number;
  where: 'middle' | 'last byte';
  refused: boolean;
  error: string | undefined;
  secondsToRefusal: number;
  /** Bytes at the output path once the refusal was reported. */
  bytesReleased: number;
  /** Whether anything but the output was left in its directory (a temporary file). */
  leftovers: string[];
  maxRssMiB: number;
  loadBefore: number;
}

function main(): Promise<void> | void {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1024,4096' },
      rounds: { type: 'string', default: '3' },
      out: { type: 'string' },
      worker: { type: 'boolean', default: false },
    },
    allowPositionals: true,
    strict: false,
  });
  if (values.worker === true) return worker(process.argv.slice(process.argv.indexOf('--worker') + 1));
  const sizesMiB = String(values.sizes).split(',').map(Number);
  const rounds = Number(values.rounds);
  const repo = new URL('../../', import.meta.url).pathname;
  const node = process.execPath;
  const script = new URL(import.meta.url).pathname;
  const log = (m: string) => process.stderr.write(`[esdk-compare] ${m}\n`);
  const key = randomBytes(32).toString('hex');
  const work = mkdtempSync('/tmp/envseal-esdk-compare-');
  const esdkVersion = JSON.parse(execFileSync('cat', [join(repo, 'node_modules/@aws-crypto/client-node/package.json')], { encoding: 'utf8' }))
    .version as string;
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    esdk: esdkVersion,
    loadAtStart: loadavg()
      .map((n) => n.toFixed(2))
      .join(' '),
    date: new Date().toISOString(),
  };
  log(`machine: ${JSON.stringify(machine)}`);

  const timed = (args: string[]) => {
    const loadBefore = loadavg()[0]!;
    const r = spawnSync('/usr/bin/time', ['-f', 'BENCH %e %M %U %S', node, script, '--worker', ...args], {
      encoding: 'utf8',
      maxBuffer: 16 << 20,
      env: { ...process.env, ESDK_COMPARE_KEY: key },
    });
    const m = /BENCH ([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (m === null || !line.startsWith('{')) throw new Error(`worker ${args.join(' ')} failed (${r.status}): ${r.stderr.slice(-2000)}`);
    const result = JSON.parse(line) as { ok: boolean; error?: string; ms: number };
    return { result, seconds: Number(m[1]), maxRssMiB: Number(m[2]) / 1024, cpuSeconds: Number(m[3]) + Number(m[4]), loadBefore };
  };
  const sameFile = (a: string, b: string) => spawnSync('cmp', ['-s', a, b]).status === 0;
  const flip = (file: string, at: number) => {
    const fd = openSync(file, 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x01;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
  };

  const runs: Run[] = [];
  const tampers: TamperRun[] = [];
  const interop: { sizeMiB: number; suite: SuiteName; esdkOpensEnvseal: boolean; envsealOpensEsdk: boolean }[] = [];
  try {
    for (const sizeMiB of sizesMiB) {
      const plain = join(work, 'plain');
      log(`writing ${sizeMiB} MiB of random data`);
      const block = randomBytes(64 << 20);
      const fd = openSync(plain, 'w');
      for (let written = 0; written < sizeMiB; written += 64) writeSync(fd, block, 0, Math.min(64, sizeMiB - written) << 20);
      closeSync(fd);
      const mb = (sizeMiB * 1048576) / 1e6;
      for (let round = 1; round <= rounds; round++) {
        for (const suite of Object.keys(SUITES) as SuiteName[]) {
          const order: Impl[] = round % 2 === 1 ? ['envseal', 'esdk'] : ['esdk', 'envseal'];
          for (const impl of order) {
            const enc = join(work, `enc-${impl}`);
            const dec = join(work, `dec-${impl}`);
            for (const op of ['encrypt', 'decrypt'] as const) {
              const t = timed([impl, op, suite, op === 'encrypt' ? plain : enc, op === 'encrypt' ? enc : dec]);
              if (!t.result.ok) throw new Error(`${impl} ${op} ${suite} ${sizeMiB} MiB failed: ${t.result.error}`);
              const run: Run = {
                impl,
                op,
                suite,
                sizeMiB,
                round,
                seconds: t.seconds,
                mbPerSecond: mb / t.seconds,
                cpuSeconds: t.cpuSeconds,
                maxRssMiB: t.maxRssMiB,
                loadBefore: t.loadBefore,
              };
              runs.push(run);
              log(
                `round ${round} ${impl} ${op} ${suite} ${sizeMiB} MiB: ${t.seconds.toFixed(2)} s, ${run.mbPerSecond.toFixed(0)} MB/s, CPU ${t.cpuSeconds.toFixed(2)} s, max RSS ${t.maxRssMiB.toFixed(0)} MiB (load ${t.loadBefore.toFixed(1)})`,
              );
            }
            if (!sameFile(plain, dec)) throw new Error(`${impl} ${suite} ${sizeMiB} MiB: the decrypted file differs from the original`);
            rmSync(dec, { force: true });
          }
          if (round === 1) {
            // Each opens the other's message (no timing): the raw AES EDKs and the format agree.
            const cross = join(work, 'cross');
            const a = timed(['esdk', 'decrypt', suite, join(work, 'enc-envseal'), cross]);
            const esdkOpensEnvseal = a.result.ok && sameFile(plain, cross);
            rmSync(cross, { force: true });
            const b = timed(['envseal', 'decrypt', suite, join(work, 'enc-esdk'), cross]);
            const envsealOpensEsdk = b.result.ok && sameFile(plain, cross);
            rmSync(cross, { force: true });
            interop.push({ sizeMiB, suite, esdkOpensEnvseal, envsealOpensEsdk });
            log(`interop ${suite} ${sizeMiB} MiB: esdk opens envseal's: ${esdkOpensEnvseal}; envseal opens esdk's: ${envsealOpensEsdk}`);

            // Tampering: the same tampered file (envseal's ciphertext) for both.
            const target = join(work, 'enc-envseal');
            const size = statSync(target).size;
            for (const [where, at] of [
              ['middle', Math.floor(size / 2)],
              ['last byte', size - 1],
            ] as const) {
              flip(target, at);
              for (const impl of ['envseal', 'esdk'] as Impl[]) {
                const outDir = join(work, `tamper-${impl}`);
                mkdirSync(outDir, { recursive: true });
                const out = join(outDir, 'out');
                const t = timed([impl, 'decrypt', suite, target, out]);
                const bytesReleased = existsSync(out) ? statSync(out).size : 0;
                const leftovers = readdirSync(outDir).filter((f) => f !== basename(out));
                const run: TamperRun = {
                  impl,
                  suite,
                  sizeMiB,
                  where,
                  refused: !t.result.ok,
                  error: t.result.error?.slice(0, 300),
                  secondsToRefusal: t.result.ms / 1000,
                  bytesReleased,
                  leftovers,
                  maxRssMiB: t.maxRssMiB,
                  loadBefore: t.loadBefore,
                };
                tampers.push(run);
                log(
                  `tampered (${where}) ${impl} ${suite} ${sizeMiB} MiB: ${run.refused ? 'refused' : 'NOT REFUSED'} after ${run.secondsToRefusal.toFixed(2)} s, ${bytesReleased} bytes at the output path, leftovers ${JSON.stringify(leftovers)}: ${run.error ?? ''}`,
                );
                rmSync(outDir, { recursive: true, force: true });
              }
              flip(target, at);
            }
          }
          rmSync(join(work, 'enc-envseal'), { force: true });
          rmSync(join(work, 'enc-esdk'), { force: true });
        }
      }
      rmSync(plain, { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  };
  const summary = [];
  for (const sizeMiB of sizesMiB) {
    for (const suite of Object.keys(SUITES) as SuiteName[]) {
      for (const op of ['encrypt', 'decrypt'] as const) {
        const of = (impl: Impl) => runs.filter((r) => r.impl === impl && r.op === op && r.suite === suite && r.sizeMiB === sizeMiB);
        const row = (impl: Impl) => ({
          mbPerSecond: median(of(impl).map((r) => r.mbPerSecond)),
          cpuSeconds: median(of(impl).map((r) => r.cpuSeconds)),
          maxRssMiB: Math.max(...of(impl).map((r) => r.maxRssMiB)),
          all: of(impl).map((r) => Number(r.mbPerSecond.toFixed(0))),
        });
        const ours = row('envseal');
        const sdk = row('esdk');
        summary.push({
          sizeMiB,
          suite,
          op,
          envseal: ours,
          esdk: sdk,
          throughputRatio: sdk.mbPerSecond / ours.mbPerSecond,
          rssRatio: sdk.maxRssMiB / ours.maxRssMiB,
        });
      }
    }
  }
  const result = {
    machine: {
      ...machine,
      loadAtEnd: loadavg()
        .map((n) => n.toFixed(2))
        .join(' '),
    },
    frameLength: FRAME,
    rounds,
    summary,
    interop,
    tampers,
    runs,
  };
  const out = String(values.out ?? join(repo, 'bench/files/esdk-compare.json'));
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  log(`results in ${out}`);

  const lines = [
    '| size | suite | op | envseal MB/s (median; rounds) | ESDK MB/s (median; rounds) | ESDK / envseal | CPU s envseal / ESDK | peak RSS MiB envseal / ESDK |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const s of summary) {
    const size = s.sizeMiB >= 1024 ? `${s.sizeMiB / 1024} GiB` : `${s.sizeMiB} MiB`;
    lines.push(
      `| ${size} | ${s.suite} | ${s.op} | ${s.envseal.mbPerSecond.toFixed(0)} (${s.envseal.all.join(', ')}) | ${s.esdk.mbPerSecond.toFixed(0)} (${s.esdk.all.join(', ')}) | ${s.throughputRatio.toFixed(2)} | ${s.envseal.cpuSeconds.toFixed(1)} / ${s.esdk.cpuSeconds.toFixed(1)} | ${s.envseal.maxRssMiB.toFixed(0)} / ${s.esdk.maxRssMiB.toFixed(0)} |`,
    );
  }
  lines.push(
    '',
    '| size | suite | tampered | impl | refused | time to refusal (s) | bytes at the output path | peak RSS MiB |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const t of tampers) {
    const size = t.sizeMiB >= 1024 ? `${t.sizeMiB / 1024} GiB` : `${t.sizeMiB} MiB`;
    lines.push(
      `| ${size} | ${t.suite} | ${t.where} | ${t.impl} | ${t.refused ? 'yes' : '**no**'} | ${t.secondsToRefusal.toFixed(2)} | ${t.bytesReleased} | ${t.maxRssMiB.toFixed(0)} |`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
