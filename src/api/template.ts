// The template language of spec.template.data (docs/format.md, "Templates"): a small
// subset of Go's text/template with a few pure functions. No conditionals, loops,
// comparisons or variables, so the output is a fixed function of the values and a
// template cannot test guesses of a value; no function reads files, the environment, the
// network, time or randomness. Parsing is one pass over the text, rendering one pass
// over each pipeline: cost is linear, and the output size is bounded before any value
// is opened (`templateBound`).
import { EnvsealError, type ExitClass } from '../util/errors.ts';
import { quoteName } from './names.ts';

/** Where in a template: 1-based line and column (in characters). */
export interface Position {
  line: number;
  column: number;
}

export type Operand =
  | { kind: 'ref'; key: string; at: Position }
  | { kind: 'string'; value: string; at: Position }
  | { kind: 'number'; value: number; at: Position };

export interface Call {
  name: FunctionName;
  args: Operand[];
  at: Position;
}

/** `{{ operand | f a | g }}` or `{{ f a b | g }}`: the piped value is the last argument. */
export interface Action {
  head: Operand | Call;
  calls: Call[];
  at: Position;
}

export type Node = { kind: 'text'; text: string } | { kind: 'action'; action: Action };

export const FUNCTIONS = ['b64enc', 'b64dec', 'json', 'default', 'indent', 'nindent'] as const;
export type FunctionName = (typeof FUNCTIONS)[number];
/** The arguments each function takes before the piped value. */
const ARITY: Record<FunctionName, readonly ('string' | 'number')[]> = {
  b64enc: [],
  b64dec: [],
  json: [],
  default: ['string'],
  indent: ['number'],
  nindent: ['number'],
};
/** indent and nindent take at most this many spaces. */
export const MAX_INDENT = 64;

export type TemplateErrorCode = 'InvalidTemplate' | 'TemplateRenderFailed';

/** A template that does not parse, or a value a function cannot take. Names places and keys, never a value. */
export class TemplateError extends EnvsealError {
  readonly code: TemplateErrorCode;
  readonly templateKey: string;
  readonly at: Position | undefined;

  constructor(code: TemplateErrorCode, templateKey: string, at: Position | undefined, problem: string) {
    const where = at ? ` line ${at.line} column ${at.column}` : '';
    super(`template ${quoteName(templateKey)}${where}: ${problem}`);
    this.name = 'TemplateError';
    this.code = code;
    this.templateKey = templateKey;
    this.at = at;
  }

  override get exitClass(): ExitClass {
    return 'invalidInput';
  }
}

// Sticky expressions keep a lastIndex: each parser makes its own, none is shared.
const stickies = () => ({ IDENT: /[A-Za-z_][A-Za-z0-9_]*/y, NUMBER: /[0-9]+/y, SPACE: /[ \t\r\n]*/y });
const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';
// Loops, not regular expressions: /\s+$/ backtracks quadratically on long runs of spaces.
const trimEnd = (s: string): string => {
  let end = s.length;
  while (end > 0 && isSpace(s[end - 1])) end -= 1;
  return s.slice(0, end);
};
const trimStart = (s: string): string => {
  let start = 0;
  while (start < s.length && isSpace(s[start])) start += 1;
  return s.slice(start);
};
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', n: '\n', t: '\t', r: '\r' };

/** Offsets to line and column, by binary search over the line starts: linear cost however many actions. */
function locator(text: string): (offset: number) => Position {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}

/** Parses one template; throws a TemplateError naming the key, line and column. */
export function parseTemplate(templateKey: string, text: string): Node[] {
  const nodes: Node[] = [];
  let pos = 0;
  let trimNext = false;
  const at = locator(text);
  const fail = (offset: number, problem: string): never => {
    throw new TemplateError('InvalidTemplate', templateKey, at(offset), problem);
  };
  const pushText = (chunk: string) => {
    if (chunk !== '') nodes.push({ kind: 'text', text: chunk });
  };
  const parser = new ActionParser(templateKey, text, at);

  while (pos < text.length) {
    const open = text.indexOf('{{', pos);
    let chunk = text.slice(pos, open === -1 ? text.length : open);
    if (trimNext) chunk = trimStart(chunk);
    trimNext = false;
    if (open === -1) {
      pushText(chunk);
      break;
    }
    let cursor = open + 2;
    if (text[cursor] === '-' && isSpace(text[cursor + 1])) {
      chunk = trimEnd(chunk);
      cursor += 1;
    }
    pushText(chunk);
    parser.pos = cursor;
    const action = parser.action(at(open));
    cursor = parser.pos;
    if (text.startsWith('-}}', cursor)) {
      if (!isSpace(text[cursor - 1])) fail(cursor, 'a trim marker needs a space before it: " -}}"');
      trimNext = true;
      cursor += 1;
    }
    if (!text.startsWith('}}', cursor)) fail(cursor, cursor >= text.length ? 'unclosed action: expected "}}"' : 'expected "}}" or "|"');
    nodes.push({ kind: 'action', action });
    pos = cursor + 2;
  }
  return nodes;
}

class ActionParser {
  pos: number;
  readonly #key: string;
  readonly #text: string;
  readonly #at: (offset: number) => Position;
  readonly #re = stickies();

  constructor(templateKey: string, text: string, at: (offset: number) => Position) {
    this.#key = templateKey;
    this.#text = text;
    this.#at = at;
    this.pos = 0;
  }

  private get text(): string {
    return this.#text;
  }

  private fail(offset: number, problem: string): never {
    return this.#failAt(this.#at(offset), problem);
  }

  #space(): void {
    this.#re.SPACE.lastIndex = this.pos;
    // A failed sticky test resets lastIndex to 0: keep the position then.
    if (this.#re.SPACE.test(this.text)) this.pos = this.#re.SPACE.lastIndex;
  }

  #atEnd(): boolean {
    return this.text.startsWith('}}', this.pos) || this.text.startsWith('-}}', this.pos) || this.text[this.pos] === '|' || this.pos >= this.text.length;
  }

  action(at: Position): Action {
    this.#space();
    if (this.text.startsWith('}}', this.pos)) this.fail(this.pos, 'empty action: expected a key (.KEY), a string or a function');
    const head = this.#command(true);
    const calls: Call[] = [];
    this.#space();
    while (this.text[this.pos] === '|') {
      this.pos += 1;
      this.#space();
      const call = this.#command(false);
      calls.push(call as Call);
      this.#space();
    }
    return { head, calls, at };
  }

  /** A function call, or (first in a pipeline only) an operand alone. */
  #command(first: boolean): Operand | Call {
    const start = this.pos;
    this.#re.IDENT.lastIndex = start;
    const ident = this.#re.IDENT.exec(this.text)?.[0];
    if (ident === undefined || ident === 'index') {
      if (!first) this.fail(start, `expected a function after "|" (one of ${FUNCTIONS.join(', ')})`);
      const operand = this.#operand();
      this.#space();
      if (!this.#atEnd()) this.fail(this.pos, 'expected "|" or "}}" after the value (functions come first: f ARG, or after "|")');
      return operand;
    }
    if (!(FUNCTIONS as readonly string[]).includes(ident)) this.fail(start, `unknown function ${quoteName(ident)} (known: ${FUNCTIONS.join(', ')}, index)`);
    const name = ident as FunctionName;
    this.pos = start + ident.length;
    const args: Operand[] = [];
    for (;;) {
      this.#space();
      if (this.#atEnd()) break;
      args.push(this.#operand());
    }
    const wanted = ARITY[name];
    const expected = first ? wanted.length + 1 : wanted.length;
    if (args.length !== expected)
      this.fail(start, `${name} takes ${expected} argument${expected === 1 ? '' : 's'}${first ? '' : ' besides the piped value'}, got ${args.length}`);
    wanted.forEach((kind, i) => {
      const arg = args[i]!;
      if (arg.kind !== kind) this.#failAt(arg.at, `argument ${i + 1} of ${name} must be a ${kind === 'number' ? 'number' : 'string literal'}`);
    });
    if (first && args[wanted.length]!.kind === 'number') this.#failAt(args[wanted.length]!.at, `${name} cannot take a number as its value`);
    for (const arg of args) {
      if (arg.kind === 'number' && (name === 'indent' || name === 'nindent') && arg.value > MAX_INDENT)
        this.#failAt(arg.at, `${name} takes at most ${MAX_INDENT} spaces`);
    }
    return { name, args, at: this.#at(start) };
  }

  #failAt(position: Position, problem: string): never {
    throw new TemplateError('InvalidTemplate', this.#key, position, problem);
  }

  #operand(): Operand {
    const start = this.pos;
    const at = this.#at(start);
    const c = this.text[start];
    if (c === '.') {
      this.#re.IDENT.lastIndex = start + 1;
      const key = this.#re.IDENT.exec(this.text)?.[0];
      if (key === undefined) this.fail(start, 'expected a key name after "." (use index . "my.key" for keys with "-" or ".")');
      this.pos = start + 1 + key.length;
      if (this.text[this.pos] === '.') this.fail(this.pos, 'a key name has no fields; use index . "my.key" for keys with "-" or "."');
      return { kind: 'ref', key, at };
    }
    if (c === '"') return { kind: 'string', value: this.#string(), at };
    if (c !== undefined && c >= '0' && c <= '9') {
      this.#re.NUMBER.lastIndex = start;
      const digits = this.#re.NUMBER.exec(this.text)![0];
      this.pos = start + digits.length;
      return { kind: 'number', value: digits.length > 3 ? Number.POSITIVE_INFINITY : Number(digits), at };
    }
    if (this.text.startsWith('index', start)) {
      this.pos = start + 5;
      this.#space();
      if (this.text[this.pos] !== '.' || /[A-Za-z_]/.test(this.text[this.pos + 1] ?? ''))
        this.fail(this.pos, 'index takes the dot and a key name: index . "my.key"');
      this.pos += 1;
      this.#space();
      if (this.text[this.pos] !== '"') this.fail(this.pos, 'index takes the dot and a key name: index . "my.key"');
      return { kind: 'ref', key: this.#string(), at };
    }
    if (this.pos >= this.text.length) this.fail(start, 'unclosed action: expected "}}"');
    return this.fail(start, 'expected a key (.KEY or index . "KEY"), a string in double quotes or a number');
  }

  #string(): string {
    const start = this.pos;
    let out = '';
    let i = start + 1;
    for (;;) {
      const c = this.text[i];
      if (c === undefined || c === '\n') this.fail(start, 'unterminated string');
      if (c === '"') break;
      if (c === '\\') {
        const escaped = ESCAPES[this.text[i + 1] ?? ''];
        if (escaped === undefined) this.fail(i, 'unknown escape in a string (known: \\" \\\\ \\n \\t \\r)');
        out += escaped;
        i += 2;
      } else {
        out += c;
        i += 1;
      }
    }
    this.pos = i + 1;
    return out;
  }
}

/** Every key an action reads. */
export function referencedKeys(nodes: readonly Node[]): { key: string; at: Position }[] {
  const refs: { key: string; at: Position }[] = [];
  const visit = (operand: Operand) => {
    if (operand.kind === 'ref') refs.push({ key: operand.key, at: operand.at });
  };
  for (const node of nodes) {
    if (node.kind !== 'action') continue;
    const { head, calls } = node.action;
    if ('name' in head) head.args.forEach(visit);
    else visit(head);
    for (const call of calls) call.args.forEach(visit);
  }
  return refs;
}

/** The pipeline's functions in the order they apply. */
export function callsOf(action: Action): Call[] {
  return 'name' in action.head ? [action.head, ...action.calls] : action.calls;
}
