import { describe, expect, it } from 'vitest';
import { decodeBase64, isStandardBase64 } from './base64.ts';
import { EnvelopeError } from './errors.ts';

describe('strict base64', () => {
  it.each(['', 'AA==', 'AAA=', 'AAAA', 'q83v+/8='])('accepts %j', (text) => {
    expect(isStandardBase64(text)).toBe(true);
    expect(decodeBase64(text, 'f').toString('base64')).toBe(text);
  });

  it.each([
    ['unpadded', 'AA'],
    ['URL-safe alphabet', 'q83v-_8='],
    ['white space', 'AAAA AAAA'],
    ['a line break', 'AAAA\nAAAA'],
    ['non-zero trailing bits', 'AB=='],
    ['too much padding', 'A==='],
    ['garbage', '!!!!'],
  ])('rejects %s', (_what, text) => {
    expect(isStandardBase64(text)).toBe(false);
    expect(() => decodeBase64(text, 'spec.field')).toThrow(EnvelopeError);
    try {
      decodeBase64(text, 'spec.field');
    } catch (error) {
      expect((error as EnvelopeError).code).toBe('InvalidBase64');
      expect((error as Error).message).toContain('spec.field');
    }
  });
});
