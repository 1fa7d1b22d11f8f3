import { execFileSync } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import type { Inventory } from '../sealing/inventory.ts';
import type { EditorRequest } from './io.ts';
import { ageKey, type AgeKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let other: AgeKey;

const DAY = 86_400_000;
const T0 = new Date('2026-01-10T08:00:00.750Z');
const at = (date: Date) => ({ now: () => date });
const CANARY = 'CANARY-inventory-7f3a';

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  other = await ageKey(ws, 'other.key');
});
afterEach(() => ws.cleanup());

async function secretOf(name: string): Promise<EnvelopeSecret> {
  return parse(await ws.read(name)) as EnvelopeSecret;
}

async function seal(file: string, name: string, namespace: string, recipients: AgeKey[], when: Date): Promise<void> {
  const argv = ['seal', '--name', name, '-n', namespace, '--from-literal', `PASSWORD=${CANARY}`, '--from-literal', 'USER=app'];
  for (const r of recipients) argv.push('-r', `age:${r.recipient}`);
  const result = await ws.cli([...argv, '-w', file], at(when));
  expect(result.code, result.stderr).toBe(0);
}

describe('sealedAt: every command that makes a new data key records when', () => {
  it('seal writes the time of the run, in UTC to the second', async () => {
    await seal('db.yaml', 'db', 'prod', [key], T0);
    expect((await secretOf('db.yaml')).spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-10T08:00:00Z']);
  });

  it('seal --merge-into dates the new envelope and keeps the old one as it was', async () => {
    await seal('db.yaml', 'db', 'prod', [key], T0);
    const later = new Date(T0.getTime() + 3 * DAY);
    expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'TOKEN=t'], at(later))).code).toBe(0);
    expect((await secretOf('db.yaml')).spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-10T08:00:00Z', '2026-01-13T08:00:00Z']);
  });

  it('compact dates its one new envelope with the time of the compaction', async () => {
    await seal('db.yaml', 'db', 'prod', [key], T0);
    expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'TOKEN=t'], at(new Date(T0.getTime() + DAY)))).code).toBe(0);
    const result = await ws.cli(['compact', '-f', 'db.yaml', '--in-place', '-i', key.file], at(new Date(T0.getTime() + 9 * DAY)));
    expect(result.code, result.stderr).toBe(0);
    expect((await secretOf('db.yaml')).spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-19T08:00:00Z']);
  });

  it('edit and add-recipient keep the data key, so they keep its time', async () => {
    await seal('db.yaml', 'db', 'prod', [key], T0);
    const spawnEditor = async (request: EditorRequest) => {
      const doc = parse(await readFile(request.file, 'utf8')) as { stringData: Record<string, string> };
      doc.stringData.USER = 'admin';
      await writeFile(request.file, stringify(doc));
      return 0;
    };
    const edited = await ws.cli(['edit', 'db.yaml', '-i', key.file], { env: { EDITOR: 'fake' }, spawnEditor, ...at(new Date(T0.getTime() + 5 * DAY)) });
    expect(edited.code, edited.stderr).toBe(0);
    const added = await ws.cli(
      ['add-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file],
      at(new Date(T0.getTime() + 6 * DAY)),
    );
    expect(added.code, added.stderr).toBe(0);
    const after = await secretOf('db.yaml');
    expect(after.spec.envelopes[0]!.recipients).toHaveLength(2);
    expect(after.spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-10T08:00:00Z']);
  });

  it('remove-recipient dates the envelopes it re-keys; --no-rekey keeps the data key and its time', async () => {
    await seal('db.yaml', 'db', 'prod', [key, other], T0);
    await ws.write('copy.yaml', await ws.read('db.yaml'));
    const later = new Date(T0.getTime() + 2 * DAY);
    const rekeyed = await ws.cli(['remove-recipient', '-f', 'db.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file], at(later));
    expect(rekeyed.code, rekeyed.stderr).toBe(0);
    expect((await secretOf('db.yaml')).spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-12T08:00:00Z']);
    const kept = await ws.cli(['remove-recipient', '-f', 'copy.yaml', '--in-place', '--no-rekey', '-r', `age:${other.recipient}`], at(later));
    expect(kept.code, kept.stderr).toBe(0);
    expect((await secretOf('copy.yaml')).spec.envelopes.map((e) => e.sealedAt)).toEqual(['2026-01-10T08:00:00Z']);
  });

  it('merge-driver keeps each envelope with its own sealedAt', async () => {
    await seal('base.yaml', 'db', 'prod', [key], T0);
    for (const [file, days, name] of [
      ['ours.yaml', 1, 'C'],
      ['theirs.yaml', 2, 'D'],
    ] as const) {
      await ws.write(file, await ws.read('base.yaml'));
      const merged = await ws.cli(['seal', '--merge-into', file, '--from-literal', `${name}=x`], at(new Date(T0.getTime() + days * DAY)));
      expect(merged.code, merged.stderr).toBe(0);
    }
    const result = await ws.cli(['merge-driver', 'base.yaml', 'ours.yaml', 'theirs.yaml', 'db.envelope.yaml']);
    expect(result.code, result.stderr).toBe(0);
    expect((await secretOf('ours.yaml')).spec.envelopes.map((e) => [Object.keys(e.data).join(), e.sealedAt])).toEqual([
      ['PASSWORD,USER', '2026-01-10T08:00:00Z'],
      ['C', '2026-01-11T08:00:00Z'],
      ['D', '2026-01-12T08:00:00Z'],
    ]);
  });

  it('verify refuses a sealedAt that is not a UTC time to the second, naming the field', async () => {
    await seal('db.yaml', 'db', 'prod', [key], T0);
    for (const bad of ['2026-01-10T08:00:00.5Z', '2026-01-10T08:00:00+01:00', '2026-02-30T08:00:00Z', 'yesterday']) {
      const secret = await secretOf('db.yaml');
      secret.spec.envelopes[0]!.sealedAt = bad;
      await ws.write('bad.yaml', stringify(secret));
      const result = await ws.cli(['verify', '-f', 'bad.yaml']);
      expect(result.code, bad).toBe(10);
      expect(result.stderr).toContain('spec.envelopes[0].sealedAt: must be a UTC time to the second');
    }
  });
});

describe('envseal inventory', () => {
  /** A tree: two manifests for `key`, one also for `other`, one old manifest without sealedAt, and files that are not manifests. */
  async function tree(): Promise<void> {
    await mkdir(ws.path('deploy/prod'), { recursive: true });
    await mkdir(ws.path('deploy/staging'), { recursive: true });
    await seal('deploy/prod/db.yaml', 'db', 'prod', [key, other], T0);
    await seal('deploy/staging/api.yml', 'api', 'staging', [key], new Date(T0.getTime() + 20 * DAY));
    // An old manifest (no sealedAt), in a multi-document file next to a Deployment.
    await seal('old.yaml', 'legacy', 'prod', [other], T0);
    const legacy = await secretOf('old.yaml');
    delete legacy.spec.envelopes[0]!.sealedAt;
    const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } };
    await ws.write('deploy/prod/bundle.yaml', `${stringify(deployment)}---\n${stringify(legacy)}`);
    await ws.write('deploy/README.txt', 'not a manifest');
  }

  it('lists, per manifest and envelope, the keys and the data key age, then which manifests each key opens', async () => {
    await tree();
    const now = new Date(T0.getTime() + 30 * DAY);
    const result = await ws.cli(['inventory', 'deploy'], at(now));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toBe('');
    const lines = result.stdout.split('\n');
    expect(lines[0]).toMatch(/^MANIFEST\s+OBJECT\s+ENVELOPE\s+VALUES\s+SEALED AT\s+AGE\s+KEYS$/);
    expect(result.stdout).toMatch(new RegExp(`deploy/prod/bundle.yaml#1\\s+prod/legacy\\s+0\\s+2\\s+unknown\\s+unknown\\s+age:${other.recipient}\\n`));
    expect(result.stdout).toMatch(
      new RegExp(`deploy/prod/db.yaml\\s+prod/db\\s+0\\s+2\\s+2026-01-10T08:00:00Z\\s+30d\\s+age:${key.recipient}, age:${other.recipient}\\n`),
    );
    expect(result.stdout).toMatch(/deploy\/staging\/api.yml\s+staging\/api\s+0\s+2\s+2026-01-30T08:00:00Z\s+10d\s/);
    // The reverse index.
    expect(result.stdout).toMatch(new RegExp(`age:${key.recipient}\\s+2\\s+prod/db \\(deploy/prod/db.yaml\\), staging/api \\(deploy/staging/api.yml\\)`));
    expect(result.stdout).toMatch(new RegExp(`age:${other.recipient}\\s+2\\s+prod/legacy \\(deploy/prod/bundle.yaml#1\\), prod/db \\(deploy/prod/db.yaml\\)`));
    expect(lines.at(-2)).toBe('3 manifests, 3 envelopes (1 of unknown age), 2 keys, 1 other document skipped; ages as of 2026-02-09T08:00:00Z');
    expect(result.stdout).not.toContain(CANARY);
  });

  it('writes the documented JSON schema', async () => {
    await tree();
    const result = await ws.cli(['inventory', '-o', 'json', 'deploy', 'old.yaml'], at(new Date(T0.getTime() + 30 * DAY)));
    expect(result.code, result.stderr).toBe(0);
    const inventory = JSON.parse(result.stdout) as Inventory;
    expect(inventory.schema).toBe('envseal.dev/inventory/v1');
    expect(inventory.generatedAt).toBe('2026-02-09T08:00:00Z');
    expect(inventory.skippedDocuments).toBe(1);
    expect(inventory.problems).toEqual([]);
    const db = inventory.manifests.find((m) => m.name === 'db')!;
    expect(db).toEqual({
      file: 'deploy/prod/db.yaml',
      document: 0,
      namespace: 'prod',
      name: 'db',
      scope: 'strict',
      namespaces: null,
      envelopes: [
        {
          index: 0,
          id: (await secretOf('deploy/prod/db.yaml')).spec.envelopes[0]!.id,
          sealedAt: '2026-01-10T08:00:00Z',
          ageSeconds: 30 * 86_400,
          ageSource: 'sealedAt',
          values: ['PASSWORD', 'USER'],
          keys: [`age:${key.recipient}`, `age:${other.recipient}`],
        },
      ],
    });
    expect(inventory.manifests.map((m) => `${m.file}#${m.document}`)).toEqual([
      'deploy/prod/bundle.yaml#1',
      'deploy/prod/db.yaml#0',
      'deploy/staging/api.yml#0',
      'old.yaml#0',
    ]);
    const legacy = inventory.manifests[0]!.envelopes[0]!;
    expect([legacy.sealedAt, legacy.ageSeconds, legacy.ageSource]).toEqual([null, null, 'unknown']);
    const otherKey = inventory.keys.find((k) => k.key === `age:${other.recipient}`)!;
    expect(otherKey.provider).toBe('age');
    expect(otherKey.target).toBe(other.recipient);
    expect(otherKey.manifests.map((m) => `${m.namespace}/${m.name}@${m.file}`)).toEqual([
      'prod/legacy@deploy/prod/bundle.yaml',
      'prod/db@deploy/prod/db.yaml',
      'prod/legacy@old.yaml',
    ]);
    expect(result.stdout).not.toContain(CANARY);
  });

  it('--key lists only the manifests and envelopes that key opens (incident response)', async () => {
    await tree();
    // A second envelope in db sealed for `key` only: --key other must not list it.
    expect((await ws.cli(['seal', '--merge-into', 'deploy/prod/db.yaml', '-r', `age:${key.recipient}`, '--from-literal', 'T=t'], at(T0))).code).toBe(0);
    const result = await ws.cli(['inventory', '-o', 'json', '--key', `age:${other.recipient}`, 'deploy'], at(T0));
    expect(result.code, result.stderr).toBe(0);
    const inventory = JSON.parse(result.stdout) as Inventory;
    expect(inventory.keys.map((k) => k.key)).toEqual([`age:${other.recipient}`]);
    expect(inventory.manifests.map((m) => [m.name, m.envelopes.map((e) => e.index)])).toEqual([
      ['legacy', [0]],
      ['db', [0]],
    ]);
    const none = await ws.cli(['inventory', '--key', 'age:age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq', 'deploy'], at(T0));
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).toMatch(/^no manifest depends on age:age1qyqs/);
  });

  it('refuses a malformed --key before reading anything, naming the problem', async () => {
    const bad = await ws.cli(['inventory', '--key', 'nope', 'deploy']);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/recipient "nope" must be PROVIDER:TARGET/);
    const unknown = await ws.cli(['inventory', '--key', 'gcp-kms:projects/x', 'deploy']);
    expect(unknown.stderr).toMatch(/unknown key provider "gcp-kms"/);
    expect((await ws.cli(['inventory'])).code).toBe(2);
    expect((await ws.cli(['inventory', '-o', 'xml', '.'])).code).toBe(2);
  });

  it('reports unreadable files and invalid documents per file, and still lists the rest (exit 3)', async () => {
    await tree();
    await ws.write('deploy/broken.yaml', 'a: [unclosed\n');
    const invalid = await secretOf('deploy/prod/db.yaml');
    invalid.spec.envelopes[0]!.commitment = 'short';
    await ws.write('deploy/two.yaml', `${stringify(invalid)}---\n${stringify(await secretOf('deploy/staging/api.yml'))}`);
    await ws.write('deploy/binary.yml', Buffer.from([0xff, 0xfe, 0x00]));
    const result = await ws.cli(['inventory', 'deploy', 'missing-dir'], at(T0));
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('missing-dir: cannot read "missing-dir": no such file or directory');
    expect(result.stderr).toMatch(/deploy\/broken.yaml \(document 0\): malformed YAML at line \d+, column \d+/);
    expect(result.stderr).toContain('deploy/binary.yml: not UTF-8 text');
    expect(result.stderr).toContain('deploy/two.yaml (document 0): invalid EnvelopeSecret: spec.envelopes[0].commitment: is not standard padded base64');
    // Everything readable is still listed, the valid second document of two.yaml included.
    expect(result.stdout).toMatch(/deploy\/two.yaml#1\s+staging\/api/);
    expect(result.stdout).toMatch(/deploy\/prod\/db.yaml\s+prod\/db/);
    expect(result.stdout).toContain('4 problems (on stderr)');
  });

  it('lists each document of a scope-namespaces manifest with its namespaces, and each key once per envelope', async () => {
    const sealed = await ws.cli(
      ['seal', '--name', 'pull', '--namespaces', 'team-b,team-a', '--from-literal', 'K=v', '-r', `age:${key.recipient}`, '-w', 'pull.yaml'],
      at(T0),
    );
    expect(sealed.code, sealed.stderr).toBe(0);
    const result = await ws.cli(['inventory', '-o', 'json', 'pull.yaml'], at(T0));
    expect(result.code, result.stderr).toBe(0);
    const inventory = JSON.parse(result.stdout) as Inventory;
    // One document per namespace, each sealed for both.
    expect(inventory.manifests.map((m) => [m.document, m.namespace, m.scope, m.namespaces, m.envelopes[0]!.keys])).toEqual([
      [0, 'team-a', 'namespaces', ['team-a', 'team-b'], [`age:${key.recipient}`]],
      [1, 'team-b', 'namespaces', ['team-a', 'team-b'], [`age:${key.recipient}`]],
    ]);
    expect(inventory.keys.map((k) => [k.key, k.manifests.map((m) => m.namespace)])).toEqual([[`age:${key.recipient}`, ['team-a', 'team-b']]]);
  });

  it('follows a PATH that is a link, never a link inside the tree (no loops, nothing outside it)', async () => {
    await tree();
    await symlink(ws.path('deploy'), ws.path('link-to-deploy'));
    await symlink(ws.path('old.yaml'), ws.path('deploy/prod/old-link.yaml'));
    await symlink(ws.path('deploy'), ws.path('deploy/prod/loop'));
    const result = await ws.cli(['inventory', '-o', 'json', 'link-to-deploy'], at(T0));
    expect(result.code, result.stderr).toBe(0);
    expect((JSON.parse(result.stdout) as Inventory).manifests.map((m) => m.file)).toEqual([
      'link-to-deploy/prod/bundle.yaml',
      'link-to-deploy/prod/db.yaml',
      'link-to-deploy/staging/api.yml',
    ]);
  });

  it('--git dates envelopes without sealedAt by the commit that added them', async () => {
    await tree();
    const git = (args: string[], date?: string) =>
      execFileSync('git', ['-C', ws.dir, '-c', 'commit.gpgsign=false', ...args], {
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 't',
          GIT_AUTHOR_EMAIL: 't@example.invalid',
          GIT_COMMITTER_NAME: 't',
          GIT_COMMITTER_EMAIL: 't@example.invalid',
          ...(date ? { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } : {}),
        },
        stdio: 'pipe',
      });
    git(['init', '-q']);
    git(['add', 'deploy']);
    git(['commit', '-q', '-m', 'first'], '2025-06-01T12:00:00Z');
    // A later commit that leaves the envelope in place does not move its date.
    await ws.write('deploy/prod/note.yaml', 'kind: ConfigMap\n');
    git(['add', 'deploy']);
    git(['commit', '-q', '-m', 'second'], '2025-09-01T12:00:00Z');
    const result = await ws.cli(['inventory', '-o', 'json', '--git', 'deploy'], at(T0));
    expect(result.code, result.stderr).toBe(0);
    const legacy = (JSON.parse(result.stdout) as Inventory).manifests.find((m) => m.name === 'legacy')!.envelopes[0]!;
    expect([legacy.sealedAt, legacy.ageSource]).toEqual(['2025-06-01T12:00:00Z', 'git']);
    // Without --git it stays unknown; recorded sealedAt is never replaced.
    const plain = JSON.parse((await ws.cli(['inventory', '-o', 'json', 'deploy'], at(T0))).stdout) as Inventory;
    expect(plain.manifests.find((m) => m.name === 'legacy')!.envelopes[0]!.ageSource).toBe('unknown');
    const db = (JSON.parse(result.stdout) as Inventory).manifests.find((m) => m.name === 'db')!.envelopes[0]!;
    expect([db.sealedAt, db.ageSource]).toEqual(['2026-01-10T08:00:00Z', 'sealedAt']);
  });
});
