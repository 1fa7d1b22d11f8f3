import { describe, expect, it } from 'vitest';
import { createAgeProvider, formatAgeIdentityFile, generateAgeIdentity, parseAgeIdentityFile, recipientOfIdentity } from './age.ts';
import { ProviderError } from './types.ts';

const context = { encryptionContext: { 'envseal.dev/scope': 'strict' } };

async function expectProviderError(promise: Promise<unknown> | (() => unknown), code: ProviderError['code']) {
  let caught: unknown;
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ProviderError);
  expect((caught as ProviderError).code).toBe(code);
  return caught as ProviderError;
}

describe('age provider', () => {
  it.each(['x25519', 'hybrid'] as const)('wraps and unwraps a data key for a %s recipient', async (kind) => {
    const { identity, recipient } = await generateAgeIdentity(kind);
    expect(recipient).toMatch(kind === 'hybrid' ? /^age1pq1/ : /^age1(?!pq1|tag1|tagpq1)/);
    const provider = createAgeProvider({ identities: [identity] });
    const dataKey = new Uint8Array(32).map((_, i) => i);
    const wrapped = await provider.wrap({ target: recipient, dataKey, ...context });
    expect(wrapped).toMatchObject({ provider: 'age', recipient });
    expect(provider.canUnwrap(wrapped)).toBe(true);
    expect(Buffer.from(await provider.unwrap({ recipient: wrapped, ...context })).equals(Buffer.from(dataKey))).toBe(true);
  });

  it('seals with the public recipient alone and says so when no identity can open', async () => {
    const owner = await generateAgeIdentity();
    const stranger = await generateAgeIdentity();
    const sealer = createAgeProvider({});
    const wrapped = await sealer.wrap({ target: owner.recipient, dataKey: new Uint8Array(32), ...context });
    expect(sealer.canUnwrap(wrapped)).toBe(false);
    await expectProviderError(sealer.unwrap({ recipient: wrapped, ...context }), 'NoIdentity');
    await expectProviderError(createAgeProvider({ identities: [stranger.identity] }).unwrap({ recipient: wrapped, ...context }), 'NoIdentity');
  });

  it('refuses an altered or non-base64 encrypted key', async () => {
    const { identity, recipient } = await generateAgeIdentity();
    const provider = createAgeProvider({ identities: [identity] });
    const wrapped = await provider.wrap({ target: recipient, dataKey: new Uint8Array(32), ...context });
    const bytes = Buffer.from(wrapped.encryptedKey, 'base64');
    bytes[bytes.length - 5]! ^= 1;
    await expectProviderError(provider.unwrap({ recipient: { ...wrapped, encryptedKey: bytes.toString('base64') }, ...context }), 'InvalidCiphertext');
    await expectProviderError(provider.unwrap({ recipient: { ...wrapped, encryptedKey: 'not base64!' }, ...context }), 'InvalidCiphertext');
  });

  it('refuses a wrapped payload that is not a 32-byte key', async () => {
    const { identity, recipient } = await generateAgeIdentity();
    const provider = createAgeProvider({ identities: [identity] });
    const wrapped = await provider.wrap({ target: recipient, dataKey: new Uint8Array(16), ...context });
    await expectProviderError(provider.unwrap({ recipient: wrapped, ...context }), 'InvalidCiphertext');
  });

  it('rejects recipient strings that do not parse, naming them', async () => {
    const provider = createAgeProvider({});
    for (const bad of ['age2abc', 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQ', 'age1']) {
      const error = await expectProviderError(() => provider.parseTarget(bad), 'InvalidRecipient');
      expect(error.message).toContain('not an age recipient');
    }
  });

  it('reads identity files and never quotes a bad line', async () => {
    const generated = await generateAgeIdentity();
    const file = formatAgeIdentityFile(generated, new Date(0));
    expect(parseAgeIdentityFile(file, 'key.txt')).toEqual([generated.identity]);
    expect(await recipientOfIdentity(generated.identity)).toBe(generated.recipient);
    const mangled = `${generated.identity.slice(0, -3)}!!!`;
    const error = await expectProviderError(() => parseAgeIdentityFile(mangled, 'key.txt'), 'NoIdentity');
    expect(error.message).toContain('key.txt line 1');
    expect(error.message).not.toContain(generated.identity.slice(20, 40));
    await expectProviderError(() => parseAgeIdentityFile('# only a comment\n', 'empty.txt'), 'NoIdentity');
  });
});
