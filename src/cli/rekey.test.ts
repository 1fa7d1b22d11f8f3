// envseal remove-recipient re-keys: each envelope that loses a recipient gets a fresh
// data key, so the removed recipient's copy of the old one opens nothing new.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { bindingOf } from '../api/validation.ts';
import { openEnvelope } from '../envelope/envelope.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { type AgeKey, ageKey, type Workspace, workspace } from './test-fixtures.ts';

const CANARY = 'CANARY-rekey-7c1d';
let ws: Workspace;
let key: AgeKey;
let other: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  other = await ageKey(ws, 'other.key');
  // Envelope #0 (A) for both people, #1 (B) for key only: other is removed from #0 alone.
  const seal = ['seal', '--name', 'db', '-n', 'prod', '--from-literal', `A=${CANARY}-a`, '-r', `age:${key.recipient}`, '-r', `age:${other.recipient}`];
  expect((await ws.cli([...seal, '-w', 'db.yaml'])).code).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', `B=${CANARY}-b`, '-r', `age:${key.recipient}`])).code).toBe(0);
});
afterEach(() => ws.cleanup());

async function secretOf(name: string): Promise<EnvelopeSecret> {
  return parse(await ws.read(name)) as EnvelopeSecret;
}

/** The data key of envelope #index of `secret`, as `identity` unwraps it. */
async function dataKeyOf(secret: EnvelopeSecret, index: number, identity: string): Promise<Uint8Array> {
  const providers = new ProviderRegistry({ age: { identities: [identity] } });
  return (await unwrapDataKey({ envelope: secret.spec.envelopes[index]!, index, binding: bindingOf(secret), providers })).dataKey;
}

describe('envseal remove-recipient re-keys', () => {
  it('with an identity: removes the recipient and re-seals its envelopes under a fresh data key', async () => {
    const before = await secretOf('db.yaml');
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(result.stderr).toBe(`removed "age:${other.recipient.slice(0, 20)}…${other.recipient.slice(-8)}" from "db.yaml" and re-keyed 1 envelope\n`);
    expect(result.code).toBe(0);
    const after = await secretOf('db.yaml');
    const [rekeyed, untouched] = after.spec.envelopes;
    expect(rekeyed!.recipients.map((r) => r.recipient)).toEqual([key.recipient]);
    expect(rekeyed!.id).not.toBe(before.spec.envelopes[0]!.id);
    expect(rekeyed!.commitment).not.toBe(before.spec.envelopes[0]!.commitment);
    expect(rekeyed!.recipients[0]!.encryptedKey).not.toBe(before.spec.envelopes[0]!.recipients[0]!.encryptedKey);
    expect(Object.keys(rekeyed!.data)).toEqual(['A']);
    expect(untouched).toEqual(before.spec.envelopes[1]);

    // The removed person's copy of the old data key opens none of the new values.
    const oldKey = await dataKeyOf(before, 0, other.identity);
    expect(() => openEnvelope({ dataKey: oldKey, binding: bindingOf(after), envelope: rekeyed! })).toThrow(/commitment/);
    const opened = await ws.cli(['unseal', '-f', 'db.yaml', '-i', key.file, '-o', 'json']);
    expect(JSON.parse(opened.stdout).data).toEqual({ A: Buffer.from(`${CANARY}-a`).toString('base64'), B: Buffer.from(`${CANARY}-b`).toString('base64') });
    expect((await ws.cli(['verify', '-f', 'db.yaml', '--decrypt', '-i', other.file])).code).toBe(4);
    expect(result.stderr + result.stdout).not.toContain(CANARY);
  });

  it('without an identity: removes only the wrapping and says plainly what that leaves', async () => {
    const before = await secretOf('db.yaml');
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`]);
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(
      /^warning: envelope #0 \("A"\) was not re-keyed \(no configured identity opens it\): only the wrapping was removed, so the removed recipient can still open its current values from Git history/m,
    );
    const after = await secretOf('db.yaml');
    expect(after.spec.envelopes[0]).toEqual({ ...before.spec.envelopes[0], recipients: [before.spec.envelopes[0]!.recipients[0]] });
  });

  it('--rekey without an identity fails and writes nothing; --no-rekey never re-keys', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const forced = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '--rekey', '-r', `age:${other.recipient}`]);
    expect(forced.code).toBe(4);
    expect(forced.stderr).toMatch(/^envseal: error: envelope #0: no configured provider can unwrap any of its recipients/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
    expect(await ws.entries()).toEqual(['age.key', 'db.yaml', 'other.key']);

    const before = await secretOf('db.yaml');
    const plain = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '--no-rekey', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toMatch(/warning: envelope #0 \("A"\) was not re-keyed \(--no-rekey\)/);
    expect((await secretOf('db.yaml')).spec.envelopes[0]!.id).toBe(before.spec.envelopes[0]!.id);

    expect((await ws.cli(['remove-recipient', '-f', 'db.yaml', '--rekey', '--no-rekey', '-r', `age:${key.recipient}`])).code).toBe(2);
  });

  it('the removed recipient may be the one that opens it; the last recipient is still refused', async () => {
    const result = await ws.cli(['remove-recipient', '-f', 'db.yaml', '-w', 'out.yaml', '-r', `age:${key.recipient}`, '-i', other.file]);
    // Envelope #1 has key alone: refused before anything is unwrapped.
    expect(result.code).toBe(5);
    expect(await ws.entries()).toEqual(['age.key', 'db.yaml', 'other.key']);
    expect((await ws.cli(['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file])).code).toBe(0);
    const removed = await ws.cli(['remove-recipient', '-f', 'db.yaml', '-w', 'out.yaml', '-r', `age:${key.recipient}`, '-i', key.file]);
    expect(removed.stderr).toMatch(/re-keyed 2 envelopes/);
    const opened = await ws.cli(['unseal', '-f', 'out.yaml', '-i', other.file, '--key', 'B']);
    expect(opened.stdout).toBe(`${CANARY}-b`);
  });
});
