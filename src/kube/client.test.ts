import { describe, expect, it } from 'vitest';
import { tlsFingerprint } from './client.ts';

describe('tlsFingerprint', () => {
  const ca = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n');
  const cert = Buffer.from('client certificate bytes');
  const key = Buffer.from('client key bytes');
  const base = [ca, cert, key, undefined, undefined, true, 'kubernetes'];

  it('is stable for the same material (a rotated certificate re-read from disk compares equal)', () => {
    expect(tlsFingerprint(base)).toBe(tlsFingerprint([Buffer.from(ca), Buffer.from(cert), Buffer.from(key), undefined, undefined, true, 'kubernetes']));
  });

  it('changes when any part changes', () => {
    const seen = new Set([tlsFingerprint(base)]);
    const variants = [
      [Buffer.from('another CA'), cert, key, undefined, undefined, true, 'kubernetes'],
      [ca, Buffer.from('rotated certificate'), key, undefined, undefined, true, 'kubernetes'],
      [ca, cert, Buffer.from('rotated key'), undefined, undefined, true, 'kubernetes'],
      [ca, cert, key, undefined, undefined, false, 'kubernetes'],
      [ca, cert, key, undefined, undefined, true, 'other-server'],
      [ca, cert, key, undefined, 'passphrase', true, 'kubernetes'],
      [[ca, Buffer.from('second CA')], cert, key, undefined, undefined, true, 'kubernetes'],
    ];
    for (const variant of variants) seen.add(tlsFingerprint(variant));
    expect(seen.size).toBe(variants.length + 1);
  });

  it('does not let parts run into each other', () => {
    expect(tlsFingerprint([Buffer.from('ab'), Buffer.from('c')])).not.toBe(tlsFingerprint([Buffer.from('a'), Buffer.from('bc')]));
    expect(tlsFingerprint([undefined, 'x'])).not.toBe(tlsFingerprint(['x', undefined]));
    expect(tlsFingerprint(['true'])).not.toBe(tlsFingerprint([Buffer.from('true')]));
  });
});
