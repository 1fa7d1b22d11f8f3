// File encryption benchmark: envseal encrypt/decrypt vs aws-encryption-cli on the same
// files and the same KMS emulator (local-kms on 127.0.0.1), plus `openssl speed -evp
// aes-256-gcm` in the same run. Throughput = plaintext bytes / wall time; peak memory =
// max RSS from GNU time. envseal runs from a compiled build (as bin/envseal does).
//
//   npx node bench/files/run.ts [--sizes 1024,4096] [--out bench/files/results.json] [--tools envseal,aws-encryption-cli]
//
// Every run also records CPU time (user + sys from GNU time) and the load average
// before and after: `openssl speed` divides by CPU time by default, so MB per
// CPU-second is the figure to hold against it; its `-elapsed` (wall-clock) figure is
// measured in the same run too.
//
// Needs: scripts/kms-emulators/build.sh and scripts/esdk-cli/setup.sh (run here when
// missing), /usr/bin/time, openssl, dd (a plain and a synced copy of each file, as the
// file system's ceiling in the same run). Big files live in a temp dir under /tmp and are
// deleted at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { startLocalKms } from '../../test/harness/kms-emulators.ts';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '1024,4096' }, out: { type: 'string' }, tools: { type: 'string', default: 'envseal,aws-encryption-cli' } },
});
const tools = new Set(values.tools!.split(','));
const sizesMiB = values.sizes!.split(',').map(Number);
const repo = new URL('../../', import.meta.url).pathname;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

function sh(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Run {
  tool: string;
  op: 'encrypt' | 'decrypt' | 'copy';
  suite: string;
  frameLength: number;
  sizeMiB: number;
  seconds: number;
  mbPerSecond: number;
  maxRssMB: number;
  /** user + sys CPU seconds (all threads). */
  cpuSeconds: number;
  /** Plaintext MB per CPU-second: comparable with `openssl speed`'s default figure. */
  mbPerCpuSecond: number;
  loadBefore: number;
  loadAfter: number;
}

function timed(tool: string, op: Run['op'], suite: string, frameLength: number, sizeMiB: number, cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const loadBefore = loadavg()[0]!;
  const r = spawnSync('/usr/bin/time', ['-f', 'BENCH %e %M %U %S', cmd, ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const m = /BENCH ([\d.]+) (\d+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || m === null) throw new Error(`${tool} ${op} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const seconds = Number(m[1]);
  const cpuSeconds = Number(m[3]) + Number(m[4]);
  const mb = (sizeMiB * 1048576) / 1e6;
  const loadAfter = loadavg()[0]!;
  const run: Run = {
    tool,
    op,
    suite,
    frameLength,
    sizeMiB,
    seconds,
    mbPerSecond: mb / seconds,
    maxRssMB: Number(m[2]) / 1024,
    cpuSeconds,
    mbPerCpuSecond: mb / cpuSeconds,
    loadBefore,
    loadAfter,
  };
  log(
    `${tool} ${op} ${suite} ${sizeMiB} MiB: ${seconds.toFixed(2)} s, ${run.mbPerSecond.toFixed(0)} MB/s, CPU ${cpuSeconds.toFixed(2)} s (${run.mbPerCpuSecond.toFixed(0)} MB per CPU-s), max RSS ${run.maxRssMB.toFixed(0)} MiB (load ${loadBefore.toFixed(1)} -> ${loadAfter.toFixed(1)})`,
  );
  return run;
}

const work = mkdtempSync('/tmp/envseal-bench-');
const emulator = await startLocalKms();
try {
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: sh(join(repo, 'node_modules/node/bin/node'), ['--version']).trim(),
    openssl: sh('openssl', ['version']).trim(),
    kernel: sh('uname', ['-sr']).trim(),
    loadAtStart: loadavg()
      .map((n) => n.toFixed(2))
      .join(' '),
    date: new Date().toISOString(),
  };
  log(`machine: ${JSON.stringify(machine)}`);

  log('building envseal (tsc -p tsconfig.build.json) into the work dir');
  const dist = join(work, 'dist');
  sh('npx', ['tsc', '-p', join(repo, 'tsconfig.build.json'), '--outDir', dist]);
  symlinkSync(join(repo, 'node_modules'), join(dist, 'node_modules'));
  writeFileSync(join(dist, 'entry.mjs'), "import { main } from './cli/main.js';\nawait main();\n");
  const node = join(repo, 'node_modules/node/bin/node');
  const envseal = [join(dist, 'entry.mjs')];
  const cli = sh('bash', [join(repo, 'scripts/esdk-cli/setup.sh')])
    .trim()
    .split('\n')
    .pop()!;

  const kms = createAwsKmsProvider({ endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials });
  const key = await kms.createKey({ alias: 'alias/envseal-bench' });
  kms.close();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: work,
    AWS_ENDPOINT_URL_KMS: emulator.endpoint,
    AWS_REGION: emulator.region,
    AWS_DEFAULT_REGION: emulator.region,
    AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
  };

  // openssl speed divides by user CPU time unless -elapsed is given: both, same run.
  const opensslSpeed = (extra: string[]) => {
    const loadBefore = loadavg()[0]!;
    const speed = sh('openssl', ['speed', ...extra, '-evp', 'aes-256-gcm']);
    const row = speed.split('\n').find((l) => /^AES-256-GCM\s/.test(l)) ?? '';
    const figures = row
      .trim()
      .split(/\s+/)
      .slice(1)
      .map((f) => (Number(f.replace(/k$/, '')) * 1000) / 1e6);
    const result = {
      args: ['speed', ...extra, '-evp', 'aes-256-gcm'].join(' '),
      row: row.trim(),
      mbPerSecond16k: figures[figures.length - 1] ?? NaN,
      loadBefore,
      loadAfter: loadavg()[0]!,
    };
    log(
      `openssl ${result.args}: ${result.row} -> ${result.mbPerSecond16k.toFixed(0)} MB/s at 16 KiB blocks (load ${loadBefore.toFixed(1)} -> ${result.loadAfter.toFixed(1)})`,
    );
    return result;
  };
  const openssl = [opensslSpeed([]), opensslSpeed(['-elapsed'])];
  const opensslMBps = openssl[0]!.mbPerSecond16k;

  const runs: Run[] = [];
  const FRAME = 65536;
  for (const sizeMiB of sizesMiB) {
    const plain = join(work, 'plain');
    log(`writing ${sizeMiB} MiB of random data`);
    const block = randomBytes(64 << 20);
    const fd = openSync(plain, 'w');
    for (let written = 0; written < sizeMiB; written += 64) writeSync(fd, block, 0, Math.min(64, sizeMiB - written) << 20);
    closeSync(fd);
    const enc = join(work, 'enc');
    const dec = join(work, 'dec');
    const check = (what: string) => {
      const r = spawnSync('cmp', ['-s', plain, dec]);
      if (r.status !== 0) throw new Error(`${what}: the decrypted file differs from the original`);
      rmSync(dec, { force: true });
      rmSync(enc, { force: true });
    };
    // The file system's own ceiling, same file, same run: a plain copy, and one that
    // syncs its output as envseal's atomic output does before its rename.
    runs.push(timed('dd bs=1M', 'copy', '-', 0, sizeMiB, 'dd', [`if=${plain}`, `of=${enc}`, 'bs=1M', 'status=none'], env));
    rmSync(enc, { force: true });
    runs.push(timed('dd bs=1M conv=fsync', 'copy', '-', 0, sizeMiB, 'dd', [`if=${plain}`, `of=${enc}`, 'bs=1M', 'conv=fsync', 'status=none'], env));
    rmSync(enc, { force: true });
    for (const suite of ['0x0478', '0x0578']) {
      const name = suite === '0x0478' ? 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY' : 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384';
      if (tools.has('envseal')) {
        runs.push(
          timed(
            'envseal',
            'encrypt',
            suite,
            FRAME,
            sizeMiB,
            node,
            [...envseal, 'encrypt', plain, '-o', enc, '--recipient', `aws-kms:${key.keyArn}`, '--suite', suite, '-c', 'purpose=bench'],
            env,
          ),
        );
        runs.push(timed('envseal', 'decrypt', suite, FRAME, sizeMiB, node, [...envseal, 'decrypt', enc, '-o', dec, '-c', 'purpose=bench'], env));
        check(`envseal ${suite}`);
      }
      if (!tools.has('aws-encryption-cli')) continue;
      runs.push(
        timed(
          'aws-encryption-cli',
          'encrypt',
          suite,
          FRAME,
          sizeMiB,
          cli,
          [
            '-e',
            '-i',
            plain,
            '-o',
            enc,
            '-w',
            `key=${key.keyArn}`,
            '-S',
            '-c',
            'purpose=bench',
            '--algorithm',
            name,
            '--frame-length',
            String(FRAME),
            '--commitment-policy',
            'require-encrypt-require-decrypt',
          ],
          env,
        ),
      );
      runs.push(
        timed(
          'aws-encryption-cli',
          'decrypt',
          suite,
          FRAME,
          sizeMiB,
          cli,
          ['-d', '-i', enc, '-o', dec, '-w', `key=${key.keyArn}`, '-S', '-c', 'purpose=bench', '--commitment-policy', 'require-encrypt-require-decrypt'],
          env,
        ),
      );
      check(`aws-encryption-cli ${suite}`);
    }
    rmSync(plain, { force: true });
  }
  openssl.push(opensslSpeed([]), opensslSpeed(['-elapsed']));
  const result = {
    machine: {
      ...machine,
      loadAtEnd: loadavg()
        .map((n) => n.toFixed(2))
        .join(' '),
    },
    openssl,
    keyArn: key.keyArn,
    runs,
  };
  const out = values.out ?? join(repo, 'bench/files/results.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  log(`results in ${out}`);
  // The markdown table for docs/benchmarks.md.
  const lines = [
    '| size | suite | tool | encrypt MB/s | decrypt MB/s | encrypt / decrypt MB per CPU-s | peak RSS enc / dec (MiB) | load (1 min) enc / dec |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const sizeMiB of sizesMiB) {
    for (const suite of ['0x0478', '0x0578']) {
      for (const tool of ['envseal', 'aws-encryption-cli']) {
        const e = runs.find((r) => r.sizeMiB === sizeMiB && r.suite === suite && r.tool === tool && r.op === 'encrypt');
        const d = runs.find((r) => r.sizeMiB === sizeMiB && r.suite === suite && r.tool === tool && r.op === 'decrypt');
        if (e === undefined || d === undefined) continue;
        const size = sizeMiB >= 1024 ? `${sizeMiB / 1024} GiB` : `${sizeMiB} MiB`;
        lines.push(
          `| ${size} | ${suite} | ${tool} | ${e.mbPerSecond.toFixed(0)} | ${d.mbPerSecond.toFixed(0)} | ${e.mbPerCpuSecond.toFixed(0)} / ${d.mbPerCpuSecond.toFixed(0)} | ${e.maxRssMB.toFixed(0)} / ${d.maxRssMB.toFixed(0)} | ${e.loadBefore.toFixed(1)} / ${d.loadBefore.toFixed(1)} |`,
        );
      }
    }
  }
  lines.push('', '| size | file copy | MB/s | MB per CPU-s | load (1 min) |', '| --- | --- | --- | --- | --- |');
  for (const r of runs.filter((run) => run.op === 'copy')) {
    lines.push(
      `| ${r.sizeMiB >= 1024 ? `${r.sizeMiB / 1024} GiB` : `${r.sizeMiB} MiB`} | ${r.tool} | ${r.mbPerSecond.toFixed(0)} | ${r.mbPerCpuSecond.toFixed(0)} | ${r.loadBefore.toFixed(1)} |`,
    );
  }
  const speeds = openssl.map((o) => `${o.args}, 16 KiB blocks: ${o.mbPerSecond16k.toFixed(0)} MB/s (load ${o.loadBefore.toFixed(1)})`).join('\n');
  process.stdout.write(`${lines.join('\n')}\n\n${speeds}\nhalf of the default openssl figure (start of run): ${(opensslMBps / 2).toFixed(0)} MB/s\n`);
} finally {
  await emulator.stop();
  rmSync(work, { recursive: true, force: true });
}
