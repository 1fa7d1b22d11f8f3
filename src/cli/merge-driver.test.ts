// envseal merge-driver as git calls it: %O %A %B %P, the result written to %A.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type AgeKey, ageKey, type Workspace, workspace } from './test-fixtures.ts';

const CANARY = 'CANARY-merge-4e2b';
let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  const sealed = await ws.cli([
    'seal',
    '--name',
    'db',
    '-n',
    'prod',
    '--from-literal',
    `A=${CANARY}-a0`,
    '--from-literal',
    'B=b0',
    '-r',
    `age:${key.recipient}`,
    '-w',
    'base.yaml',
  ]);
  expect(sealed.code).toBe(0);
});
afterEach(() => ws.cleanup());

async function branch(name: string, values: Record<string, string>): Promise<void> {
  await ws.write(name, await ws.read('base.yaml'));
  const literals = Object.entries(values).flatMap(([k, v]) => ['--from-literal', `${k}=${v}`]);
  expect((await ws.cli(['seal', '--merge-into', name, ...literals])).code).toBe(0);
}

async function unsealed(name: string): Promise<Record<string, string>> {
  const result = await ws.cli(['unseal', '-f', name, '-i', key.file, '-o', 'json']);
  expect(result.code).toBe(0);
  const data = JSON.parse(result.stdout).data as Record<string, string>;
  return Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
}

describe('envseal merge-driver', () => {
  it('merges changes of different keys into %A (exit 0); the result verifies and opens to both', async () => {
    await branch('ours.yaml', { C: 'c1' });
    await branch('theirs.yaml', { A: `${CANARY}-a2` });
    const result = await ws.cli(['merge-driver', 'base.yaml', 'ours.yaml', 'theirs.yaml', 'db.envelope.yaml']);
    expect(result).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect((await ws.cli(['verify', '-f', 'ours.yaml'])).code).toBe(0);
    expect(await unsealed('ours.yaml')).toEqual({ A: `${CANARY}-a2`, B: 'b0', C: 'c1' });
  });

  it('on a conflict: exit 6, %A is a valid manifest naming the key in comments, ours kept for it, no value shown', async () => {
    await branch('ours.yaml', { A: `${CANARY}-ours`, C: 'c1' });
    await branch('theirs.yaml', { A: `${CANARY}-theirs`, B: 'b2' });
    const result = await ws.cli(['merge-driver', 'base.yaml', 'ours.yaml', 'theirs.yaml', 'db.envelope.yaml']);
    expect(result.code).toBe(6);
    expect(result.stderr).toBe('envseal merge-driver: db.envelope.yaml: CONFLICT: data key "A" was changed differently on both sides\n');
    const text = await ws.read('ours.yaml');
    expect(text.split('\n').slice(0, 4)).toEqual([
      '# envseal merge-driver: CONFLICT in db.envelope.yaml; resolve it before committing.',
      '# Kept as on ours (the branch merged into); every other change of both sides is merged:',
      '#   data key "A" was changed differently on both sides',
      "# Theirs' value of a key:",
    ]);
    expect(text).toContain('#   git show :3:db.envelope.yaml | envseal unseal --key A');
    expect(text).not.toContain(CANARY);
    expect((await ws.cli(['verify', '-f', 'ours.yaml'])).code).toBe(0);
    expect(await unsealed('ours.yaml')).toEqual({ A: `${CANARY}-ours`, B: 'b2', C: 'c1' });
  });

  it('leaves %A untouched when an input is not an EnvelopeSecret (exit 3)', async () => {
    await branch('ours.yaml', { C: 'c1' });
    await ws.write('theirs.yaml', `apiVersion: v1\nkind: Secret\nstringData:\n  A: ${CANARY}\n`);
    const snapshot = await ws.snapshot('ours.yaml');
    const result = await ws.cli(['merge-driver', 'base.yaml', 'ours.yaml', 'theirs.yaml', 'db.envelope.yaml']);
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^envseal: error: db.envelope.yaml \(theirs\): invalid EnvelopeSecret/);
    expect(result.stderr).not.toContain(CANARY);
    expect(await ws.snapshot('ours.yaml')).toEqual(snapshot);
  });

  it('merges a file added on both branches (empty ancestor) and keeps a JSON file JSON', async () => {
    await ws.write('empty', '');
    const ours = await ws.cli(['seal', '--name', 'db', '-n', 'prod', '--from-literal', 'X=x', '-r', `age:${key.recipient}`, '-o', 'json', '-w', 'ours.json']);
    expect(ours.code).toBe(0);
    await branch('theirs.yaml', { Y: 'y' });
    const result = await ws.cli(['merge-driver', 'empty', 'ours.json', 'theirs.yaml']);
    // Theirs holds A and B, from base.yaml, and ours does not: both added, no conflict.
    expect(result.code).toBe(0);
    expect(JSON.parse(await ws.read('ours.json')).kind).toBe('EnvelopeSecret');
    expect(await unsealed('ours.json')).toEqual({ X: 'x', A: `${CANARY}-a0`, B: 'b0', Y: 'y' });
  });

  it('shows the git setup in --help; needs three files', async () => {
    const help = await ws.cli(['merge-driver', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("git config merge.envseal.driver 'envseal merge-driver %O %A %B %P'");
    expect(help.stdout).toContain("echo '*.envelope.yaml merge=envseal' >> .gitattributes");
    expect((await ws.cli(['merge-driver', 'base.yaml'])).code).toBe(2);
    const parsed = parse(await ws.read('base.yaml'));
    expect(parsed.kind).toBe('EnvelopeSecret');
  });
});
