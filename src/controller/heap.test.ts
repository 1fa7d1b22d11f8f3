import { describe, expect, it } from 'vitest';
import { heapWarning } from './heap.ts';

const MiB = 1048576;

describe('heapWarning', () => {
  it('says nothing while there is room', () => {
    expect(heapWarning({ used_heap_size: 60 * MiB, heap_size_limit: 176 * MiB }, 10_000)).toBeUndefined();
  });

  it('names the figures and the setting to change near the limit', () => {
    const warning = heapWarning({ used_heap_size: 150 * MiB, heap_size_limit: 176 * MiB }, 25_000);
    expect(warning).toContain('150 MiB of its 176 MiB limit (85%)');
    expect(warning).toContain('25000 EnvelopeSecrets');
    expect(warning).toContain('controller.nodeOptions');
  });
});
