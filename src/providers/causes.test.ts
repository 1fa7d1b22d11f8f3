import { describe, expect, it } from 'vitest';
import { codeInCauses, findInCauses, SOCKET_ERROR_CODES } from './causes.ts';

const codes = new Set(SOCKET_ERROR_CODES);
const wrap = (cause: unknown, times: number): unknown => (times === 0 ? cause : new Error('fetch failed', { cause: wrap(cause, times - 1) }));

describe('the reason in a chain of causes', () => {
  it('finds a socket error under causes and inside an AggregateError', () => {
    expect(codeInCauses(wrap(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), 2), codes)).toBe('ECONNREFUSED');
    const eyeballs = new AggregateError([new Error('v6'), Object.assign(new Error('v4'), { code: 'ETIMEDOUT' })]);
    expect(codeInCauses(wrap(eyeballs, 1), codes)).toBe('ETIMEDOUT');
  });

  it('looks five levels down and no further, and ignores other codes', () => {
    const refused = Object.assign(new Error('x'), { code: 'ECONNREFUSED' });
    expect(codeInCauses(wrap(refused, 5), codes)).toBe('ECONNREFUSED');
    expect(codeInCauses(wrap(refused, 6), codes)).toBeUndefined();
    expect(codeInCauses(wrap(Object.assign(new Error('x'), { code: 'ERR_INVALID_URL' }), 1), codes)).toBeUndefined();
    expect(findInCauses('not an error', () => 'found')).toBeUndefined();
  });
});
