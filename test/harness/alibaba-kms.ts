/**
 * Starts the Alibaba Cloud KMS emulator (test/harness/alibaba-kms-emulator.ts) as its own
 * process on 127.0.0.1 and a free port, with a random AccessKey pair, for the alibaba-kms
 * provider's tests, the CLI's and the controller's (they reach it over HTTP).
 *
 * The emulator is told port 0 and reports the port it got. It exits when its standard
 * input closes and the harness holds the write end, so it never outlives the test
 * process, even one killed with SIGKILL; stop() also sends SIGTERM (then SIGKILL).
 */
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { rpcSignature } from './alibaba-kms-emulator.ts';
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
  stop(): Promise<void>;
}

export async function startAlibabaKms(options: { region?: string; readyTimeoutMs?: number } = {}): Promise<AlibabaKms> {
  const region = options.region ?? 'cn-hangzhou';
  const accessKeyId = `LTAI${randomBytes(10).toString('hex')}`;
  const accessKeySecret = randomBytes(15).toString('base64url');
  const child = spawn(process.execPath, [EMULATOR], {
    env: { PATH: process.env.PATH ?? '', ALIBABA_KMS_EMULATOR_ACCESS_KEYS: JSON.stringify({ [accessKeyId]: accessKeySecret }), ALIBABA_KMS_EMULATOR_REGION: region },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  killOnExit(child);
  const output: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`alibaba-kms emulator did not start in time:\n${output.join('\n')}`)), options.readyTimeoutMs ?? 30_000);
    forEachOutputLine(child, (line) => {
      output.push(line);
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
  const endpoint = `http://127.0.0.1:${port}`;

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
    const response = await fetch(`${endpoint}/`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(all).toString() });
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
