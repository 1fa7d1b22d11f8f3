// The vault-transit provider against a real OpenBao (`bao server -dev`, test/harness/openbao.ts):
// the provider itself, then the built CLI (seal/unseal with vault-transit and age in one
// envelope, tampering, a manifest moved to another namespace, sanitized errors, least-
// privilege tokens) and `envseal encrypt`/`decrypt` files.
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { kmsEncryptionContext } from '../../src/envelope/context.ts';
import { createVaultTransitProvider, transitContext } from '../../src/providers/vault-transit/index.ts';
import { startLocalKms, type KmsEmulator } from '../harness/kms-emulators.ts';
import { installCrd, kubectl } from '../harness/kube.ts';
import { startOpenBao, type OpenBao } from '../harness/openbao.ts';
import { awsKmsEnv, createAwsKmsKey, providerFailure, vaultTransitSealerToken } from '../harness/provider-setup.ts';
import { type CliResult, ensureBuilt, runCli } from './cli-support.ts';

const CANARY = 'CANARY-vault-e2e-5be07a';
const CONTEXT = { 'envseal.dev/scope': 'strict', 'envseal.dev/namespace': 'prod', 'envseal.dev/name': 'db' };

let bao: OpenBao;
let key: string;

beforeAll(async () => {
  bao = await startOpenBao();
  key = `app-${randomUUID().slice(0, 8)}`;
  await bao.createTransitKey(key);
});
afterAll(async () => {
  await bao?.stop();
});

describe('vault-transit provider against OpenBao', () => {
  it('generates a data key in Vault and opens it only with the same context', async () => {
    const provider = createVaultTransitProvider({ address: bao.address, token: bao.rootToken });
    const { dataKey, recipient } = await provider.generateDataKey({ target: key, encryptionContext: CONTEXT });
    expect(recipient).toEqual({ provider: 'vault-transit', keyId: `transit/keys/${key}`, encryptedKey: expect.any(String) });
    expect(Buffer.from(recipient.encryptedKey, 'base64').toString('utf8')).toMatch(/^vault:v1:/);
    expect(Buffer.from(await provider.unwrap({ recipient, encryptionContext: { ...CONTEXT } }))).toEqual(Buffer.from(dataKey));

    const moved = await providerFailure(provider.unwrap({ recipient, encryptionContext: { ...CONTEXT, 'envseal.dev/namespace': 'staging' } }));
    expect(moved.code).toBe('InvalidCiphertext');
    expect(moved.contextBound).toBe(true);
    expect(moved.message).toContain(`transit/keys/${key}`);
    expect(moved.message).toContain('HTTP 400');
  });

  it("scope namespaces: a wrapping for team-a opens under team-a's context and is refused under team-b's", async () => {
    const provider = createVaultTransitProvider({ address: bao.address, token: bao.rootToken });
    const listed = { scope: 'namespaces', name: 'db', namespaces: ['team-a', 'team-b'] } as const;
    const forA = kmsEncryptionContext({ ...listed, namespace: 'team-a', namespaces: [...listed.namespaces] });
    const forB = kmsEncryptionContext({ ...listed, namespace: 'team-b', namespaces: [...listed.namespaces] });
    const { dataKey, recipient } = await provider.generateDataKey({ target: key, encryptionContext: forA });
    expect(Buffer.from(await provider.unwrap({ recipient, encryptionContext: forA }))).toEqual(Buffer.from(dataKey));
    const moved = await providerFailure(provider.unwrap({ recipient, encryptionContext: forB }));
    expect(moved.code).toBe('InvalidCiphertext');
    expect(moved.contextBound).toBe(true);
  });

  it('wraps a given data key (encrypt) that Vault itself decrypts with the context', async () => {
    const provider = createVaultTransitProvider({ address: bao.address, token: bao.rootToken });
    const dataKey = new Uint8Array(32).fill(9);
    const recipient = await provider.wrap({ target: `transit/keys/${key}`, dataKey, encryptionContext: CONTEXT });
    const ciphertext = Buffer.from(recipient.encryptedKey, 'base64').toString('utf8');
    const raw = await bao.api<{ data: { plaintext: string } }>('POST', `transit/decrypt/${key}`, { ciphertext, context: transitContext(CONTEXT) });
    expect(Buffer.from(raw.data.plaintext, 'base64')).toEqual(Buffer.from(dataKey));
  });

  it('refuses a tampered ciphertext, an unknown key, a token without the policy and a non-derived key', async () => {
    const provider = createVaultTransitProvider({ address: bao.address, token: bao.rootToken });
    const { recipient } = await provider.generateDataKey({ target: key, encryptionContext: CONTEXT });
    const text = Buffer.from(recipient.encryptedKey, 'base64').toString('utf8');
    const body = Buffer.from(text.slice('vault:v1:'.length), 'base64');
    body[body.length - 1]! ^= 1;
    const tampered = { ...recipient, encryptedKey: Buffer.from(`vault:v1:${body.toString('base64')}`).toString('base64') };
    expect((await providerFailure(provider.unwrap({ recipient: tampered, encryptionContext: CONTEXT }))).code).toBe('InvalidCiphertext');

    const unknown = await providerFailure(provider.unwrap({ recipient: { ...recipient, keyId: 'transit/keys/does-not-exist' }, encryptionContext: CONTEXT }));
    expect(unknown.code).toBe('KeyNotFound');
    expect(unknown.message).toContain('transit/keys/does-not-exist');

    // What docs/helm.md gives sealers: read the key's settings, encrypt and datakey; no decrypt.
    const sealerToken = await vaultTransitSealerToken(bao, { key, encrypt: true });
    const sealer = createVaultTransitProvider({ address: bao.address, token: sealerToken });
    const sealed = await sealer.generateDataKey({ target: key, encryptionContext: CONTEXT });
    const denied = await providerFailure(sealer.unwrap({ recipient: sealed.recipient, encryptionContext: CONTEXT }));
    expect(denied.code).toBe('AccessDenied');
    expect(denied.message).toContain('HTTP 403');
    expect(denied.message).not.toContain(sealerToken);

    // Sealing for a missing key neither succeeds nor creates it (encrypt alone would).
    const missing = `missing-${key}`;
    expect((await providerFailure(provider.wrap({ target: missing, dataKey: new Uint8Array(32), encryptionContext: CONTEXT }))).code).toBe('KeyNotFound');
    await expect(bao.api('GET', `transit/keys/${missing}`)).rejects.toThrow(/HTTP 404/);

    const flat = `flat-${key}`;
    await bao.createTransitKey(flat, { derived: false });
    const notDerived = await providerFailure(provider.generateDataKey({ target: flat, encryptionContext: CONTEXT }));
    expect(notDerived.code).toBe('KeyUnavailable');
    expect(notDerived.message).toMatch(/derived=true/);
  });

  it('an unreachable Vault is Unavailable (retryable)', async () => {
    const provider = createVaultTransitProvider({ address: 'http://127.0.0.1:9', token: bao.rootToken, maxAttempts: 1 });
    const error = await providerFailure(provider.generateDataKey({ target: key, encryptionContext: CONTEXT }));
    expect(error.code).toBe('Unavailable');
    expect(error.retryable).toBe(true);
  });
});

describe('envseal CLI with vault-transit against OpenBao', () => {
  let dir: string;
  let ageRecipient: string;

  function envseal(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return runCli(args, { cwd: dir, env: { TMPDIR: path.join(dir, 'tmp'), VAULT_ADDR: bao.address, VAULT_TOKEN: bao.rootToken, ...env } });
  }

  beforeAll(async () => {
    ensureBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-cli-vault-'));
    await mkdir(path.join(dir, 'tmp'));
    const created = await envseal(['keys', 'create', '-o', 'age.key']);
    expect(created.code).toBe(0);
    ageRecipient = created.stdout.trim();
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('seals for vault-transit and age in one envelope; each opens it alone', async () => {
    const sealed = await envseal([
      'seal',
      '--name',
      'db',
      '-n',
      'prod',
      '--from-literal',
      `PASSWORD=${CANARY}`,
      '-r',
      `vault-transit:${key}`,
      '-r',
      `age:${ageRecipient}`,
      '-w',
      'db.yaml',
    ]);
    expect(sealed.stderr).toMatch(/sealed 1 value/);
    expect(sealed.code).toBe(0);
    const manifest = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    expect(manifest.spec.envelopes).toHaveLength(1);
    expect(manifest.spec.envelopes[0].recipients.map((r: { provider: string; keyId?: string }) => [r.provider, r.keyId])).toEqual([
      ['vault-transit', `transit/keys/${key}`],
      ['age', undefined],
    ]);

    // Vault alone (no identity), then age alone (Vault unreachable, and no token).
    expect(await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'])).toEqual({ code: 0, stdout: CANARY, stderr: '' });
    const ageOnly = await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD', '-i', 'age.key'], { VAULT_ADDR: 'http://127.0.0.1:9', VAULT_TOKEN: '' });
    expect(ageOnly).toEqual({ code: 0, stdout: CANARY, stderr: '' });
    // The address also comes from --vault-addr, and BAO_* work as VAULT_* do.
    const viaFlag = await runCli(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD', '--vault-addr', bao.address], {
      cwd: dir,
      env: { BAO_TOKEN: bao.rootToken },
    });
    expect(viaFlag.stdout).toBe(CANARY);
    // No token in the environment: the one `vault login` left in ~/.vault-token (HOME is dir).
    await writeFile(path.join(dir, '.vault-token'), `${bao.rootToken}\n`, { mode: 0o600 });
    const viaLogin = await runCli(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'], { cwd: dir, env: { BAO_ADDR: bao.address } });
    await rm(path.join(dir, '.vault-token'));
    expect(viaLogin).toEqual({ code: 0, stdout: CANARY, stderr: '' });
    const verified = await envseal(['verify', '-f', 'db.yaml', '--decrypt']);
    expect(verified.stdout).toMatch(/all 1 value open/);
    expect(verified.code).toBe(0);
  });

  it('refuses a tampered vault-transit key and a manifest moved to another namespace, quoting nothing secret', async () => {
    const manifest = parse(await readFile(path.join(dir, 'db.yaml'), 'utf8'));
    const vaultOnly = structuredClone(manifest);
    vaultOnly.spec.envelopes[0].recipients = [manifest.spec.envelopes[0].recipients[0]];

    const tampered = structuredClone(vaultOnly);
    const text = Buffer.from(tampered.spec.envelopes[0].recipients[0].encryptedKey, 'base64').toString('utf8');
    const body = Buffer.from(text.slice('vault:v1:'.length), 'base64');
    body[5]! ^= 1;
    tampered.spec.envelopes[0].recipients[0].encryptedKey = Buffer.from(`vault:v1:${body.toString('base64')}`).toString('base64');
    await writeFile(path.join(dir, 'tampered.yaml'), stringify(tampered));
    const opened = await envseal(['unseal', '-f', 'tampered.yaml']);
    expect(opened.code).toBe(3);
    expect(opened.stderr).toContain(`transit/keys/${key}`);
    expect(opened.stderr).not.toContain(CANARY);
    expect(opened.stderr).not.toContain(bao.rootToken);
    expect(opened.stderr).not.toContain(text.slice(9, 30));

    const moved = structuredClone(vaultOnly);
    moved.metadata.namespace = 'staging';
    await writeFile(path.join(dir, 'moved.yaml'), stringify(moved));
    const unsealed = await envseal(['unseal', '-f', 'moved.yaml']);
    expect(unsealed.code).toBe(3);
    expect(unsealed.stderr).toMatch(/message authentication failed/);
    expect(unsealed.stderr).not.toContain(CANARY);
    expect((await envseal(['verify', '-f', 'moved.yaml', '--decrypt'])).code).toBe(16);
  });

  it('a sealer token (encrypt and datakey only) seals but cannot unseal: exit 4, no output file on a refused seal', async () => {
    const sealerToken = await vaultTransitSealerToken(bao, { key, encrypt: true, name: `cli-sealer-${key}` });
    const sealed = await envseal(
      ['seal', '--name', 'api', '-n', 'prod', '--from-literal', `TOKEN=${CANARY}`, '-r', `vault-transit:transit/keys/${key}`, '-w', 'api.yaml'],
      { VAULT_TOKEN: sealerToken },
    );
    expect(sealed.code, sealed.stderr).toBe(0);
    const denied = await envseal(['unseal', '-f', 'api.yaml'], { VAULT_TOKEN: sealerToken });
    expect(denied.code).toBe(4);
    expect(denied.stderr).toMatch(/access denied.*HTTP 403/);
    expect(denied.stderr).not.toContain(sealerToken);
    expect(denied.stderr).not.toContain(CANARY);

    const unknown = await envseal([
      'seal',
      '--name',
      'x',
      '-n',
      'prod',
      '--from-literal',
      'K=v',
      '-r',
      'vault-transit:other-mount/keys/nope',
      '-w',
      'never.yaml',
    ]);
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toContain('other-mount/keys/nope');
    expect(existsSync(path.join(dir, 'never.yaml'))).toBe(false);
    const invalid = await envseal(['seal', '--name', 'x', '-n', 'prod', '--from-literal', 'K=v', '-r', 'vault-transit:a b', '-w', 'never.yaml']);
    expect(invalid.code).toBe(3);
    expect(invalid.stderr).toMatch(/vault-transit target "a b" has an invalid key name/);
  });

  it('keys create makes a derived transit key, seals for it, and never changes an existing key', async () => {
    const name = `created-${randomUUID().slice(0, 8)}`;
    const created = await envseal(['keys', 'create', '--provider', 'vault-transit', '--name', name]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toBe(`transit/keys/${name}\n`);
    const settings = await bao.api<{ data: { derived: boolean; type: string } }>('GET', `transit/keys/${name}`);
    expect(settings.data).toMatchObject({ derived: true, type: 'aes256-gcm96' });
    const sealed = await envseal(['seal', '--name', 'made', '-n', 'prod', '--from-literal', 'K=made', '-r', `vault-transit:${name}`, '-w', 'made.yaml']);
    expect(sealed.code, sealed.stderr).toBe(0);
    expect((await envseal(['unseal', '-f', 'made.yaml', '--key', 'K'])).stdout).toBe('made');

    const flat = `flat-cli-${randomUUID().slice(0, 8)}`;
    await bao.createTransitKey(flat, { derived: false });
    const again = await envseal(['keys', 'create', '--provider', 'vault-transit', '--name', `transit/keys/${flat}`]);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/already exists/);
    expect((await bao.api<{ data: { derived: boolean } }>('GET', `transit/keys/${flat}`)).data.derived).toBe(false);
    const refused = await envseal(['seal', '--name', 'flat', '-n', 'prod', '--from-literal', 'K=v', '-r', `vault-transit:${flat}`, '-w', 'flat.yaml']);
    expect(refused.code).toBe(4);
    expect(refused.stderr).toMatch(/is not derived/);
    expect(existsSync(path.join(dir, 'flat.yaml'))).toBe(false);
  });

  it('add-recipient and remove-recipient with a transit key, named either way', async () => {
    const second = `second-${randomUUID().slice(0, 8)}`;
    await bao.createTransitKey(second);
    const sealed = await envseal(['seal', '--name', 'rot', '-n', 'prod', '--from-literal', `K=${CANARY}`, '-r', `age:${ageRecipient}`, '-w', 'rot.yaml']);
    expect(sealed.code, sealed.stderr).toBe(0);
    const added = await envseal(['add-recipient', '-f', 'rot.yaml', '--in-place', '-r', `vault-transit:${second}`, '-i', 'age.key']);
    expect(added.code, added.stderr).toBe(0);
    const keyIds = (file: string) =>
      readFile(path.join(dir, file), 'utf8').then((text) =>
        parse(text).spec.envelopes[0].recipients.map((r: { provider: string; keyId?: string }) => r.keyId ?? r.provider),
      );
    expect(await keyIds('rot.yaml')).toEqual(['age', `transit/keys/${second}`]);
    const removed = await envseal(['remove-recipient', '-f', 'rot.yaml', '--in-place', '-r', `age:${ageRecipient}`]);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await envseal(['unseal', '-f', 'rot.yaml', '--key', 'K'])).stdout).toBe(CANARY);
    // The short name matches the full path the manifest records; the last recipient stays.
    const last = await envseal(['remove-recipient', '-f', 'rot.yaml', '--in-place', '-r', `vault-transit:${second}`]);
    expect(last.code).toBe(5);
    expect(await keyIds('rot.yaml')).toEqual([`transit/keys/${second}`]);
  });

  it('aws-kms, vault-transit and age in one envelope: each opens it alone', async () => {
    const kms: KmsEmulator = await startLocalKms();
    try {
      const keyArn = await createAwsKmsKey(kms, { aliasPrefix: 'alias/envseal-vault' });
      const awsEnv = awsKmsEnv(kms);
      const noKms = { AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1' };
      const noVault = { VAULT_ADDR: 'http://127.0.0.1:9' };
      const sealed = await envseal(
        [
          'seal',
          '--name',
          'multi',
          '-n',
          'prod',
          '--from-literal',
          `K=${CANARY}`,
          '-r',
          `aws-kms:${keyArn}`,
          '-r',
          `vault-transit:${key}`,
          '-r',
          `age:${ageRecipient}`,
          '-w',
          'multi.yaml',
        ],
        awsEnv,
      );
      expect(sealed.code, sealed.stderr).toBe(0);
      const recipients = parse(await readFile(path.join(dir, 'multi.yaml'), 'utf8')).spec.envelopes[0].recipients;
      expect(recipients.map((r: { provider: string }) => r.provider)).toEqual(['aws-kms', 'vault-transit', 'age']);
      expect((await envseal(['unseal', '-f', 'multi.yaml', '--key', 'K'], { ...awsEnv, ...noVault })).stdout).toBe(CANARY);
      expect((await envseal(['unseal', '-f', 'multi.yaml', '--key', 'K'], { ...awsEnv, ...noKms })).stdout).toBe(CANARY);
      expect((await envseal(['unseal', '-f', 'multi.yaml', '--key', 'K', '-i', 'age.key'], { ...awsEnv, ...noKms, ...noVault })).stdout).toBe(CANARY);
    } finally {
      await kms.stop();
    }
  });

  it('the API server accepts a vault-transit manifest and its CRD rules refuse a bad keyId or encryptedKey', async () => {
    await installCrd();
    const manifest = parse(await readFile(path.join(dir, 'made.yaml'), 'utf8'));
    const dryRun = (doc: unknown) => kubectl(['apply', '--dry-run=server', '-f', '-'], stringify(doc));
    const ok = await dryRun({ ...manifest, metadata: { ...manifest.metadata, namespace: 'default' } });
    expect(ok.code, ok.stderr).toBe(0);
    const badKeyId = structuredClone(manifest);
    badKeyId.metadata.namespace = 'default';
    badKeyId.spec.envelopes[0].recipients[0].keyId = 'app';
    expect((await dryRun(badKeyId)).stderr).toMatch(/a vault-transit recipient needs keyId, the transit key path MOUNT\/keys\/NAME/);
    const badKey = structuredClone(manifest);
    badKey.metadata.namespace = 'default';
    badKey.spec.envelopes[0].recipients[0].encryptedKey = Buffer.alloc(60, 1).toString('base64');
    expect((await dryRun(badKey)).stderr).toMatch(/a vault-transit encryptedKey is a transit ciphertext/);
  });

  it('envseal encrypt/decrypt round-trips a file with a vault-transit recipient, bound to its context', async () => {
    await writeFile(path.join(dir, 'plain.txt'), `${CANARY}\n`.repeat(1000));
    const enc = await envseal([
      'encrypt',
      'plain.txt',
      '-o',
      'plain.enc',
      '--recipient',
      `vault-transit:${key}`,
      '--recipient',
      `age:${ageRecipient}`,
      '-c',
      'purpose=e2e',
    ]);
    expect(enc.code, enc.stderr).toBe(0);
    const bytes = await readFile(path.join(dir, 'plain.enc'));
    expect(bytes.includes(Buffer.from('envseal-vault-transit'))).toBe(true);
    expect(bytes.includes(Buffer.from(CANARY))).toBe(false);
    const dec = await envseal(['decrypt', 'plain.enc', '-o', 'plain.out', '-c', 'purpose=e2e']);
    expect(dec.code, dec.stderr).toBe(0);
    expect(await readFile(path.join(dir, 'plain.out'), 'utf8')).toBe(`${CANARY}\n`.repeat(1000));
    // Vault unreachable: the age identity opens it alone.
    const viaAge = await envseal(['decrypt', 'plain.enc', '-o', 'plain.age.out', '-i', 'age.key'], { VAULT_ADDR: 'http://127.0.0.1:9' });
    expect(viaAge.code, viaAge.stderr).toBe(0);
    expect(await readFile(path.join(dir, 'plain.age.out'), 'utf8')).toBe(`${CANARY}\n`.repeat(1000));
  });
});
