// The test vectors of docs/format.md, checked by an independent Python implementation
// (the `cryptography` package, from the moto venv the KMS emulators already need).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { kmsEmulatorBinDir } from '../harness/kms-emulators.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('docs/format.md test vectors', () => {
  it('verify with an independent Python implementation', async () => {
    const python = join(await kmsEmulatorBinDir(), '..', 'venv', 'bin', 'python');
    const output = await new Promise<string>((resolve, reject) => {
      execFile(python, [join(root, 'test/vectors/verify_vectors.py'), join(root, 'docs/format.md')], (error, stdout, stderr) =>
        error ? reject(new Error(`${stdout}${stderr}`)) : resolve(stdout),
      );
    });
    expect(output.trim()).toMatch(/^[3-9]\d* passed, 0 failed$/);
  });
});
