import type { EnvelopeSecret } from '../../api/types.ts';
import { quoteName } from '../../api/names.ts';
import { EnvelopeError } from '../../envelope/errors.ts';
import { ProviderError } from '../../providers/types.ts';
import { openEnvelopeSecret } from '../../sealing/open.ts';
import { flag, HELP_OPTION, stringOption } from '../args.ts';
import { type Command, type CommandContext, describeSecret, readInput } from '../command.ts';
import { parseDocuments } from '../documents.ts';
import { streamIssues, streamProblem } from '../namespace-stream.ts';
import { CliError, EXIT, VERIFY_EXIT } from '../errors.ts';
import { IDENTITY_OPTIONS, PROVIDER_OPTIONS } from '../provider-config.ts';

const OPTIONS = {
  filename: { type: 'string', short: 'f', value: 'FILE', help: 'EnvelopeSecret manifest (default: stdin)' },
  decrypt: { type: 'boolean', help: 'also check that every value opens (needs an identity or kms:Decrypt)' },
  ...IDENTITY_OPTIONS,
  ...PROVIDER_OPTIONS,
  ...HELP_OPTION,
} as const;

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check an EnvelopeSecret manifest (offline, or --decrypt)',
  usage: 'envseal verify [-f FILE] [--decrypt [--identity FILE]]',
  description: `
Checks a manifest without any key: its structure, base64 fields, sizes, key names unique
across envelopes, known suites and providers. With --decrypt it also unwraps every
envelope's data key, checks its commitment and opens every value (the values are
discarded, never printed). The exit code says which check failed.`,
  footer: `
Exit codes:
  0   the manifest is valid (and, with --decrypt, every value opens)
  10  structure: not YAML/JSON, wrong apiVersion/kind, missing or mistyped fields,
      invalid names or key names
  11  base64: a field is not standard padded base64
  12  size: a field has the wrong length, a value is truncated, or the values total
      more than 1 MiB
  13  duplicate-key: a key appears in more than one envelope
  14  suite: an unknown cipher suite
  15  provider: an unknown key provider
  16  decrypt (--decrypt): a value or data key does not open or authenticate
  4   key provider (--decrypt): no usable identity, access denied, KMS unavailable
When several checks fail, every problem is listed and the lowest code is returned.`,
  options: OPTIONS,
  providers: 'open',
  run: verify,
};

async function verify(ctx: CommandContext): Promise<number> {
  const { io, values } = ctx;
  const input = await readInput(stringOption(values, 'filename'), io, 'pass -f FILE or pipe an EnvelopeSecret manifest');
  let documents: unknown[];
  try {
    documents = parseDocuments(input.bytes, input.source).map((d) => d.value);
  } catch (error) {
    if (error instanceof CliError) throw new CliError('VerifyFailed', error.message, { exitCode: VERIFY_EXIT.structure, cause: error });
    throw error;
  }
  const issues = streamIssues(documents);
  if (issues.length > 0) {
    const lines = issues.map((issue) => `  ${issue.path}: ${issue.message} [${issue.check}]`);
    const code = Math.min(...issues.map((issue) => VERIFY_EXIT[issue.check]));
    throw new CliError('VerifyFailed', `${input.source}: invalid EnvelopeSecret:\n${lines.join('\n')}`, { exitCode: code });
  }
  const problem = streamProblem(documents);
  if (problem !== undefined) throw new CliError('VerifyFailed', `${input.source}: ${problem}`, { exitCode: VERIFY_EXIT.structure });
  const secret = documents[0] as EnvelopeSecret;
  // Scope namespaces: the object opens only in a listed namespace (as the controller checks).
  if (secret.spec.scope === 'namespaces' && !(secret.spec.namespaces ?? []).includes(secret.metadata.namespace ?? '')) {
    throw new CliError(
      'VerifyFailed',
      `${input.source}: metadata.namespace ${quoteName(secret.metadata.namespace ?? '')} is not in spec.namespaces: the controller refuses it (ContextMismatch)`,
      {
        exitCode: VERIFY_EXIT.structure,
      },
    );
  }
  const keys = secret.spec.envelopes.reduce((n, envelope) => n + Object.keys(envelope.data).length, 0);
  const summary = `${input.source}: valid EnvelopeSecret ${describeSecret(secret)} (scope ${secret.spec.scope ?? 'strict'}, ${secret.spec.envelopes.length} envelope${secret.spec.envelopes.length === 1 ? '' : 's'}, ${keys} key${keys === 1 ? '' : 's'})`;
  if (!flag(values, 'decrypt')) {
    io.stdout.write(`${summary}\n`);
    return EXIT.ok;
  }
  let opened: Record<string, Buffer>;
  try {
    opened = await openEnvelopeSecret({ secret, providers: ctx.providers, signal: ctx.signal });
  } catch (error) {
    throw decryptFailure(error, input.source);
  }
  for (const value of Object.values(opened)) value.fill(0);
  io.stdout.write(`${summary}; all ${keys} value${keys === 1 ? '' : 's'} open\n`);
  return EXIT.ok;
}

/** A value or key that does not authenticate is a decrypt failure (16); missing access is a provider error (4). */
function decryptFailure(error: unknown, source: string): unknown {
  if (error instanceof EnvelopeError) {
    return new CliError('VerifyFailed', `${source}: decrypt check failed: ${error.message}`, { exitCode: VERIFY_EXIT.decrypt, cause: error });
  }
  if (error instanceof ProviderError && error.code === 'InvalidCiphertext') {
    return new CliError('VerifyFailed', `${source}: decrypt check failed: ${error.message}`, { exitCode: VERIFY_EXIT.decrypt, cause: error });
  }
  return error;
}
