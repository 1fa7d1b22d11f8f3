import { describe, expect, it } from 'vitest';
import type { Recipient } from './types.ts';
import { boundProvider, type KeyProvider } from './types.ts';

/** A provider written as a class: its methods live on the prototype and use `this`. */
class CountingProvider implements KeyProvider {
  readonly name = 'counting';
  calls: string[] = [];
  parseTarget(target: string): void {
    this.calls.push(`parseTarget ${target}`);
  }
  async wrap(): Promise<Recipient> {
    this.calls.push('wrap');
    return { provider: this.name, encryptedKey: 'AA==' };
  }
  async unwrap(): Promise<Uint8Array> {
    this.calls.push('unwrap');
    return new Uint8Array(32);
  }
  async rewrap(): Promise<Recipient> {
    this.calls.push('rewrap');
    return { provider: this.name, encryptedKey: 'AA==' };
  }
  canUnwrap(): boolean {
    return true;
  }
  describe(): string {
    return this.name;
  }
  targetOf(): string {
    return 'target';
  }
  async canonicalTarget(target: string): Promise<string> {
    this.calls.push(`canonicalTarget ${target}`);
    return `canonical ${target}`;
  }
}

describe('boundProvider', () => {
  it('keeps every method of a class-based provider, optional ones included, bound to it', async () => {
    const provider = new CountingProvider();
    const { parseTarget, wrap, unwrap, rewrap, canonicalTarget, generateDataKey, name } = boundProvider(provider);
    parseTarget('x');
    await wrap({ target: 'x', dataKey: new Uint8Array(32), encryptionContext: {} });
    await unwrap({ recipient: { provider: 'counting', encryptedKey: 'AA==' }, encryptionContext: {} });
    await rewrap!({ from: { provider: 'counting', encryptedKey: 'AA==' }, target: 'y', encryptionContext: {} });
    expect(await canonicalTarget!('alias/x')).toBe('canonical alias/x');
    expect(generateDataKey).toBeUndefined();
    expect(name).toBe('counting');
    expect(provider.calls).toEqual(['parseTarget x', 'wrap', 'unwrap', 'rewrap', 'canonicalTarget alias/x']);
  });
});
