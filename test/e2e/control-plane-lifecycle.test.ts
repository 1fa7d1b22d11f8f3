// The harness leaves nothing behind: not after stop(), not when its process gets
// SIGTERM, not when its process is killed outright (the watchdog cleans up).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sharedCluster, waitFor } from '../harness/cluster.ts';
import { startControlPlane } from '../harness/control-plane.ts';

const fixture = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../harness/fixtures/hold-control-plane.ts');

/** True when the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

interface Held {
  dir: string;
  server: string;
  pids: Record<string, number>;
}

/** Starts the fixture in a child Node process and waits for its JSON line. */
async function holdInChild(): Promise<{ held: Held; child: ReturnType<typeof spawn>; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [fixture, sharedCluster().binDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const lines = readline.createInterface({ input: child.stdout! });
  const line = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then(() => Promise.reject(new Error(`fixture exited before the control plane was up:\n${stderr}`))),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`fixture timed out:\n${stderr}`)), 180_000)),
  ]);
  lines.close();
  return { held: JSON.parse(line) as Held, child, exited };
}

function expectAllRunning(held: Held): void {
  expect(Object.keys(held.pids).sort()).toEqual(['etcd', 'kube-apiserver', 'kube-controller-manager']);
  for (const [name, pid] of Object.entries(held.pids)) expect(alive(pid), `${name} (pid ${pid}) running`).toBe(true);
  expect(fs.existsSync(held.dir)).toBe(true);
}

async function expectAllGone(held: Held, timeoutMs: number): Promise<void> {
  await waitFor(
    'every component process to exit and the temp dir to be removed',
    () => Object.values(held.pids).every((pid) => !alive(pid)) && !fs.existsSync(held.dir),
    { timeoutMs, intervalMs: 250 },
  );
}

describe('control plane harness lifecycle', () => {
  it('stop() ends every process and removes the temp dir; a restarted API server keeps its port', async () => {
    const cp = await startControlPlane({ binDir: sharedCluster().binDir });
    let stopped = false;
    try {
      const held: Held = {
        dir: cp.dir,
        server: cp.server,
        pids: { etcd: cp.pid('etcd')!, 'kube-apiserver': cp.pid('kube-apiserver')!, 'kube-controller-manager': cp.pid('kube-controller-manager')! },
      };
      expectAllRunning(held);
      expect(fs.readFileSync(cp.kubeconfigPath, 'utf8')).toContain(cp.server);

      const oldApiServer = cp.pid('kube-apiserver')!;
      await cp.restartApiServer({ signal: 'SIGKILL' });
      expect(alive(oldApiServer)).toBe(false);
      expect(cp.pid('kube-apiserver')).not.toBe(oldApiServer);
      expect(cp.server).toBe(held.server);
      held.pids['kube-apiserver'] = cp.pid('kube-apiserver')!;

      await cp.stop();
      stopped = true;
      await expectAllGone(held, 5_000);
    } finally {
      if (!stopped) await cp.stop();
    }
  });

  it('a SIGTERM to the process that started it stops it and cleans up', async () => {
    const { held, child, exited } = await holdInChild();
    try {
      expectAllRunning(held);
      child.kill('SIGTERM');
      expect(await exited).toBe(143);
      await expectAllGone(held, 5_000);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('when the process that started it is killed (SIGKILL), the watchdog stops it and cleans up', async () => {
    const { held, child, exited } = await holdInChild();
    expectAllRunning(held);
    child.kill('SIGKILL');
    await exited;
    await expectAllGone(held, 30_000);
  });
});
