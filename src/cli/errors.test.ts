import { describe, expect, it } from 'vitest';
import { ManifestError } from '../api/validation.ts';
import { EnvelopeError } from '../envelope/errors.ts';
import { FileFormatError } from '../files/errors.ts';
import { ClusterRecipientError } from '../kube/cluster-recipient.ts';
import { KubeApiError, KubeConfigError } from '../kube/client.ts';
import { ProviderError } from '../providers/types.ts';
import { EditError } from '../sealing/edit.ts';
import { parseCommandArgs } from './args.ts';
import { CliError, describeError, EXIT, exitCodeOf } from './errors.ts';

describe('exit codes come from the error', () => {
  it.each([
    ['a malformed file', new FileFormatError('Truncated', 'the message ends early'), EXIT.invalidInput],
    ['a file without the required context', new FileFormatError('ContextMismatch', 'context differs'), EXIT.refused],
    ['a bad manifest', new ManifestError([{ check: 'structure', path: 'spec', message: 'must be an object' }]), EXIT.invalidInput],
    ['an altered envelope', new EnvelopeError('CommitmentMismatch', 'commitment differs'), EXIT.invalidInput],
    ['an unreachable KMS', new ProviderError('Unavailable', 'unreachable', { provider: 'p' }), EXIT.provider],
    ['a flag that is not a URL', new ProviderError('InvalidConfiguration', 'not a URL', { provider: 'p' }), EXIT.usage],
    ['removing the last recipient', new EditError('LastRecipient', 'last'), EXIT.refused],
    ['a kubeconfig without a cluster', new KubeConfigError('no current cluster'), EXIT.usage],
    ['no published recipient', new ClusterRecipientError('NotPublished', 'none'), EXIT.provider],
    ['a CLI error with its own code', new CliError('VerifyFailed', 'x', { exitCode: 16 }), 16],
    ['a bug', new TypeError('x is undefined'), EXIT.unexpected],
  ])('%s', (_what, error, code) => {
    expect(exitCodeOf(error)).toBe(code);
  });

  it("shows envseal's own messages and only the name of other errors", () => {
    expect(describeError(new FileFormatError('Truncated', 'the message ends early'), false)).toBe('the message ends early');
    expect(describeError(new KubeApiError(500, 'InternalError', 'etcd is down'), false)).toBe('etcd is down');
    expect(describeError(new Error('value hunter2'), false)).not.toContain('hunter2');
  });

  it('marks what is worth a retry', () => {
    expect(new KubeApiError(429, 'TooManyRequests', 'slow down').retryable).toBe(true);
    expect(new KubeApiError(503, 'ServiceUnavailable', 'down').retryable).toBe(true);
    expect(new KubeApiError(422, 'Invalid', 'bad').retryable).toBe(false);
    expect(new ProviderError('Throttled', 't', { provider: 'p' }).retryable).toBe(true);
    expect(new FileFormatError('Truncated', 't').retryable).toBe(false);
  });
});

describe('an unknown option is named from the arguments, never with its value', () => {
  const specs = {
    identity: { type: 'string', short: 'i', help: '' },
    quiet: { type: 'boolean', short: 'q', help: '' },
  } as const;
  const unknown = (argv: string[]) => {
    try {
      parseCommandArgs(argv, specs, { max: 0 });
      return 'parsed';
    } catch (error) {
      return (error as Error).message;
    }
  };

  it('names the long or short option parseArgs refused', () => {
    expect(unknown(['--bogus=hunter2'])).toBe('unknown option --bogus; see --help');
    expect(unknown(['-qz'])).toBe('unknown option -z; see --help');
    expect(unknown(['-i', 'file', '--frob'])).toBe('unknown option --frob; see --help');
    expect(unknown(['-qifile'])).toBe('parsed');
  });
});
