import path from 'node:path';
import { quoteName } from '../../api/names.ts';
import { MessageDecryptor } from '../../files/decrypt.ts';
import { FileFormatError } from '../../files/errors.ts';
import type { MessageHeader } from '../../files/header.ts';
import { type ByteSource, fileSource } from '../../files/sources.ts';
import { HeldSink, type OutputWriter, PassThroughSink, type Sink } from '../../files/sinks.ts';
import { pumpDecrypt } from '../../files/pump.ts';
import { unwrapDataKey } from '../../files/materials.ts';
import { formatBytes, type ProgressBar } from '../../files/progress.ts';
import { formatSuiteId } from '../../files/suites.ts';
import { ensureParent } from '../../files/tree.ts';
import { flag, HELP_OPTION, stringList, stringOption } from '../args.ts';
import type { Command, CommandContext } from '../command.ts';
import { usageError } from '../errors.ts';
import { fileError, resolvePath } from '../files.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';
import { cliErrorOf, openFileSink, parseContextPairs, progressFor, readTree, singleInput, treeArguments } from './encrypt.ts';

const OPTIONS = {
  output: {
    type: 'string',
    short: 'o',
    value: 'FILE',
    help: 'write here (atomically, only once the whole message authenticated) instead of stdout; a directory with -r',
  },
  recursive: { type: 'boolean', short: 'r', help: 'INPUT is a directory: decrypt every file in it into the directory -o' },
  context: {
    type: 'string',
    short: 'c',
    multiple: true,
    value: 'KEY=VALUE',
    help: "require this pair in the message's encryption context (checked before any KMS call)",
  },
  unbuffered: {
    type: 'boolean',
    help: 'stdout only: release each frame as soon as it authenticates instead of holding the output until the whole message did (see below)',
  },
  'decrypt-unsigned': { type: 'boolean', help: 'refuse signed messages (suite 0x0578) right after reading the header' },
  suffix: { type: 'string', value: 'SUFFIX', help: 'with -r: removed from each file name (default .encrypted; other names get .decrypted appended)' },
  ...IDENTITY_OPTIONS,
  ...PROVIDER_OPTIONS,
  ...HELP_OPTION,
} as const;

export const decryptCommand: Command = {
  name: 'decrypt',
  summary: 'decrypt a file (or a tree with -r) in the AWS Encryption SDK message format',
  usage: 'envseal decrypt [INPUT | -] [-o OUTPUT] [--context K=V]... [-i IDENTITY] [options]',
  description: `
Decrypts a message of envseal encrypt or aws-encryption-cli (message format version 2,
suites 0x0478 and 0x0578, framed), streamed in constant memory. The data key is
unwrapped from the first encrypted data key that a configured provider opens (aws-kms:
KMS Decrypt with the key ARN the message names and its whole encryption context;
envseal-age: the --identity files). Then the commitment, the header tag, every frame's
tag and order, the end of the message and, for 0x0578, the signature are checked. Any
failure writes nothing at the output path and exits non-zero.

Output guarantee: with -o FILE the plaintext goes to a temporary file beside FILE
that is renamed over it only after the whole message authenticated. On stdout the
output is held by default (in memory up to 4 MiB, beyond that in an unlinked
private temporary file in $TMPDIR) and released only after the whole message
authenticated, so stdout receives either all of the plaintext or nothing. With
--unbuffered each frame is written as soon as its own tag verifies (the final frame of
a signed message only after the signature): a failure then leaves a prefix of
authenticated frames on stdout, which the consumer must discard (the exit status is
non-zero).`,
  footer: `
Examples:
  envseal decrypt backup.tar.encrypted -o backup.tar -c purpose=backup
  envseal decrypt dir.tar.encrypted -i key.txt | tar x
  envseal decrypt -r ./reports.enc -o ./reports`,
  options: OPTIONS,
  positionals: { max: 1 },
  providers: 'open',
  run: decrypt,
};

interface DecryptSettings {
  required: Record<string, string>;
  unsignedOnly: boolean;
}

function checkHeader(header: MessageHeader, settings: DecryptSettings): void {
  if (settings.unsignedOnly && header.suite.signed) {
    throw new FileFormatError('UnknownSuite', `the message is signed (suite ${formatSuiteId(header.suite.id)}) and --decrypt-unsigned was given`);
  }
  for (const [key, value] of Object.entries(settings.required)) {
    if (!Object.hasOwn(header.encryptionContext, key)) {
      throw new FileFormatError('ContextMismatch', `the message's encryption context has no key ${quoteName(key)} (--context)`);
    }
    if (header.encryptionContext[key] !== value) {
      throw new FileFormatError('ContextMismatch', `the message's encryption context has another value for ${quoteName(key)} (--context)`);
    }
  }
}

async function decryptOne(ctx: CommandContext, settings: DecryptSettings, source: ByteSource, sink: Sink, progress: ProgressBar | undefined): Promise<number> {
  const decryptor = new MessageDecryptor();
  try {
    await pumpDecrypt(
      source,
      decryptor,
      async (header) => {
        checkHeader(header, settings);
        return unwrapDataKey({ header, providers: ctx.providers, signal: ctx.signal });
      },
      sink,
      {
        signal: ctx.signal,
        ...(ctx.io.collectGarbage ? { collectGarbage: ctx.io.collectGarbage } : {}),
        ...(progress ? { onProgress: (n: number) => progress.update(n) } : {}),
      },
    );
    await sink.commit();
    return decryptor.plaintextLength;
  } catch (error) {
    decryptor.destroy();
    await sink.abort();
    throw cliErrorOf(error, 'cannot decrypt');
  } finally {
    progress?.done();
  }
}

async function decrypt(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const settings: DecryptSettings = {
    required: parseContextPairs(stringList(values, 'context'), '--context'),
    unsignedOnly: flag(values, 'decrypt-unsigned'),
  };
  const input = ctx.positionals[0];
  const output = stringOption(values, 'output');
  const unbuffered = flag(values, 'unbuffered');
  if (flag(values, 'recursive')) {
    const tree = treeArguments(input, output);
    if (unbuffered) throw usageError('--unbuffered applies to stdout only');
    return decryptTree(ctx, settings, tree.input, tree.output, stringOption(values, 'suffix') ?? '.encrypted');
  }
  if (stringOption(values, 'suffix') !== undefined) throw usageError('--suffix applies to -r only');

  const { source, size, label } = await singleInput(ctx, input, 'decrypt');
  let sink: Sink;
  const toStdout = output === undefined || output === '-';
  if (toStdout) {
    sink = unbuffered
      ? new PassThroughSink(io.stdout as OutputWriter)
      : new HeldSink(io.stdout as OutputWriter, {
          ...(io.env.TMPDIR ? { directory: io.env.TMPDIR } : {}),
          ...(io.collectGarbage ? { collectGarbage: io.collectGarbage } : {}),
        });
  } else {
    if (unbuffered) throw usageError('--unbuffered applies to stdout only (a file is always written only on success)');
    sink = await openFileSink(resolvePath(io.cwd, output), output, 0o600, io);
  }
  try {
    const bytes = await decryptOne(ctx, settings, source, sink, progressFor(io, `decrypting ${label}`, size));
    if (!toStdout) io.stderr.write(`decrypted ${formatBytes(bytes)} into ${quoteName(output)}\n`);
  } catch (error) {
    if (toStdout && unbuffered) io.stderr.write('warning: the plaintext already written to stdout is incomplete or unauthenticated: discard it\n');
    throw error;
  }
  return 0;
}

function outputName(relative: string, suffix: string): string {
  return suffix !== '' && relative.endsWith(suffix) && !relative.endsWith(path.sep + suffix) && relative !== suffix
    ? relative.slice(0, -suffix.length)
    : `${relative}.decrypted`;
}

async function decryptTree(ctx: CommandContext, settings: DecryptSettings, input: string, output: string, suffix: string): Promise<number> {
  const { io } = ctx;
  const { outDir, walk } = await readTree(ctx, input, output, 'decrypt');
  let total = 0;
  for (const entry of walk.files) {
    const name = outputName(entry.relative, suffix);
    const target = path.join(outDir, name);
    const shown = path.join(output, name);
    try {
      await ensureParent(target);
    } catch (error) {
      throw fileError(error, 'create the directory of', shown);
    }
    const sink = await openFileSink(target, shown, 0o600, io);
    try {
      total += await decryptOne(ctx, settings, fileSource(entry.file, ctx.signal), sink, progressFor(io, `decrypting ${entry.relative}`, entry.size));
    } catch (error) {
      io.stderr.write(`failed at ${quoteName(entry.relative)}; the files before it were decrypted\n`);
      throw error;
    }
  }
  io.stderr.write(`decrypted ${walk.files.length} file${walk.files.length === 1 ? '' : 's'} (${formatBytes(total)}) into ${quoteName(output)}\n`);
  return 0;
}
