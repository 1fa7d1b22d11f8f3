import { describe, expect, it } from 'vitest';
import { seededRandom } from './random.ts';

describe('seededRandom', () => {
  it('gives the same stream for the same seed however it is read', () => {
    const a = seededRandom('seed');
    const b = seededRandom('seed');
    const whole = Buffer.from(a(100));
    const pieces = Buffer.concat([b(7), b(64), b(29)]);
    expect(pieces.equals(whole)).toBe(true);
  });

  it('gives different streams for different seeds', () => {
    expect(Buffer.from(seededRandom('a')(32)).equals(Buffer.from(seededRandom('b')(32)))).toBe(false);
  });
});
