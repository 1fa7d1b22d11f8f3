import { quoteName } from '../api/names.ts';
import { systemRandom } from '../envelope/random.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { flag, formatHelp, parseCommandArgs } from './args.ts';
import { type Command, type CommandContext, type CommandEntry, isLazy } from './command.ts';
import { compactCommand } from './commands/compact.ts';
import { editCommand } from './commands/edit.ts';
import { keysCreateCommand, keysRecipientCommand } from './commands/keys.ts';
import { addRecipientCommand, removeRecipientCommand } from './commands/recipients.ts';
import { sealCommand } from './commands/seal.ts';
import { unsealCommand } from './commands/unseal.ts';
import { verifyCommand } from './commands/verify.ts';
import { describeError, EXIT, exitCodeOf, usageError } from './errors.ts';
import type { CliIo } from './io.ts';
import { createRegistry, resolveProviderConfig } from './provider-config.ts';

export type { CliIo } from './io.ts';

/** Every command; `keys create` is the subcommand create of keys. */
export const COMMANDS: readonly CommandEntry[] = [
  keysCreateCommand,
  keysRecipientCommand,
  sealCommand,
  unsealCommand,
  verifyCommand,
  addRecipientCommand,
  removeRecipientCommand,
  compactCommand,
  editCommand,
  {
    name: 'inventory',
    summary: 'list the keys and data-key ages of a tree of manifests, and which manifests a key opens',
    load: async () => (await import('./commands/inventory.ts')).inventoryCommand,
  },
  {
    name: 'encrypt',
    summary: 'encrypt a file (or a tree with -r) in the AWS Encryption SDK message format',
    load: async () => (await import('./commands/encrypt.ts')).encryptCommand,
  },
  {
    name: 'decrypt',
    summary: 'decrypt a file (or a tree with -r) in the AWS Encryption SDK message format',
    load: async () => (await import('./commands/decrypt.ts')).decryptCommand,
  },
  {
    name: 'merge-driver',
    summary: 'three-way merge of an EnvelopeSecret for git, per data key (no key needed)',
    load: async () => (await import('./commands/merge-driver.ts')).mergeDriverCommand,
  },
  {
    name: 'controller',
    summary: 'run the controller that turns EnvelopeSecrets into Secrets',
    load: async () => (await import('./commands/controller.ts')).controllerCommand,
  },
];

function mainHelp(program: string): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 4;
  const commands = COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`).join('\n');
  return `Usage: ${program} COMMAND [options]

Envelope-encrypted Kubernetes Secrets: seal values for KMS keys or age recipients,
commit the EnvelopeSecret, and let the envseal controller materialize the Secret.

Commands:
${commands}

Run '${program} COMMAND --help' for a command's options.

Environment:
  ENVSEAL_AGE_IDENTITY    age identity file for unseal, verify --decrypt, edit, add-recipient, remove-recipient (re-key), compact
  AWS_REGION, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_KMS, and the AWS credential chain
  VISUAL, EDITOR          the editor of envseal edit (default vi)
  ENVSEAL_DEBUG=1         show the cause chain of an error

Exit codes: 0 ok, 1 unexpected error, 2 usage, 3 invalid input, 4 key provider or KMS
error, 5 refused (nothing written), 6 merge conflicts (merge-driver), 10-16 envseal verify
checks, 130 interrupted.
`;
}

function keysHelp(program: string): string {
  const subs = COMMANDS.filter((c) => c.name.startsWith('keys '));
  return `Usage: ${program} keys SUBCOMMAND [options]\n\nSubcommands:\n${subs.map((c) => `  ${c.name.slice(5).padEnd(12)}${c.summary}`).join('\n')}\n`;
}

function commandHelp(command: Command, program: string): string {
  const retitle = (text: string) => text.replaceAll(/^(\s*)envseal /gm, `$1${program} `);
  return formatHelp({
    usage: retitle(command.usage),
    description: command.description,
    options: command.options,
    ...(command.footer ? { footer: retitle(command.footer) } : {}),
  });
}

function findCommand(argv: readonly string[], program: string): { command: CommandEntry; args: string[] } | { help: string; exitCode: number } {
  const [first, ...rest] = argv;
  if (first === 'keys') {
    const [sub, ...args] = rest;
    if (sub === undefined) return { help: keysHelp(program), exitCode: EXIT.usage };
    if (sub === '--help' || sub === '-h' || sub === 'help') return { help: keysHelp(program), exitCode: EXIT.ok };
    const command = COMMANDS.find((c) => c.name === `keys ${sub}`);
    if (command === undefined) throw usageError(`unknown command keys ${quoteName(sub.slice(0, 40))}; see '${program} keys --help'`);
    return { command, args };
  }
  const command = COMMANDS.find((c) => c.name === first && !c.name.includes(' '));
  if (command === undefined) throw usageError(`unknown command ${quoteName((first ?? '').slice(0, 40))}; see '${program} --help'`);
  return { command, args: rest };
}

/**
 * The envseal CLI as a function: parses argv, runs one command against io and returns
 * the exit code. Errors are reported on io.stderr, never with a value in them.
 */
export async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const program = io.programName ?? 'envseal';
  const debug = io.env.ENVSEAL_DEBUG !== undefined && io.env.ENVSEAL_DEBUG !== '' && io.env.ENVSEAL_DEBUG !== '0';
  try {
    const first = argv[0];
    if (first === undefined) {
      io.stderr.write(mainHelp(program));
      return EXIT.usage;
    }
    if (first === '--help' || first === '-h') {
      io.stdout.write(mainHelp(program));
      return EXIT.ok;
    }
    if (first === 'help') {
      if (argv.length === 1) {
        io.stdout.write(mainHelp(program));
        return EXIT.ok;
      }
      return await run([...argv.slice(1), '--help'], io);
    }
    if (first === '--version' || first === '-V' || first === 'version') {
      io.stdout.write(`${program} ${io.version ?? 'unknown'}\n`);
      return EXIT.ok;
    }
    const found = findCommand(argv, program);
    if ('help' in found) {
      (found.exitCode === EXIT.ok ? io.stdout : io.stderr).write(found.help);
      return found.exitCode;
    }
    const { args } = found;
    const command: Command = isLazy(found.command) ? await found.command.load() : found.command;
    const positionals = command.positionals ?? { max: 0 };
    const parsed = parseCommandArgs(args, command.options, positionals);
    if (flag(parsed.values, 'help')) {
      io.stdout.write(commandHelp(command, program));
      return EXIT.ok;
    }
    if (parsed.positionals.length > positionals.max) throw usageError(`too many arguments; see '${program} ${command.name} --help'`);
    const providers =
      command.providers === 'none'
        ? new ProviderRegistry({})
        : createRegistry(await resolveProviderConfig(parsed.values, io, { identities: command.providers === 'open' }), io);
    const ctx: CommandContext = {
      io,
      values: parsed.values,
      positionals: parsed.positionals,
      signal: io.signal,
      random: io.random ?? systemRandom,
      providers,
      program,
    };
    return await command.run(ctx);
  } catch (error) {
    io.stderr.write(`${program}: error: ${describeError(error, debug)}\n`);
    return exitCodeOf(error);
  }
}
