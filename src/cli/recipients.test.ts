import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let other: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  other = await ageKey(ws, 'other.key');
  expect((await ws.cli(['seal', '--name', 'db', '-n', 'prod', '--from-literal', 'A=alpha', '-r', `age:${key.recipient}`, '-w', 'db.yaml'])).code).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'B=beta'])).code).toBe(0);
});
afterEach(() => ws.cleanup());

async function secretOf(name: string): Promise<EnvelopeSecret> {
  return parse(await ws.read(name)) as EnvelopeSecret;
}

describe('envseal add-recipient', () => {
  it('wraps every envelope for the new recipient, which can then open it; values are untouched', async () => {
    const before = await secretOf('db.yaml');
    const result = await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(result.stderr).toMatch(/added/);
    expect(result.code).toBe(0);
    const after = await secretOf('db.yaml');
    for (const [i, envelope] of after.spec.envelopes.entries()) {
      expect(envelope.recipients.map((r) => r.recipient)).toEqual([key.recipient, other.recipient]);
      expect(envelope.data).toEqual(before.spec.envelopes[i]!.data);
      expect(envelope.commitment).toBe(before.spec.envelopes[i]!.commitment);
    }
    const opened = await ws.cli(['unseal', '-f', 'db.yaml', '-i', other.file, '-o', 'json']);
    expect(opened.code).toBe(0);
    expect(JSON.parse(opened.stdout).data).toEqual({ A: Buffer.from('alpha').toString('base64'), B: Buffer.from('beta').toString('base64') });
  });

  it('prints to stdout by default and writes -w FILE otherwise, leaving the input alone', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const stdout = await ws.cli(['add-recipient', '-f', 'db.yaml', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(stdout.code).toBe(0);
    expect((parse(stdout.stdout) as EnvelopeSecret).spec.envelopes[0]!.recipients).toHaveLength(2);
    const written = await ws.cli(['add-recipient', '-f', 'db.yaml', '-w', 'out.yaml', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(written.code).toBe(0);
    expect((await secretOf('out.yaml')).spec.envelopes[1]!.recipients).toHaveLength(2);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('is a no-op (no write) when every envelope already has the recipient', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${key.recipient}`, '-i', key.file]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/nothing written/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('needs an identity to unwrap for an age recipient (exit 4, nothing written)', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`]);
    expect(result.code).toBe(4);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('rejects -w together with --in-place, and --in-place on stdin', async () => {
    expect((await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-w', 'x.yaml', '-r', `age:${other.recipient}`])).code).toBe(2);
    expect((await ws.cli(['add-recipient', '--in-place', '-r', `age:${other.recipient}`], { stdin: await ws.read('db.yaml') })).code).toBe(2);
    expect((await ws.cli(['add-recipient', '-f', 'db.yaml'])).code).toBe(2);
  });
});

describe('envseal remove-recipient', () => {
  it('removes a recipient from every envelope', async () => {
    expect((await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file])).code).toBe(0);
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${key.recipient}`]);
    expect(result.code).toBe(0);
    const after = await secretOf('db.yaml');
    for (const envelope of after.spec.envelopes) expect(envelope.recipients.map((r) => r.recipient)).toEqual([other.recipient]);
    expect((await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', key.file])).code).toBe(4);
    expect((await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', other.file])).code).toBe(0);
  });

  it('refuses to remove the last recipient (exit 5, nothing written)', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${key.recipient}`]);
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/refusing to remove .* last recipient of envelope #0/);
    expect(result.stdout).toBe('');
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
    expect(await ws.entries()).toEqual(['age.key', 'db.yaml', 'other.key']);
  });

  it('says so when no envelope has the recipient (exit 3)', async () => {
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '-r', `age:${other.recipient}`]);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/no envelope has recipient/);
  });
});
