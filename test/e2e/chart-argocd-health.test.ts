// The Argo CD health check (docs/argocd-health.lua), run by a Lua 5.1 interpreter (Argo CD
// runs gopher-lua, a Lua 5.1) on real EnvelopeSecrets as the API server returns them after
// the controller reconciled them, plus the states a live object passes through.
// Needs `lua5.1` on PATH (Debian: apt-get install lua5.1).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { repoRoot } from '../harness/control-plane.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { CANARY_MARKER } from '../harness/faults-leaks.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, kubectlApply, paths } from '../harness/kube.ts';
import { ageTarget, sealFor } from '../harness/seal.ts';

const LUA = 'lua5.1';
const scriptPath = path.join(repoRoot, 'docs/argocd-health.lua');
const client = adminClient();
const namespace = uniqueName('argocd-health');
let controller: TestController;

type Live = EnvelopeSecret & { metadata: { generation: number; uid: string }; status?: { observedGeneration?: number; conditions?: { type: string; status: string; reason: string; message: string }[] } };

/** A Lua table constructor for a JSON value (what Argo CD hands the script as `obj`). */
function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`not a JSON number: ${value}`);
    return String(value);
  }
  if (typeof value === 'string') {
    // Lua 5.1 escapes: \\, \", and \ddd (decimal) for every other byte outside printable ASCII.
    let out = '"';
    for (const byte of Buffer.from(value, 'utf8')) {
      if (byte === 0x5c) out += '\\\\';
      else if (byte === 0x22) out += '\\"';
      else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
      else out += `\\${byte}`;
    }
    return `${out}"`;
  }
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== null && v !== undefined);
    return `{${entries.map(([k, v]) => `[${toLua(k)}] = ${toLua(v)}`).join(', ')}}`;
  }
  throw new Error(`cannot convert ${typeof value}`);
}

/** Runs the health script on `obj` as Argo CD does: a global `obj`, the returned table `hs`. */
async function health(obj: unknown): Promise<{ status: string; message: string }> {
  const chunk = [
    `obj = ${toLua(obj)}`,
    `local hs = dofile(${toLua(scriptPath)})`,
    'io.write(tostring(hs.status), "\\n", tostring(hs.message))',
  ].join('\n');
  return new Promise((resolve, reject) => {
    execFile(LUA, ['-e', chunk], { maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${LUA} failed: ${stderr || error.message}`));
      else {
        const newline = stdout.indexOf('\n');
        resolve({ status: stdout.slice(0, newline), message: stdout.slice(newline + 1) });
      }
    });
  });
}

async function apply(object: unknown): Promise<void> {
  const result = await kubectlApply(object);
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
}

const live = (name: string) => getOrUndefined<Live>(client, paths.envelopeSecret(namespace, name));
const readyReason = (es: Live | undefined) => (es?.status?.observedGeneration === es?.metadata.generation ? es?.status?.conditions?.find((c) => c.type === 'Ready')?.reason : undefined);

let recipient: string;
const seal = (name: string, sealedFor = namespace) =>
  sealFor({ namespace: sealedFor, name, values: { PASSWORD: `${CANARY_MARKER}argocd "quoted" \\ ünïcode\n` }, targets: [ageTarget(recipient)] });

beforeAll(async () => {
  await installCrd();
  await createNamespace(client, namespace);
  controller = await startTestController({ kubeConfig: adminKubeConfig(), config: { namespace, namespaces: [namespace] } });
  recipient = (await waitFor('recipient', () => getOrUndefined<{ data: { recipient: string } }>(client, paths.configMap(namespace, 'envseal-age-recipient')))).data.recipient;
});

afterAll(async () => {
  await controller?.stop();
});

describe('the Argo CD health check', () => {
  it('runs in Lua 5.1, as in Argo CD', async () => {
    const version = await new Promise<string>((resolve, reject) => execFile(LUA, ['-v'], (error, stdout, stderr) => (error ? reject(new Error(`${LUA} is required: ${error.message}`)) : resolve(stdout + stderr))));
    expect(version).toContain('Lua 5.1');
  });

  it('is Healthy when the controller reports Ready=True for the current generation', async () => {
    await apply(await seal('good'));
    const es = await waitFor('good Synced', async () => {
      const object = await live('good');
      return readyReason(object) === 'Synced' ? object : undefined;
    });
    expect(await health(es)).toEqual({ status: 'Healthy', message: 'Secret good is up to date (1 keys)' });
  });

  it('is Degraded with the reason and message when Ready=False', async () => {
    const moved = await seal('moved', 'elsewhere');
    await apply({ ...moved, metadata: { name: 'moved', namespace } });
    const es = await waitFor('moved ContextMismatch', async () => {
      const object = await live('moved');
      return readyReason(object) === 'ContextMismatch' ? object : undefined;
    });
    const result = await health(es);
    expect(result.status).toBe('Degraded');
    expect(result.message).toMatch(/^ContextMismatch: .*another namespace, name or scope/);
  });

  it('is Progressing before the controller wrote a status, and while the status is about an older generation', async () => {
    const es = (await live('good'))!;
    const { status: _status, ...withoutStatus } = es;
    expect(await health(withoutStatus)).toEqual({ status: 'Progressing', message: 'Waiting for the envseal controller' });
    // A new spec applied by Argo CD: generation moves on, the status still describes the old one.
    const newer = { ...es, metadata: { ...es.metadata, generation: es.metadata.generation + 1 } };
    expect(await health(newer)).toEqual({ status: 'Progressing', message: `Waiting for the envseal controller to observe generation ${es.metadata.generation + 1}` });
    // Ready=False about an older generation is not a verdict on the new spec either.
    const failed = (await live('moved'))!;
    expect((await health({ ...failed, metadata: { ...failed.metadata, generation: failed.metadata.generation + 1 } })).status).toBe('Progressing');
  });

  it('is Progressing without a Ready condition, or with Ready=Unknown', async () => {
    const es = (await live('good'))!;
    expect(await health({ ...es, status: { observedGeneration: es.metadata.generation } })).toEqual({ status: 'Progressing', message: 'Waiting for the Ready condition' });
    expect(await health({ ...es, status: { observedGeneration: es.metadata.generation, conditions: [] } })).toEqual({ status: 'Progressing', message: 'Waiting for the Ready condition' });
    const unknown = { type: 'Ready', status: 'Unknown', reason: 'Pending', message: 'first look' };
    expect(await health({ ...es, status: { observedGeneration: es.metadata.generation, conditions: [unknown] } })).toEqual({ status: 'Progressing', message: 'Pending: first look' });
  });

  it('is the script docs/gitops.md tells to put in argocd-cm', async () => {
    const [doc, script] = await Promise.all([readFile(path.join(repoRoot, 'docs/gitops.md'), 'utf8'), readFile(scriptPath, 'utf8')]);
    const key = '  resource.customizations.health.envseal.dev_EnvelopeSecret: |\n';
    const start = doc.indexOf(key);
    expect(start, 'docs/gitops.md shows the argocd-cm key').toBeGreaterThan(0);
    const block: string[] = [];
    for (const line of doc.slice(start + key.length).split('\n')) {
      if (line !== '' && !line.startsWith('    ')) break;
      block.push(line.slice(4));
    }
    expect(block.join('\n').trimEnd()).toBe(script.trimEnd());
  });
});
