import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { KeyProvider } from '../providers/types.ts';
import { boundProvider, ProviderError } from '../providers/types.ts';
import { AGE_THRESHOLDS_DAYS, DEFAULT_MAX_KEY_LABELS, type KeyFacts, type KeySummary, summarizeKeys } from './key-metrics.ts';

/**
 * The controller's Prometheus metrics, on a registry of its own (no global state).
 * Labels are fixed vocabularies: results, reasons, provider and operation names; never
 * object names with values, never key material.
 */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({
    name: 'envseal_reconcile_total',
    help: 'Reconciles by result (synced, unchanged, error, terminal)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly reconcileSeconds = new Histogram({
    name: 'envseal_reconcile_duration_seconds',
    help: 'Reconcile duration',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly kmsRequests = new Counter({
    name: 'envseal_kms_requests_total',
    help: 'Key provider calls by provider, operation and outcome',
    labelNames: ['provider', 'operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly kmsSeconds = new Histogram({
    name: 'envseal_kms_request_duration_seconds',
    help: 'Key provider call latency',
    labelNames: ['provider', 'operation'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly dekCache = new Counter({
    name: 'envseal_dek_cache_total',
    help: 'Data key cache lookups by result (hit, miss)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({ name: 'envseal_workqueue_depth', help: 'Keys waiting in the work queue', registers: [this.registry] });
  readonly queueRetries = new Counter({ name: 'envseal_workqueue_retries_total', help: 'Keys re-queued after a retryable error', registers: [this.registry] });
  readonly apiThrottled = new Counter({
    name: 'envseal_api_throttled_total',
    help: "The API server's 429 answers (priority and fairness); each was waited out and sent again",
    registers: [this.registry],
  });
  readonly apiConcurrencyLimit = new Gauge({
    name: 'envseal_api_concurrency_limit',
    help: 'Requests allowed in flight to the API server after 429s (0: no limit, as before any 429)',
    registers: [this.registry],
  });
  readonly watchRestarts = new Counter({
    name: 'envseal_watch_restarts_total',
    help: 'List/watch restarts by resource and reason (error, gone, continue-expired, incomplete, unsupported, throttled)',
    labelNames: ['resource', 'reason'] as const,
    registers: [this.registry],
  });
  readonly resources = new Gauge({
    name: 'envseal_envelopesecrets',
    help: 'EnvelopeSecrets by Ready status and reason',
    labelNames: ['ready', 'reason'] as const,
    registers: [this.registry],
  });
  // Namespaces are not secret, and their number is what the cluster has: who spends the KMS quota.
  readonly unwrapAttempts = new Counter({
    name: 'envseal_unwrap_attempts_total',
    help: 'Key-provider unwrap calls by namespace of the EnvelopeSecret',
    labelNames: ['namespace'] as const,
    registers: [this.registry],
  });
  readonly budgetExhausted = new Counter({
    name: 'envseal_unwrap_budget_exhausted_total',
    help: 'Reconciles deferred because the namespace spent its budget of key-provider calls',
    labelNames: ['namespace'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({ name: 'envseal_leader', help: '1 while this replica leads', registers: [this.registry] });
  // Data-key age and keys in use, computed from the cache's records when scraped (watchKeys).
  readonly dataKeyOldest = new Gauge({
    name: 'envseal_data_key_oldest_seconds',
    help: 'Age of the oldest data key (by its sealedAt) of the EnvelopeSecrets the controller serves; 0 when none is known',
    registers: [this.registry],
    collect: () => this.#collectKeys(),
  });
  readonly dataKeyOlderThan = new Gauge({
    name: 'envseal_envelopesecrets_data_key_older_than',
    help: 'EnvelopeSecrets whose oldest data key is older than `days` days',
    labelNames: ['days'] as const,
    registers: [this.registry],
    collect: () => this.#collectKeys(),
  });
  readonly dataKeyUnknownAge = new Gauge({
    name: 'envseal_envelopesecrets_data_key_age_unknown',
    help: 'EnvelopeSecrets with a data key of unknown age (sealed before envseal recorded sealedAt)',
    registers: [this.registry],
    collect: () => this.#collectKeys(),
  });
  readonly byKey = new Gauge({
    name: 'envseal_envelopesecrets_by_key',
    help: 'EnvelopeSecrets that a key opens, by key (as the provider describes it); keys beyond the most used are summed under key="other"',
    labelNames: ['key'] as const,
    registers: [this.registry],
    collect: () => this.#collectKeys(),
  });
  readonly #maxKeyLabels: number;
  #keySource: (() => Iterable<Partial<KeyFacts>>) | undefined;
  #now: () => number = Date.now;
  #summary: { at: number; value: KeySummary } | undefined;

  constructor(options: { defaultMetrics?: boolean; maxKeyLabels?: number } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'envseal_' });
    this.#maxKeyLabels = options.maxKeyLabels ?? DEFAULT_MAX_KEY_LABELS;
  }

  /** The records the key metrics are computed from at each scrape (the leader's cache). */
  watchKeys(source: (() => Iterable<Partial<KeyFacts>>) | undefined, now: () => number = Date.now): void {
    this.#keySource = source;
    this.#now = now;
    this.#summary = undefined;
  }

  /** One pass over the records per scrape, shared by the four gauges (each calls collect). */
  #collectKeys(): void {
    const now = this.#now();
    if (this.#summary !== undefined && now - this.#summary.at < 1000) return;
    const source = this.#keySource;
    const value = summarizeKeys(source ? source() : [], now, this.#maxKeyLabels);
    this.#summary = { at: now, value };
    this.dataKeyOldest.set(value.oldestSeconds);
    this.dataKeyUnknownAge.set(value.unknownAge);
    for (const days of AGE_THRESHOLDS_DAYS) this.dataKeyOlderThan.set({ days: String(days) }, value.olderThan.get(days) ?? 0);
    this.byKey.reset();
    for (const [key, count] of value.byKey) this.byKey.set({ key }, count);
  }

  /** Wraps a provider so that each call is counted and timed. */
  instrument(provider: KeyProvider): KeyProvider {
    const timed =
      <A, R>(operation: string, fn: (request: A) => Promise<R>) =>
      async (request: A): Promise<R> => {
        const end = this.kmsSeconds.startTimer({ provider: provider.name, operation });
        try {
          const result = await fn(request);
          this.kmsRequests.inc({ provider: provider.name, operation, outcome: 'success' });
          return result;
        } catch (error) {
          this.kmsRequests.inc({ provider: provider.name, operation, outcome: error instanceof ProviderError ? error.code : 'error' });
          throw error;
        } finally {
          end();
        }
      };
    const bound = boundProvider(provider);
    return {
      ...bound,
      wrap: timed('wrap', bound.wrap),
      unwrap: timed('unwrap', bound.unwrap),
      ...(bound.generateDataKey ? { generateDataKey: timed('generateDataKey', bound.generateDataKey) } : {}),
      ...(bound.rewrap ? { rewrap: timed('rewrap', bound.rewrap) } : {}),
    };
  }
}
