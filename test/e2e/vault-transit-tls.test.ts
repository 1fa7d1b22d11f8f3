// vault-transit over TLS with a private CA: a real OpenBao serving HTTPS with a
// certificate signed by a CA this test generates (openssl). The CLI and the controller
// trust it through --vault-ca-cert, VAULT_CACERT or BAO_CACERT; without it, or with
// another CA, the connection is refused with an error that names the TLS problem, and
// nothing is written.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { sharedCluster, uniqueName, waitFor } from '../harness/cluster.ts';
import { freePort, withControllerProcess } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, applyOrThrow, createNamespace, getOrUndefined, installCrd, kubectl, paths } from '../harness/kube.ts';
import { startOpenBao, type OpenBao } from '../harness/openbao.ts';
import { type CliResult, ENVSEAL, ensureBuilt, runCli } from './cli-support.ts';

const run = promisify(execFile);
const client = adminClient();
const CANARY = `${CANARY_MARKER}vault-tls-41d2`;
const KEY = 'tls-app';

/** A CA (key and self-signed certificate) in `dir`, and optionally a server certificate for 127.0.0.1 signed by it. */
async function makeCa(dir: string, name: string): Promise<string> {
  const ca = path.join(dir, `${name}.crt`);
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    path.join(dir, `${name}.key`),
    '-out',
    ca,
    '-days',
    '2',
    '-subj',
    `/CN=envseal test ${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return ca;
}

async function makeServerCert(dir: string, caName: string): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = path.join(dir, 'server.key');
  const certFile = path.join(dir, 'server.crt');
  const csr = path.join(dir, 'server.csr');
  const ext = path.join(dir, 'server.ext');
  await run('openssl', [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    csr,
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    path.join(dir, `${caName}.crt`),
    '-CAkey',
    path.join(dir, `${caName}.key`),
    '-CAcreateserial',
    '-out',
    certFile,
    '-days',
    '2',
    '-extfile',
    ext,
  ]);
  return { certFile, keyFile };
}

describe('vault-transit with a private CA (OpenBao serving TLS)', () => {
  let bao: OpenBao;
  let tlsAddress: string;
  let dir: string;
  let caFile: string;
  let otherCaFile: string;

  function envseal(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return runCli(args, { cwd: dir, env: { TMPDIR: path.join(dir, 'tmp'), VAULT_TOKEN: bao.rootToken, ...env } });
  }

  beforeAll(async () => {
    ensureBuilt();
    dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-vault-tls-'));
    await mkdir(path.join(dir, 'tmp'));
    caFile = await makeCa(dir, 'ca');
    otherCaFile = await makeCa(dir, 'other-ca');
    bao = await startOpenBao({ tls: await makeServerCert(dir, 'ca') });
    tlsAddress = bao.tlsAddress!;
    expect(tlsAddress).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    await bao.createTransitKey(KEY);
  });

  afterAll(async () => {
    await bao?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('the CLI', () => {
    it('seals and unseals over TLS with --vault-ca-cert, VAULT_CACERT or BAO_CACERT', async () => {
      const sealed = await envseal([
        'seal',
        '--name',
        'db',
        '-n',
        'prod',
        '--from-literal',
        `PASSWORD=${CANARY}`,
        '-r',
        `vault-transit:${KEY}`,
        '-w',
        'db.yaml',
        '--vault-addr',
        tlsAddress,
        '--vault-ca-cert',
        caFile,
      ]);
      expect(sealed.code, sealed.stderr).toBe(0);
      expect(await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'], { VAULT_ADDR: tlsAddress, VAULT_CACERT: caFile })).toEqual({
        code: 0,
        stdout: CANARY,
        stderr: '',
      });
      const bao_ = await runCli(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'], {
        cwd: dir,
        env: { BAO_ADDR: tlsAddress, BAO_CACERT: caFile, BAO_TOKEN: bao.rootToken },
      });
      expect(bao_).toEqual({ code: 0, stdout: CANARY, stderr: '' });
      // A relative path, as a user types it.
      expect((await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD', '--vault-ca-cert', 'ca.crt'], { VAULT_ADDR: tlsAddress })).stdout).toBe(CANARY);
    });

    it('encrypts and decrypts a file over TLS', async () => {
      await writeFile(path.join(dir, 'plain.txt'), `${CANARY}\n`.repeat(100));
      const env = { VAULT_ADDR: tlsAddress, VAULT_CACERT: caFile };
      const enc = await envseal(['encrypt', 'plain.txt', '-o', 'plain.enc', '--recipient', `vault-transit:${KEY}`], env);
      expect(enc.code, enc.stderr).toBe(0);
      const dec = await envseal(['decrypt', 'plain.enc', '-o', 'plain.out'], env);
      expect(dec.code, dec.stderr).toBe(0);
      expect(await readFile(path.join(dir, 'plain.out'), 'utf8')).toBe(`${CANARY}\n`.repeat(100));
    });

    it.each([
      ['without a CA (Node.js trusts only public CAs)', {}],
      ['with another CA', { VAULT_CACERT: 'other-ca.crt' }],
    ])('refuses Vault %s, naming the TLS problem; nothing written', async (_what, env) => {
      const sealed = await envseal(['seal', '--name', 'x', '-n', 'prod', '--from-literal', `K=${CANARY}`, '-r', `vault-transit:${KEY}`, '-w', 'never.yaml'], {
        VAULT_ADDR: tlsAddress,
        ...env,
      });
      expect(sealed.code).toBe(4);
      expect(sealed.stderr).toMatch(/TLS/);
      expect(sealed.stderr).toMatch(/not signed by a trusted CA/);
      expect(sealed.stderr).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
      expect(sealed.stderr).toMatch(/--vault-ca-cert/);
      expect(sealed.stderr).not.toContain(CANARY);
      expect(sealed.stderr).not.toContain(bao.rootToken);
      expect(existsSync(path.join(dir, 'never.yaml'))).toBe(false);

      const opened = await envseal(['unseal', '-f', 'db.yaml', '--key', 'PASSWORD'], { VAULT_ADDR: tlsAddress, ...env });
      expect(opened.code).toBe(4);
      expect(opened.stdout).toBe('');
      expect(opened.stderr).toMatch(/not signed by a trusted CA/);
    });

    it('refuses a CA file that is missing or holds no certificate, and a CA with a plain-HTTP address', async () => {
      const missing = await envseal(['unseal', '-f', 'db.yaml', '--vault-ca-cert', 'nope.pem'], { VAULT_ADDR: tlsAddress });
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toContain('nope.pem');
      expect(missing.stdout).toBe('');

      await writeFile(path.join(dir, 'junk.pem'), 'not a certificate\n');
      const junk = await envseal(['unseal', '-f', 'db.yaml', '--vault-ca-cert', 'junk.pem'], { VAULT_ADDR: tlsAddress });
      expect(junk.code).not.toBe(0);
      expect(junk.stderr).toMatch(/junk\.pem.*(PEM|certificate)/);
      expect(junk.stdout).toBe('');

      const plain = await envseal(['unseal', '-f', 'db.yaml', '--vault-ca-cert', 'ca.crt'], { VAULT_ADDR: bao.address });
      expect(plain.code).toBe(2);
      expect(plain.stderr).toMatch(/https/);
    });
  });

  describe('the controller', () => {
    const ns = uniqueName('vault-tls');
    const controllerNamespace = uniqueName('envseal-vault-tls');

    beforeAll(async () => {
      await installCrd();
      for (const name of [ns, controllerNamespace]) await createNamespace(client, name);
    });
    afterAll(async () => {
      await kubectl(['delete', 'namespace', ns, controllerNamespace, '--wait=false']);
    });

    async function withController(ca: string, whileRunning: () => Promise<void>): Promise<string> {
      const port = await freePort();
      const token = await bao.tokenWithPolicy(`controller-${KEY}`, `path "transit/decrypt/${KEY}" { capabilities = ["update"] }`);
      const args = [
        ENVSEAL,
        'controller',
        `--kubeconfig=${sharedCluster().kubeconfigPath}`,
        `--controller-namespace=${controllerNamespace}`,
        `--namespaces=${ns}`,
        `--metrics-address=127.0.0.1:${port}`,
        '--no-leader-elect',
        '--no-age',
        `--vault-addr=${tlsAddress}`,
        `--vault-ca-cert=${ca}`,
      ];
      const { code, log } = await withControllerProcess(
        { args, cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, VAULT_TOKEN: token } },
        async (log) => {
          await waitFor('caches synced', () => log().includes('caches synced'), { timeoutMs: 60_000 });
          await whileRunning();
        },
      );
      expect(code, log.slice(-3000)).toBe(0);
      expect(log).not.toContain(CANARY);
      expect(log).not.toContain(token);
      return log;
    }

    async function sealAndApply(name: string): Promise<void> {
      const sealed = await envseal(
        ['seal', '--name', name, '-n', ns, '--from-literal', `PASSWORD=${CANARY}`, '-r', `vault-transit:${KEY}`, '-w', `${name}.yaml`],
        { VAULT_ADDR: tlsAddress, VAULT_CACERT: caFile },
      );
      expect(sealed.code, sealed.stderr).toBe(0);
      await applyOrThrow(parse(await readFile(path.join(dir, `${name}.yaml`), 'utf8')));
    }

    async function ready(name: string) {
      const es = await getOrUndefined<EnvelopeSecret & { metadata: { generation: number } }>(client, paths.envelopeSecret(ns, name));
      return es?.status?.observedGeneration === es?.metadata.generation ? es?.status?.conditions?.find((c) => c.type === 'Ready') : undefined;
    }

    it('materializes a Secret through Vault over TLS with --vault-ca-cert', async () => {
      await withController(caFile, async () => {
        await sealAndApply('db');
        const condition = await waitFor('db Synced', async () => ((await ready('db'))?.reason === 'Synced' ? true : undefined), { timeoutMs: 60_000 });
        expect(condition).toBe(true);
        const secret = await getOrUndefined<{ data: Record<string, string> }>(client, paths.secret(ns, 'db'));
        expect(Buffer.from(secret!.data.PASSWORD!, 'base64').toString('utf8')).toBe(CANARY);
      });
    });

    it('with another CA: Ready=False naming the TLS problem, no Secret', async () => {
      await withController(otherCaFile, async () => {
        await sealAndApply('refused');
        const condition = await waitFor(
          'refused not Ready',
          async () => {
            const c = await ready('refused');
            return c?.status === 'False' ? c : undefined;
          },
          { timeoutMs: 60_000 },
        );
        expect(condition.reason).toBe('KMSUnavailable');
        expect(condition.message).toMatch(/TLS/);
        expect(condition.message).toMatch(/not signed by a trusted CA/);
        expect(await getOrUndefined(client, paths.secret(ns, 'refused'))).toBeUndefined();
      });
    });
  });
});
