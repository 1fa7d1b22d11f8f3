import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decryptBuffer } from './decrypt.ts';
import { annotatedHexDump, EXAMPLE, exampleMessage } from './example.ts';

const doc = readFileSync(new URL('../../docs/format.md', import.meta.url), 'utf8');

describe('docs/format.md example message', () => {
  it('holds the exact bytes the encryptor writes', () => {
    const block = /<!-- files-example-begin -->\n```\n([\s\S]*?)```\n<!-- files-example-end -->/.exec(doc);
    expect(block, 'the example block of docs/format.md').not.toBeNull();
    expect(block![1]).toBe(annotatedHexDump());
    const bytes = Buffer.from(
      block![1]!
        .split('\n')
        .map((line) => line.slice(0, 38).replace(/\s/g, ''))
        .join(''),
      'hex',
    );
    expect(bytes.equals(exampleMessage())).toBe(true);
  });

  it('decrypts with the data key', () => {
    const { header, plaintext } = decryptBuffer(exampleMessage(), () => EXAMPLE.dataKey);
    expect(plaintext.toString('utf8')).toBe(EXAMPLE.plaintext.toString('utf8'));
    expect(header.encryptionContext).toEqual({ purpose: 'example' });
  });
});
