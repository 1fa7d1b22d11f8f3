// The repository's Dockerfile, read as far as the image builder (scripts/image/build.ts)
// and the tests need: stages, their instructions, and the runtime stage's COPY lines.
// One recipe: the builder executes the runtime stage's COPY/USER/ENV/ENTRYPOINT lines
// itself, so the image built without Docker cannot drift from the one Docker builds.

export interface Instruction {
  keyword: string;
  args: string;
}

export interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs before the first FROM, with their defaults. */
  args: Record<string, string>;
  stages: Stage[];
}

export interface Copy {
  /** The stage copied from, or undefined for the build context. */
  from: string | undefined;
  sources: string[];
  dest: string;
}

export function parseDockerfile(text: string): Dockerfile {
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(\w+)\s+(.*)$/.exec(line);
    if (!match) throw new Error(`Dockerfile: cannot read ${line}`);
    const keyword = match[1]!.toUpperCase();
    const rest = match[2]!.replace(/\s+/g, ' ').trim();
    if (keyword === 'FROM') {
      const [image, as, name] = rest.split(' ');
      const resolved = image!.replace(/^\$\{(\w+)\}$/, (_m, arg: string) => args[arg] ?? '');
      stages.push({ from: resolved, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else if (keyword === 'ARG' && stages.length === 0) {
      const [name, value] = rest.split('=');
      args[name!] = value ?? '';
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile: ${keyword} before FROM`);
      stage.instructions.push({ keyword, args: rest });
    }
  }
  return { args, stages };
}

export const instructions = (stage: Stage, keyword: string): string[] => stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);

/** The last value of a keyword in a stage (USER, WORKDIR, ENTRYPOINT, CMD). */
export const last = (stage: Stage, keyword: string): string | undefined => instructions(stage, keyword).at(-1);

export function copies(stage: Stage): Copy[] {
  return instructions(stage, 'COPY').map((line) => {
    const words = line.split(' ');
    let from: string | undefined;
    while (words[0]?.startsWith('--')) {
      const flag = words.shift()!;
      if (flag.startsWith('--from=')) from = flag.slice('--from='.length);
      else if (!flag.startsWith('--chown=') && !flag.startsWith('--chmod=') && flag !== '--link')
        throw new Error(`Dockerfile: COPY flag ${flag} is not supported by the image builder`);
    }
    if (words.length < 2) throw new Error(`Dockerfile: COPY ${line} needs a source and a destination`);
    return { from, sources: words.slice(0, -1), dest: words.at(-1)! };
  });
}

/** ENV lines as a map (the KEY=VALUE form). */
export function env(stage: Stage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of instructions(stage, 'ENV')) {
    for (const pair of line.split(' ')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`Dockerfile: ENV ${line}: use the KEY=VALUE form`);
      out[pair.slice(0, eq)] = pair.slice(eq + 1).replace(/^"(.*)"$/, '$1');
    }
  }
  return out;
}

/** ENTRYPOINT/CMD in the JSON (exec) form. */
export function execForm(stage: Stage, keyword: 'ENTRYPOINT' | 'CMD'): string[] {
  const value = last(stage, keyword);
  if (value === undefined) return [];
  const parsed = JSON.parse(value) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) throw new Error(`Dockerfile: ${keyword} must use the JSON form`);
  return parsed;
}

/** LABEL key="value" pairs, with ${ARG} references replaced from the stage's ARG defaults. */
export function labels(stage: Stage, overrides: Record<string, string> = {}): Record<string, string> {
  const stageArgs: Record<string, string> = {};
  for (const line of instructions(stage, 'ARG')) {
    const [name, value] = line.split('=');
    stageArgs[name!] = value ?? '';
  }
  Object.assign(stageArgs, overrides);
  const out: Record<string, string> = {};
  for (const line of instructions(stage, 'LABEL')) {
    for (const match of line.matchAll(/([\w.-]+)="([^"]*)"/g)) {
      out[match[1]!] = match[2]!.replace(/\$\{(\w+)\}/g, (_m, name: string) => stageArgs[name] ?? '');
    }
  }
  return out;
}
