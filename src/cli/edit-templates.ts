// spec.template.data in `envseal edit`: shown beside the values, editable, and checked
// against the edited values (syntax, keys, size, and a render) before anything is sealed.
import { quoteName, secretKeyProblem } from '../api/names.ts';
import { checkTemplates, renderTemplates } from '../api/template-render.ts';
import { TemplateError } from '../api/template.ts';
import type { EnvelopeSecret } from '../api/types.ts';
import { MAX_SECRET_DATA_BYTES, MAX_TEMPLATE_LENGTH, MAX_TEMPLATES } from '../api/validation.ts';
import { invalidInput } from './errors.ts';

/** The templates of an edited file, or undefined when it has no `templates` map. Messages name keys, never values. */
export function parseEditedTemplates(field: unknown, source: string): Record<string, string> | undefined {
  if (field === undefined || field === null) return undefined;
  if (typeof field !== 'object' || Array.isArray(field)) throw invalidInput(`${source}: templates must map Secret keys to template text`);
  const templates: Record<string, string> = {};
  const entries = Object.entries(field as Record<string, unknown>);
  if (entries.length > MAX_TEMPLATES) throw invalidInput(`${source}: templates has ${entries.length} keys; at most ${MAX_TEMPLATES}`);
  for (const [key, text] of entries) {
    const problem = secretKeyProblem(key);
    if (problem) throw invalidInput(`${source}: templates key ${quoteName(key)}: ${problem}`);
    if (typeof text !== 'string') throw invalidInput(`${source}: templates[${quoteName(key)}] must be a string`);
    if ([...text].length > MAX_TEMPLATE_LENGTH) throw invalidInput(`${source}: templates[${quoteName(key)}] is longer than ${MAX_TEMPLATE_LENGTH} characters`);
    templates[key] = text;
  }
  return templates;
}

/**
 * Refuses templates the controller would refuse with these values: a key both sealed and
 * templated, syntax, keys that are not sealed, size, and values a function cannot take.
 */
export function checkEditedTemplates(secret: EnvelopeSecret, templates: Record<string, string>, values: ReadonlyMap<string, Buffer>, source: string): void {
  for (const key of Object.keys(templates)) {
    if (values.has(key)) throw invalidInput(`${source}: key ${quoteName(key)} is both a value and a template; a Secret key comes from one of them`);
  }
  const valueLengths = new Map([...values].map(([key, value]) => [key, value.length]));
  const total = [...values.values()].reduce((sum, value) => sum + value.length, 0);
  const type = secret.spec.template?.type;
  const problems = checkTemplates({ templates, valueLengths, budget: Math.max(0, MAX_SECRET_DATA_BYTES - total), ...(type ? { type } : {}) });
  if (problems.length > 0) throw invalidInput(`${source}: ${problems.map((p) => p.message).join('; ')}`);
  try {
    for (const value of Object.values(renderTemplates({ templates, values: Object.fromEntries(values) }))) value.fill(0);
  } catch (error) {
    if (error instanceof TemplateError) throw invalidInput(`${source}: ${error.message}`, error);
    throw error;
  }
}

/** The manifest with these templates in spec.template.data (none: the field is removed). */
export function withTemplates(secret: EnvelopeSecret, templates: Record<string, string> | undefined): EnvelopeSecret {
  const { data: _old, ...rest } = secret.spec.template ?? {};
  const template = templates && Object.keys(templates).length > 0 ? { ...rest, data: templates } : rest;
  const spec = { ...secret.spec };
  if (Object.keys(template).length > 0) spec.template = template;
  else delete spec.template;
  return { ...secret, spec };
}

export function sameTemplates(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  const left = Object.entries(a ?? {});
  const right = b ?? {};
  return left.length === Object.keys(right).length && left.every(([key, text]) => right[key] === text);
}
