// envseal merge-driver under real git: a repository in a temporary directory with
// .gitattributes and merge.envseal.driver set up as docs/gitops.md says, two branches
// changing different values (seal --merge-into, edit with an age identity), git merge.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, ENVSEAL, ensureBuilt, NODE, runCli } from './cli-support.ts';

const CANARY = 'CANARY-gitmerge-91f0';
let dir: string;
let repo: string;

function env(): Record<string, string> {
  return {
    TMPDIR: path.join(dir, 'tmp'),
    HOME: dir,
    // Only this test's configuration: no system or user git config of the host.
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: path.join(dir, 'gitconfig'),
    GIT_AUTHOR_NAME: 'envseal test',
    GIT_AUTHOR_EMAIL: 'test@envseal.invalid',
    GIT_COMMITTER_NAME: 'envseal test',
    GIT_COMMITTER_EMAIL: 'test@envseal.invalid',
    ENVSEAL_AGE_IDENTITY: path.join(dir, 'age.key'),
  };
}

function git(...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd: repo, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env() }, encoding: 'utf8' }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

async function ok(result: Promise<CliResult>): Promise<CliResult> {
  const done = await result;
  expect(done.code, done.stderr).toBe(0);
  return done;
}

function envseal(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return runCli(args, { cwd: repo, env: { ...env(), ...options.env }, ...(options.input !== undefined ? { input: options.input } : {}) });
}

async function value(key: string): Promise<string> {
  return (await ok(envseal(['unseal', '-f', 'db.envelope.yaml', '--key', key]))).stdout;
}

beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-git-merge-'));
  repo = path.join(dir, 'repo');
  await mkdir(path.join(dir, 'tmp'));
  await mkdir(repo);
  await writeFile(path.join(dir, 'gitconfig'), '');
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('envseal merge-driver with git', () => {
  it('git merge of two branches that changed different values succeeds; unseal shows both changes', async () => {
    // The setup as --help shows it.
    const help = (await ok(envseal(['merge-driver', '--help']))).stdout;
    expect(help).toContain("echo '*.envelope.yaml merge=envseal' >> .gitattributes");
    expect(help).toContain("git config merge.envseal.driver 'envseal merge-driver %O %A %B %P'");
    await ok(git('init', '-q', '-b', 'main'));
    await writeFile(path.join(repo, '.gitattributes'), '*.envelope.yaml merge=envseal\n');
    await ok(git('config', 'merge.envseal.name', 'envseal EnvelopeSecret merge'));
    await ok(git('config', 'merge.envseal.driver', `'${NODE}' '${ENVSEAL}' merge-driver %O %A %B %P`));
    const recipient = (await ok(envseal(['keys', 'create', '-o', path.join(dir, 'age.key')]))).stdout.trim();
    await ok(
      envseal([
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
        `age:${recipient}`,
        '-w',
        'db.envelope.yaml',
      ]),
    );
    await ok(git('add', '.'));
    await ok(git('commit', '-q', '-m', 'db'));

    await ok(git('checkout', '-q', '-b', 'feature'));
    await ok(envseal(['seal', '--merge-into', 'db.envelope.yaml', '--from-literal', 'C=c1']));
    await ok(git('commit', '-q', '-am', 'add C'));

    await ok(git('checkout', '-q', 'main'));
    const editor = path.join(dir, 'editor.sh');
    await writeFile(editor, '#!/bin/sh\nsed -i "s/B: b0/B: b2/" "$1"\n');
    await chmod(editor, 0o755);
    await ok(envseal(['edit', 'db.envelope.yaml'], { env: { EDITOR: editor } }));
    await ok(git('commit', '-q', '-am', 'change B'));

    const merged = await git('merge', '--no-edit', 'feature');
    expect(merged.code, merged.stdout + merged.stderr).toBe(0);
    expect((await git('status', '--porcelain')).stdout).toBe('');
    expect((await ok(envseal(['verify', '-f', 'db.envelope.yaml']))).stdout).toMatch(/valid EnvelopeSecret "prod\/db"/);
    expect(await value('A')).toBe(`${CANARY}-a0`);
    expect(await value('B')).toBe('b2');
    expect(await value('C')).toBe('c1');
    expect(merged.stdout + merged.stderr).not.toContain(CANARY);

    // Git's own line merge of the same three versions conflicts: the driver did the merge.
    for (const [name, rev] of [
      ['base', 'HEAD^1^'],
      ['ours', 'HEAD^1'],
      ['theirs', 'HEAD^2'],
    ]) {
      await writeFile(path.join(dir, name!), (await ok(git('show', `${rev}:db.envelope.yaml`))).stdout);
    }
    const textual = await git('merge-file', '-p', path.join(dir, 'ours'), path.join(dir, 'base'), path.join(dir, 'theirs'));
    expect(textual.code).toBeGreaterThan(0);
  });

  it('a key changed on both branches makes git merge report a conflict naming the key', async () => {
    await ok(git('checkout', '-q', '-b', 'other'));
    await ok(envseal(['seal', '--merge-into', 'db.envelope.yaml', '--from-literal', `A=${CANARY}-theirs`]));
    await ok(git('commit', '-q', '-am', 'A on other'));
    await ok(git('checkout', '-q', 'main'));
    await ok(envseal(['seal', '--merge-into', 'db.envelope.yaml', '--from-literal', `A=${CANARY}-ours`, '--from-literal', 'D=d1']));
    await ok(git('commit', '-q', '-am', 'A on main'));

    const merged = await git('merge', '--no-edit', 'other');
    expect(merged.code).not.toBe(0);
    const output = merged.stdout + merged.stderr;
    expect(output).toContain('CONFLICT (content): Merge conflict in db.envelope.yaml');
    expect(output).toContain('envseal merge-driver: db.envelope.yaml: CONFLICT: data key "A" was changed differently on both sides');
    expect(output).not.toContain(CANARY);
    expect((await git('diff', '--name-only', '--diff-filter=U')).stdout).toBe('db.envelope.yaml\n');

    // The working file: valid, ours for A, the comment block naming A; theirs from the index.
    const text = await readFile(path.join(repo, 'db.envelope.yaml'), 'utf8');
    expect(text).toMatch(/^# envseal merge-driver: CONFLICT in db.envelope.yaml/);
    expect(text).toContain('#   data key "A" was changed differently on both sides');
    await ok(envseal(['verify', '-f', 'db.envelope.yaml']));
    expect(await value('A')).toBe(`${CANARY}-ours`);
    expect(await value('D')).toBe('d1');
    const theirs = (await ok(git('show', ':3:db.envelope.yaml'))).stdout;
    expect((await ok(envseal(['unseal', '--key', 'A'], { input: theirs }))).stdout).toBe(`${CANARY}-theirs`);

    // Resolved as the comment says: set the value, git add, commit. The rewrite drops the comments.
    await ok(envseal(['seal', '--merge-into', 'db.envelope.yaml', '--from-literal', `A=${CANARY}-theirs`]));
    expect(await readFile(path.join(repo, 'db.envelope.yaml'), 'utf8')).not.toContain('# envseal merge-driver');
    await ok(git('add', 'db.envelope.yaml'));
    await ok(git('commit', '-q', '--no-edit'));
    expect(await value('A')).toBe(`${CANARY}-theirs`);
    expect(await value('C')).toBe('c1');
  });
});
