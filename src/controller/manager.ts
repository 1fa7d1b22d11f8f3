import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import type { Logger } from 'pino';
import { KubeConfig } from '@kubernetes/client-node';
import { DEFAULT_TENANT_POLICY, type TenantPolicy, tenantPolicyIssues } from '../api/policy.ts';
import { KubeClient, paths, throttledBy } from '../kube/client.ts';
import { KubeObjectApi } from '../kube/object-api.ts';
import { RequestGate } from '../kube/request-gate.ts';
import type { ProviderConfig } from '../providers/registry.ts';
import { localIdentityProvider, ProviderRegistry } from '../providers/registry.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { ensureClusterAgeIdentity } from './age-identity.ts';
import { PUBLISHED_RECIPIENT_CONFIGMAP } from '../kube/cluster-recipient.ts';
import { ObjectCache, objectKey } from './cache.ts';
import { DataKeyCache } from './dek-cache.ts';
import { NamespaceBudget } from './budget.ts';
import { readyConditionOf } from './conditions.ts';
import { LABEL_MANAGED_BY, MANAGED_BY } from './desired.ts';
import { EventRecorder } from './events.ts';
import { heapWarning } from './heap.ts';
import { LeaderElector } from './leader.ts';
import { envelopeSecretOutcomes } from './outcomes.ts';
import { KeyLabels } from './key-metrics.ts';
import { ControllerMetrics } from './metrics.ts';
import { type Priority, WorkQueue } from './queue.ts';
import { Controller } from './controller.ts';
import { Reconciler, type ReconcileResult } from './reconciler.ts';
import { kubeReconcilerApi } from './reconciler-api.ts';
import { WorkloadRestarts } from './restarts.ts';
import { systemClock } from './clock.ts';
import { type EnvelopeSecretObject, type EnvelopeSecretRecord, envelopeSecretRecord, reconcileWeight, type SecretObject, secretRecord } from './records.ts';

export interface ControllerConfig {
  /** Path of a kubeconfig; undefined: in-cluster, else the default loading rules. */
  kubeconfig: string | undefined;
  /** Namespaces to watch; empty: all. */
  namespaces: string[];
  /** The controller's own namespace: age identity, lease, published recipient. */
  namespace: string;
  workers: number;
  /** host:port for /metrics, /healthz and /readyz; empty disables the server. */
  metricsAddress: string;
  resyncMs: number;
  dataKeyCache: { maxEntries: number; ttlMs: number };
  age: { enabled: boolean; secretName: string; configMapName: string };
  /** Each key provider's options, under its name (from its flags and environment: src/providers/registry.ts). */
  providers: ProviderConfig;
  leaderElection: { enabled: boolean; leaseName: string; leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  /** Identity of this replica in the lease (the pod name); default: host name plus a random suffix. */
  identity?: string;
  shutdownGraceMs: number;
  /** Key-provider calls per namespace: sustained rate and burst; perSecond 0 disables. */
  unwrapBudget: { perSecond: number; burst: number };
  /** What tenants may ask for: Secret types beyond the defaults, per namespace (src/api/policy.ts). */
  tenantPolicy: TenantPolicy;
  /** A workload is restarted at most once per window, for every Secret changed within it; 0: at each Secret written. */
  restartWindowMs: number;
}

export const DEFAULT_CONTROLLER_CONFIG: ControllerConfig = {
  kubeconfig: undefined,
  namespaces: [],
  namespace: 'envseal-system',
  workers: 4,
  metricsAddress: '0.0.0.0:8080',
  resyncMs: 10 * 60_000,
  dataKeyCache: { maxEntries: 1024, ttlMs: 5 * 60_000 },
  age: { enabled: true, secretName: 'envseal-age-identity', configMapName: PUBLISHED_RECIPIENT_CONFIGMAP },
  providers: {},
  leaderElection: { enabled: true, leaseName: 'envseal-controller', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
  shutdownGraceMs: 20_000,
  unwrapBudget: { perSecond: 50, burst: 1000 },
  tenantPolicy: DEFAULT_TENANT_POLICY,
  restartWindowMs: 10_000,
};

interface Health {
  synced: boolean;
  started: boolean;
  leading: boolean;
}

export function loadKubeConfig(path: string | undefined): KubeConfig {
  const kubeConfig = new KubeConfig();
  if (path) kubeConfig.loadFromFile(path);
  else kubeConfig.loadFromDefault();
  return kubeConfig;
}

/**
 * Runs the controller until `signal` aborts: serves health and metrics, elects a leader,
 * and while leading, watches EnvelopeSecrets and their Secrets and reconciles them.
 */
export async function runController(config: ControllerConfig, options: { logger: Logger; signal: AbortSignal; kubeConfig?: KubeConfig }): Promise<void> {
  const { logger, signal } = options;
  // Unique even for two processes on one host, as client-go's leader election wants.
  const identity = config.identity ?? `${hostname()}_${randomUUID().slice(0, 8)}`;
  const kubeConfig = options.kubeConfig ?? loadKubeConfig(config.kubeconfig);
  const metrics = new ControllerMetrics();
  const gate = new RequestGate({
    throttled: throttledBy,
    onThrottled: () => metrics.apiThrottled.inc(),
    onLimit: (limit) => metrics.apiConcurrencyLimit.set(Number.isFinite(limit) ? limit : 0),
  });
  const client = new KubeClient(kubeConfig, { gate });
  // Object calls go through client-node; lists, watches and the status subresource through KubeClient.
  const objects = new KubeObjectApi(client);
  const health: Health = { synced: false, started: false, leading: false };
  const server = config.metricsAddress ? await serveHealth(config.metricsAddress, metrics, health, logger) : undefined;

  try {
    const leading = async (leadSignal: AbortSignal) => {
      await runLeader({ config, identity, client, objects, metrics, logger, signal: leadSignal, health });
    };
    if (config.leaderElection.enabled) {
      const elector = new LeaderElector({
        // Its own client, so its own request gate: a Lease renewal never queues behind
        // reconciles that the API server is throttling.
        client: new KubeObjectApi(new KubeClient(kubeConfig)),
        namespace: config.namespace,
        leaseName: config.leaderElection.leaseName,
        identity,
        leaseDurationMs: config.leaderElection.leaseDurationMs,
        renewDeadlineMs: config.leaderElection.renewDeadlineMs,
        retryPeriodMs: config.leaderElection.retryPeriodMs,
        logger,
        onChange: (isLeader) => {
          health.leading = isLeader;
          metrics.leader.set(isLeader ? 1 : 0);
        },
      });
      health.started = true;
      const graceful = await elector.run(signal, leading);
      if (!graceful) throw new Error('leadership lost; exiting so that a fresh process can stand for election');
    } else {
      health.started = true;
      health.leading = true;
      metrics.leader.set(1);
      await leading(signal);
    }
  } finally {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}

async function runLeader(context: {
  config: ControllerConfig;
  identity: string;
  client: KubeClient;
  objects: KubeObjectApi;
  metrics: ControllerMetrics;
  logger: Logger;
  signal: AbortSignal;
  health: Health;
}): Promise<void> {
  const { config, client, objects, metrics, logger, signal } = context;
  const ageConfig = config.age.enabled
    ? await ensureClusterAgeIdentity({
        client: objects,
        namespace: config.namespace,
        secretName: config.age.secretName,
        configMapName: config.age.configMapName,
        logger,
        signal,
      })
    : undefined;
  // The cluster identity's provider unwraps with the identities of the cluster Secret.
  const local = localIdentityProvider();
  const providers = new ProviderRegistry(
    { ...config.providers, [local.name]: local.localIdentity.options(ageConfig?.identities ?? []) },
    { decorate: (provider) => metrics.instrument(provider) },
  );

  // Half the workers at most for one namespace while another waits (fairness between
  // tenants), counting large objects as several: one of a megabyte at a time.
  // (Keys start only once the cache below has fed the queue.)
  const queue = new WorkQueue({
    maxInFlightPerNamespace: Math.max(1, Math.ceil(config.workers / 2)),
    weightOf: (key) => reconcileWeight(envelopeSecrets.get(key)),
  });
  queue.onDepthChange = (depth) => metrics.queueDepth.set(depth);
  // The cold start's first list waits behind what the watch tells (class resync), so that a
  // change made during a 100,000-object cold start is not queued behind all of them.
  const enqueue = (object: { metadata?: { namespace?: string; name?: string } }, priority: Priority) => queue.add(objectKey(object), priority);
  const keyLabels = new KeyLabels();
  const envelopeSecrets = new ObjectCache<EnvelopeSecretObject, EnvelopeSecretRecord>({
    client,
    path: paths.envelopeSecrets,
    namespaces: config.namespaces,
    keep: (object) => envelopeSecretRecord(object, keyLabels),
    onEvent: (_event, object, initial) => enqueue(object, initial ? 'resync' : 'event'),
    onRestart: (reason) => metrics.watchRestarts.inc({ resource: 'envelopesecrets', reason }),
    logger,
  });
  const secrets = new ObjectCache<SecretObject>({
    client,
    path: paths.secrets,
    namespaces: config.namespaces,
    labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}`,
    keep: secretRecord,
    onEvent: (_event, secret, initial) => {
      const owner = secret.metadata?.ownerReferences?.find((o) => o.controller && o.kind === 'EnvelopeSecret');
      if (owner) queue.add(`${secret.metadata?.namespace}/${owner.name}`, initial ? 'resync' : 'event');
    },
    onRestart: (reason) => metrics.watchRestarts.inc({ resource: 'secrets', reason }),
    logger,
  });
  const dataKeys = new DataKeyCache(config.dataKeyCache);
  const events = new EventRecorder({ client: objects, logger, instance: context.identity });
  const api = kubeReconcilerApi({ client, objects, envelopeSecrets, secrets });
  const reconciler = new Reconciler({
    api,
    restarts: new WorkloadRestarts({ api, events, logger, clock: systemClock, windowMs: config.restartWindowMs }),
    envelopeSecrets,
    secrets,
    secretsListed: () => secrets.hasSynced,
    unwrap: (request) => unwrapDataKey({ ...request, providers }),
    dataKeys,
    events,
    logger,
    metrics,
    policy: (source) => tenantPolicyIssues(source, config.tenantPolicy),
    budget: new NamespaceBudget(config.unwrapBudget),
    resyncMs: config.resyncMs,
  });

  metrics.watchKeys(() => envelopeSecrets.values());
  // Informers stop with the leader signal; workers get a grace period to finish.
  const informers = Promise.all([envelopeSecrets.run(signal), secrets.run(signal)]);
  // Workers start at once, not after the initial lists: lists are applied page by page,
  // so objects are reconciled while a large collection (a tenant's megabyte objects) is
  // still being read. A Secret not yet in its cache is read from the API server.
  void Promise.all([envelopeSecrets.waitForSync(), secrets.waitForSync()]).then(() => {
    if (signal.aborted) return;
    context.health.synced = true;
    logger.info({ namespaces: config.namespaces.length > 0 ? config.namespaces : 'all', workers: config.workers }, 'caches synced');
  });

  const resync = setInterval(() => {
    // Behind every event: a new or changed object does not wait for this pass.
    for (const object of envelopeSecrets.values()) enqueue(object, 'resync');
  }, config.resyncMs);
  resync.unref();
  let heapWarned = false;
  const statusGauge = setInterval(() => {
    const objects = updateReadyGauge(metrics, envelopeSecrets);
    keyLabels.retain(envelopeSecrets.values());
    // Once per process: a warning to act on before V8's heap limit aborts the process.
    const warning = heapWarned ? undefined : heapWarning(getHeapStatistics(), objects);
    if (warning) {
      heapWarned = true;
      logger.warn(warning);
    }
  }, 15_000);
  statusGauge.unref();

  const controller: Controller<ReconcileResult> = new Controller<ReconcileResult>({
    queue,
    workers: config.workers,
    shutdownGraceMs: config.shutdownGraceMs,
    logger,
    reconcile: (key, workSignal) => {
      const slash = key.indexOf('/');
      return reconciler.reconcile({ namespace: key.slice(0, slash), name: key.slice(slash + 1) }, workSignal);
    },
    onOutcome: envelopeSecretOutcomes({ metrics, logger, retryNow: (keys) => controller.retryNow(keys) }),
  });
  // Events of the last reconciles are sent within what is left of the grace period.
  await controller.run(signal, (graceSignal) => events.flush(graceSignal));
  clearInterval(resync);
  clearInterval(statusGauge);
  metrics.watchKeys(undefined);
  dataKeys.clear();
  await informers;
  logger.info('controller stopped');
}

/** Sets the gauge of EnvelopeSecrets by Ready status and reason; returns how many there are. */
function updateReadyGauge(metrics: ControllerMetrics, cache: ObjectCache<EnvelopeSecretObject, EnvelopeSecretRecord>): number {
  const counts = new Map<string, number>();
  let total = 0;
  for (const object of cache.values()) {
    total++;
    const ready = readyConditionOf(object.status);
    const key = `${ready?.status ?? 'Unknown'}|${ready?.reason ?? 'Pending'}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  metrics.resources.reset();
  for (const [key, count] of counts) {
    const [ready, reason] = key.split('|') as [string, string];
    metrics.resources.set({ ready, reason }, count);
  }
  return total;
}

async function serveHealth(address: string, metrics: ControllerMetrics, health: Health, logger: Logger): Promise<Server> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon) || '0.0.0.0';
  const port = Number(address.slice(colon + 1));
  const server = createServer((request, response) => {
    const url = request.url ?? '/';
    if (url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => response.writeHead(500).end(),
      );
    } else if (url === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url === '/readyz') {
      // A standby is ready (it can take over); a leader once its caches are synced.
      const ready = health.started && (health.synced || !health.leading);
      response.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : 'not ready\n');
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address();
  logger.info({ address: typeof bound === 'object' && bound ? `${bound.address}:${bound.port}` : address }, 'serving /metrics, /healthz, /readyz');
  return server;
}
