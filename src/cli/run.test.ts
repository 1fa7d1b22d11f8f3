import { describe, expect, it } from 'vitest';
import { isLazy } from './command.ts';
import { memoryIo } from './memory-io.ts';
import { COMMANDS, run } from './run.ts';

async function cli(argv: string[], options: Partial<Parameters<typeof memoryIo>[0]> = {}) {
  const io = memoryIo({ cwd: '/nonexistent', ...options });
  const code = await run(argv, io);
  return { code, stdout: io.stdout.text(), stderr: io.stderr.text() };
}

describe('run', () => {
  it.each(COMMANDS.map((c) => [c.name]))('%s --help prints usage, options and exits 0', async (name) => {
    const result = await cli([...name.split(' '), '--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(new RegExp(`^Usage: envseal ${name}`));
    expect(result.stdout).toMatch(/Options:\n[\s\S]*-h, --help/);
    const short = await cli([...name.split(' '), '-h']);
    expect(short.stdout).toBe(result.stdout);
    const viaHelp = await cli(['help', ...name.split(' ')]);
    expect(viaHelp.stdout).toBe(result.stdout);
  });

  it('lazy commands list the name and summary of the command they load', async () => {
    for (const entry of COMMANDS) {
      if (!isLazy(entry)) continue;
      const command = await entry.load();
      expect({ name: command.name, summary: command.summary }).toEqual({ name: entry.name, summary: entry.summary });
    }
  });

  it('prints the overview with --help (exit 0) and without a command (exit 2, on stderr)', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const command of COMMANDS) expect(help.stdout).toContain(command.name);
    expect(help.stdout).toMatch(/Exit codes:/);
    const none = await cli([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toBe(help.stdout);
    const keys = await cli(['keys']);
    expect(keys.code).toBe(2);
    expect(keys.stderr).toMatch(/create[\s\S]*recipient/);
    expect((await cli(['keys', '--help'])).code).toBe(0);
  });

  it('rejects unknown commands and options with exit 2', async () => {
    const unknown = await cli(['sael']);
    expect(unknown).toMatchObject({ code: 2, stdout: '' });
    expect(unknown.stderr).toMatch(/^envseal: error: unknown command "sael"; see 'envseal --help'\n$/);
    expect((await cli(['keys', 'delete'])).code).toBe(2);
    const option = await cli(['verify', '--frobnicate']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/unknown option --frobnicate/);
    const missing = await cli(['seal', '--name']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/option '--name <value>' argument missing/);
  });

  it('names itself as a kubectl plugin and prints the version', async () => {
    const help = await cli(['seal', '--help'], { programName: 'kubectl envseal' });
    expect(help.stdout).toMatch(/^Usage: kubectl envseal seal/);
    expect(help.stdout).toMatch(/^ {2}kubectl envseal seal -f secret\.yaml/m);
    const error = await cli(['nope'], { programName: 'kubectl envseal' });
    expect(error.stderr).toMatch(/^kubectl envseal: error: /);
    expect(await cli(['--version'], { version: '1.2.3' })).toMatchObject({ code: 0, stdout: 'envseal 1.2.3\n' });
  });
});
