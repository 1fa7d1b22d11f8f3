// Several clouds in one envelope: a manifest and a file sealed with the built CLI for
// aws-kms (local-kms), alibaba-kms (our emulator of Alibaba Cloud KMS: no other exists),
// vault-transit (a real OpenBao) and age at once open with any one of them alone -- the CLI with only that provider configured and the others unreachable,
// and the controller (`envseal controller`, configured with every provider at once) with
// only that provider reachable -- and say which providers failed when none can.
import { CreateAliasCommand, CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { freePort, sumMetric, withControllerProcess } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { type AlibabaKms, startAlibabaKms } from '../harness/alibaba-kms.ts';
import { startLocalKms, type KmsEmulator } from '../harness/kms-emulators.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectl, paths } from '../harness/kube.ts';
import { startOpenBao, type OpenBao } from '../harness/openbao.ts';
import { type CliResult, ENVSEAL, ensureBuilt, runCli } from './cli-support.ts';

const client = adminClient();
const CANARY = `${CANARY_MARKER}multi-provider-7c1e`;
/** Nothing listens on port 9 (discard) of the loopback: a provider that cannot be reached. */
const UNREACHABLE = 'http://127.0.0.1:9';

/**
 * Node's deprecation warning for url.parse(), which the Alibaba SDK's HTTP client calls
 * (printed by the bundled CLI once it loads that SDK; see test/e2e/cli-alibaba-kms.test.ts).
 */
const withoutUrlParseWarning = (result: CliResult): CliResult => ({
  ...result,
  stderr: result.stderr.replace(/^\(node:\d+\) \[DEP0169\] DeprecationWarning: `url\.parse\(\)`[^\n]*\n(?:\(Use `node --trace-deprecation[^\n]*\n)?/m, ''),
});

type Live = EnvelopeSecret & { metadata: { generation: number; uid: string } };
interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}
interface EventObject {
  involvedObject: { name: string; uid?: string };
  reason: string;
  type: string;
  message: string;
}

describe('aws-kms, alibaba-kms, vault-transit and age in one envelope', () => {
  let kms: KmsEmulator | undefined;
  let alibaba: AlibabaKms;
  let alibabaArn: string;
  let kmsDataDir: string;
  let bao: OpenBao;
  let dir: string;
  let keyArn: string;
  const transitKey = `multi-${randomUUID().slice(0, 8)}`;
  let adminAge: string;
  let clusterAge: string;
  /** Tokens: sealers encrypt, the controller and readers decrypt. */
  let sealerToken: string;
  let readerToken: string;
  const ns = uniqueName('multi');
  const controllerNamespace = uniqueName('envseal-multi');

  const emulator = (): KmsEmulator => {
    if (kms === undefined) throw new Error('local-kms is not running');
    return kms;
  };
  const awsEnv = () => ({
    AWS_ACCESS_KEY_ID: emulator().credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: emulator().credentials.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_REGION: emulator().region,
    AWS_ENDPOINT_URL_KMS: emulator().endpoint,
  });
  // The others unreachable: the KMS endpoint and Vault address point at a closed port.
  const kmsDown = () => ({ ...awsEnv(), AWS_ENDPOINT_URL_KMS: UNREACHABLE, AWS_MAX_ATTEMPTS: '1' });
  const vaultDown = { VAULT_ADDR: UNREACHABLE, VAULT_TOKEN: 'unused' };
  const alibabaEnv = () => ({
    ALIBABA_CLOUD_ACCESS_KEY_ID: alibaba.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: alibaba.accessKeySecret,
    ALIBABA_CLOUD_KMS_ENDPOINT: alibaba.endpoint,
    ALIBABA_CLOUD_REGION_ID: alibaba.region,
  });
  const alibabaDown = () => ({ ...alibabaEnv(), ALIBABA_CLOUD_KMS_ENDPOINT: UNREACHABLE });
  /** Every provider up, with the sealers' credentials. */
  const sealerEnv = () => ({ ...awsEnv(), ...alibabaEnv(), VAULT_ADDR: bao.address, VAULT_TOKEN: sealerToken });

  function envseal(args: string[], env: Record<string, string>): Promise<CliResult> {
    return runCli(args, { cwd: dir, env: { TMPDIR: path.join(dir, 'tmp'), ...env } });
  }

  /** Starts local-kms on its data directory (the same keys), on the port it had before. */
  async function startKms(): Promise<void> {
    kms = await startLocalKms({ dataDir: kmsDataDir, ...(kms ? { port: kms.port } : {}) });
  }
  async function stopKms(): Promise<void> {
    await emulator().stop();
  }

  beforeAll(async () => {
    ensureBuilt();
    await installCrd();
    for (const name of [ns, controllerNamespace]) await createNamespace(client, name);
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-multi-'));
    await mkdir(path.join(dir, 'tmp'));
    kmsDataDir = path.join(dir, 'local-kms');
    await mkdir(kmsDataDir);
    await startKms();
    bao = await startOpenBao();
    alibaba = await startAlibabaKms();
    const alibabaKey = await alibaba.createKey({ alias: `alias/${transitKey}` });
    alibabaArn = (await alibaba.api<{ KeyMetadata: { Arn: string } }>('DescribeKey', { KeyId: alibabaKey })).KeyMetadata.Arn;

    // An AWS KMS key and alias, made with AWS's own SDK as an administrator would.
    const kmsClient = new KMSClient({ endpoint: emulator().endpoint, region: emulator().region, credentials: emulator().credentials });
    try {
      keyArn = (await kmsClient.send(new CreateKeyCommand({ Description: 'envseal multi-provider test' }))).KeyMetadata!.Arn!;
      await kmsClient.send(new CreateAliasCommand({ AliasName: `alias/${transitKey}`, TargetKeyId: keyArn }));
    } finally {
      kmsClient.destroy();
    }
    // A derived transit key; sealers may read its settings and encrypt, readers decrypt.
    await bao.createTransitKey(transitKey);
    sealerToken = await bao.tokenWithPolicy(
      `sealer-${transitKey}`,
      [
        `path "transit/keys/${transitKey}" { capabilities = ["read"] }`,
        `path "transit/encrypt/${transitKey}" { capabilities = ["update"] }`,
        `path "transit/datakey/plaintext/${transitKey}" { capabilities = ["update"] }`,
      ].join('\n'),
    );
    readerToken = await bao.tokenWithPolicy(`reader-${transitKey}`, `path "transit/decrypt/${transitKey}" { capabilities = ["update"] }`);

    // An administrator's age key (break-glass) and the cluster's own age recipient, which
    // the controller creates and publishes on its first start.
    const created = await envseal(['keys', 'create', '-o', 'admin.agekey'], {});
    expect(created.code, created.stderr).toBe(0);
    adminAge = created.stdout.trim();
    await runControllerWith({ name: 'publish', vaultToken: readerToken, ageSecret: 'age-main', alibaba: true }, async () => {
      const configMap = await waitFor(
        'the published age recipient',
        () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(controllerNamespace, 'age-main')),
        { timeoutMs: 60_000 },
      );
      clusterAge = configMap.data.recipient;
    });
    expect(clusterAge).toMatch(/^age1/);
  });

  afterAll(async () => {
    await kms?.stop();
    await bao?.stop();
    await alibaba?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    await kubectl(['delete', 'clusterrolebinding', `${controllerNamespace}-vault-reviewer`, '--ignore-not-found']);
    await kubectl(['delete', 'namespace', ns, controllerNamespace, '--wait=false']);
  });

  const recipientFlags = () => [
    '-r',
    `aws-kms:alias/${transitKey}`,
    '-r',
    `alibaba-kms:alias/${transitKey}`,
    '-r',
    `vault-transit:${transitKey}`,
    '-r',
    `age:${clusterAge}`,
    '-r',
    `age:${adminAge}`,
  ];

  describe('the CLI', () => {
    beforeAll(async () => {
      const sealed = await envseal(
        ['seal', '--name', 'app', '-n', ns, '--from-literal', `PASSWORD=${CANARY}`, ...recipientFlags(), '-w', 'app.yaml'],
        sealerEnv(),
      );
      expect(sealed.code, sealed.stderr).toBe(0);
    });

    it('seals one envelope with a recipient per provider', async () => {
      const manifest = parse(await readFile(path.join(dir, 'app.yaml'), 'utf8')) as EnvelopeSecret;
      expect(manifest.spec.envelopes).toHaveLength(1);
      const recipients = manifest.spec.envelopes[0]!.recipients as { provider: string; keyId?: string; recipient?: string }[];
      expect(recipients.map((r) => [r.provider, r.keyId ?? r.recipient])).toEqual([
        ['aws-kms', keyArn],
        ['alibaba-kms', alibabaArn],
        ['vault-transit', `transit/keys/${transitKey}`],
        ['age', clusterAge],
        ['age', adminAge],
      ]);
      expect(await readFile(path.join(dir, 'app.yaml'), 'utf8')).not.toContain(CANARY);
    });

    it('unseals with aws-kms alone, alibaba-kms alone, vault-transit alone and age alone', async () => {
      const open = async (env: Record<string, string>, extra: string[] = []) =>
        withoutUrlParseWarning(await envseal(['unseal', '-f', 'app.yaml', '--key', 'PASSWORD', ...extra], env));
      // Only AWS KMS: Alibaba Cloud and Vault are not configured at all (no credentials, no address), no identity.
      expect(await open(awsEnv())).toEqual({ code: 0, stdout: CANARY, stderr: '' });
      // Only Alibaba Cloud KMS: the AWS KMS endpoint does not answer, Vault is not configured.
      expect(await open({ ...kmsDown(), ...alibabaEnv() })).toEqual({ code: 0, stdout: CANARY, stderr: '' });
      // Only Vault, with a decrypt-only token: neither KMS endpoint answers.
      expect(await open({ ...kmsDown(), ...alibabaDown(), VAULT_ADDR: bao.address, VAULT_TOKEN: readerToken })).toEqual({
        code: 0,
        stdout: CANARY,
        stderr: '',
      });
      // Only the administrator's age identity: neither KMS nor Vault answers.
      expect(await open({ ...kmsDown(), ...alibabaDown(), ...vaultDown }, ['-i', 'admin.agekey'])).toEqual({ code: 0, stdout: CANARY, stderr: '' });
    });

    it('with none of them reachable, fails naming each provider it tried, and prints nothing', async () => {
      const none = await envseal(['unseal', '-f', 'app.yaml', '--key', 'PASSWORD'], { ...kmsDown(), ...alibabaDown(), ...vaultDown });
      expect(none.code).toBe(4);
      expect(none.stdout).toBe('');
      expect(none.stderr).toContain('every recipient failed (aws-kms Unavailable, alibaba-kms Unavailable, vault-transit Unavailable)');
      expect(none.stderr).toContain(`aws-kms Decrypt with key ${keyArn}`);
      expect(none.stderr).toContain(alibabaArn);
      expect(none.stderr).toContain(`vault-transit decrypt with key transit/keys/${transitKey}`);
      expect(none.stderr).toMatch(/could not be reached/);
      expect(none.stderr).not.toContain(CANARY);
      expect(none.stderr).not.toContain(readerToken);
    });

    it('envseal encrypt/decrypt: one file for the same providers opens with each alone', async () => {
      const plain = `${CANARY}\n`.repeat(2000);
      await writeFile(path.join(dir, 'data.txt'), plain);
      const enc = await envseal(
        [
          'encrypt',
          'data.txt',
          '-o',
          'data.enc',
          '--recipient',
          `aws-kms:${keyArn}`,
          '--recipient',
          `alibaba-kms:${alibabaArn}`,
          '--recipient',
          `vault-transit:${transitKey}`,
          '--recipient',
          `age:${adminAge}`,
          '-c',
          'purpose=multi',
        ],
        sealerEnv(),
      );
      expect(enc.code, enc.stderr).toBe(0);
      const bytes = await readFile(path.join(dir, 'data.enc'));
      expect(bytes.includes(Buffer.from(CANARY))).toBe(false);
      // One encrypted data key per provider in the header (provider ids of the file format).
      for (const id of ['aws-kms', 'envseal-alibaba-kms', 'envseal-vault-transit', 'envseal-age']) expect(bytes.includes(Buffer.from(id)), id).toBe(true);

      const cases: [string, Record<string, string>, string[]][] = [
        ['aws-kms', awsEnv(), []],
        ['alibaba-kms', { ...kmsDown(), ...alibabaEnv() }, []],
        ['vault-transit', { ...kmsDown(), ...alibabaDown(), VAULT_ADDR: bao.address, VAULT_TOKEN: readerToken }, []],
        ['age', { ...kmsDown(), ...alibabaDown(), ...vaultDown }, ['-i', 'admin.agekey']],
      ];
      for (const [provider, env, extra] of cases) {
        const out = `data.${provider}.out`;
        const dec = await envseal(['decrypt', 'data.enc', '-o', out, '-c', 'purpose=multi', ...extra], env);
        expect(dec.code, `${provider}: ${dec.stderr}`).toBe(0);
        expect(await readFile(path.join(dir, out), 'utf8')).toBe(plain);
      }
      const none = await envseal(['decrypt', 'data.enc', '-o', 'data.none.out'], { ...kmsDown(), ...alibabaDown(), ...vaultDown });
      expect(none.code).toBe(4);
      expect(none.stderr).toContain('aws-kms');
      expect(none.stderr).toContain('alibaba-kms');
      expect(none.stderr).toContain('vault-transit');
      expect(none.stderr).not.toContain(CANARY);
      expect(existsSync(path.join(dir, 'data.none.out'))).toBe(false);
    });
  });

  // -------------------------------------------------------------------------------------
  // The controller, configured with every provider at once

  interface ControllerRun {
    name: string;
    /** VAULT_TOKEN of the controller (its Vault access). */
    vaultToken: string;
    /** The Secret holding the controller's age identity: age-main is the one the manifest is sealed for. */
    ageSecret: string;
    /** The controller's Alibaba Cloud AccessKey is the one the KMS knows (else its secret is wrong: access revoked). */
    alibaba: boolean;
  }

  /**
   * Runs the built `envseal controller` with aws-kms, vault-transit and age configured
   * (flags and environment, as the chart renders them) while `whileRunning` runs; returns
   * its metrics as last scraped.
   */
  async function runControllerWith(run: ControllerRun, whileRunning: (scrape: () => Promise<string>) => Promise<void>): Promise<string> {
    const port = await freePort();
    const metricsUrl = `http://127.0.0.1:${port}/metrics`;
    let last = '';
    const scrape = async () => (last = await fetch(metricsUrl).then((r) => r.text()));
    const args = [
      ENVSEAL,
      'controller',
      `--kubeconfig=${sharedCluster().kubeconfigPath}`,
      `--controller-namespace=${controllerNamespace}`,
      `--namespaces=${ns}`,
      `--metrics-address=127.0.0.1:${port}`,
      '--no-leader-elect',
      `--identity=${run.name}`,
      `--age-secret=${run.ageSecret}`,
      `--age-configmap=${run.ageSecret}`,
      `--region=${emulator().region}`,
      `--kms-endpoint=${emulator().endpoint}`,
      `--alibaba-kms-region=${alibaba.region}`,
      `--alibaba-kms-endpoint=${alibaba.endpoint}`,
      `--vault-addr=${bao.address}`,
    ];
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      AWS_ACCESS_KEY_ID: emulator().credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulator().credentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
      VAULT_TOKEN: run.vaultToken,
      ...alibabaCredentials(run.alibaba),
    };
    const { code, log } = await withControllerProcess({ args, cwd: dir, env }, async (log) => {
      await waitFor(`controller ${run.name}: caches synced`, () => log().includes('caches synced'), { timeoutMs: 60_000 });
      await whileRunning(scrape);
      await scrape();
    });
    expect(code, log.slice(-3000)).toBe(0);
    expect(log).not.toContain(CANARY);
    expect(log).not.toContain(run.vaultToken);
    return last;
  }

  /** The emulator's AccessKey, with its secret or (access revoked) another one. */
  const alibabaCredentials = (valid: boolean) => ({
    ALIBABA_CLOUD_ACCESS_KEY_ID: alibaba.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: valid ? alibaba.accessKeySecret : 'revoked-secret-of-another-accesskey',
  });

  async function readyOf(name: string): Promise<Condition | undefined> {
    const es = await getOrUndefined<Live>(client, paths.envelopeSecret(ns, name));
    const ready = es?.status?.conditions?.find((c) => c.type === 'Ready') as Condition | undefined;
    return es && es.status?.observedGeneration === es.metadata.generation ? ready : undefined;
  }

  async function secretValue(name: string): Promise<string | undefined> {
    const secret = await getOrUndefined<{ data?: Record<string, string> }>(client, paths.secret(ns, name));
    const value = secret?.data?.PASSWORD;
    return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
  }

  /** Applies what the CLI sealed as `name` (one manifest per object: the strict scope binds the name). */
  async function apply(name: string): Promise<void> {
    await applyOrThrow(parse(await readFile(path.join(dir, `${name}.yaml`), 'utf8')));
  }

  const unwraps = (metrics: string, provider: string, outcome?: string) =>
    sumMetric(metrics, 'envseal_kms_requests_total', { provider, operation: 'unwrap', ...(outcome ? { outcome } : {}) });

  describe('the controller with aws-kms, vault-transit and age configured at once', () => {
    // Sealed with the CLI while every provider is up, as in the section above.
    beforeAll(async () => {
      for (const name of ['via-aws', 'via-alibaba', 'via-vault', 'via-age', 'via-none', 'via-chart']) {
        const sealed = await envseal(
          ['seal', '--name', name, '-n', ns, '--from-literal', `PASSWORD=${CANARY}`, ...recipientFlags(), '-w', `${name}.yaml`],
          sealerEnv(),
        );
        expect(sealed.code, sealed.stderr).toBe(0);
      }
    });

    let revoked: string;

    it('materializes it with only aws-kms reachable (Alibaba and Vault access revoked, another age identity)', async () => {
      revoked = await bao.tokenWithPolicy(`revoked-${transitKey}`, `path "transit/decrypt/${transitKey}" { capabilities = ["update"] }`);
      await bao.api('POST', 'auth/token/revoke', { token: revoked });
      const metrics = await runControllerWith({ name: 'aws-only', vaultToken: revoked, ageSecret: 'age-other', alibaba: false }, async () => {
        await apply('via-aws');
        const ready = await waitFor('via-aws Ready', () => readyOf('via-aws'), { timeoutMs: 60_000 });
        expect(ready).toMatchObject({ status: 'True', reason: 'Synced' });
        expect(await secretValue('via-aws')).toBe(CANARY);
      });
      expect(unwraps(metrics, 'aws-kms', 'success')).toBe(1);
      expect(unwraps(metrics, 'alibaba-kms', 'success')).toBe(0);
      expect(unwraps(metrics, 'vault-transit', 'success')).toBe(0);
      expect(unwraps(metrics, 'age', 'success')).toBe(0);
    });

    it('materializes it with only alibaba-kms reachable (the AWS KMS stopped, Vault token revoked, another age identity)', async () => {
      await stopKms();
      try {
        const metrics = await runControllerWith({ name: 'alibaba-only', vaultToken: revoked, ageSecret: 'age-other', alibaba: true }, async () => {
          await apply('via-alibaba');
          const ready = await waitFor('via-alibaba Ready', () => readyOf('via-alibaba'), { timeoutMs: 90_000 });
          expect(ready).toMatchObject({ status: 'True', reason: 'Synced' });
          expect(await secretValue('via-alibaba')).toBe(CANARY);
        });
        expect(unwraps(metrics, 'aws-kms', 'Unavailable')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'alibaba-kms', 'success')).toBe(1);
        expect(unwraps(metrics, 'vault-transit', 'success')).toBe(0);
        expect(unwraps(metrics, 'age', 'success')).toBe(0);
      } finally {
        await startKms();
      }
    });

    it('materializes it with only vault-transit reachable (the AWS KMS stopped, Alibaba access revoked, another age identity)', async () => {
      await stopKms();
      try {
        const metrics = await runControllerWith({ name: 'vault-only', vaultToken: readerToken, ageSecret: 'age-other', alibaba: false }, async () => {
          await apply('via-vault');
          const ready = await waitFor('via-vault Ready', () => readyOf('via-vault'), { timeoutMs: 90_000 });
          expect(ready).toMatchObject({ status: 'True', reason: 'Synced' });
          expect(await secretValue('via-vault')).toBe(CANARY);
        });
        // The KMS was asked first (the manifest's order) and could not be reached.
        expect(unwraps(metrics, 'aws-kms', 'Unavailable')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'aws-kms', 'success')).toBe(0);
        expect(unwraps(metrics, 'alibaba-kms', 'AccessDenied')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'vault-transit', 'success')).toBe(1);
        expect(unwraps(metrics, 'age', 'success')).toBe(0);
      } finally {
        await startKms();
      }
    });

    it('materializes it with only age reachable (the AWS KMS stopped, Alibaba access revoked, Vault sealed)', async () => {
      await stopKms();
      await bao.api('PUT', 'sys/seal');
      try {
        const metrics = await runControllerWith({ name: 'age-only', vaultToken: readerToken, ageSecret: 'age-main', alibaba: false }, async () => {
          await apply('via-age');
          const ready = await waitFor('via-age Ready', () => readyOf('via-age'), { timeoutMs: 90_000 });
          expect(ready).toMatchObject({ status: 'True', reason: 'Synced' });
          expect(await secretValue('via-age')).toBe(CANARY);
        });
        expect(unwraps(metrics, 'aws-kms', 'Unavailable')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'alibaba-kms', 'AccessDenied')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'vault-transit', 'Unavailable')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'age', 'success')).toBe(1);
      } finally {
        await bao.api('PUT', 'sys/unseal', { key: bao.unsealKey });
        await startKms();
      }
    });

    it('with none reachable: Ready=False KMSUnavailable and a Warning Event naming each provider, no Secret; the KMS back, it syncs', async () => {
      await apply('via-none');
      await stopKms();
      await bao.api('PUT', 'sys/seal');
      let kmsBack = false;
      try {
        const metrics = await runControllerWith({ name: 'none', vaultToken: readerToken, ageSecret: 'age-other', alibaba: false }, async (scrape) => {
          const ready = await waitFor(
            'via-none KMSUnavailable',
            async () => {
              const condition = await readyOf('via-none');
              return condition?.reason === 'KMSUnavailable' ? condition : undefined;
            },
            { timeoutMs: 90_000 },
          );
          expect(ready.status).toBe('False');
          // A summary first (kept whole within the 1 KiB of a status or Event), then each one's answer.
          expect(ready.message).toMatch(
            /^envelope #0: every recipient failed \(aws-kms Unavailable, alibaba-kms AccessDenied, vault-transit Unavailable, age NoIdentity\): /,
          );
          expect(ready.message).toContain(`aws-kms Decrypt with key ${keyArn}`);
          expect(ready.message).toContain(alibabaArn);
          expect(ready.message).toContain(`vault-transit decrypt with key transit/keys/${transitKey}`);
          expect(ready.message).toMatch(/Vault is sealed/);
          expect(ready.message).not.toContain(CANARY);
          expect(await secretValue('via-none')).toBeUndefined();

          // What `kubectl describe` shows: the Event names the providers too.
          const uid = (await getOrUndefined<Live>(client, paths.envelopeSecret(ns, 'via-none')))!.metadata.uid;
          const event = await waitFor('the KMSUnavailable Event', async () => {
            const events = await client.request<{ items: EventObject[] }>({ method: 'GET', path: paths.events(ns) });
            return events.items.find((e) => e.involvedObject.uid === uid && e.reason === 'KMSUnavailable');
          });
          expect(event.type).toBe('Warning');
          expect(event.message).toContain('every recipient failed (aws-kms Unavailable, alibaba-kms AccessDenied, vault-transit Unavailable, age NoIdentity)');
          expect(event.message).toContain(`aws-kms Decrypt with key ${keyArn}`);
          const down = await scrape();
          expect(unwraps(down, 'aws-kms', 'Unavailable')).toBeGreaterThanOrEqual(1);
          expect(unwraps(down, 'alibaba-kms', 'AccessDenied')).toBeGreaterThanOrEqual(1);
          expect(unwraps(down, 'vault-transit', 'Unavailable')).toBeGreaterThanOrEqual(1);
          // The controller's age identity is another one: tried, and it does not open it.
          expect(unwraps(down, 'age', 'success')).toBe(0);

          // The KMS comes back: the object syncs without being touched.
          await startKms();
          kmsBack = true;
          await waitFor('via-none Synced after the KMS came back', async () => (await readyOf('via-none'))?.reason === 'Synced', { timeoutMs: 120_000 });
          expect(await secretValue('via-none')).toBe(CANARY);
        });
        expect(unwraps(metrics, 'aws-kms', 'success')).toBe(1);
      } finally {
        await bao.api('PUT', 'sys/unseal', { key: bao.unsealKey });
        if (!kmsBack) await startKms();
      }
    });

    it("runs with the chart's args for all four (Vault's Kubernetes auth with an audience-bound token): the AWS KMS stopped and Alibaba access revoked, Vault opens it", async () => {
      // OpenBao's Kubernetes auth against the test API server; the role accepts only
      // tokens for Vault's audience, as docs/helm.md sets it up with tokenAudience.
      const kubectlOk = async (args: string[]) => {
        const result = await kubectl(args);
        if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`);
        return result.stdout;
      };
      const serviceAccount = 'envseal-chart';
      const audience = 'vault-envseal';
      await kubectlOk(['create', 'serviceaccount', 'vault-reviewer', '-n', controllerNamespace]);
      await kubectlOk(['create', 'serviceaccount', serviceAccount, '-n', controllerNamespace]);
      await kubectlOk([
        'create',
        'clusterrolebinding',
        `${controllerNamespace}-vault-reviewer`,
        '--clusterrole=system:auth-delegator',
        `--serviceaccount=${controllerNamespace}:vault-reviewer`,
      ]);
      const cluster = sharedCluster();
      await bao.api('POST', 'sys/auth/kubernetes', { type: 'kubernetes' });
      await bao.api('POST', 'auth/kubernetes/config', {
        kubernetes_host: cluster.server,
        kubernetes_ca_cert: await readFile(cluster.caCertPath, 'utf8'),
        token_reviewer_jwt: (await kubectlOk(['create', 'token', 'vault-reviewer', '-n', controllerNamespace, '--duration=1h'])).trim(),
        disable_local_ca_jwt: true,
      });
      await bao.api('PUT', 'sys/policies/acl/envseal-chart', { policy: `path "transit/decrypt/${transitKey}" { capabilities = ["update"] }` });
      await bao.api('POST', 'auth/kubernetes/role/envseal-chart', {
        bound_service_account_names: [serviceAccount],
        bound_service_account_namespaces: [controllerNamespace],
        audience,
        token_policies: ['envseal-chart'],
        token_ttl: '10m',
      });
      // What the kubelet projects into the pod for tokenAudience.
      const tokenFile = path.join(dir, 'vault-token');
      await writeFile(tokenFile, await kubectlOk(['create', 'token', serviceAccount, '-n', controllerNamespace, `--audience=${audience}`, '--duration=1h']), {
        mode: 0o600,
      });
      // The pod's own token (the API server's audience) is refused by this role.
      const podToken = (await kubectlOk(['create', 'token', serviceAccount, '-n', controllerNamespace, '--duration=1h'])).trim();
      await expect(bao.api('POST', 'auth/kubernetes/login', { role: 'envseal-chart', jwt: podToken }, '')).rejects.toThrow(/HTTP 403.*aud/);

      const rendered = await new Promise<string>((resolve, reject) => {
        const sets = [
          `watchNamespaces={${ns}}`,
          `providers.age.secretName=age-main`,
          `providers.age.configMapName=age-main`,
          `providers.awsKms.region=${emulator().region}`,
          `providers.awsKms.endpoint=${emulator().endpoint}`,
          `providers.alibabaKms.region=${alibaba.region}`,
          `providers.alibabaKms.endpoint=${alibaba.endpoint}`,
          `providers.vaultTransit.address=${bao.address}`,
          `providers.vaultTransit.authRole=envseal-chart`,
          `providers.vaultTransit.tokenAudience=${audience}`,
        ];
        execFile(
          cluster.helmPath,
          ['template', 'envseal', path.join(repoRoot, 'charts/envseal'), '--namespace', controllerNamespace, ...sets.flatMap((set) => ['--set', set])],
          {
            env: {
              ...process.env,
              HELM_CACHE_HOME: path.join(cluster.dir, 'helm-cache'),
              HELM_CONFIG_HOME: path.join(cluster.dir, 'helm-config'),
              HELM_DATA_HOME: path.join(cluster.dir, 'helm-data'),
            },
          },
          (error, stdout, stderr) => (error ? reject(new Error(`helm template: ${stderr}`)) : resolve(stdout)),
        );
      });
      const deployment = parseAllDocuments(rendered)
        .map((d) => d.toJS())
        .find((m: { kind?: string } | null) => m?.kind === 'Deployment') as {
        spec: { template: { spec: { containers: { args: string[]; env: { name: string; value?: string }[] }[] } } };
      };
      const container = deployment.spec.template.spec.containers[0]!;
      // The pod's projected token and metrics port become a local file and a free loopback port.
      const port = await freePort();
      const args = container.args.map((a) =>
        a.startsWith('--metrics-address=')
          ? `--metrics-address=127.0.0.1:${port}`
          : a.startsWith('--vault-auth-token-file=')
            ? `--vault-auth-token-file=${tokenFile}`
            : a,
      );
      expect(args.filter((a, i) => a !== container.args[i])).toHaveLength(2);
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: dir,
        POD_NAMESPACE: controllerNamespace,
        POD_NAME: 'envseal-chart-0',
        AWS_ACCESS_KEY_ID: emulator().credentials.accessKeyId,
        AWS_SECRET_ACCESS_KEY: emulator().credentials.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        ...alibabaCredentials(false),
      };
      expect(args).toEqual(
        expect.arrayContaining([
          `--alibaba-kms-region=${alibaba.region}`,
          `--alibaba-kms-endpoint=${alibaba.endpoint}`,
          `--vault-addr=${bao.address}`,
          '--vault-auth-role=envseal-chart',
          `--kms-endpoint=${emulator().endpoint}`,
          '--age-secret=age-main',
        ]),
      );
      for (const variable of container.env) if (variable.value !== undefined) env[variable.name] = variable.value;

      await stopKms();
      try {
        const metricsUrl = `http://127.0.0.1:${port}/metrics`;
        let metrics = '';
        const { code, log } = await withControllerProcess(
          { args: [ENVSEAL, ...args, `--kubeconfig=${cluster.kubeconfigPath}`], cwd: dir, env },
          async (log) => {
            await waitFor('caches synced', () => log().includes('caches synced'), { timeoutMs: 60_000 });
            await apply('via-chart');
            await waitFor('via-chart Synced', async () => (await readyOf('via-chart'))?.reason === 'Synced', { timeoutMs: 90_000 });
            expect(await secretValue('via-chart')).toBe(CANARY);
            metrics = await fetch(metricsUrl).then((r) => r.text());
          },
        );
        expect(code, log.slice(-3000)).toBe(0);
        expect(log).not.toContain(CANARY);
        expect(unwraps(metrics, 'aws-kms', 'Unavailable')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'alibaba-kms', 'AccessDenied')).toBeGreaterThanOrEqual(1);
        expect(unwraps(metrics, 'vault-transit', 'success')).toBe(1);
        // OpenBao issued the controller's token to the ServiceAccount, through the audience-bound token.
        const accessors = await bao.api<{ data: { keys: string[] } }>('LIST', 'auth/token/accessors');
        const tokens = await Promise.all(
          accessors.data.keys.map((accessor) =>
            bao.api<{ data: { meta: Record<string, string> | null; policies: string[] } }>('POST', 'auth/token/lookup-accessor', { accessor }),
          ),
        );
        const issued = tokens.filter((t) => t.data.meta?.service_account_name === serviceAccount);
        expect(issued).toHaveLength(1);
        expect(issued[0]!.data.policies).toEqual(['default', 'envseal-chart']);
      } finally {
        await startKms();
      }
    });
  });
});
