// Unit tests of the aws-kms provider that need no emulator: target parsing, and the
// mapping of every KMS error to a ProviderError, against a scripted fake KMS endpoint
// on 127.0.0.1 (so each KMS error code can be produced on demand). The behaviour
// against real KMS implementations is in test/e2e/aws-kms.test.ts (local-kms, moto).
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { AWS_KMS, createAwsKmsProvider, KmsCallError, MAX_REGION_CLIENTS, parseKmsTarget, sanitizeServiceMessage } from './aws-kms/index.ts';
import { ProviderError } from './types.ts';

const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const CONTEXT = { 'envseal.dev/scope': 'strict', 'envseal.dev/namespace': 'prod', 'envseal.dev/name': 'db' };
const CREDENTIALS = { accessKeyId: 'AKIAENVSEALTESTFAKE1', secretAccessKey: 'fake' };

describe('parseTarget', () => {
  const provider = createAwsKmsProvider({ region: 'eu-west-1' });

  it.each([
    [KEY_ARN, 'key-arn', 'eu-west-1'],
    ['arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab', 'key-arn', 'us-east-1'],
    ['arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', 'key-arn', 'us-gov-west-1'],
    ['arn:aws-cn:kms:cn-north-1:111122223333:alias/app/db', 'alias-arn', 'cn-north-1'],
    ['arn:aws:kms:ap-southeast-2:111122223333:alias/envseal_prod-1', 'alias-arn', 'ap-southeast-2'],
    ['alias/envseal', 'alias', undefined],
    ['alias/team/app_db-1', 'alias', undefined],
    ['1234abcd-12ab-34cd-56ef-1234567890ab', 'key-id', undefined],
    ['mrk-1234abcd12ab34cd56ef1234567890ab', 'key-id', undefined],
  ])('accepts %s', (target, kind, region) => {
    expect(() => provider.parseTarget(target)).not.toThrow();
    expect(parseKmsTarget(target)).toEqual({ kind, region });
  });

  it.each([
    ['', /is empty/],
    [' alias/x', /white space/],
    ['alias/x ', /white space/],
    ['my-key', /alias\/my-key\?/],
    ['alias/', /not a valid alias/],
    ['alias/has space', /not a valid alias/],
    [`alias/${'a'.repeat(251)}`, /not a valid alias/],
    ['arn:aws:kms:eu-west-1:111122223333', /is not an ARN/],
    ['arn:aws:iam::111122223333:role/x', /service "iam", not kms/],
    ['arn:aws:kms::111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', /no valid region/],
    ['arn:aws:kms:eu-west-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab', /12-digit account/],
    ['arn:aws:kms:eu-west-1:111122223333:key/not-a-uuid', /invalid key id/],
    ['arn:aws:kms:eu-west-1:111122223333:alias/bad alias', /invalid alias name/],
    ['arn:aws:kms:eu-west-1:111122223333:grant/abc', /neither a key .* nor an alias/],
    ['arn:gcp:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', /unknown partition/],
    ['age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq', /alias\/age1/],
    ['projects/p/locations/l/keyRings/r/cryptoKeys/k', /is not a key ARN/],
  ])('rejects %j with InvalidRecipient naming the problem', (target, problem) => {
    let caught: unknown;
    try {
      provider.parseTarget(target);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ProviderError);
    const error = caught as ProviderError;
    expect(error.code).toBe('InvalidRecipient');
    expect(error.provider).toBe(AWS_KMS);
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(problem);
  });

  it('describes, targets and recognises recipients', () => {
    const recipient = { provider: 'aws-kms', keyId: KEY_ARN, encryptedKey: 'AAAA' };
    expect(provider.canUnwrap(recipient)).toBe(true);
    expect(provider.canUnwrap({ provider: 'age', recipient: 'age1x', encryptedKey: 'AAAA' })).toBe(false);
    expect(provider.canUnwrap({ provider: 'aws-kms', encryptedKey: 'AAAA' })).toBe(false);
    expect(provider.describe(recipient)).toBe(`aws-kms ${KEY_ARN}`);
    expect(provider.targetOf(recipient)).toBe(KEY_ARN);
  });
});

describe('sanitizeServiceMessage', () => {
  it('keeps ARNs, aliases and key ids, redacts base64 and hex runs and binary', () => {
    const dek = randomBytes(32);
    const message = `Value '${dek.toString('base64')}' for ${KEY_ARN} and alias/app/db, key/1234abcd-12ab-34cd-56ef-1234567890ab hex ${dek.toString('hex')} raw ${dek.toString('latin1')}`;
    const safe = sanitizeServiceMessage(message);
    expect(safe).toContain(KEY_ARN);
    expect(safe).toContain('alias/app/db');
    expect(safe).toContain('key/1234abcd-12ab-34cd-56ef-1234567890ab');
    expect(safe).not.toContain(dek.toString('base64'));
    expect(safe).not.toContain(dek.toString('hex'));
    expect(safe).not.toContain(dek.toString('latin1'));
    expect(safe).toMatch(/^[\x20-\x7e]*$/);
  });
});

// ---------------------------------------------------------------------------------
// A scripted fake KMS endpoint: each request gets the next scripted answer.

interface Answer {
  status: number;
  body: string;
  /** Never answer (hang). */
  hang?: boolean;
}

let server: Server;
let endpoint: string;
let script: Answer[] = [];
let requests: { target: string; body: string }[] = [];
const hanging = new Set<ServerResponse>();

function kmsError(status: number, type: string, message = ''): Answer {
  return { status, body: JSON.stringify({ __type: type, message }) };
}

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({ target: String(req.headers['x-amz-target']), body: Buffer.concat(chunks).toString('utf8') });
      const answer = script.length > 1 ? script.shift()! : script[0];
      if (answer === undefined || answer.hang === true) {
        hanging.add(res);
        return;
      }
      res.writeHead(answer.status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  for (const res of hanging) res.destroy();
  hanging.clear();
  script = [];
  requests = [];
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function fakeProvider(overrides: { maxAttempts?: number; requestTimeoutMs?: number } = {}) {
  return createAwsKmsProvider({
    region: 'eu-west-1',
    endpoint,
    credentials: CREDENTIALS,
    maxAttempts: overrides.maxAttempts ?? 1,
    ...(overrides.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: overrides.requestTimeoutMs }),
  });
}

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ProviderError);
    return error as ProviderError;
  }
  throw new Error('expected the call to fail');
}

describe('error mapping (fake KMS endpoint)', () => {
  const recipient = { provider: 'aws-kms', keyId: KEY_ARN, encryptedKey: Buffer.from('sealed-blob').toString('base64') };

  it.each([
    [400, 'AccessDeniedException', 'AccessDenied'],
    [400, 'UnrecognizedClientException', 'AccessDenied'],
    [400, 'ExpiredTokenException', 'AccessDenied'],
    [400, 'IncorrectKeyException', 'AccessDenied'],
    [400, 'InvalidCiphertextException', 'InvalidCiphertext'],
    [400, 'DisabledException', 'KeyUnavailable'],
    [400, 'KeyUnavailableException', 'KeyUnavailable'],
    [400, 'KMSInvalidStateException', 'KeyUnavailable'],
    [400, 'NotFoundException', 'KeyNotFound'],
    [400, 'ThrottlingException', 'Throttled'],
    [400, 'LimitExceededException', 'Throttled'],
    [500, 'KMSInternalException', 'Unavailable'],
    [503, 'DependencyTimeoutException', 'Unavailable'],
    [400, 'ValidationException', 'Internal'],
    [400, 'SomethingNewException', 'Internal'],
  ] as const)('HTTP %i %s -> %s', async (status, type, code) => {
    script = [kmsError(status, type, `${type} for ${KEY_ARN}`)];
    const error = await failure(fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe(code);
    expect(error.serviceCode).toBe(type);
    expect(error.retryable).toBe(code === 'Throttled' || code === 'Unavailable');
    expect(error.message).toContain('aws-kms Decrypt');
    expect(error.message).toContain(KEY_ARN);
    expect(error.message).toContain(type);
    expect(error.cause).toBeInstanceOf(KmsCallError);
    expect((error.cause as KmsCallError).serviceCode).toBe(type);
    expect((error.cause as KmsCallError).httpStatusCode).toBe(status);
    if (code === 'InvalidCiphertext') {
      expect(error.message).toContain(
        'the KMS refused the encrypted key: it was sealed for another namespace/name/scope (encryption context), or it is corrupt',
      );
    }
  });

  it('sends Decrypt with KeyId, the encryption context and the blob', async () => {
    const plaintext = randomBytes(32);
    script = [{ status: 200, body: JSON.stringify({ KeyId: KEY_ARN, Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' }) }];
    const dataKey = await fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT });
    expect(Buffer.from(dataKey).equals(plaintext)).toBe(true);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.target).toBe('TrentService.Decrypt');
    const body = JSON.parse(requests[0]!.body) as Record<string, unknown>;
    expect(body.KeyId).toBe(KEY_ARN);
    expect(body.EncryptionContext).toEqual(CONTEXT);
    expect(body.CiphertextBlob).toBe(recipient.encryptedKey);
  });

  it('rejects a plaintext that is not 32 bytes', async () => {
    script = [{ status: 200, body: JSON.stringify({ KeyId: KEY_ARN, Plaintext: randomBytes(16).toString('base64') }) }];
    const error = await failure(fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Internal');
    expect(error.message).toMatch(/16 bytes, expected 32/);
  });

  it('retries throttling with backoff up to maxAttempts, then says Throttled', async () => {
    script = [kmsError(400, 'ThrottlingException', 'Rate exceeded')];
    const error = await failure(fakeProvider({ maxAttempts: 3 }).unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Throttled');
    expect(requests).toHaveLength(3);
    expect((error.cause as KmsCallError).attempts).toBe(3);
  });

  it('recovers when throttling stops within maxAttempts', async () => {
    const plaintext = randomBytes(32);
    script = [
      kmsError(400, 'ThrottlingException', 'Rate exceeded'),
      { status: 200, body: JSON.stringify({ KeyId: KEY_ARN, Plaintext: plaintext.toString('base64') }) },
    ];
    const dataKey = await fakeProvider({ maxAttempts: 3 }).unwrap({ recipient, encryptionContext: CONTEXT });
    expect(Buffer.from(dataKey).equals(plaintext)).toBe(true);
    expect(requests).toHaveLength(2);
  });

  it('maps a 502 with an HTML body to Unavailable', async () => {
    script = [{ status: 502, body: '<html>Bad Gateway</html>' }];
    const error = await failure(fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Unavailable');
  });

  it('maps a refused connection to Unavailable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const provider = createAwsKmsProvider({ region: 'eu-west-1', endpoint: `http://127.0.0.1:${port}`, credentials: CREDENTIALS, maxAttempts: 1 });
    const error = await failure(provider.unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Unavailable');
    expect(error.serviceCode).toBe('ECONNREFUSED');
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(`127.0.0.1:${port}`);
  });

  it('maps a request timeout to Unavailable', async () => {
    script = [{ status: 0, body: '', hang: true }];
    const error = await failure(fakeProvider({ requestTimeoutMs: 200 }).unwrap({ recipient, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Unavailable');
  });

  it('rejects with the signal reason when aborted in flight', async () => {
    script = [{ status: 0, body: '', hang: true }];
    const controller = new AbortController();
    const reason = new Error('caller gave up');
    const pending = fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT, signal: controller.signal });
    setTimeout(() => controller.abort(reason), 100);
    await expect(pending).rejects.toBe(reason);
  });

  it('does not call the KMS when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(fakeProvider().unwrap({ recipient, encryptionContext: CONTEXT, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(requests).toHaveLength(0);
  });

  it('rejects a recipient that is not standard base64 without calling the KMS', async () => {
    const error = await failure(fakeProvider().unwrap({ recipient: { ...recipient, encryptedKey: 'not base64!' }, encryptionContext: CONTEXT }));
    expect(error.code).toBe('InvalidCiphertext');
    expect(requests).toHaveLength(0);
  });

  it('says how to fix a bare alias when no region is configured anywhere', async () => {
    const saved = {
      AWS_REGION: process.env.AWS_REGION,
      AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION,
      AWS_CONFIG_FILE: process.env.AWS_CONFIG_FILE,
      AWS_PROFILE: process.env.AWS_PROFILE,
    };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    delete process.env.AWS_PROFILE;
    process.env.AWS_CONFIG_FILE = '/nonexistent/envseal-test-aws-config';
    try {
      const provider = createAwsKmsProvider({ endpoint, credentials: CREDENTIALS, maxAttempts: 1 });
      const error = await failure(provider.generateDataKey({ target: 'alias/envseal', encryptionContext: CONTEXT }));
      expect(error.code).toBe('InvalidRecipient');
      expect(error.message).toMatch(/region/);
      expect(requests).toHaveLength(0);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it('rejects recipients of other providers and without keyId', async () => {
    expect((await failure(fakeProvider().unwrap({ recipient: { ...recipient, provider: 'age' }, encryptionContext: CONTEXT }))).code).toBe('InvalidRecipient');
    expect((await failure(fakeProvider().unwrap({ recipient: { provider: 'aws-kms', encryptedKey: 'AAAA' }, encryptionContext: CONTEXT }))).code).toBe(
      'InvalidRecipient',
    );
  });

  it('never puts the data key in a message, even when the KMS echoes it', async () => {
    const dataKey = randomBytes(32);
    const forms = [dataKey.toString('base64'), dataKey.toString('base64url'), dataKey.toString('hex'), dataKey.toString('hex').toUpperCase()];
    const errors: ProviderError[] = [];
    for (const [status, type] of [
      [400, 'ValidationException'],
      [400, 'AccessDeniedException'],
      [400, 'NotFoundException'],
      [500, 'KMSInternalException'],
    ] as const) {
      script = [kmsError(status, type, `1 validation error: Value '${forms[0]}' hex ${forms[2]} url ${forms[1]} at 'plaintext'`)];
      errors.push(await failure(fakeProvider().wrap({ target: KEY_ARN, dataKey: new Uint8Array(dataKey), encryptionContext: CONTEXT })));
    }
    for (const error of errors) {
      const texts = [
        error.message,
        String(error),
        error.stack ?? '',
        JSON.stringify(error),
        inspect(error, { depth: 10 }),
        JSON.stringify(error.cause),
        inspect(error.cause, { depth: 10, showHidden: true }),
      ];
      for (const text of texts) for (const form of forms) expect(text).not.toContain(form);
    }
  });
});

describe('clients per region', () => {
  it('keeps at most MAX_REGION_CLIENTS, however many regions key ARNs in manifests name', async () => {
    const provider = fakeProvider();
    script = [kmsError(400, 'AccessDeniedException')];
    for (let i = 0; i < 3 * MAX_REGION_CLIENTS; i++) {
      const keyId = KEY_ARN.replace('eu-west-1', `xx-tenant-${i + 1}`);
      await failure(provider.unwrap({ recipient: { provider: 'aws-kms', keyId, encryptedKey: 'AAAA' }, encryptionContext: CONTEXT }));
    }
    expect(requests.length).toBe(3 * MAX_REGION_CLIENTS);
    expect(provider.openRegions()).toHaveLength(MAX_REGION_CLIENTS);
    expect(provider.openRegions().at(-1)).toBe(`xx-tenant-${3 * MAX_REGION_CLIENTS}`);
    provider.close();
  });
});
