import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { capMessage, MAX_MESSAGE_BYTES } from './message.ts';

describe('capMessage', () => {
  it('keeps a message that fits', () => {
    expect(capMessage('short')).toBe('short');
    const exact = 'x'.repeat(MAX_MESSAGE_BYTES);
    expect(capMessage(exact)).toBe(exact);
  });

  it('cuts a long message to the byte budget and marks the cut', () => {
    const cut = capMessage('y'.repeat(5000));
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    expect(cut.endsWith('…')).toBe(true);
  });

  it('never splits a character, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 2000 }), fc.integer({ min: 4, max: 1500 }), (text, max) => {
        const cut = capMessage(text, max);
        if (Buffer.byteLength(text) <= max) {
          expect(cut).toBe(text);
          return;
        }
        expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(max);
        expect(cut.endsWith('…')).toBe(true);
        const kept = cut.slice(0, -1);
        expect(text.startsWith(kept)).toBe(true);
        // The cut fell between two code points: no lone surrogate was made.
        expect(Buffer.from(kept, 'utf8').toString('utf8')).toBe(kept);
      }),
    );
  });
});
