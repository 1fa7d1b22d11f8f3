import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { checkTemplates, jsonString, renderTemplates, templateBound } from './template-render.ts';
import { FUNCTIONS, parseTemplate, TemplateError } from './template.ts';

const CANARY = 'CANARY-7f3a-value';

function render(text: string, values: Record<string, string | Buffer>): string {
  const bytes = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, typeof v === 'string' ? Buffer.from(v) : v]));
  return renderTemplates({ templates: { out: text }, values: bytes }).out!.toString('utf8');
}

function renderError(text: string, values: Record<string, string | Buffer>): TemplateError {
  try {
    render(text, values);
  } catch (error) {
    expect(error).toBeInstanceOf(TemplateError);
    return error as TemplateError;
  }
  throw new Error('rendered without an error');
}

function problems(templates: Record<string, string>, values: Record<string, number>, type?: string, budget = 1024 * 1024): string[] {
  return checkTemplates({ templates, valueLengths: new Map(Object.entries(values)), budget, ...(type ? { type } : {}) }).map((p) => p.message);
}

describe('rendering', () => {
  it('substitutes values into config text', () => {
    expect(render('password: {{ .DB_PASSWORD }}\nhost: db', { DB_PASSWORD: 's3cr3t' })).toBe('password: s3cr3t\nhost: db');
    expect(render('{{.A}}{{.B}}', { A: 'x', B: 'y' })).toBe('xy');
    expect(render('url: {{ index . "db.host" }}:{{ index . "db-port" }}', { 'db.host': 'h', 'db-port': '5432' })).toBe('url: h:5432');
    expect(render('no actions at all', {})).toBe('no actions at all');
    expect(render('{{ "{{" }} literal braces }}', {})).toBe('{{ literal braces }}');
  });

  it('b64enc and b64dec, as a call or in a pipeline', () => {
    expect(render('{{ .A | b64enc }}', { A: 'user:pass' })).toBe(Buffer.from('user:pass').toString('base64'));
    expect(render('{{ b64enc .A }}', { A: 'user:pass' })).toBe(Buffer.from('user:pass').toString('base64'));
    expect(render('{{ .A | b64dec }}', { A: Buffer.from('hello').toString('base64') })).toBe('hello');
    expect(render('{{ .A | b64enc | b64dec }}', { A: Buffer.from([0, 255, 10]) })).toBe(Buffer.from([0, 255, 10]).toString('utf8'));
  });

  it('json quotes a value as a JSON string that is also a YAML scalar', () => {
    const value = 'p"a\\s\ns: #{x} \u0085 \u2028 \ufeff\u007f';
    const out = render('{"password": {{ .P | json }}}', { P: value });
    expect(JSON.parse(out).password).toBe(value);
    expect(parseYaml(render('password: {{ .P | json }}\n', { P: value })).password).toBe(value);
  });

  it('default replaces an empty value only', () => {
    expect(render('{{ .A | default "none" }}', { A: '' })).toBe('none');
    expect(render('{{ .A | default "none" }}', { A: 'set' })).toBe('set');
    expect(render('{{ default "none" .A }}', { A: '' })).toBe('none');
  });

  it('indent and nindent prefix every line, as sprig does', () => {
    const cert = '-----BEGIN-----\nabc\n-----END-----';
    expect(render('tls:\n  cert: |{{ .C | nindent 4 }}\n', { C: cert })).toBe('tls:\n  cert: |\n    -----BEGIN-----\n    abc\n    -----END-----\n');
    expect(parseYaml(render('cert: |{{ .C | nindent 2 }}\n', { C: cert })).cert).toBe(`${cert}\n`);
    expect(render('{{ .C | indent 2 }}', { C: 'a\n' })).toBe('  a\n  ');
    expect(render('{{ .C | indent 0 }}', { C: 'a\nb' })).toBe('a\nb');
  });

  it('trim markers remove the white space beside an action, as in Go', () => {
    expect(render('a:  \n  {{- .A -}}  \n  b', { A: 'x' })).toBe('a:xb');
    expect(render('a {{- .A }} b', { A: 'x' })).toBe('ax b');
    expect(render('a {{ .A -}}\n\n b', { A: 'x' })).toBe('a xb');
  });

  it('inserts bytes that are not UTF-8 unchanged', () => {
    const bytes = Buffer.from([0xff, 0x00, 0xfe]);
    const out = renderTemplates({ templates: { k: '<{{ .B }}>' }, values: { B: bytes } }).k!;
    expect(out).toEqual(Buffer.concat([Buffer.from('<'), bytes, Buffer.from('>')]));
  });
});

describe('errors name the template key, line and column, never a value', () => {
  it.each([
    ['{{ .A ', /line 1 column 7: unclosed action/],
    ['x\n  {{ nope .A }}', /line 2 column 6: unknown function "nope"/],
    ['{{ .A | }}', /line 1 column 9: expected a function after "\|"/],
    ['{{ }}', /line 1 column 4: empty action/],
    ['{{ .a.b }}', /a key name has no fields/],
    ['{{ "abc }}', /unterminated string/],
    ['{{ "\\q" }}', /unknown escape/],
    ['{{ .A | indent }}', /indent takes 1 argument besides the piped value, got 0/],
    ['{{ .A | indent 65 }}', /indent takes at most 64 spaces/],
    ['{{ .A | indent 99999999999 }}', /indent takes at most 64 spaces/],
    ['{{ .A | default .B }}', /argument 1 of default must be a string literal/],
    ['{{ .A .B }}', /expected "\|" or "}}" after the value/],
    ['{{ .A-}}', /a trim marker needs a space before it/],
    ['{{ index .A }}', /index takes the dot and a key name/],
    ['{{ b64enc 3 }}', /cannot take a number/],
  ])('%j', (text, message) => {
    let caught: unknown;
    try {
      parseTemplate('config.yaml', text);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(TemplateError);
    expect((caught as TemplateError).code).toBe('InvalidTemplate');
    expect((caught as TemplateError).message).toMatch(/^template "config.yaml" /);
    expect((caught as TemplateError).message).toMatch(message);
  });

  it('b64dec of a value that is not base64, and json of a value that is not UTF-8, fail naming the place only', () => {
    const dec = renderError('a: 1\nb: {{ .P | b64dec }}', { P: `${CANARY}!` });
    expect(dec.code).toBe('TemplateRenderFailed');
    expect(dec.message).toBe('template "out" line 2 column 12: the value piped to b64dec is not standard padded base64');
    const json = renderError('{{ .P | json }}', { P: Buffer.concat([Buffer.from(CANARY), Buffer.from([0xff])]) });
    expect(json.message).toBe('template "out" line 1 column 9: the value piped to json is not UTF-8 text (b64enc it instead)');
  });

  it('no error message ever contains a value (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.constantFrom(...FUNCTIONS), (text, fn) => {
        const template = `${text}{{ .P | ${fn}${fn === 'default' ? ' "d"' : fn.endsWith('indent') ? ' 2' : ''} }}${text}`;
        try {
          renderTemplates({ templates: { k: template }, values: { P: Buffer.concat([Buffer.from(CANARY), Buffer.from([0xff, 0x21])]) } });
        } catch (error) {
          expect(error).toBeInstanceOf(TemplateError);
          expect((error as Error).message).not.toContain(CANARY);
          expect((error as Error).message).not.toContain('CANARY');
        }
      }),
    );
  });

  it('checkTemplates names a key that is not sealed, and the place it is read', () => {
    expect(problems({ 'config.yaml': 'a: {{ .DB_PASSWORD }}\nb: {{ .MISSING }}' }, { DB_PASSWORD: 6 })).toEqual([
      'template "config.yaml" line 2 column 7: references key "MISSING", which is not sealed in this EnvelopeSecret',
    ]);
    expect(problems({ k: '{{ index . "tls.key" }}' }, {})).toEqual([
      'template "k" line 1 column 4: references key "tls.key", which is not sealed in this EnvelopeSecret',
    ]);
  });

  it('checkTemplates: for JSON-parsed Secret types, every value goes through json', () => {
    const type = 'kubernetes.io/dockerconfigjson';
    const raw = '{"auths":{"r":{"auth":"{{ .AUTH }}"}}}';
    expect(problems({ '.dockerconfigjson': raw }, { AUTH: 10 }, type)).toEqual([
      'template ".dockerconfigjson" line 1 column 24: the API server parses .dockerconfigjson of a kubernetes.io/dockerconfigjson Secret as JSON; end each pipeline that reads a value with "| json"',
    ]);
    expect(problems({ '.dockerconfigjson': '{"auths":{"r":{"auth":{{ .AUTH | b64enc | json }}}}}' }, { AUTH: 10 }, type)).toEqual([]);
    expect(problems({ '.dockerconfigjson': raw }, { AUTH: 10 }, 'Opaque')).toEqual([]);
    expect(problems({ other: raw }, { AUTH: 10 }, type)).toEqual([]);
  });
});

describe('the output is bounded before any value is opened', () => {
  it('refuses a template that can render more than the Secret holds, from the lengths alone', () => {
    const many = '{{ .A }}'.repeat(1025);
    expect(problems({ k: many }, { A: 1024 })).toEqual(['template "k" can render up to 1049600 bytes; at most 1048576 fit in the Secret']);
    expect(problems({ k: '{{ .A }}'.repeat(1024) }, { A: 1024 })).toEqual([]);
    // A pipeline that grows then shrinks is bounded at its largest step.
    expect(problems({ k: `{{ .A${' | indent 64'.repeat(4)}${' | b64dec'.repeat(40)} }}` }, { A: 1000 })).toEqual([
      expect.stringMatching(/^template "k" can render up to \d+ bytes; at most 1048576 fit in the Secret$/),
    ]);
    expect(problems({ a: '{{ .A }}', b: '{{ .A }}' }, { A: 600 }, undefined, 1000)).toEqual([
      'the templates can render up to 1200 bytes; with the sealed values at most 1000 fit in a Secret',
    ]);
  });

  const pipelines = fc.array(fc.constantFrom('b64enc', 'json', 'default "dflt"', 'indent 3', 'nindent 1', 'b64enc | b64dec'), { maxLength: 4 });
  const templates = fc.array(
    fc.oneof(
      fc.string({ maxLength: 10 }).filter((s) => !s.includes('{')),
      pipelines.map((p) => ({ p })),
    ),
    { maxLength: 6 },
  );

  it('every rendered template stays within its bound (property)', () => {
    fc.assert(
      fc.property(templates, fc.uint8Array({ maxLength: 64 }), (parts, value) => {
        const text = parts.map((part) => (typeof part === 'string' ? part : `{{ .V${part.p.map((f) => ` | ${f}`).join('')} }}`)).join('');
        const nodes = parseTemplate('k', text);
        const bound = templateBound(nodes, () => value.length);
        let out: Buffer;
        try {
          out = renderTemplates({ templates: { k: text }, values: { V: value } }).k!;
        } catch (error) {
          // Only json of bytes that are not UTF-8 may fail here.
          expect((error as TemplateError).code).toBe('TemplateRenderFailed');
          return;
        }
        expect(out.length).toBeLessThanOrEqual(bound.output);
      }),
    );
  });

  it('jsonString round-trips through JSON and YAML for any text (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const quoted = jsonString(text);
        expect(JSON.parse(quoted)).toBe(text);
        expect(parseYaml(`v: ${quoted}`).v).toBe(text);
        expect(Buffer.byteLength(quoted)).toBeLessThanOrEqual(6 * Buffer.byteLength(text) + 2);
      }),
    );
  });

  it('parses a template of the largest size, with thousands of actions and long runs of spaces', () => {
    const actions = '{{- .A -}} '.repeat(5000);
    expect(parseTemplate('k', actions)).toHaveLength(5000);
    const spaces = `${' '.repeat(60000)}x{{- .A }}`;
    expect(render(spaces, { A: 'v' })).toBe(`${' '.repeat(60000)}xv`);
  });
});

describe('docs/format.md', () => {
  it('its example templates are valid and render as the text says', () => {
    const doc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### Templates'), doc.indexOf('## Cryptography'));
    const example = /Example:\n\n```yaml\n([\s\S]*?)```/.exec(section)![1]!;
    const { template } = parseYaml(example) as { template: { type: string; data: Record<string, string> } };
    const values = { USER: 'app', DB_PASSWORD: 'p"w', 'ca.crt': 'L1\nL2', REGISTRY_AUTH: 'u:p' };
    const valueLengths = new Map(Object.entries(values).map(([k, v]) => [k, v.length]));
    expect(checkTemplates({ templates: template.data, valueLengths, budget: 1024 * 1024, type: template.type })).toEqual([]);
    const out = renderTemplates({ templates: template.data, values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])) });
    expect(parseYaml(out['config.yaml']!.toString())).toEqual({ database: { user: 'app', password: 'p"w' }, tls: { ca: 'L1\nL2\n' } });
    expect(JSON.parse(out['.dockerconfigjson']!.toString())).toEqual({ auths: { 'registry.example': { auth: Buffer.from('u:p').toString('base64') } } });
  });
});
