// Start-up benchmark: one `envseal seal` (age) and one `envseal verify`, process start
// included, against `node -e 0` (the same Node starting and exiting), in interleaved
// rounds so that load from elsewhere hits every command alike. Issue 17's target: each
// within 1.3x of `node -e 0`, wall and CPU medians.
//
//   npx node bench/startup.ts [--runs 40] [--warmup 3] [--bin NAME=PATH ...] [--out NAME] [--instructions N] [--floor]
//
// --instructions N also counts the instructions each command executes (every thread;
// `valgrind --tool=callgrind`, apt-get install valgrind), N runs each: unlike wall and CPU
// time, the count does not depend on what else the machine is doing.
//
// --bin adds a variant of the CLI (a bin shim or a script taking envseal's arguments;
// default: bin/envseal.js as `envseal`), measured in the same rounds, so that two builds
// compare on the same load. --floor adds what any seal in Node must do: load node:crypto,
// and bench/seal-floor.cjs (a seal's crypto with no library and no YAML). Needs `npm run build`. Writes bench/results/NAME.json when
// --out is given, and prints a Markdown table.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { repoRoot } from './lib/peers.ts';
import { describeMachine, machineInfo } from './lib/proc.ts';
import { formatMs, type Summary, summarize } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '40' },
    warmup: { type: 'string', default: '3' },
    bin: { type: 'string', multiple: true, default: [] },
    out: { type: 'string' },
    instructions: { type: 'string', default: '0' },
    floor: { type: 'boolean', default: false },
  },
});
const RUNS = Number(flags.runs);
const INSTRUCTION_RUNS = Number(flags.instructions);
const WARMUP = Number(flags.warmup);
const log = (message: string) => process.stderr.write(`[startup-bench] ${message}\n`);
const bins = (flags.bin.length > 0 ? flags.bin : [`envseal=${path.join(repoRoot, 'bin/envseal.js')}`]).map((spec) => {
  const at = spec.indexOf('=');
  if (at <= 0) throw new Error(`--bin wants NAME=PATH, got ${spec}`);
  return { name: spec.slice(0, at), path: path.resolve(spec.slice(at + 1)) };
});

const machine = machineInfo();
log(describeMachine(machine));
const node = process.execPath;
const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, LANG: 'C.UTF-8' };
const work = mkdtempSync(path.join(os.tmpdir(), 'envseal-startup-bench-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
process.on('SIGINT', () => process.exit(130));

const secret = path.join(work, 'secret.yaml');
writeFileSync(
  secret,
  stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'db', namespace: 'prod' },
    type: 'Opaque',
    data: { DB_USER: Buffer.from('app').toString('base64'), DB_PASSWORD: Buffer.from(`pw-${'x'.repeat(24)}`).toString('base64') },
  }),
);
const first = bins[0]!.path;
execFileSync(node, [first, 'keys', 'create', '-o', path.join(work, 'age.key')], { env, stdio: ['ignore', 'pipe', 'ignore'] });
const recipient = execFileSync(node, [first, 'keys', 'recipient', '-i', path.join(work, 'age.key')], { env, encoding: 'utf8' }).trim();
const sealed = path.join(work, 'sealed.yaml');
writeFileSync(sealed, execFileSync(node, [first, 'seal', '-f', secret, '-r', `age:${recipient}`], { env, encoding: 'utf8' }));

/**
 * Runs node with args under bash's `time`, which reads the child's rusage to the
 * millisecond (GNU time's CPU figures are in 10 ms steps, a third of `node -e 0`).
 * Wall and CPU are the command's alone, without bash's own start.
 */
function timed(args: readonly string[], options: { captureStdout?: boolean } = {}): Promise<{ ms: number; cpuMs: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const script = 'TIMEFORMAT="%3R %3U %3S"; { time "$@" 2>/dev/null; } 2>&1 >&3';
    const child = spawn('/bin/bash', ['-c', script, 'bash', node, ...args], { env, stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
    const times: Buffer[] = [];
    const out: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => times.push(chunk));
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => out.push(chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      const [real, user, sys] = Buffer.concat(times).toString().trim().split(/\s+/).map(Number);
      if (code !== 0 || real === undefined || Number.isNaN(real)) {
        reject(new Error(`node ${args.join(' ')} exited ${code}`));
        return;
      }
      resolve({ ms: real * 1000, cpuMs: (user! + sys!) * 1000, stdout: options.captureStdout ? Buffer.concat(out).toString() : '' });
    });
  });
}

interface Case {
  id: string;
  args: string[];
}
const cases: Case[] = [{ id: 'node -e 0', args: ['-e', '0'] }];
if (flags.floor) {
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
  cases.push({ id: 'node:crypto loaded', args: ['-e', "require('node:crypto')"] });
  cases.push({ id: 'seal floor (no library)', args: [path.join(repoRoot, 'bench/seal-floor.cjs'), secret, x25519] });
}
for (const bin of bins) {
  cases.push({ id: `${bin.name} seal (age)`, args: [bin.path, 'seal', '-f', secret, '-r', `age:${recipient}`] });
  cases.push({ id: `${bin.name} verify`, args: [bin.path, 'verify', '-f', sealed] });
}
// Each variant's output is checked once: a broken build must not measure as a fast one.
for (const c of cases.slice(1)) {
  const { stdout } = await timed(c.args, { captureStdout: true });
  if (c.id.endsWith('seal (age)') && !stdout.includes('kind: EnvelopeSecret')) throw new Error(`${c.id}: no EnvelopeSecret in ${stdout.slice(0, 200)}`);
  if (c.id.startsWith('seal floor') && !stdout.startsWith('age-encryption.org/v1')) throw new Error(`${c.id}: no age header in ${stdout.slice(0, 200)}`);
}

log(`${WARMUP} warm-up + ${RUNS} interleaved rounds of ${cases.length} commands`);
const wall = new Map<string, number[]>(cases.map((c) => [c.id, []]));
const cpu = new Map<string, number[]>(cases.map((c) => [c.id, []]));
const loadBefore = os.loadavg();
for (let round = -WARMUP; round < RUNS; round++) {
  const shift = Math.max(round, 0);
  for (let i = 0; i < cases.length; i++) {
    const c = cases[(i + shift) % cases.length]!;
    const { ms, cpuMs } = await timed(c.args);
    if (round >= 0) {
      wall.get(c.id)!.push(ms);
      cpu.get(c.id)!.push(cpuMs);
    }
  }
}
const loadAfter = os.loadavg();

/** Instructions executed by `node ARGS`, all threads, from callgrind's summary (millions). */
function instructions(args: readonly string[]): number {
  const result = spawnSync('valgrind', ['--tool=callgrind', '--callgrind-out-file=/dev/null', node, ...args], { env, encoding: 'utf8' });
  const collected = /Collected : (\d+)/.exec(result.stderr ?? '');
  if (result.status !== 0 || !collected) throw new Error(`valgrind node ${args.join(' ')}: ${result.error?.message ?? result.stderr?.slice(-500)}`);
  return Number(collected[1]) / 1e6;
}
const counted = new Map<string, number[]>(cases.map((c) => [c.id, []]));
if (INSTRUCTION_RUNS > 0) log(`${INSTRUCTION_RUNS} callgrind run(s) per command`);
for (let round = 0; round < INSTRUCTION_RUNS; round++) for (const c of cases) counted.get(c.id)!.push(instructions(c.args));
const summaries: Record<string, { wall: Summary; cpu: Summary; instructionsMillions?: Summary }> = Object.fromEntries(
  cases.map((c) => [
    c.id,
    {
      wall: summarize(wall.get(c.id)!),
      cpu: summarize(cpu.get(c.id)!),
      ...(INSTRUCTION_RUNS > 0 ? { instructionsMillions: summarize(counted.get(c.id)!) } : {}),
    },
  ]),
);
const base = summaries['node -e 0']!;
const lines = [
  `Machine: ${describeMachine(machine)}; load ${loadBefore[0]!.toFixed(2)} -> ${loadAfter[0]!.toFixed(2)}`,
  '',
  `Command: \`${['npx node bench/startup.ts', ...process.argv.slice(2)].join(' ')}\``,
  '',
  '| command | wall median | wall min | CPU median | wall vs node -e 0 | CPU vs node -e 0 | instructions (M, median) | vs node -e 0 |',
  '|---|---:|---:|---:|---:|---:|---:|---:|',
];
for (const c of cases) {
  const s = summaries[c.id]!;
  const counts = s.instructionsMillions && base.instructionsMillions;
  lines.push(
    `| ${c.id} | ${formatMs(s.wall.median)} | ${formatMs(s.wall.min)} | ${formatMs(s.cpu.median)} | ${(s.wall.median / base.wall.median).toFixed(2)}x | ${(s.cpu.median / base.cpu.median).toFixed(2)}x | ${counts ? s.instructionsMillions!.median.toFixed(1) : 'n/a'} | ${counts ? `${(s.instructionsMillions!.median / base.instructionsMillions!.median).toFixed(2)}x` : 'n/a'} |`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
if (flags.out) {
  mkdirSync(path.join(repoRoot, 'bench/results'), { recursive: true });
  const result = { date: new Date().toISOString(), argv: process.argv.slice(2), machine, loadBefore, loadAfter, runs: RUNS, summaries };
  writeFileSync(path.join(repoRoot, `bench/results/${flags.out}.json`), `${JSON.stringify(result, null, 2)}\n`);
}
