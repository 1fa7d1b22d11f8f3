// The real node leaves the machine as it found it: sysctls the kubelet changes, mounts,
// cgroups, state directories under /var and /run, network namespaces, containerd shims and
// containers. Checked after a normal stop, and after the process that started the node is
// SIGKILLed mid-run (the watchdog of test/harness/node-host.sh puts everything back).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { hostSnapshot, snapshotDiff, startNodeCluster } from '../harness/node.ts';
import { applyManifest, isReady, livePods } from '../harness/node-kube.ts';

const log = (message: string) => process.stderr.write(`[node-host] ${message}\n`);
// Starting a node may wait for another one on this machine to finish (one at a time).
const NODE_TEST_TIMEOUT_MS = 1_300_000;

describe('the host after a node', () => {
  it(
    'is as before after stop(): a pod ran (mounts, cgroups, shim, sandbox netns), the kubelet changed sysctls, all of it undone',
    async () => {
      const node = await startNodeCluster({ log });
      const before = node.hostSnapshots.before;
      let during: string[];
      try {
        await applyManifest(node, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'sleeper', namespace: 'default' },
          spec: {
            terminationGracePeriodSeconds: 1,
            containers: [{ name: 'sleep', image: node.busyboxImage.reference, imagePullPolicy: 'Never', command: ['sleep', '3600'] }],
            volumes: [{ name: 'scratch', emptyDir: {} }],
          },
        });
        await waitFor('the pod Running and Ready', async () => (await livePods(node, 'default', '')).some((p) => p.metadata.name === 'sleeper' && isReady(p)), {
          timeoutMs: 120_000,
          intervalMs: 1_000,
        });
        during = await hostSnapshot();
      } finally {
        await node.stop();
      }
      // The node really changed the host while it ran (else this test proves nothing).
      const changes = snapshotDiff(before, during);
      expect(changes).toMatch(/^\+ process containerd-shim/m);
      expect(changes).toMatch(/^\+ cgroup \/sys\/fs\/cgroup\/memory\/kubepods/m);
      expect(changes).toMatch(/^\+ sysctl vm.overcommit_memory=1/m);
      expect(changes).toMatch(/^\+ mount /m);
      expect(snapshotDiff(before, node.hostSnapshots.after!)).toBe('');
      expect(fs.existsSync(node.stateDir)).toBe(false);
    },
    NODE_TEST_TIMEOUT_MS,
  );

  it(
    'is as before after the process that started the node is SIGKILLed with a pod running',
    async () => {
      const afterFile = path.join(os.tmpdir(), `envseal-node-after-${process.pid}.txt`);
      const script = `
      const { startNodeCluster } = await import(${JSON.stringify(path.join(repoRoot, 'test/harness/node.ts'))});
      const { applyManifest, isReady, livePods } = await import(${JSON.stringify(path.join(repoRoot, 'test/harness/node-kube.ts'))});
      const fs = await import('node:fs');
      const node = await startNodeCluster({ snapshotAfterKillPath: ${JSON.stringify(afterFile)} });
      fs.writeFileSync(node.stateDir + '.before', node.hostSnapshots.before.join('\\n'));
      await applyManifest(node, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'sleeper', namespace: 'default' },
        spec: { containers: [{ name: 'sleep', image: node.busyboxImage.reference, imagePullPolicy: 'Never', command: ['sleep', '3600'] }] } });
      for (;;) {
        if ((await livePods(node, 'default', '')).some((p) => isReady(p))) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      process.stdout.write('RUNNING ' + node.stateDir + '\\n');
      setInterval(() => {}, 1000);
    `;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
      // If this test fails or times out, the child must not outlive it (its watchdog then cleans up).
      let childState: string | undefined;
      onTestFinished(() => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        fs.rmSync(afterFile, { force: true });
        if (childState !== undefined) fs.rmSync(`${childState}.before`, { force: true });
      });
      const stateDir = await waitFor(
        'the child to run a pod on its node',
        () => {
          if (child.exitCode !== null) throw new Error(`the child exited (${child.exitCode}): ${err.slice(-3000)}`);
          return /RUNNING (\S+)/.exec(out)?.[1];
        },
        { timeoutMs: 1_100_000, intervalMs: 500 },
      );
      childState = stateDir;
      const before = fs.readFileSync(`${stateDir}.before`, 'utf8').split('\n');
      fs.rmSync(`${stateDir}.before`);
      const during = await hostSnapshot();
      expect(snapshotDiff(before, during)).toMatch(/^\+ process containerd-shim/m);
      child.kill('SIGKILL');
      const killed = Date.now();
      // The watchdog writes this (atomically) once it has restored the host, still holding the host lock.
      await waitFor('the watchdog to restore the host', () => !fs.existsSync(stateDir) && fs.existsSync(afterFile), { timeoutMs: 120_000, intervalMs: 500 });
      log(`host restored ${((Date.now() - killed) / 1000).toFixed(1)} s after SIGKILL`);
      const after = fs.readFileSync(afterFile, 'utf8').trimEnd().split('\n');
      fs.rmSync(afterFile);
      expect(snapshotDiff(before, after)).toBe('');
    },
    NODE_TEST_TIMEOUT_MS,
  );
});
