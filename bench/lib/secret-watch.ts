// A watch of Secrets for the benchmarks, in one namespace (bench/controller.ts) or
// cluster-wide (bench/scale.ts): knows which of the expected Secrets hold exactly the
// expected values. It keeps no Secret values, only the set of correct keys, so that it
// costs little at 100,000 Secrets.
import type { KubeClient } from '../../src/kube/client.ts';
import { sleep } from './proc.ts';

type SecretEvent = { metadata: { name: string; namespace: string; resourceVersion: string }; data?: Record<string, string> };

export interface SecretWatchOptions {
  client: KubeClient;
  /** Watch this namespace only; Secrets are then keyed by name. Without it, the whole cluster, keyed namespace/name. */
  namespace?: string;
  labelSelector?: string;
  log: (message: string) => void;
}

export class SecretWatch {
  /** key -> the expected values, base64 as the API server shows them. */
  readonly #expected = new Map<string, Record<string, string>>();
  /** The keys whose Secret holds exactly the expected values. */
  readonly correct = new Set<string>();
  readonly #abort = new AbortController();
  #waiters: (() => void)[] = [];
  #rv = '';
  #done: Promise<void> | undefined;
  readonly #client: KubeClient;
  readonly #namespace: string | undefined;
  readonly #path: string;
  readonly #labelSelector: string | undefined;
  readonly #log: (message: string) => void;

  constructor(options: SecretWatchOptions) {
    this.#client = options.client;
    this.#namespace = options.namespace;
    this.#path = options.namespace === undefined ? '/api/v1/secrets' : `/api/v1/namespaces/${encodeURIComponent(options.namespace)}/secrets`;
    this.#labelSelector = options.labelSelector;
    this.#log = options.log;
  }

  /** Sets what the Secret `key` must hold; it is correct only once the list or an event shows these values. */
  expect(key: string, values: Record<string, string>): void {
    this.#expected.set(key, Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v).toString('base64')])));
    this.correct.delete(key);
  }

  #see(secret: SecretEvent, deleted: boolean): void {
    const key = this.#namespace === undefined ? `${secret.metadata.namespace}/${secret.metadata.name}` : secret.metadata.name;
    const want = this.#expected.get(key);
    if (want === undefined) return;
    const have = deleted ? undefined : (secret.data ?? {});
    const ok = have !== undefined && Object.keys(want).length === Object.keys(have).length && Object.entries(want).every(([k, v]) => have[k] === v);
    if (ok) this.correct.add(key);
    else this.correct.delete(key);
  }

  async start(): Promise<void> {
    let continueToken: string | undefined;
    do {
      const page = await this.#client.request<{ metadata: { resourceVersion: string; continue?: string }; items: SecretEvent[] }>({
        method: 'GET',
        path: this.#path,
        query: { limit: 5000, continue: continueToken, labelSelector: this.#labelSelector },
      });
      for (const item of page.items) this.#see(item, false);
      continueToken = page.metadata.continue || undefined;
      this.#rv = page.metadata.resourceVersion;
    } while (continueToken);
    this.#done = (async () => {
      while (!this.#abort.signal.aborted) {
        try {
          await this.#client.watch<SecretEvent>({
            path: this.#path,
            query: { resourceVersion: this.#rv, allowWatchBookmarks: true, timeoutSeconds: 600, labelSelector: this.#labelSelector },
            idleTimeoutMs: 120_000,
            signal: this.#abort.signal,
            onEvent: (event) => {
              this.#rv = event.object.metadata.resourceVersion;
              if (event.type === 'BOOKMARK') return;
              this.#see(event.object, event.type === 'DELETED');
              const waiters = this.#waiters;
              this.#waiters = [];
              for (const wake of waiters) wake();
            },
          });
        } catch (error) {
          if (this.#abort.signal.aborted) return;
          this.#log(`secret watch restarts: ${error instanceof Error ? error.message : String(error)}`);
          await sleep(200);
        }
      }
    })();
  }

  /** Resolves true when `predicate` holds (checked on each event and each second), false after timeoutMs. */
  async until(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#done;
  }
}
