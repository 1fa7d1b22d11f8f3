// What spec.template.data costs the controller per reconcile: checking (in validation,
// before any unwrap) and rendering (in the desired Secret), in process CPU time. No API
// or key-provider call is added: the rendered keys go out in the same apply.
//
//   npx node bench/templates.ts [--out templates]
//
// Cases: a typical config file (6 values, json and nindent), and the most a hostile
// tenant can post: 22 templates of 65,536 characters (what etcd stores), 64 of them (what
// the CRD allows: 4 MiB, more than etcd stores), and one template whose output bound is
// the whole 1 MiB. Results: bench/results/NAME.json.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { checkTemplates, renderTemplates } from '../src/api/template-render.ts';
import { MAX_TEMPLATE_LENGTH, MAX_TEMPLATES } from '../src/api/validation.ts';
import { repoRoot } from './lib/peers.ts';
import { describeMachine, machineInfo } from './lib/proc.ts';

const { values: flags } = parseArgs({ options: { out: { type: 'string', default: 'templates' } } });

interface Case {
  name: string;
  templates: Record<string, string>;
  values: Record<string, Buffer>;
}

const typical: Case = {
  name: 'typical config file (6 values)',
  templates: {
    'config.yaml':
      'database:\n  host: {{ .DB_HOST }}\n  user: {{ .DB_USER }}\n  password: {{ .DB_PASSWORD | json }}\n' +
      'api:\n  key: {{ .API_KEY | json }}\n  token: {{ .TOKEN | b64enc }}\ntls:\n  ca: |{{ index . "ca.crt" | nindent 4 }}\n',
  },
  values: {
    DB_HOST: Buffer.from('db.internal'),
    DB_USER: Buffer.from('app'),
    DB_PASSWORD: Buffer.from('s3cr3t-"quoted"-password'),
    API_KEY: Buffer.from('k'.repeat(40)),
    TOKEN: Buffer.from('t'.repeat(64)),
    'ca.crt': Buffer.from(`-----BEGIN CERTIFICATE-----\n${'A'.repeat(64)}\n`.repeat(20)),
  },
};

// 64 templates of 65,536 characters, each a run of actions: the parser's worst input.
const action = '{{- .A | json -}} ';
const hostileParse: Case = {
  name: `${MAX_TEMPLATES} templates of ${MAX_TEMPLATE_LENGTH} characters (actions only)`,
  templates: Object.fromEntries(Array.from({ length: MAX_TEMPLATES }, (_, i) => [`t${i}`, action.repeat(Math.floor(MAX_TEMPLATE_LENGTH / action.length))])),
  values: { A: Buffer.from('') },
};

// The most that fits in one object etcd stores (its 1.5 MiB request limit): 22 of them.
const storable: Case = {
  name: `22 templates of ${MAX_TEMPLATE_LENGTH} characters (1.4 MiB, the most etcd stores; actions only)`,
  templates: Object.fromEntries(Object.entries(hostileParse.templates).slice(0, 22)),
  values: hostileParse.values,
};

// One template that renders (close to) the whole 1 MiB: indent 64 over a 16 KiB value of newlines.
const hostileRender: Case = {
  name: 'one template rendering 1 MiB (indent 64 of 16,000 newlines)',
  templates: { big: '{{ .A | indent 64 }}' },
  values: { A: Buffer.alloc(16_000, 0x0a) },
};

function cpuMs(run: () => void, times: number): number {
  const start = process.cpuUsage();
  for (let i = 0; i < times; i++) run();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000 / times;
}

const results = [typical, storable, hostileParse, hostileRender].map((c) => {
  const valueLengths = new Map(Object.entries(c.values).map(([k, v]) => [k, v.length]));
  const check = () => {
    const problems = checkTemplates({ templates: c.templates, valueLengths, budget: 1024 * 1024 });
    if (problems.length > 0) throw new Error(`${c.name}: ${problems[0]!.message}`);
  };
  const render = () => {
    for (const value of Object.values(renderTemplates({ templates: c.templates, values: c.values }))) value.fill(0);
  };
  check();
  const bytes = Object.values(renderTemplates({ templates: c.templates, values: c.values })).reduce((n, v) => n + v.length, 0);
  const times = c === typical ? 20_000 : 10;
  // Warm up, then measure.
  cpuMs(check, Math.ceil(times / 10));
  cpuMs(render, Math.ceil(times / 10));
  return { case: c.name, renderedBytes: bytes, checkMs: cpuMs(check, times), renderMs: cpuMs(render, times), runs: times };
});

const machine = machineInfo();
for (const r of results)
  console.log(`${r.case}: check ${r.checkMs.toFixed(4)} ms, render ${r.renderMs.toFixed(4)} ms CPU (${r.renderedBytes} bytes rendered, mean of ${r.runs})`);
console.log(describeMachine(machine));
writeFileSync(path.join(repoRoot, 'bench/results', `${flags.out}.json`), `${JSON.stringify({ machine, results }, null, 2)}\n`);
