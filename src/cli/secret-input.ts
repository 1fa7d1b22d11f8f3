import path from 'node:path';
import { namespaceProblem, objectNameProblem, quoteName, secretKeyProblem } from '../api/names.ts';
import { MAX_SECRET_DATA_BYTES } from '../api/validation.ts';
import { isStandardBase64 } from '../envelope/base64.ts';
import { invalidInput, usageError } from './errors.ts';
import { readInputFile } from './files.ts';

/** What a Secret manifest or the --from-* flags contribute to an EnvelopeSecret. */
export interface SecretInput {
  name?: string;
  namespace?: string;
  type?: string;
  immutable?: boolean;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Key name -> value, in order of first appearance. */
  values: Map<string, Buffer>;
}

export function emptySecretInput(): SecretInput {
  return { labels: {}, annotations: {}, values: new Map() };
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';
const SECRET_FIELDS = new Set(['apiVersion', 'kind', 'metadata', 'data', 'stringData', 'type', 'immutable', 'status']);

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Names an unexpected field without echoing it (a mis-indented value can end up as a
 * field name): a near miss of a known field is suggested instead.
 */
export function unknownField(field: string, known: readonly string[]): string {
  const near = known.find((k) => editDistance(field.toLowerCase(), k.toLowerCase()) <= 2);
  return near ? `an unknown field (did you mean ${near}?)` : `an unknown field (known: ${known.join(', ')})`;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * A key whose value is missing is most likely a value that YAML read as a key (e.g.
 * `{A: x, hunter2}`): it is named by position, never quoted.
 */
export function missingValue(field: string, index: number): string {
  return `${field}: entry #${index + 1} has a key but no value (a value on its own, or after a comma in a flow map, is read as a key)`;
}

function stringMap(value: unknown, field: string, source: string): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isRecord(value)) throw invalidInput(`${source}: ${field} must be a map of strings`);
  const result: Record<string, string> = {};
  for (const [index, [key, item]] of Object.entries(value).entries()) {
    if (item === null || item === undefined) throw invalidInput(`${source}: ${missingValue(field, index)}`);
    if (typeof item !== 'string') throw invalidInput(`${source}: ${field}[${quoteName(key)}] must be a string`);
    result[key] = item;
  }
  return result;
}

/**
 * Reads a native Secret manifest (already parsed from YAML or JSON). `data` must be
 * standard padded base64; `stringData` wins over `data` for the same key, as with the API
 * server. Server-populated metadata (uid, resourceVersion, managedFields, ...), status
 * and kubectl's last-applied-configuration annotation are dropped. Messages name
 * fields and keys, never values.
 */
export function secretFromManifest(doc: unknown, source: string): SecretInput {
  if (!isRecord(doc)) throw invalidInput(`${source}: expected a Secret manifest (a YAML or JSON object)`);
  if (doc.kind === 'EnvelopeSecret') {
    throw invalidInput(`${source}: is already an EnvelopeSecret; to add or replace values use --merge-into ${source === 'stdin' ? 'FILE' : source}`);
  }
  if (doc.kind !== 'Secret') throw invalidInput(`${source}: kind must be Secret`);
  if (doc.apiVersion !== undefined && doc.apiVersion !== 'v1') throw invalidInput(`${source}: apiVersion must be v1`);
  for (const field of Object.keys(doc)) {
    if (!SECRET_FIELDS.has(field)) throw invalidInput(`${source}: ${unknownField(field, [...SECRET_FIELDS])} in a Secret`);
  }

  const input = emptySecretInput();
  const metadata = doc.metadata ?? {};
  if (!isRecord(metadata)) throw invalidInput(`${source}: metadata must be an object`);
  if (metadata.generateName !== undefined && metadata.name === undefined) {
    throw invalidInput(`${source}: metadata.generateName is not supported; set metadata.name or pass --name`);
  }
  if (metadata.name !== undefined) {
    if (typeof metadata.name !== 'string') throw invalidInput(`${source}: metadata.name must be a string`);
    input.name = metadata.name;
  }
  if (metadata.namespace !== undefined) {
    if (typeof metadata.namespace !== 'string') throw invalidInput(`${source}: metadata.namespace must be a string`);
    input.namespace = metadata.namespace;
  }
  input.labels = stringMap(metadata.labels, 'metadata.labels', source);
  input.annotations = stringMap(metadata.annotations, 'metadata.annotations', source);
  delete input.annotations[LAST_APPLIED];

  if (doc.type !== undefined && doc.type !== null) {
    if (typeof doc.type !== 'string' || doc.type === '') throw invalidInput(`${source}: type must be a non-empty string`);
    input.type = doc.type;
  }
  if (doc.immutable !== undefined && doc.immutable !== null) {
    if (typeof doc.immutable !== 'boolean') throw invalidInput(`${source}: immutable must be true or false`);
    input.immutable = doc.immutable;
  }

  const data = doc.data ?? {};
  if (!isRecord(data)) throw invalidInput(`${source}: data must map keys to base64 strings`);
  for (const [index, [key, value]] of Object.entries(data).entries()) {
    if (value === null || value === undefined) throw invalidInput(`${source}: ${missingValue('data', index)}`);
    if (typeof value !== 'string') throw invalidInput(`${source}: data[${quoteName(key)}] must be a base64 string`);
    if (!isStandardBase64(value)) throw invalidInput(`${source}: data[${quoteName(key)}] is not standard padded base64 (use stringData for plain text)`);
    input.values.set(key, Buffer.from(value, 'base64'));
  }
  const stringData = doc.stringData ?? {};
  if (!isRecord(stringData)) throw invalidInput(`${source}: stringData must map keys to strings`);
  for (const [index, [key, value]] of Object.entries(stringData).entries()) {
    if (value === null || value === undefined) throw invalidInput(`${source}: ${missingValue('stringData', index)}`);
    if (typeof value !== 'string') throw invalidInput(`${source}: stringData[${quoteName(key)}] must be a string (quote numbers and booleans in YAML)`);
    input.values.set(key, Buffer.from(value, 'utf8'));
  }
  return input;
}

/** Collects values from several sources; the same key from two sources is an error. */
export class ValueCollector {
  readonly values = new Map<string, Buffer>();
  readonly #sources = new Map<string, string>();

  add(key: string, value: Buffer, source: string): void {
    const previous = this.#sources.get(key);
    if (previous !== undefined) {
      throw invalidInput(`key ${quoteName(key)} is given twice (by ${previous} and by ${source})`);
    }
    this.#sources.set(key, source);
    this.values.set(key, value);
  }

  addAll(values: ReadonlyMap<string, Buffer>, source: string): void {
    for (const [key, value] of values) this.add(key, value, source);
  }
}

/** KEY=VALUE of --from-literal; the message never shows the text (it holds a value). */
export function parseLiteral(text: string, index: number): [string, Buffer] {
  const equals = text.indexOf('=');
  if (equals <= 0) throw usageError(`--from-literal #${index + 1} must be KEY=VALUE with a non-empty KEY`);
  return [text.slice(0, equals), Buffer.from(text.slice(equals + 1), 'utf8')];
}

/** [KEY=]PATH of --from-file: the key defaults to the file's base name. */
export async function readFromFile(spec: string, cwd: string): Promise<[string, Buffer]> {
  const equals = spec.indexOf('=');
  const key = equals >= 0 ? spec.slice(0, equals) : path.basename(spec);
  const file = equals >= 0 ? spec.slice(equals + 1) : spec;
  if (key === '' || file === '') throw usageError(`--from-file ${quoteName(spec)} must be [KEY=]PATH`);
  const value = await readInputFile(file, { cwd, maxBytes: MAX_SECRET_DATA_BYTES, what: 'read --from-file' });
  return [key, value];
}

/**
 * An env file as kubectl reads one: KEY=VALUE lines, blank lines and `#` comments
 * ignored, leading white space trimmed, the value taken literally (quotes are kept).
 * Errors name the line, never its text.
 */
export function parseEnvFile(bytes: Buffer, source: string): Map<string, Buffer> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw invalidInput(`${source}: not UTF-8 text`);
  }
  const values = new Map<string, Buffer>();
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.replace(/^\s+/, '');
    if (line === '' || line.startsWith('#')) return;
    const equals = line.indexOf('=');
    if (equals <= 0) throw invalidInput(`${source} line ${index + 1}: expected KEY=VALUE`);
    const key = line.slice(0, equals);
    const problem = secretKeyProblem(key);
    if (problem) throw invalidInput(`${source} line ${index + 1}: invalid key name: ${problem}`);
    if (values.has(key)) throw invalidInput(`${source} line ${index + 1}: key ${quoteName(key)} appears twice`);
    values.set(key, Buffer.from(line.slice(equals + 1), 'utf8'));
  });
  return values;
}

/** Checks key names and the 1 MiB total; returns the values as a plain record. */
export function checkValues(values: ReadonlyMap<string, Buffer>): Record<string, Buffer> {
  const problems: string[] = [];
  let total = 0;
  for (const [key, value] of values) {
    const problem = secretKeyProblem(key);
    if (problem) problems.push(`  key ${quoteName(key)}: ${problem}`);
    total += value.length;
  }
  if (problems.length > 0) throw invalidInput(`invalid key name${problems.length > 1 ? 's' : ''}:\n${problems.join('\n')}`);
  if (total > MAX_SECRET_DATA_BYTES) {
    throw invalidInput(`the values total ${total} bytes; a Secret holds at most ${MAX_SECRET_DATA_BYTES} (1 MiB)`);
  }
  return Object.fromEntries(values);
}

// Kubernetes label and annotation rules (apimachinery), checked early for clear errors.
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined) {
    const problem = objectNameProblem(prefix);
    if (problem) return `prefix ${problem}`;
  }
  if (name.length === 0 || name.length > 63) return 'name part must be 1 to 63 characters';
  if (!QUALIFIED_NAME.test(name))
    return "name part must consist of alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character";
  return undefined;
}

/** Labels and annotations of the input, validated as the API server would (keys and label values). */
export function checkMetadataMaps(labels: Record<string, string>, annotations: Record<string, string>): void {
  for (const [field, map] of [
    ['label', labels],
    ['annotation', annotations],
  ] as const) {
    for (const [key, value] of Object.entries(map)) {
      const problem = qualifiedNameProblem(key);
      if (problem) throw invalidInput(`${field} key ${quoteName(key)}: ${problem}`);
      if (field === 'label' && (value.length > 63 || !LABEL_VALUE.test(value))) {
        throw invalidInput(`label ${quoteName(key)}: a label value must be at most 63 alphanumeric characters, '-', '_' or '.'`);
      }
    }
  }
}

/** --label / --annotation K=V pairs, validated as Kubernetes does. */
export function parsePairs(items: readonly string[], flag: '--label' | '--annotation'): Record<string, string> {
  const result: Record<string, string> = {};
  for (const item of items) {
    const equals = item.indexOf('=');
    if (equals <= 0) throw usageError(`${flag} ${quoteName(item.slice(0, 40))} must be KEY=VALUE`);
    const key = item.slice(0, equals);
    const value = item.slice(equals + 1);
    const problem = qualifiedNameProblem(key);
    if (problem) throw usageError(`${flag} key ${quoteName(key)}: ${problem}`);
    if (flag === '--label' && (value.length > 63 || !LABEL_VALUE.test(value))) {
      throw usageError(`${flag} ${quoteName(key)}: a label value must be at most 63 alphanumeric characters, '-', '_' or '.'`);
    }
    result[key] = value;
  }
  return result;
}

export function checkName(name: string | undefined): string {
  if (name === undefined) throw usageError('no name: pass --name NAME or set metadata.name in the Secret manifest');
  const problem = objectNameProblem(name);
  if (problem) throw invalidInput(`name ${quoteName(name)} ${problem}`);
  return name;
}

export function checkNamespace(namespace: string | undefined, required: boolean): string | undefined {
  if (namespace === undefined) {
    if (required) throw usageError('no namespace: pass -n NAMESPACE or set metadata.namespace (only --scope cluster needs none)');
    return undefined;
  }
  const problem = namespaceProblem(namespace);
  if (problem) throw invalidInput(`namespace ${quoteName(namespace)} ${problem}`);
  return namespace;
}
