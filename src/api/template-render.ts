// Checking and rendering spec.template.data (docs/format.md, "Templates"). Rendering is
// pure: values in, bytes out. The size of every result is bounded from the values'
// lengths alone (public: they show in the ciphertext), so an oversize template is refused
// offline, before any value is opened, and no failure depends on a value's size.
import { isStandardBase64 } from '../envelope/base64.ts';
import { quoteName } from './names.ts';
import { type Action, callsOf, type Node, type Operand, parseTemplate, referencedKeys, TemplateError } from './template.ts';

/** The largest possible output of each function for an input of at most `n` bytes. */
const BOUND: Record<string, (n: number, arg: number) => number> = {
  b64enc: (n) => 4 * Math.ceil(n / 3),
  b64dec: (n) => Math.floor(n / 4) * 3,
  // A control byte becomes \u00XX: six bytes for one.
  json: (n) => 6 * n + 2,
  default: (n, arg) => Math.max(n, arg),
  indent: (n, arg) => n + arg * (n + 1),
  nindent: (n, arg) => 1 + n + arg * (n + 1),
};

/** Types whose content the API server parses as JSON, and the key it parses. */
export const JSON_CHECKED_KEYS: Readonly<Record<string, string>> = {
  'kubernetes.io/dockerconfigjson': '.dockerconfigjson',
  'kubernetes.io/dockercfg': '.dockercfg',
};

export interface TemplateBound {
  /** The most bytes the template can render. */
  output: number;
  /** The most bytes any step of any pipeline can hold. */
  peak: number;
}

function operandBound(operand: Operand, lengthOf: (key: string) => number): number {
  if (operand.kind === 'ref') return lengthOf(operand.key);
  if (operand.kind === 'string') return Buffer.byteLength(operand.value);
  return 0;
}

/** The bound of one parsed template, given the plaintext length of each key. */
export function templateBound(nodes: readonly Node[], lengthOf: (key: string) => number): TemplateBound {
  let output = 0;
  let peak = 0;
  for (const node of nodes) {
    if (node.kind === 'text') {
      output += Buffer.byteLength(node.text);
      continue;
    }
    const { head } = node.action;
    let size = 'name' in head ? operandBound(head.args.at(-1)!, lengthOf) : operandBound(head, lengthOf);
    for (const call of callsOf(node.action)) {
      // The argument before the value: default's literal, indent's number of spaces.
      const first = call.args[0];
      const arg = first?.kind === 'string' ? Buffer.byteLength(first.value) : first?.kind === 'number' ? first.value : 0;
      size = BOUND[call.name]!(size, arg);
      peak = Math.max(peak, size);
    }
    peak = Math.max(peak, size);
    output += size;
  }
  return { output, peak: Math.max(peak, output) };
}

export interface TemplateProblem {
  /** The template key. */
  key: string;
  check: 'structure' | 'size';
  message: string;
}

export interface CheckTemplatesRequest {
  templates: Readonly<Record<string, string>>;
  /** Plaintext length of each sealed key. */
  valueLengths: ReadonlyMap<string, number>;
  /** The Secret's type. */
  type?: string;
  /** Bytes the Secret may still take for rendered templates. */
  budget: number;
}

/**
 * Everything wrong with the templates before rendering: syntax, keys that are not
 * sealed, output over the Secret's budget, and (for types whose content the API server
 * parses as JSON) values inserted without `json`, whose rejection would tell the
 * manifest's writer whether a value parses as JSON.
 */
export function checkTemplates(request: CheckTemplatesRequest): TemplateProblem[] {
  const problems: TemplateProblem[] = [];
  let total = 0;
  const lengthOf = (key: string) => request.valueLengths.get(key) ?? 0;
  for (const [key, text] of Object.entries(request.templates)) {
    let nodes: Node[];
    try {
      nodes = parseTemplate(key, text);
    } catch (error) {
      if (!(error instanceof TemplateError)) throw error;
      problems.push({ key, check: 'structure', message: error.message });
      continue;
    }
    for (const ref of referencedKeys(nodes)) {
      if (!request.valueLengths.has(ref.key))
        problems.push({
          key,
          check: 'structure',
          message: `${where(key, ref.at)}: references key ${quoteName(ref.key)}, which is not sealed in this EnvelopeSecret`,
        });
    }
    const bound = templateBound(nodes, lengthOf);
    total += bound.output;
    if (bound.peak > request.budget)
      problems.push({
        key,
        check: 'size',
        message: `template ${quoteName(key)} can render up to ${bound.peak} bytes; at most ${request.budget} fit in the Secret`,
      });
    if (request.type !== undefined && JSON_CHECKED_KEYS[request.type] === key) {
      for (const node of nodes) {
        if (node.kind !== 'action' || referencedKeys([node]).length === 0) continue;
        if (callsOf(node.action).at(-1)?.name !== 'json')
          problems.push({
            key,
            check: 'structure',
            message: `${where(key, node.action.at)}: the API server parses ${key} of a ${request.type} Secret as JSON; end each pipeline that reads a value with "| json"`,
          });
      }
    }
  }
  if (total > request.budget && !problems.some((p) => p.check === 'size'))
    problems.push({
      key: '',
      check: 'size',
      message: `the templates can render up to ${total} bytes; with the sealed values at most ${request.budget} fit in a Secret`,
    });
  return problems;
}

function where(key: string, at: { line: number; column: number }): string {
  return `template ${quoteName(key)} line ${at.line} column ${at.column}`;
}

export interface RenderRequest {
  templates: Readonly<Record<string, string>>;
  values: Readonly<Record<string, Uint8Array>>;
}

/** Renders every template; no partial result on failure. Call checkTemplates first. */
export function renderTemplates(request: RenderRequest): Record<string, Buffer> {
  const rendered: Record<string, Buffer> = {};
  // One strict decoder for the call (fatal: no replacement characters; the BOM kept).
  const context: RenderContext = { values: request.values, decoder: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }) };
  try {
    for (const [key, text] of Object.entries(request.templates)) rendered[key] = renderOne(key, parseTemplate(key, text), context);
    return rendered;
  } catch (error) {
    for (const value of Object.values(rendered)) value.fill(0);
    throw error;
  }
}

interface RenderContext {
  values: Readonly<Record<string, Uint8Array>>;
  decoder: { decode(input: Uint8Array): string };
}

function renderOne(key: string, nodes: readonly Node[], context: RenderContext): Buffer {
  const parts: Buffer[] = [];
  try {
    for (const node of nodes) parts.push(node.kind === 'text' ? Buffer.from(node.text) : runAction(key, node.action, context));
    return Buffer.concat(parts);
  } finally {
    for (const part of parts) part.fill(0);
  }
}

function operandValue(key: string, operand: Operand, values: Readonly<Record<string, Uint8Array>>): Buffer {
  if (operand.kind === 'string') return Buffer.from(operand.value);
  if (operand.kind === 'number') return Buffer.from(String(operand.value));
  const value = Object.hasOwn(values, operand.key) ? values[operand.key] : undefined;
  if (value === undefined)
    throw new TemplateError('TemplateRenderFailed', key, operand.at, `references key ${quoteName(operand.key)}, which is not sealed in this EnvelopeSecret`);
  // A copy: every step may be zeroed.
  return Buffer.from(value);
}

function runAction(key: string, action: Action, context: RenderContext): Buffer {
  const { head } = action;
  const { values } = context;
  let current = 'name' in head ? operandValue(key, head.args.at(-1)!, values) : operandValue(key, head, values);
  for (const call of callsOf(action)) {
    const next = apply(key, call, current, context);
    if (next !== current) current.fill(0);
    current = next;
  }
  return current;
}

function apply(key: string, call: ReturnType<typeof callsOf>[number], input: Buffer, context: RenderContext): Buffer {
  const fail = (problem: string): never => {
    throw new TemplateError('TemplateRenderFailed', key, call.at, problem);
  };
  switch (call.name) {
    case 'b64enc':
      return Buffer.from(input.toString('base64'), 'latin1');
    case 'b64dec': {
      const text = input.toString('latin1');
      if (!isStandardBase64(text)) return fail(`the value piped to b64dec is not standard padded base64`);
      return Buffer.from(text, 'base64');
    }
    case 'json': {
      let text: string;
      try {
        text = context.decoder.decode(input);
      } catch {
        return fail(`the value piped to json is not UTF-8 text (b64enc it instead)`);
      }
      return Buffer.from(jsonString(text));
    }
    case 'default':
      return input.length > 0 ? input : operandValue(key, call.args[0]!, context.values);
    case 'indent':
    case 'nindent': {
      const first = call.args[0];
      const spaces = first?.kind === 'number' ? first.value : 0;
      return indent(input, spaces, call.name === 'nindent');
    }
  }
}

// Besides JSON's own escapes: characters YAML does not allow unescaped in a
// double-quoted scalar (DEL, C1 controls, the line and paragraph separators, BOM and
// noncharacters), so the result is a JSON string and a YAML scalar alike.
const YAML_UNSAFE = /[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g;

/** A JSON string literal that is also a YAML double-quoted scalar. */
export function jsonString(text: string): string {
  return JSON.stringify(text).replace(YAML_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Every line of `input` prefixed with `spaces` spaces (sprig's indent); nindent starts with a newline. */
function indent(input: Buffer, spaces: number, leadingNewline: boolean): Buffer {
  let lines = 1;
  for (const byte of input) if (byte === 0x0a) lines += 1;
  const out = Buffer.alloc((leadingNewline ? 1 : 0) + input.length + spaces * lines, 0x20);
  let at = leadingNewline ? 1 : 0;
  if (leadingNewline) out[0] = 0x0a;
  at += spaces;
  for (const byte of input) {
    out[at++] = byte;
    if (byte === 0x0a) at += spaces;
  }
  return out;
}
