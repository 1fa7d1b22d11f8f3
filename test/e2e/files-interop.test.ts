// envseal encrypt/decrypt against aws-encryption-cli (PyPI aws-encryption-sdk-cli,
// pinned by scripts/esdk-cli/setup.sh) on the same KMS emulator, both ways, both suites,
// a small and a multi-frame file, with an encryption context. The CLI reaches the
// emulator through AWS_ENDPOINT_URL_KMS (botocore >= 1.31 honours it).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../src/cli/memory-io.ts';
import { run } from '../../src/cli/run.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { KMS_EMULATORS, type KmsEmulator } from '../harness/kms-emulators.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

function exec(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, maxBuffer: 16 << 20, timeout: 120_000 }, (error, _stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stderr });
    });
  });
}

let cliPromise: Promise<string> | undefined;
function esdkCli(): Promise<string> {
  cliPromise ??= new Promise((resolve, reject) => {
    execFile('bash', [path.join(REPO, 'scripts/esdk-cli/setup.sh')], { timeout: 15 * 60_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`scripts/esdk-cli/setup.sh failed: ${stderr.slice(-2000)}`));
      else resolve(stdout.trim().split('\n').pop()!);
    });
  });
  return cliPromise;
}

const SUITES = [
  { id: '0x0478', name: 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY' },
  { id: '0x0578', name: 'AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384' },
] as const;
// The SDK wants frame lengths that are multiples of 16; 1024 makes the big file ~300 frames.
const FILES = [
  { label: 'small', size: 1000, frameLength: 65536 },
  { label: 'multi-frame', size: 300_000 + 7, frameLength: 1024 },
] as const;

describe.each(KMS_EMULATORS)('file interop with aws-encryption-cli on $name', ({ start }) => {
  let emulator: KmsEmulator;
  let dir: string;
  let cli: string;
  let keyArn: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    [cli, emulator, dir] = await Promise.all([esdkCli(), start(), mkdtemp(path.join(tmpdir(), 'envseal-files-interop-'))]);
    const kms = createAwsKmsProvider({ endpoint: emulator.endpoint, region: emulator.region, credentials: emulator.credentials });
    keyArn = (await kms.createKey({ alias: `alias/files-interop-${Date.now()}` })).keyArn;
    kms.close();
    env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      AWS_ENDPOINT_URL_KMS: emulator.endpoint,
      AWS_REGION: emulator.region,
      AWS_DEFAULT_REGION: emulator.region,
      AWS_ACCESS_KEY_ID: emulator.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: emulator.credentials.secretAccessKey,
    };
  });

  afterAll(async () => {
    await emulator?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function envseal(args: string[]): Promise<{ code: number; stderr: string }> {
    const io = memoryIo({ cwd: dir, env });
    const code = await run(args, io);
    return { code, stderr: io.stderr.text() };
  }

  for (const suite of SUITES) {
    for (const file of FILES) {
      it(`envseal encrypt -> aws-encryption-cli --decrypt (${suite.id}, ${file.label})`, async () => {
        const name = `a-${suite.id}-${file.label}`;
        const plaintext = randomBytes(file.size);
        await writeFile(path.join(dir, `${name}.txt`), plaintext);
        const enc = await envseal([
          'encrypt',
          `${name}.txt`,
          '-o',
          `${name}.enc`,
          '--recipient',
          `aws-kms:${keyArn}`,
          '--suite',
          suite.id,
          '--frame-length',
          String(file.frameLength),
          '-c',
          'purpose=interop',
          '-c',
          'team=files',
        ]);
        expect(enc.code, enc.stderr).toBe(0);
        const dec = await exec(
          cli,
          [
            '--decrypt',
            '-i',
            path.join(dir, `${name}.enc`),
            '-o',
            path.join(dir, `${name}.out`),
            '-w',
            `key=${keyArn}`,
            '-S',
            '-c',
            'purpose=interop',
            'team=files',
            '--commitment-policy',
            'require-encrypt-require-decrypt',
          ],
          env,
        );
        expect(dec.code, dec.stderr).toBe(0);
        expect((await readFile(path.join(dir, `${name}.out`))).equals(plaintext)).toBe(true);
      });

      it(`aws-encryption-cli --encrypt -> envseal decrypt (${suite.id}, ${file.label})`, async () => {
        const name = `b-${suite.id}-${file.label}`;
        const plaintext = randomBytes(file.size);
        await writeFile(path.join(dir, `${name}.txt`), plaintext);
        const enc = await exec(
          cli,
          [
            '--encrypt',
            '-i',
            path.join(dir, `${name}.txt`),
            '-o',
            path.join(dir, `${name}.enc`),
            '-w',
            `key=${keyArn}`,
            '-S',
            '-c',
            'purpose=interop',
            '--algorithm',
            suite.name,
            '--frame-length',
            String(file.frameLength),
            '--commitment-policy',
            'require-encrypt-require-decrypt',
          ],
          env,
        );
        expect(enc.code, enc.stderr).toBe(0);
        const dec = await envseal(['decrypt', `${name}.enc`, '-o', `${name}.out`, '-c', 'purpose=interop']);
        expect(dec.code, dec.stderr).toBe(0);
        expect((await readFile(path.join(dir, `${name}.out`))).equals(plaintext)).toBe(true);

        // The wrong required context is refused before any output exists.
        const wrong = await envseal(['decrypt', `${name}.enc`, '-o', `${name}.wrong`, '-c', 'purpose=other']);
        expect(wrong.code).toBe(5);
        // A flipped bit in the last frame: refused, nothing at the output path, no temporary file.
        const bytes = await readFile(path.join(dir, `${name}.enc`));
        bytes[bytes.length - (suite.id === '0x0578' ? 120 : 20)]! ^= 1;
        await writeFile(path.join(dir, `${name}.bad`), bytes);
        const bad = await envseal(['decrypt', `${name}.bad`, '-o', `${name}.bad.out`]);
        expect(bad.code, bad.stderr).toBe(3);
        const left = await readdir(dir);
        expect(
          left.filter(
            (f) => f.startsWith(`${name}.bad.out`) || f.startsWith(`.${name}.bad.out`) || f.startsWith(`${name}.wrong`) || f.startsWith(`.${name}.wrong`),
          ),
        ).toEqual([]);
      });
    }
  }
});
