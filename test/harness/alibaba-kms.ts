/**
 * Starts the Alibaba Cloud KMS emulator (test/harness/alibaba-kms-emulator.ts) as its own
 * process on 127.0.0.1 and a free port, with a random AccessKey pair, for the alibaba-kms
 * provider's tests, the CLI's and the controller's (they reach it over HTTP).
 *
 * The emulator is told port 0 and reports the port it got. It exits when its standard
 * input closes and the harness holds the write end, so it never outlives the test
 * process, even one killed with SIGKILL; stop() also sends SIGTERM (then SIGKILL). With
 * STS, the TLS key and certificate (openssl, for 127.0.0.1) are removed as soon as the
 * emulator has read them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rpcSignature, type StsOptions } from './alibaba-kms-emulator.ts';
import { forEachOutputLine, killOnExit } from './processes.ts';

const EMULATOR = fileURLToPath(new URL('./alibaba-kms-emulator.ts', import.meta.url));

export interface AlibabaKms {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  region: string;
  accessKeyId: string;
  accessKeySecret: string;
  pid: number;
  /** One signed API call with the harness's AccessKey; throws with the code unless 2xx. */
  api<T = Record<string, unknown>>(action: string, params?: Record<string, string>): Promise<T>;
  /** CreateKey (and CreateAlias when `alias` is given); returns the key id. */
  createKey(options?: { alias?: string; description?: string }): Promise<string>;
  /** The next `throttle` calls answer Throttling.User, the next `unavailable` 503. */
  faults(options: { throttle?: number; unavailable?: number }): Promise<void>;
  /** Answered calls by `Action outcome`. */
  calls(): Promise<Record<string, number>>;
  /** With `sts`: STS over HTTPS, `127.0.0.1:PORT` (ALIBABA_CLOUD_STS_ENDPOINT), its CA (PEM) and provider ARN. */
  sts?: { endpoint: string; caCert: string; oidcProviderArn: string };
  stop(): Promise<void>;
}

export interface StartAlibabaKmsOptions {
  region?: string;
  readyTimeoutMs?: number;
  /** Also serve STS AssumeRoleWithOIDC (RRSA) for tokens of this issuer. */
  sts?: { issuer: string; jwks: StsOptions['jwks']; roles: StsOptions['roles']; audience?: string };
}

/** A self-signed certificate for 127.0.0.1 (openssl, as the control-plane harness uses). */
function selfSignedCertificate(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'sts.crt');
  const key = join(dir, 'sts.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return { cert, key };
}

export async function startAlibabaKms(options: StartAlibabaKmsOptions = {}): Promise<AlibabaKms> {
  const region = options.region ?? 'cn-hangzhou';
  const accessKeyId = `LTAI${randomBytes(10).toString('hex')}`;
  const accessKeySecret = randomBytes(15).toString('base64url');
  const oidcProviderArn = 'acs:ram::1234567890123456:oidc-provider/ack-rrsa-envseal-test';
  let tlsDir: string | undefined;
  const stsEnv: Record<string, string> = {};
  if (options.sts) {
    tlsDir = await mkdtemp(join(tmpdir(), 'envseal-alibaba-sts-'));
    const tls = selfSignedCertificate(tlsDir);
    const sts: StsOptions = {
      oidcProviderArn,
      issuer: options.sts.issuer,
      jwks: options.sts.jwks,
      roles: options.sts.roles,
      audience: options.sts.audience ?? 'sts.aliyuncs.com',
    };
    Object.assign(stsEnv, { ALIBABA_KMS_EMULATOR_STS: JSON.stringify(sts), ALIBABA_KMS_EMULATOR_STS_CERT: tls.cert, ALIBABA_KMS_EMULATOR_STS_KEY: tls.key });
  }
  const child = spawn(process.execPath, [EMULATOR], {
    env: {
      PATH: process.env.PATH ?? '',
      ALIBABA_KMS_EMULATOR_ACCESS_KEYS: JSON.stringify({ [accessKeyId]: accessKeySecret }),
      ALIBABA_KMS_EMULATOR_REGION: region,
      ...stsEnv,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  killOnExit(child);
  const output: string[] = [];
  let stsPort: number | undefined;
  const started = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`alibaba-kms emulator did not start in time:\n${output.join('\n')}`)), options.readyTimeoutMs ?? 30_000);
    forEachOutputLine(child, (line) => {
      output.push(line);
      const sts = /alibaba-sts-emulator listening on 127\.0\.0\.1:(\d+)/.exec(line);
      if (sts) stsPort = Number(sts[1]);
      const m = /alibaba-kms-emulator listening on 127\.0\.0\.1:(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`alibaba-kms emulator exited (${code}):\n${output.join('\n')}`));
    });
  });
  let port: number;
  try {
    port = await started;
  } catch (error) {
    child.kill('SIGKILL');
    if (tlsDir !== undefined) await rm(tlsDir, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const sts =
    tlsDir !== undefined && stsPort !== undefined
      ? { endpoint: `127.0.0.1:${stsPort}`, caCert: await readFile(join(tlsDir, 'sts.crt'), 'utf8'), oidcProviderArn }
      : undefined;
  // The emulator read its certificate and key at start: nothing stays on disk, even after a SIGKILL.
  if (tlsDir !== undefined) await rm(tlsDir, { recursive: true, force: true });

  async function api<T>(action: string, params: Record<string, string> = {}): Promise<T> {
    const all: Record<string, string> = {
      Action: action,
      Version: '2016-01-20',
      Format: 'JSON',
      AccessKeyId: accessKeyId,
      SignatureMethod: 'HMAC-SHA1',
      SignatureVersion: '1.0',
      SignatureNonce: randomUUID(),
      Timestamp: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...params,
    };
    all.Signature = rpcSignature(all, 'POST', accessKeySecret);
    const response = await fetch(`${endpoint}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(all).toString(),
    });
    const body = (await response.json()) as Record<string, unknown>;
    if (!response.ok) throw new Error(`alibaba-kms emulator ${action}: HTTP ${response.status} ${String(body.Code)}: ${String(body.Message)}`);
    return body as T;
  }

  return {
    endpoint,
    port,
    region,
    accessKeyId,
    accessKeySecret,
    pid: child.pid ?? 0,
    ...(sts === undefined ? {} : { sts }),
    api,
    async createKey(opts = {}) {
      const out = await api<{ KeyMetadata: { KeyId: string } }>('CreateKey', opts.description ? { Description: opts.description } : {});
      if (opts.alias) await api('CreateAlias', { KeyId: out.KeyMetadata.KeyId, AliasName: opts.alias });
      return out.KeyMetadata.KeyId;
    },
    async faults(opts) {
      const response = await fetch(`${endpoint}/__emulator/faults`, { method: 'POST', body: JSON.stringify(opts) });
      if (!response.ok) throw new Error(`alibaba-kms emulator faults: HTTP ${response.status}`);
    },
    async calls() {
      return (await (await fetch(`${endpoint}/__emulator/calls`)).json()) as Record<string, number>;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin?.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.kill('SIGTERM');
      await exited;
      clearTimeout(timer);
    },
  };
}
