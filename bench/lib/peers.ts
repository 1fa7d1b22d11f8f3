// The peers envseal is compared with, built by scripts/peers/build.sh (Go module proxy).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const buildScript = path.join(repoRoot, 'scripts/peers/build.sh');

export type PeerName = 'kubeseal' | 'controller' | 'sops';

export interface Peer {
  name: PeerName;
  /** Absolute path of the binary, when it could be built. */
  path?: string;
  /** What the binary was built from (module@version). */
  version?: string;
  /** The build's error output, when it could not be built. */
  error?: string;
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', [buildScript, ...args], { maxBuffer: 64 << 20, timeout: 60 * 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Builds (or finds) each peer; a peer that cannot be built is returned with its error, not thrown. */
export async function ensurePeers(names: readonly PeerName[], log: (message: string) => void = () => {}): Promise<Record<PeerName, Peer>> {
  const binDir = (await run(['--print-bin-dir'])).stdout.trim();
  const result = {} as Record<PeerName, Peer>;
  for (const name of names) {
    const binary = path.join(binDir, name);
    if (!existsSync(binary)) log(`building ${name} with scripts/peers/build.sh (first time: several minutes)`);
    const built = await run([name]);
    if (built.code === 0 && existsSync(binary)) {
      result[name] = { name, path: binary, version: readFileSync(`${binary}.version`, 'utf8').trim() };
    } else {
      const error = built.stderr
        .split('\n')
        .filter((line) => line.trim() !== '' && !line.includes('go: downloading'))
        .slice(-15)
        .join('\n');
      result[name] = { name, error: error || `build.sh exited ${built.code}` };
      log(`${name} could not be built:\n${error}`);
    }
  }
  return result;
}

/** The SealedSecret CRD copied from the sealed-secrets module by build.sh. */
export async function sealedSecretsCrdPath(): Promise<string> {
  const binDir = (await run(['--print-bin-dir'])).stdout.trim();
  return path.join(binDir, '..', 'share', 'bitnami.com_sealedsecrets.yaml');
}
