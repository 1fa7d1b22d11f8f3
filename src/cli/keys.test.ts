import { stat, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAgeIdentityFile, recipientOfIdentity } from '../providers/age.ts';
import { awsKmsProvider } from '../providers/aws-kms/index.ts';
import { type ProviderConfig, ProviderRegistry } from '../providers/registry.ts';
import type { ProviderDefinition } from '../providers/types.ts';
import { type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
beforeEach(async () => {
  ws = await workspace();
});
afterEach(() => ws.cleanup());

describe('envseal keys create (age)', () => {
  it('writes a new identity with mode 0600 and prints its recipient', async () => {
    const result = await ws.cli(['keys', 'create', '-o', 'id.key']);
    expect(result.code).toBe(0);
    const recipient = result.stdout.trim();
    expect(recipient).toMatch(/^age1[02-9ac-hj-np-z]+$/);
    const file = await ws.snapshot('id.key');
    expect(file!.mode).toBe(0o600);
    const text = file!.bytes.toString('utf8');
    expect(text).toMatch(/^# created: 2025-01-01T00:00:00.000Z\n# public key: age1/);
    const [identity] = parseAgeIdentityFile(text, 'id.key');
    expect(await recipientOfIdentity(identity!)).toBe(recipient);
    expect(result.stderr).not.toContain('AGE-SECRET-KEY');
    expect(result.stdout).not.toContain('AGE-SECRET-KEY');
    const printed = await ws.cli(['keys', 'recipient', '-i', 'id.key']);
    expect(printed).toMatchObject({ code: 0, stdout: `${recipient}\n` });
  });

  it('never overwrites an existing file (exit 5)', async () => {
    await ws.write('id.key', 'precious');
    const before = await ws.snapshot('id.key');
    const result = await ws.cli(['keys', 'create', '-o', 'id.key']);
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/refusing to overwrite "id.key"/);
    expect(result.stdout).toBe('');
    expect(await ws.snapshot('id.key')).toEqual(before);
  });

  it('makes a hybrid (post-quantum) identity with --type hybrid', async () => {
    const result = await ws.cli(['keys', 'create', '-o', 'pq.key', '--type', 'hybrid']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^age1pq1/);
    expect(await ws.read('pq.key')).toMatch(/^AGE-SECRET-KEY-PQ-1/m);
  });

  it('prints the identity with --stdout and the recipient on stderr', async () => {
    const result = await ws.cli(['keys', 'create', '--stdout']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^AGE-SECRET-KEY-1/m);
    expect(result.stderr).toMatch(/^Public key: age1/);
    expect(await ws.entries()).toEqual([]);
  });

  it('needs -o FILE or --stdout, not both, and a known type', async () => {
    for (const args of [[], ['-o', 'a', '--stdout'], ['-o', 'a', '--type', 'rsa'], ['-o', 'a', '--alias', 'alias/x'], ['--provider', 'gcp']]) {
      const result = await ws.cli(['keys', 'create', ...args]);
      expect(result.code, args.join(' ')).toBe(2);
    }
    expect(await ws.entries()).toEqual([]);
  });

  it('creates missing parent folders, private to the user', async () => {
    const result = await ws.cli(['keys', 'create', '-o', 'missing/deeper/id.key']);
    expect(result.code).toBe(0);
    expect((await stat(ws.path('missing/deeper'))).mode & 0o777).toBe(0o700);
    expect((await stat(ws.path('missing/deeper/id.key'))).mode & 0o777).toBe(0o600);
  });

  it('fails clearly when the folder cannot be created', async () => {
    await writeFile(ws.path('a-file'), 'x');
    const result = await ws.cli(['keys', 'create', '-o', 'a-file/id.key']);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/cannot create "a-file\/id.key"/);
  });
});

describe('envseal keys create --provider aws-kms', () => {
  it('creates the key through the configured aws-kms provider and prints its ARN', async () => {
    const configs: ProviderConfig[] = [];
    const requests: Parameters<NonNullable<ProviderDefinition['createKey']>>[0][] = [];
    // The real aws-kms definition but for the call to the KMS.
    const recording: ProviderDefinition = {
      ...awsKmsProvider,
      async createKey(request) {
        requests.push(request);
        return {
          target: request.name,
          keyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234',
          summary: `created ${request.name} (arn:aws:kms:eu-west-1:111122223333:${request.name})`,
        };
      },
    };
    const result = await ws.cli(['keys', 'create', '--provider', 'aws-kms', '--alias', 'alias/envseal', '--region', 'eu-west-1', '--description', 'test key'], {
      env: { AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:4599', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKID', AWS_SECRET_ACCESS_KEY: 'SECRET' },
      createProviders: (config) => {
        configs.push(config);
        return new ProviderRegistry(config, { definitions: [recording] });
      },
    });
    expect(result.stderr).toMatch(/created alias\/envseal/);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('arn:aws:kms:eu-west-1:111122223333:key/1234\n');
    expect(requests).toEqual([{ name: 'alias/envseal', description: 'test key', options: configs[0]!['aws-kms'] }]);
    expect(configs[0]!['aws-kms']).toEqual({
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:4599',
      credentials: { accessKeyId: 'AKID', secretAccessKey: 'SECRET' },
    });
  });

  it('needs --alias and refuses age options', async () => {
    expect((await ws.cli(['keys', 'create', '--provider', 'aws-kms'])).code).toBe(2);
    expect((await ws.cli(['keys', 'create', '--provider', 'aws-kms', '--alias', 'alias/x', '-o', 'f'])).code).toBe(2);
    expect((await ws.cli(['keys', 'create', '--provider', 'aws-kms', '--alias', 'alias/x', '--kms-endpoint', 'not a url'])).code).toBe(2);
  });
});

describe('envseal keys recipient', () => {
  it('reads ENVSEAL_AGE_IDENTITY as a path or as the identity itself', async () => {
    const created = await ws.cli(['keys', 'create', '-o', 'id.key']);
    const fromPath = await ws.cli(['keys', 'recipient'], { env: { ENVSEAL_AGE_IDENTITY: ws.path('id.key') } });
    expect(fromPath.stdout).toBe(created.stdout);
    const identity = (await ws.read('id.key')).split('\n').find((l) => l.startsWith('AGE-SECRET-KEY'))!;
    const literal = await ws.cli(['keys', 'recipient'], { env: { ENVSEAL_AGE_IDENTITY: identity } });
    expect(literal.stdout).toBe(created.stdout);
  });

  it('fails clearly without an identity (exit 4)', async () => {
    const none = await ws.cli(['keys', 'recipient']);
    expect(none.code).toBe(4);
    expect(none.stderr).toMatch(/no age identity/);
    const missing = await ws.cli(['keys', 'recipient', '-i', 'nope.key']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/age identity file "nope.key" \(from --identity\) does not exist/);
  });

  it('warns about an identity file others can read', async () => {
    await ws.cli(['keys', 'create', '-o', 'id.key']);
    const { chmod } = await import('node:fs/promises');
    await chmod(ws.path('id.key'), 0o644);
    const result = await ws.cli(['keys', 'recipient', '-i', 'id.key']);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/readable by others \(mode 0644\)/);
  });
});
