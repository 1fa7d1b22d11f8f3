import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { usageError } from './errors.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** Placeholder of the value in help, e.g. FILE. */
  value?: string;
  help: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

export interface ParsedArgs {
  values: OptionValues;
  positionals: string[];
}

export const HELP_OPTION: OptionSpecs = {
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};

/**
 * Strict parsing with node:util parseArgs. Its messages are reworded where they could
 * echo an argument: a stray positional may be part of a secret value typed unquoted.
 */
export function parseCommandArgs(argv: readonly string[], specs: OptionSpecs, positionals: { max: number }): ParsedArgs {
  const options: ParseArgsOptionsConfig = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = { type: spec.type, ...(spec.short ? { short: spec.short } : {}), ...(spec.multiple ? { multiple: true } : {}) };
  }
  try {
    const parsed = parseArgs({ args: [...argv], options, strict: true, allowPositionals: positionals.max > 0 });
    return { values: parsed.values as OptionValues, positionals: parsed.positionals };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : '';
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const option = unknownOption(argv, specs);
      throw usageError(`unknown option${option ? ` ${option}` : ''}; see --help`);
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      throw usageError(
        positionals.max === 0 ? 'this command takes no positional arguments (quote values that contain spaces); see --help' : 'too many arguments; see --help',
      );
    }
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      // e.g. "Option '--name <value>' argument missing": names the option only.
      throw usageError(`${message.split('\n')[0]!.replace(/^Option/, 'option')}; see --help`);
    }
    throw usageError('invalid arguments; see --help');
  }
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

export function stringList(values: OptionValues, name: string): string[] {
  const value = values[name];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return typeof value === 'string' ? [value] : [];
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true;
}

/** The help text of one command. */
export function formatHelp(input: { usage: string; description: string; options: OptionSpecs; footer?: string }): string {
  const rows = Object.entries(input.options).map(([name, spec]) => {
    const short = spec.short ? `-${spec.short}, ` : '    ';
    const value = spec.type === 'string' ? ` ${spec.value ?? 'VALUE'}` : '';
    return [`  ${short}--${name}${value}`, `${spec.help}${spec.multiple ? ' (repeatable)' : ''}`] as const;
  });
  const width = Math.min(34, Math.max(...rows.map(([left]) => left.length)) + 2);
  const lines = rows.map(([left, right]) => (left.length + 2 > width ? `${left}\n${' '.repeat(width)}${right}` : `${left.padEnd(width)}${right}`));
  return `Usage: ${input.usage}\n\n${input.description.trim()}\n\nOptions:\n${lines.join('\n')}\n${input.footer ? `\n${input.footer.trim()}\n` : ''}`;
}

/** The first option in `argv` that `specs` does not know (up to `--`), named without a value: never quotes more than 40 characters. */
function unknownOption(argv: readonly string[], specs: OptionSpecs): string | undefined {
  const byShort = new Map(Object.values(specs).flatMap((spec) => (spec.short ? [[spec.short, spec] as const] : [])));
  let valueNext = false;
  for (const arg of argv) {
    if (valueNext) {
      valueNext = false;
      continue;
    }
    if (arg === '--') return undefined;
    if (arg.startsWith('--')) {
      const [name = '', ...value] = arg.slice(2).split('=');
      if (!Object.hasOwn(specs, name)) return `--${name.slice(0, 40)}`;
      valueNext = specs[name]!.type === 'string' && value.length === 0;
    } else if (arg.startsWith('-') && arg.length > 1) {
      // -abc: a group of short flags; a string one takes the rest, or the next argument, as its value.
      const letters = arg.slice(1);
      for (let i = 0; i < letters.length; i++) {
        const spec = byShort.get(letters[i]!);
        if (spec === undefined) return `-${letters[i]}`;
        if (spec.type === 'string') {
          valueNext = i === letters.length - 1;
          break;
        }
      }
    }
  }
  return undefined;
}
