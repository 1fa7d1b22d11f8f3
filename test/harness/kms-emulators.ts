/**
 * Starts the two KMS emulators that the aws-kms provider is tested against, each on a
 * free port of 127.0.0.1 and nothing else:
 *
 * - local-kms (Go), through the loopback-only wrapper of scripts/kms-emulators/main.go
 *   (env PORT=0, KMS_REGION, KMS_ACCOUNT_ID, KMS_DATA_PATH = a fresh temp dir);
 * - moto's server (Python), as `moto.server.main -H 127.0.0.1 -p 0` through
 *   scripts/kms-emulators/moto-server.py.
 *
 * Both are told port 0 and report the port the kernel chose, so there is no window in
 * which another process can take it. Both exit when their standard input closes, and
 * the harness holds its write end: an emulator never outlives the test process, even
 * one killed with SIGKILL. stop() sends SIGTERM (then SIGKILL) and removes the data.
 *
 * The binaries come from scripts/kms-emulators/build.sh (it builds on first use, then
 * answers in seconds), or from $ENVSEAL_KMS_EMULATORS_BIN when set.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit, toolBinDir } from './processes.ts';

export type KmsEmulatorName = 'local-kms' | 'moto';

export interface KmsEmulator {
  name: KmsEmulatorName;
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  region: string;
  /** The account id in the emulator's ARNs. */
  accountId: string;
  /** Fake static credentials; neither emulator checks them. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  pid: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Default eu-west-1. local-kms serves one region; moto serves any, keyed by the request's region. */
  region?: string;
  /** How long to wait for the emulator to listen (default 60 s; moto imports for a few seconds). */
  readyTimeoutMs?: number;
  /**
   * local-kms only: keep its keys in this directory, which stop() leaves in place, so that
   * an emulator started again on it (a KMS outage and recovery) has the same keys.
   * Default: a fresh temp dir, removed by stop().
   */
  dataDir?: string;
  /** local-kms only: listen on this port of 127.0.0.1 (default 0: a free one). */
  port?: number;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPTS = join(REPO_ROOT, 'scripts', 'kms-emulators');
const DEFAULT_REGION = 'eu-west-1';
const LOCAL_KMS_ACCOUNT = '111122223333';
const MOTO_ACCOUNT = '123456789012';
const CREDENTIALS = { accessKeyId: 'AKIAENVSEALTESTFAKE1', secretAccessKey: 'envseal-test-fake-secret-key' };

let binDir: Promise<string> | undefined;

/** The emulators' bin directory, building them first when needed (once per process). */
export function kmsEmulatorBinDir(): Promise<string> {
  binDir ??= (async () => {
    const fromEnv = process.env.ENVSEAL_KMS_EMULATORS_BIN;
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return await toolBinDir(join(SCRIPTS, 'build.sh'), { name: 'scripts/kms-emulators/build.sh', timeoutMs: 20 * 60_000 });
  })();
  return binDir;
}

const LISTEN_LINES: Record<KmsEmulatorName, RegExp> = {
  'local-kms': /local-kms listening on 127\.0\.0\.1:(\d+)/,
  moto: /Running on http:\/\/127\.0\.0\.1:(\d+)/,
};

async function launch(
  name: KmsEmulatorName,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  options: { region: string; accountId: string; readyTimeoutMs: number; cleanup: () => Promise<void> },
): Promise<KmsEmulator> {
  const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  killOnExit(child);
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${name} did not listen within ${options.readyTimeoutMs} ms`)), options.readyTimeoutMs);
    function fail(error: Error): void {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${error.message}\n--- ${name} output ---\n${output.slice(-4000)}`));
    }
    function onData(chunk: Buffer): void {
      // Keep a bounded tail for diagnostics; always drain, so the pipes never fill.
      output = (output + chunk.toString('utf8')).slice(-16_000);
      const m = LISTEN_LINES[name].exec(output);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (error) => fail(error));
    child.once('exit', (code, signal) => fail(new Error(`${name} exited before listening (code ${code}, signal ${signal})`)));
  }).catch(async (error: unknown) => {
    await options.cleanup();
    throw error;
  });

  await waitForTcp(port, options.readyTimeoutMs);

  let stopped: Promise<void> | undefined;
  return {
    name,
    endpoint: `http://127.0.0.1:${port}`,
    port,
    region: options.region,
    accountId: options.accountId,
    credentials: { ...CREDENTIALS },
    pid: child.pid ?? -1,
    stop(): Promise<void> {
      stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
          await exited;
          clearTimeout(timer);
        }
        child.stdin?.destroy();
        await options.cleanup();
      })();
      return stopped;
    },
  };
}

async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A clean environment: no AWS settings of the caller leak into the emulator. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

export async function startLocalKms(options: StartOptions = {}): Promise<KmsEmulator> {
  const bin = await kmsEmulatorBinDir();
  const region = options.region ?? DEFAULT_REGION;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'envseal-local-kms-')));
  return launch(
    'local-kms',
    join(bin, 'local-kms'),
    [],
    {
      ...baseEnv(),
      PORT: String(options.port ?? 0),
      KMS_REGION: region,
      KMS_ACCOUNT_ID: LOCAL_KMS_ACCOUNT,
      KMS_DATA_PATH: dataDir,
      KMS_EXIT_ON_STDIN_EOF: '1',
    },
    {
      region,
      accountId: LOCAL_KMS_ACCOUNT,
      readyTimeoutMs: options.readyTimeoutMs ?? 60_000,
      cleanup: options.dataDir === undefined ? () => rm(dataDir, { recursive: true, force: true }) : async () => {},
    },
  );
}

export async function startMoto(options: StartOptions = {}): Promise<KmsEmulator> {
  const bin = await kmsEmulatorBinDir();
  const region = options.region ?? DEFAULT_REGION;
  return launch(
    'moto',
    join(bin, '..', 'venv', 'bin', 'python'),
    [join(SCRIPTS, 'moto-server.py'), '-H', '127.0.0.1', '-p', '0'],
    { ...baseEnv(), PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1', MOTO_ACCOUNT_ID: MOTO_ACCOUNT },
    { region, accountId: MOTO_ACCOUNT, readyTimeoutMs: options.readyTimeoutMs ?? 60_000, cleanup: async () => {} },
  );
}

export const KMS_EMULATORS: readonly { name: KmsEmulatorName; start: (options?: StartOptions) => Promise<KmsEmulator> }[] = [
  { name: 'local-kms', start: startLocalKms },
  { name: 'moto', start: startMoto },
];
