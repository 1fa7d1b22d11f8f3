// Shared fixtures of the CLI's unit tests (no test framework imports here).
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { seededRandom } from '../envelope/random.ts';
import { formatAgeIdentityFile, generateAgeIdentity } from '../providers/age.ts';
import type { CliIo } from './io.ts';
import { memoryIo } from './memory-io.ts';
import { run } from './run.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export type CliOptions = Partial<Omit<CliIo, 'stdin' | 'stdout' | 'stderr'>> & { stdin?: string | Uint8Array };

export interface FileSnapshot {
  bytes: Buffer;
  mtimeMs: number;
  mode: number;
}

export interface Workspace {
  dir: string;
  path(name: string): string;
  write(name: string, content: string | Uint8Array): Promise<string>;
  read(name: string): Promise<string>;
  snapshot(name: string): Promise<FileSnapshot | undefined>;
  /** Every entry of the directory, for checking that nothing else was written. */
  entries(): Promise<string[]>;
  cli(argv: readonly string[], options?: CliOptions): Promise<CliResult>;
  cleanup(): Promise<void>;
}

export async function workspace(): Promise<Workspace> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'envseal-cli-test-'));
  let seed = 0;
  return {
    dir,
    path: (name) => path.join(dir, name),
    async write(name, content) {
      await writeFile(path.join(dir, name), content);
      return name;
    },
    read: (name) => readFile(path.join(dir, name), 'utf8'),
    async snapshot(name) {
      try {
        const file = path.join(dir, name);
        const info = await stat(file);
        return { bytes: await readFile(file), mtimeMs: info.mtimeMs, mode: info.mode & 0o777 };
      } catch {
        return undefined;
      }
    },
    entries: async () => (await readdir(dir)).sort(),
    async cli(argv, options = {}) {
      const io = memoryIo({ cwd: dir, random: seededRandom(`cli-test-${seed++}`), ...options });
      const code = await run(argv, io);
      return { code, stdout: io.stdout.text(), stderr: io.stderr.text(), stdoutBytes: io.stdout.bytes() };
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface AgeKey {
  identity: string;
  recipient: string;
  /** The identity file's name in the workspace. */
  file: string;
}

/** A fresh age identity, written to `name` in the workspace with mode 0600. */
export async function ageKey(ws: Workspace, name = 'age.key'): Promise<AgeKey> {
  const generated = await generateAgeIdentity('x25519');
  await writeFile(ws.path(name), formatAgeIdentityFile(generated, new Date('2025-01-01T00:00:00Z')), { mode: 0o600 });
  return { ...generated, file: name };
}
