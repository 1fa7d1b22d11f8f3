/**
 * Runs `envseal encrypt` / `envseal decrypt` the way src/cli/run.ts runs a command
 * (argument parsing, provider configuration, error reporting, exit codes), for the
 * benchmark's process entry (bench/files/cli.ts) and the e2e tests. Once run.ts lists
 * the two commands in COMMANDS, `run` gives the same behaviour.
 */
import { systemRandom } from '../envelope/random.ts';
import { flag, formatHelp, parseCommandArgs } from '../cli/args.ts';
import type { Command, CommandContext } from '../cli/command.ts';
import { decryptCommand } from '../cli/commands/decrypt.ts';
import { encryptCommand } from '../cli/commands/encrypt.ts';
import { describeError, EXIT, exitCodeOf, usageError } from '../cli/errors.ts';
import type { CliIo } from '../cli/io.ts';
import { createRegistry, resolveProviderConfig } from '../cli/provider-config.ts';

export const FILE_COMMANDS: readonly Command[] = [encryptCommand, decryptCommand];

export async function runFileCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const program = io.programName ?? 'envseal';
  const debug = io.env.ENVSEAL_DEBUG !== undefined && io.env.ENVSEAL_DEBUG !== '' && io.env.ENVSEAL_DEBUG !== '0';
  try {
    const [name, ...args] = argv;
    const command = FILE_COMMANDS.find((c) => c.name === name);
    if (command === undefined) throw usageError('expected encrypt or decrypt');
    const positionals = command.positionals ?? { max: 0 };
    const parsed = parseCommandArgs(args, command.options, positionals);
    if (flag(parsed.values, 'help')) {
      io.stdout.write(formatHelp({ usage: command.usage, description: command.description, options: command.options, ...(command.footer ? { footer: command.footer } : {}) }));
      return EXIT.ok;
    }
    if (parsed.positionals.length > positionals.max) throw usageError(`too many arguments; see '${program} ${command.name} --help'`);
    const providers = createRegistry(await resolveProviderConfig(parsed.values, io, { identities: command.providers === 'open' }), io);
    const ctx: CommandContext = { io, values: parsed.values, positionals: parsed.positionals, signal: io.signal, random: io.random ?? systemRandom, providers, program };
    return await command.run(ctx);
  } catch (error) {
    io.stderr.write(`${program}: error: ${describeError(error, debug)}\n`);
    return exitCodeOf(error);
  }
}
