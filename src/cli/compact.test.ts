import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let other: AgeKey;
const b64 = (text: string) => Buffer.from(text).toString('base64');

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  other = await ageKey(ws, 'other.key');
  // Three envelopes: sealed once, then two merges without Decrypt (one replaces A).
  expect(
    (
      await ws.cli([
        'seal',
        '--name',
        'db',
        '-n',
        'prod',
        '--label',
        'team=a',
        '--from-literal',
        'A=CANARY-alpha',
        '--from-literal',
        'B=beta',
        '-r',
        `age:${key.recipient}`,
        '-w',
        'db.yaml',
      ])
    ).code,
  ).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'C=gamma'])).code).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'A=CANARY-alpha-2'])).code).toBe(0);
});
afterEach(() => ws.cleanup());

async function secretOf(name: string): Promise<EnvelopeSecret> {
  return parse(await ws.read(name)) as EnvelopeSecret;
}

async function unsealed(name: string, identity: string): Promise<Record<string, string>> {
  const opened = await ws.cli(['unseal', '-f', name, '-i', identity, '-o', 'json']);
  expect(opened.code, opened.stderr).toBe(0);
  return JSON.parse(opened.stdout).data as Record<string, string>;
}

describe('envseal compact', () => {
  it('folds every envelope into one under a new data key, with the same values, metadata and template', async () => {
    const before = await secretOf('db.yaml');
    expect(before.spec.envelopes).toHaveLength(3);
    const result = await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toMatch(/compacted 3 envelopes \(3 keys\) into one/);
    const after = await secretOf('db.yaml');
    expect(after.spec.envelopes).toHaveLength(1);
    const [envelope] = after.spec.envelopes;
    expect(Object.keys(envelope!.data).sort()).toEqual(['A', 'B', 'C']);
    expect(envelope!.recipients.map((r) => r.recipient)).toEqual([key.recipient]);
    // A fresh envelope: no id, commitment or ciphertext of the old ones.
    for (const old of before.spec.envelopes) {
      expect(envelope!.id).not.toBe(old.id);
      for (const value of Object.values(old.data)) expect(Object.values(envelope!.data)).not.toContain(value);
    }
    expect(after.metadata).toEqual(before.metadata);
    expect(after.spec.template).toEqual(before.spec.template);
    expect(after.spec.scope).toBe(before.spec.scope);
    expect(await unsealed('db.yaml', key.file)).toEqual({ A: b64('CANARY-alpha-2'), B: b64('beta'), C: b64('gamma') });
    // Nothing secret on the terminal.
    expect(result.stderr + result.stdout).not.toContain('CANARY');
  });

  it('refuses envelopes sealed for different recipients unless told who opens the result (exit 2, nothing written)', async () => {
    expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'D=delta', '-r', `age:${other.recipient}`])).code).toBe(0);
    const snapshot = await ws.snapshot('db.yaml');
    const refused = await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file, '-i', other.file]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/different recipients: pass --recipient/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);

    const chosen = await ws.cli(['compact', '-f', 'db.yaml', '-w', 'out.yaml', '-i', key.file, '-i', other.file, '-r', `age:${other.recipient}`]);
    expect(chosen.code, chosen.stderr).toBe(0);
    const out = await secretOf('out.yaml');
    expect(out.spec.envelopes).toHaveLength(1);
    expect(out.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([other.recipient]);
    expect(await unsealed('out.yaml', other.file)).toEqual({ A: b64('CANARY-alpha-2'), B: b64('beta'), C: b64('gamma'), D: b64('delta') });
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('needs Decrypt: without an identity it fails (exit 4) and writes nothing', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['compact', '-f', 'db.yaml', '--in-place']);
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/identit/i);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('refuses a tampered value (exit 3) and writes nothing', async () => {
    const secret = await secretOf('db.yaml');
    const raw = Buffer.from(secret.spec.envelopes[0]!.data.B!, 'base64');
    raw[raw.length - 1]! ^= 1;
    secret.spec.envelopes[0]!.data.B = raw.toString('base64');
    await ws.write('db.yaml', JSON.stringify(secret));
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file]);
    expect(result.code).toBe(3);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('leaves a manifest with one envelope as it is', async () => {
    expect((await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file])).code).toBe(0);
    const snapshot = await ws.snapshot('db.yaml');
    const again = await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file]);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/one envelope already; nothing written/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });
});
