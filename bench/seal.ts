// Sealing benchmark: `envseal seal` (age; aws-kms on local-kms) against `kubeseal --cert`
// (offline, with a certificate fetched once) and `sops --encrypt` (age), on the same
// Secret manifests, each as a separate process (start-up included), as a user or a CI
// script runs them.
//
//   npx node bench/seal.ts [--runs 40] [--batch 1000] [--skip aws-kms,sops,...] [--out NAME]
//
// Needs `npm run build` (envseal runs from bin/envseal.js, like an installed CLI), go
// (the peers are built by scripts/peers/build.sh on first use) and, for aws-kms,
// local-kms (scripts/kms-emulators/build.sh). Writes bench/results/NAME.json and the
// chart docs/benchmarks/NAME.png (NAME defaults to "seal"), and prints Markdown tables.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { startLocalKms, type KmsEmulator } from '../test/harness/kms-emulators.ts';
import { COLORS, type Bar, writeChart } from './lib/chart.ts';
import { ensurePeers, repoRoot } from './lib/peers.ts';
import { describeMachine, type MachineInfo, machineInfo, timedRun } from './lib/proc.ts';
import { formatMs, type Summary, summarize } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    runs: { type: 'string', default: '40' },
    warmup: { type: 'string', default: '3' },
    batch: { type: 'string', default: '1000' },
    skip: { type: 'string', default: '' },
    out: { type: 'string', default: 'seal' },
    'report-only': { type: 'boolean', default: false },
    'envseal-bin': { type: 'string', default: path.join(repoRoot, 'bin/envseal.js') },
  },
});
const RUNS = Number(flags.runs);
const WARMUP = Number(flags.warmup);
const BATCH = Number(flags.batch);
const SKIP = new Set(flags.skip.split(',').filter(Boolean));
const ENVSEAL_BIN = path.resolve(flags['envseal-bin']);
const log = (message: string) => process.stderr.write(`[seal-bench] ${message}\n`);

interface Tool {
  id: string;
  label: string;
  color: string;
  /** The command for one Secret manifest file. */
  command: (file: string) => { command: string; args: string[] };
  /** envseal's batch mode: every file in one process (`seal -f ... --output-dir DIR`). */
  batchCommand?: (files: readonly string[], outputDir: string) => { command: string; args: string[] };
  env: NodeJS.ProcessEnv;
  /** Checks one output. */
  check: (stdout: string) => void;
  /** A reference measured for one run only, not in the batch. */
  singleOnly?: boolean;
}

const TOOL_COLORS: Record<string, string> = {
  'envseal-age': COLORS.envseal,
  'envseal-aws-kms': COLORS.envsealAlt,
  kubeseal: COLORS.kubeseal,
  sops: COLORS.sops,
  node: COLORS.node,
};
if (flags['report-only']) {
  // Redraw the tables and chart from bench/results/NAME.json, without running anything.
  report(JSON.parse(readFileSync(path.join(repoRoot, `bench/results/${flags.out}.json`), 'utf8')) as SavedResult);
  process.exit(0);
}
const machine = machineInfo();
log(describeMachine(machine));
if (!existsSync(path.join(repoRoot, 'dist/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');

const work = mkdtempSync(path.join(os.tmpdir(), 'envseal-seal-bench-'));
const cleanup: (() => Promise<void> | void)[] = [() => rmSync(work, { recursive: true, force: true })];
process.on('SIGINT', () => process.exit(130));

/** A Secret manifest as kubectl create secret --dry-run -o yaml writes it. */
function secretManifest(i: number): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `db-${String(i).padStart(4, '0')}`, namespace: 'prod' },
    type: 'Opaque',
    data: {
      DB_USER: Buffer.from(`app-${i}`).toString('base64'),
      DB_PASSWORD: Buffer.from(`pw-${i}-${'x'.repeat(24)}`).toString('base64'),
    },
  });
}

const files: string[] = [];
mkdirSync(path.join(work, 'secrets'));
for (let i = 0; i < Math.max(BATCH, 1); i++) {
  const file = path.join(work, 'secrets', `db-${String(i).padStart(4, '0')}.yaml`);
  writeFileSync(file, secretManifest(i));
  files.push(file);
}
const single = files[0]!;

const node = process.execPath;
const baseEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, LANG: 'C.UTF-8' };

// --- keys ---------------------------------------------------------------------------
execFileSync(node, [ENVSEAL_BIN, 'keys', 'create', '-o', path.join(work, 'age.key')], { env: baseEnv, stdio: ['ignore', 'pipe', 'ignore'] });
const ageRecipient = execFileSync(node, [ENVSEAL_BIN, 'keys', 'recipient', '-i', path.join(work, 'age.key')], { env: baseEnv, encoding: 'utf8' }).trim();

const tools: Tool[] = [];
const notes: string[] = [];

const expectKind = (kind: string) => (stdout: string) => {
  if (!stdout.includes(`kind: ${kind}`) && !stdout.includes(`"kind": "${kind}"`))
    throw new Error(`expected a ${kind} in the output, got: ${stdout.slice(0, 200)}`);
};

tools.push({
  id: 'envseal-age',
  label: 'envseal seal (age)',
  color: COLORS.envseal,
  command: (file) => ({ command: node, args: [ENVSEAL_BIN, 'seal', '-f', file, '-r', `age:${ageRecipient}`] }),
  batchCommand: (inputs, outputDir) => ({
    command: node,
    args: [ENVSEAL_BIN, 'seal', ...inputs.flatMap((f) => ['-f', f]), '--output-dir', outputDir, '-r', `age:${ageRecipient}`],
  }),
  env: baseEnv,
  check: expectKind('EnvelopeSecret'),
});

let kms: KmsEmulator | undefined;
if (!SKIP.has('aws-kms')) {
  kms = await startLocalKms();
  cleanup.push(() => kms?.stop());
  const kmsEnv = {
    ...baseEnv,
    AWS_ACCESS_KEY_ID: kms.credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: kms.credentials.secretAccessKey,
    AWS_REGION: kms.region,
    AWS_ENDPOINT_URL_KMS: kms.endpoint,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
  execFileSync(node, [ENVSEAL_BIN, 'keys', 'create', '--provider', 'aws-kms', '--alias', 'alias/envseal-bench'], {
    env: kmsEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  tools.push({
    id: 'envseal-aws-kms',
    label: 'envseal seal (aws-kms, local-kms)',
    color: COLORS.envsealAlt,
    command: (file) => ({ command: node, args: [ENVSEAL_BIN, 'seal', '-f', file, '-r', 'aws-kms:alias/envseal-bench'] }),
    batchCommand: (inputs, outputDir) => ({
      command: node,
      args: [ENVSEAL_BIN, 'seal', ...inputs.flatMap((f) => ['-f', f]), '--output-dir', outputDir, '-r', 'aws-kms:alias/envseal-bench'],
    }),
    env: kmsEnv,
    check: expectKind('EnvelopeSecret'),
  });
}

const peers = await ensurePeers(['kubeseal', 'sops'].filter((p) => !SKIP.has(p)) as ('kubeseal' | 'sops')[], log);
if (peers.kubeseal?.path) {
  // Offline mode: the certificate is fetched once (here: an RSA-4096 self-signed
  // certificate like the one the controller generates; kubeseal only reads its public key).
  const cert = path.join(work, 'sealed-secrets.crt');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:4096',
      '-nodes',
      '-keyout',
      path.join(work, 'sealed-secrets.key'),
      '-out',
      cert,
      '-days',
      '365',
      '-subj',
      '/O=sealed-secret/CN=sealed-secret',
    ],
    { stdio: 'ignore' },
  );
  const kubeseal = peers.kubeseal.path;
  tools.push({
    id: 'kubeseal',
    label: 'kubeseal --cert',
    color: COLORS.kubeseal,
    command: (file) => ({ command: kubeseal, args: ['--cert', cert, '-f', file, '-o', 'yaml'] }),
    env: { ...baseEnv, KUBECONFIG: path.join(work, 'no-kubeconfig') },
    check: expectKind('SealedSecret'),
  });
} else if (peers.kubeseal) {
  notes.push(`kubeseal could not be built: ${peers.kubeseal.error}`);
}
if (peers.sops?.path) {
  const sops = peers.sops.path;
  tools.push({
    id: 'sops',
    label: 'sops --encrypt (age)',
    color: COLORS.sops,
    command: (file) => ({ command: sops, args: ['--encrypt', '--age', ageRecipient, '--encrypted-regex', '^(data|stringData)$', file] }),
    env: baseEnv,
    check: (stdout) => {
      if (!stdout.includes('ENC[AES256_GCM')) throw new Error(`sops output holds no ENC[...] value: ${stdout.slice(0, 200)}`);
    },
  });
} else if (peers.sops) {
  notes.push(`sops could not be built: ${peers.sops.error}`);
}

// The floor for any Node CLI: the same Node starting and exiting (`node -e 0`), measured
// alongside, so that "within 1.5x kubeseal" can be read against what Node itself costs.
if (!SKIP.has('node')) {
  tools.push({
    id: 'node',
    label: 'node -e 0 (Node start-up alone)',
    color: COLORS.node,
    command: () => ({ command: node, args: ['-e', '0'] }),
    env: baseEnv,
    check: () => {},
    singleOnly: true,
  });
}

// --- correctness: each tool's output once; envseal's opens again ------------------------
for (const tool of tools) {
  const { command, args } = tool.command(single);
  const { stdout } = await timedRun(command, args, { env: tool.env, captureStdout: true });
  tool.check(stdout);
  if (tool.id === 'envseal-age') {
    const opened = await timedRun(node, [ENVSEAL_BIN, 'unseal', '-i', path.join(work, 'age.key'), '--key', 'DB_USER'], {
      env: baseEnv,
      stdin: stdout,
      captureStdout: true,
    });
    if (opened.stdout !== 'app-0') throw new Error(`envseal unseal gave ${JSON.stringify(opened.stdout)}`);
  }
}

// --- one seal: interleaved rounds so that load from elsewhere hits every tool alike -----
log(`one seal: ${WARMUP} warm-up + ${RUNS} runs per tool, interleaved`);
const samples = new Map<string, number[]>(tools.map((t) => [t.id, []]));
const cpuSamples = new Map<string, number[]>(tools.map((t) => [t.id, []]));
for (let round = -WARMUP; round < RUNS; round++) {
  const order = tools.map((_, i) => tools[(i + Math.max(round, 0)) % tools.length]!);
  for (const tool of order) {
    const { command, args } = tool.command(single);
    const { ms, cpuMs } = await timedRun(command, args, { env: tool.env });
    if (round >= 0) {
      samples.get(tool.id)!.push(ms);
      cpuSamples.get(tool.id)!.push(cpuMs);
    }
  }
}
const single_: Record<string, Summary> = Object.fromEntries(tools.map((t) => [t.id, summarize(samples.get(t.id)!)]));
const singleCpu: Record<string, Summary> = Object.fromEntries(tools.map((t) => [t.id, summarize(cpuSamples.get(t.id)!)]));

// --- a batch: BATCH different Secrets, one process each, one after the other -----------
const batch: Record<string, { totalMs: number; cpuMs: number; perSecond: number; mode: string }> = {};
if (BATCH > 0) {
  for (const tool of tools) {
    if (!tool.batchCommand || SKIP.has(`batch-mode-${tool.id}`)) continue;
    log(`batch: ${tool.label}, ${BATCH} Secrets in one process (--output-dir)`);
    const outputDir = path.join(work, `out-${tool.id}`);
    const { command, args } = tool.batchCommand(files, outputDir);
    const started = performance.now();
    const { cpuMs } = await timedRun(command, args, { env: tool.env });
    const totalMs = performance.now() - started;
    // Every output is there; one of them opens again.
    for (const file of [files[0]!, files[files.length - 1]!]) {
      const out = path.join(outputDir, path.basename(file));
      tool.check(readFileSync(out, 'utf8'));
    }
    if (tool.id === 'envseal-age') {
      const last = files[files.length - 1]!;
      const opened = await timedRun(
        node,
        [ENVSEAL_BIN, 'unseal', '-f', path.join(outputDir, path.basename(last)), '-i', path.join(work, 'age.key'), '--key', 'DB_USER'],
        { env: baseEnv, captureStdout: true },
      );
      if (opened.stdout !== `app-${files.length - 1}`) throw new Error(`batch output did not open: ${JSON.stringify(opened.stdout)}`);
    }
    batch[`${tool.id}-batch`] = { totalMs, cpuMs, perSecond: (BATCH / totalMs) * 1000, mode: 'one process (--output-dir)' };
  }
  for (const tool of tools) {
    if (tool.singleOnly || SKIP.has(`batch-${tool.id}`)) continue;
    log(`batch: ${BATCH} x ${tool.label}`);
    const started = performance.now();
    let cpuMs = 0;
    for (const file of files) {
      const { command, args } = tool.command(file);
      cpuMs += (await timedRun(command, args, { env: tool.env })).cpuMs;
    }
    const totalMs = performance.now() - started;
    batch[tool.id] = { totalMs, cpuMs, perSecond: (BATCH / totalMs) * 1000, mode: `${BATCH} processes` };
  }
}

for (const fn of cleanup.reverse()) await fn();

// --- report --------------------------------------------------------------------------
const command = `npx node bench/seal.ts ${process.argv.slice(2).join(' ')}`.trim();
const result = {
  date: new Date().toISOString(),
  command,
  machine,
  loadAverageAtEnd: os.loadavg(),
  runs: RUNS,
  batchSize: BATCH,
  tools: tools.map((t) => ({ id: t.id, label: t.label })),
  peers,
  single: single_,
  singleCpu,
  batch,
  notes,
};
mkdirSync(path.join(repoRoot, 'bench/results'), { recursive: true });
writeFileSync(path.join(repoRoot, `bench/results/${flags.out}.json`), `${JSON.stringify(result, null, 2)}\n`);

report(result);

interface SavedResult {
  command: string;
  machine: MachineInfo;
  runs: number;
  batchSize: number;
  tools: { id: string; label: string }[];
  single: Record<string, Summary>;
  singleCpu: Record<string, Summary>;
  batch: Record<string, { totalMs: number; cpuMs: number; perSecond: number; mode: string }>;
  notes: string[];
}

/** Prints the Markdown tables and draws the chart (also with --report-only, from the saved JSON). */
function report(saved: SavedResult): void {
  const { command, machine, single: single_, singleCpu, batch, notes } = saved;
  const RUNS = saved.runs;
  const BATCH = saved.batchSize;
  const tools = saved.tools.map((t) => ({ ...t, color: TOOL_COLORS[t.id] ?? COLORS.grey }));
  const kubesealMedian = single_.kubeseal?.median;
  const labelOf = (id: string) =>
    id.endsWith('-batch') ? `${tools.find((t) => `${t.id}-batch` === id)!.label}, batch mode` : tools.find((t) => t.id === id)!.label;
  const colorOf = (id: string) => tools.find((t) => t.id === id || `${t.id}-batch` === id)!.color;
  const lines: string[] = [];
  lines.push(`Machine: ${describeMachine(machine)}`, '', `Command: \`${command}\``, '');
  const kubesealCpu = singleCpu.kubeseal?.median;
  lines.push(
    '| One seal (process start included) | wall median | wall p90 | wall min | CPU median (user+sys) | runs | wall vs kubeseal | CPU vs kubeseal |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const tool of tools) {
    const s = single_[tool.id]!;
    const c = singleCpu[tool.id]!;
    const ratio = kubesealMedian ? `${(s.median / kubesealMedian).toFixed(2)}x` : 'n/a';
    const cpuRatio = kubesealCpu ? `${(c.median / kubesealCpu).toFixed(2)}x` : 'n/a';
    lines.push(`| ${tool.label} | ${formatMs(s.median)} | ${formatMs(s.p90)} | ${formatMs(s.min)} | ${formatMs(c.median)} | ${s.n} | ${ratio} | ${cpuRatio} |`);
  }
  if (Object.keys(batch).length > 0) {
    const kubesealBatch = batch.kubeseal?.totalMs;
    lines.push('', `| ${BATCH} Secrets | how | wall total | Secrets/s | CPU total | vs kubeseal (wall) |`, '|---|---|---:|---:|---:|---:|');
    for (const id of tools.flatMap((t) => [t.id, `${t.id}-batch`])) {
      const b = batch[id];
      if (!b) continue;
      const tool = { label: labelOf(id) };
      const speed = kubesealBatch
        ? kubesealBatch >= b.totalMs
          ? `${(kubesealBatch / b.totalMs).toFixed(2)}x faster`
          : `${(b.totalMs / kubesealBatch).toFixed(2)}x slower`
        : 'n/a';
      lines.push(`| ${tool.label} | ${b.mode} | ${formatMs(b.totalMs)} | ${b.perSecond.toFixed(1)} | ${formatMs(b.cpuMs)} | ${speed} |`);
    }
  }
  for (const note of notes) lines.push('', `Note: ${note}`);

  const bars = (pick: (id: string) => number | undefined, text: (v: number) => string): Bar[] =>
    tools.filter((t) => pick(t.id) !== undefined).map((t) => ({ label: t.label, value: pick(t.id)!, text: text(pick(t.id)!), color: t.color }));
  const png = writeChart(
    {
      title: 'Sealing one Secret, and a batch',
      subtitle: `${machine.cpus} cores, ${machine.cpuModel}; shared machine; ${new Date().toISOString().slice(0, 10)}`,
      panels: [
        {
          title: `One seal, wall time with process start (median of ${RUNS}; lower is better)`,
          bars: bars((id) => single_[id]?.median, formatMs),
          ...(kubesealMedian ? { marker: { value: kubesealMedian * 1.5, label: 'target: 1.5 x kubeseal' } } : {}),
        },
        { title: `One seal, CPU time user+sys (median of ${RUNS}; lower is better)`, bars: bars((id) => singleCpu[id]?.median, formatMs) },
        ...(Object.keys(batch).length > 0
          ? [
              {
                title: `${BATCH} Secrets, total wall time (lower is better)`,
                bars: tools
                  .flatMap((t) => [t.id, `${t.id}-batch`])
                  .filter((id) => batch[id] !== undefined)
                  .map((id) => ({
                    label: labelOf(id),
                    value: batch[id]!.totalMs,
                    text: `${formatMs(batch[id]!.totalMs)} (${batch[id]!.mode})`,
                    color: colorOf(id),
                  })),
                ...(batch.kubeseal ? { marker: { value: batch.kubeseal.totalMs / 2, label: 'target: 2x faster than kubeseal' } } : {}),
              },
            ]
          : []),
      ],
    },
    path.join(repoRoot, 'docs/benchmarks', flags.out),
    path.join(repoRoot, 'bench/results/tmp'),
  );
  lines.push('', `Chart: ${png ? path.relative(repoRoot, png) : '(no PNG: install librsvg2-bin)'}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}
