import { parseAllDocuments, stringify, YAMLParseError } from 'yaml';
import { CliError } from './errors.ts';

export type OutputFormat = 'yaml' | 'json';

export interface ParsedDocument {
  value: unknown;
  /** The format the text was written in, so that a rewrite keeps it. */
  format: OutputFormat;
}

/** Whether a text is (meant as) JSON: its first non-blank character opens an object or array. */
function looksLikeJson(text: string): boolean {
  return /^\s*[{[]/.test(text);
}

/**
 * Parses one YAML or JSON document. Errors name the source, the line and column and the
 * kind of problem, and never quote the text (it may be a secret value).
 */
export function parseSingleDocument(bytes: Buffer, source: string): ParsedDocument {
  const documents = parseDocuments(bytes, source);
  if (documents.length > 1) {
    throw new CliError('InvalidInput', `${source}: holds ${documents.length} YAML documents; envseal reads exactly one (split the file at its '---' lines)`);
  }
  return documents[0]!;
}

/** Parses a YAML stream (one or more documents) or one JSON document, as parseSingleDocument. */
export function parseDocuments(bytes: Buffer, source: string): ParsedDocument[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CliError('InvalidInput', `${source}: not UTF-8 text`, { cause: new Error('invalid UTF-8') });
  }
  const format: OutputFormat = looksLikeJson(text) ? 'json' : 'yaml';
  const what = format === 'json' ? 'JSON' : 'YAML';
  if (format === 'json') return [{ value: parseJson(text, source), format }];
  const documents = parseAllDocuments(text, { uniqueKeys: true });
  const list = Array.isArray(documents) ? documents : [];
  for (const document of list) {
    const error = document.errors[0];
    if (error !== undefined) throw malformed(error, source, what);
  }
  const nonEmpty = list.filter((d) => d.contents !== null);
  if (nonEmpty.length === 0) throw new CliError('InvalidInput', `${source}: empty input (expected one ${what} document)`);
  return nonEmpty.map((document) => {
    try {
      return { value: document.toJS({ maxAliasCount: 100 }), format };
    } catch (cause) {
      throw new CliError('InvalidInput', `${source}: malformed ${what} (too many or unresolved aliases)`, {
        cause: new Error(cause instanceof Error ? cause.name : 'yaml error'),
      });
    }
  });
}

function parseJson(text: string, source: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // JSON.parse's messages quote the input: keep only the position.
    const position = error instanceof Error ? /line (\d+) column (\d+)/.exec(error.message) : null;
    const at = position ? ` at line ${position[1]}, column ${position[2]}` : '';
    throw new CliError('InvalidInput', `${source}: malformed JSON${at}`, { cause: new Error('SyntaxError') });
  }
  // JSON.parse silently keeps the last of duplicate keys; the YAML parser finds them.
  const documents = parseAllDocuments(text, { uniqueKeys: true });
  for (const document of Array.isArray(documents) ? documents : []) {
    const duplicate = document.errors.find((e) => e.code === 'DUPLICATE_KEY');
    if (duplicate !== undefined) throw malformed(duplicate, source, 'JSON');
  }
  return value;
}

function malformed(error: unknown, source: string, what: string): CliError {
  if (error instanceof YAMLParseError) {
    const where = error.linePos?.[0];
    const at = where ? ` at line ${where.line}, column ${where.col}` : '';
    const kind = error.code.toLowerCase().replaceAll('_', ' ');
    return new CliError('InvalidInput', `${source}: malformed ${what}${at} (${kind})`, { cause: new Error(error.code) });
  }
  return new CliError('InvalidInput', `${source}: malformed ${what}`);
}

export function formatDocument(value: unknown, format: OutputFormat): string {
  if (format === 'json') return `${JSON.stringify(value, null, 2)}\n`;
  return stringify(value, { lineWidth: 0, minContentWidth: 0 });
}

export function parseOutputFormat(text: string | undefined, fallback: OutputFormat = 'yaml'): OutputFormat {
  if (text === undefined) return fallback;
  if (text === 'yaml' || text === 'json') return text;
  throw new CliError('Usage', `-o/--output must be yaml or json, not ${JSON.stringify(text.slice(0, 20))}`);
}
