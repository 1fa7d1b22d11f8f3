import { createHash } from 'node:crypto';
import type { Envelope } from '../api/types.ts';
import type { Binding } from '../envelope/context.ts';

export interface DataKeyCacheOptions {
  maxEntries: number;
  ttlMs: number;
  now?: () => number;
}

/**
 * A bounded cache of unwrapped data keys, by count and by age, for bursts (many
 * reconciles of one object). Keys are digests of the binding and the wrapped keys, so an
 * envelope copied to another namespace or name never hits another's entry. Evicted keys
 * are overwritten with zeros.
 */
export class DataKeyCache {
  readonly #entries = new Map<string, { dataKey: Uint8Array; expires: number }>();
  readonly #options: DataKeyCacheOptions;
  readonly #now: () => number;
  hits = 0;
  misses = 0;

  constructor(options: DataKeyCacheOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  static keyOf(binding: Binding, envelope: Envelope): string {
    const hash = createHash('sha256');
    hash.update(JSON.stringify([binding.scope, binding.namespace, binding.name, binding.namespaces ?? [], envelope.id, envelope.suite, envelope.commitment]));
    for (const r of envelope.recipients) hash.update(JSON.stringify([r.provider, r.keyId ?? '', r.encryptedKey]));
    return hash.digest('base64');
  }

  /** A copy of the cached key (the caller zeroes it), or undefined. */
  get(key: string): Uint8Array | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.expires <= this.#now()) {
      if (entry) this.#evict(key);
      this.misses++;
      return undefined;
    }
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.hits++;
    return Uint8Array.from(entry.dataKey);
  }

  set(key: string, dataKey: Uint8Array): void {
    if (this.#options.maxEntries <= 0) return;
    this.#evict(key);
    this.#entries.set(key, { dataKey: Uint8Array.from(dataKey), expires: this.#now() + this.#options.ttlMs });
    while (this.#entries.size > this.#options.maxEntries) this.#evict(this.#entries.keys().next().value!);
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    for (const key of [...this.#entries.keys()]) this.#evict(key);
  }

  #evict(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    entry.dataKey.fill(0);
    this.#entries.delete(key);
  }
}
