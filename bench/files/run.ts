// File encryption benchmark: envseal encrypt/decrypt vs aws-encryption-cli on the same
// files and the same KMS emulator (local-kms on 127.0.0.1), plus `openssl speed -evp
// aes-256-gcm` in the same run. Throughput = plaintext bytes / wall time; peak memory =
// max RSS from GNU time. envseal runs from a compiled build (as bin/envseal does).
//
//   npx node bench/files/run.ts [--sizes 1024,4096] [--out bench/files/results.json]
//
// Needs: scripts/kms-emulators/build.sh and scripts/esdk-cli/setup.sh (run here when
// missing), /usr/bin/time, openssl. Big files live in a temp dir under /tmp and are
// deleted at the end.
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { createAwsKmsProvider } from '../../src/providers/aws-kms.ts';
import { startLocalKms } from '../../test/harness/kms-emulators.ts';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1024,4096' }, out: { type: 'string' } } });
const sizesMiB = values.sizes!.split(',').map(Number);
const repo = new URL('../../', import.meta.url).pathname;
const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);

function sh(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Run {
  tool: string;
  op: 'encrypt' | 'decrypt';
  suite: string;
  frameLength: number;
  sizeMiB: number;
  seconds: number;
  mbPerSecond: number;
  maxRssMB: number;
  loadBefore: number;
}

function timed(tool: string, op: Run['op'], suite: string, frameLength: number, sizeMiB: number, cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const loadBefore = loadavg()[0]!;
  const r = spawnSync('/usr/bin/time', ['-f', 'BENCH %e %M', cmd, ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const m = /BENCH ([\d.]+) (\d+)/.exec(r.stderr);
  if (r.status !== 0 || m === null) throw new Error(`${tool} ${op} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const seconds = Number(m[1]);
  const run: Run = { tool, op, suite, frameLength, sizeMiB, seconds, mbPerSecond: (sizeMiB * 1048576) / 1e6 / seconds, maxRssMB: Number(m[2]) / 1024, loadBefore };
  log(`${tool} ${op} ${suite} ${sizeMiB} MiB: ${seconds.toFixed(2)} s, ${run.mbPerSecond.toFixed(0)} MB/s, max RSS ${run.maxRssMB.toFixed(0)} MiB (load ${loadBefore.toFixed(1)})`);
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
    loadAtStart: loadavg().map((n) => n.toFixed(2)).join(' '),
    date: new Date().toISOString(),
  };
  log(`machine: ${JSON.stringify(machine)}`);

  log('building envseal (tsc -p tsconfig.build.json) into the work dir');
  const dist = join(work, 'dist');
  sh('npx', ['tsc', '-p', join(repo, 'tsconfig.build.json'), '--outDir', dist]);
  symlinkSync(join(repo, 'node_modules'), join(dist, 'node_modules'));
  writeFileSync(join(dist, 'entry.mjs'), "import { mainFiles } from './files/cli-main.js';\nawait mainFiles();\n");
  const node = join(repo, 'node_modules/node/bin/node');
  const envseal = [join(dist, 'entry.mjs')];
  const cli = sh('bash', [join(repo, 'scripts/esdk-cli/setup.sh')]).trim().split('\n').pop()!;

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

  log('openssl speed -evp aes-256-gcm');
  const speed = sh('openssl', ['speed', '-evp', 'aes-256-gcm']);
  const row = speed.split('\n').find((l) => /^AES-256-GCM\s/.test(l)) ?? '';
  const figures = row.trim().split(/\s+/).slice(1).map((f) => Number(f.replace(/k$/, '')) * 1000 / 1e6);
  const opensslMBps = figures[figures.length - 1] ?? NaN;
  log(`openssl: ${row.trim()} -> ${opensslMBps.toFixed(0)} MB/s at 16 KiB blocks`);

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
    for (const suite of ['0x0478', '0x0578']) {
      const name = suite === '0x0478' ? 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY' : 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384';
      runs.push(timed('envseal', 'encrypt', suite, FRAME, sizeMiB, node, [...envseal, 'encrypt', plain, '-o', enc, '--recipient', `aws-kms:${key.keyArn}`, '--suite', suite, '-c', 'purpose=bench'], env));
      runs.push(timed('envseal', 'decrypt', suite, FRAME, sizeMiB, node, [...envseal, 'decrypt', enc, '-o', dec, '-c', 'purpose=bench'], env));
      check(`envseal ${suite}`);
      runs.push(timed('aws-encryption-cli', 'encrypt', suite, FRAME, sizeMiB, cli, ['-e', '-i', plain, '-o', enc, '-w', `key=${key.keyArn}`, '-S', '-c', 'purpose=bench', '--algorithm', name, '--frame-length', String(FRAME), '--commitment-policy', 'require-encrypt-require-decrypt'], env));
      runs.push(timed('aws-encryption-cli', 'decrypt', suite, FRAME, sizeMiB, cli, ['-d', '-i', enc, '-o', dec, '-w', `key=${key.keyArn}`, '-S', '-c', 'purpose=bench', '--commitment-policy', 'require-encrypt-require-decrypt'], env));
      check(`aws-encryption-cli ${suite}`);
    }
    rmSync(plain, { force: true });
  }
  const result = { machine: { ...machine, loadAtEnd: loadavg().map((n) => n.toFixed(2)).join(' ') }, openssl: { row: row.trim(), mbPerSecond16k: opensslMBps }, keyArn: key.keyArn, runs };
  const out = values.out ?? join(repo, 'bench/files/results.json');
  mkdirSync(join(out, '..'), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  log(`results in ${out}`);
  // The markdown table for docs/benchmarks.md.
  const lines = ['| size | suite | tool | encrypt MB/s | decrypt MB/s | peak RSS enc / dec (MiB) |', '| --- | --- | --- | --- | --- | --- |'];
  for (const sizeMiB of sizesMiB) {
    for (const suite of ['0x0478', '0x0578']) {
      for (const tool of ['envseal', 'aws-encryption-cli']) {
        const e = runs.find((r) => r.sizeMiB === sizeMiB && r.suite === suite && r.tool === tool && r.op === 'encrypt')!;
        const d = runs.find((r) => r.sizeMiB === sizeMiB && r.suite === suite && r.tool === tool && r.op === 'decrypt')!;
        lines.push(`| ${sizeMiB / 1024} GiB | ${suite} | ${tool} | ${e.mbPerSecond.toFixed(0)} | ${d.mbPerSecond.toFixed(0)} | ${e.maxRssMB.toFixed(0)} / ${d.maxRssMB.toFixed(0)} |`);
      }
    }
  }
  process.stdout.write(`${lines.join('\n')}\n\nopenssl speed -evp aes-256-gcm, 16 KiB blocks: ${opensslMBps.toFixed(0)} MB/s\n`);
  void readFileSync;
} finally {
  await emulator.stop();
  rmSync(work, { recursive: true, force: true });
}
