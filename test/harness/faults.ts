// Helpers for the fault tests (test/e2e/faults-*.test.ts): a load of EnvelopeSecrets
// created quickly, a check that every Secret is exactly what its EnvelopeSecret says,
// the controller as a real process (SIGKILL, leader failover), and fault injectors that
// sit in front of real components: a TCP proxy in front of kube-apiserver (cut or
// refuse connections) and an HTTP proxy in front of a KMS emulator (ThrottlingException
// for a burst, connection resets while the emulator is down). Nothing here imitates the
// API server or the KMS.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import type { EnvelopeSecret, SecretTemplate } from '../../src/api/types.ts';
import { ANNOTATION_SPEC_HASH, LABEL_MANAGED_BY, MANAGED_BY, specHash } from '../../src/controller/desired.ts';
import { KubeApiError, type KubeClient, paths } from '../../src/kube/client.ts';
import type { Scope } from '../../src/envelope/context.ts';
import type { ProviderRegistry } from '../../src/providers/registry.ts';
import type { RecipientTarget } from '../../src/providers/types.ts';
import { sharedCluster, waitFor } from './cluster.ts';
import { repoRoot } from './control-plane.ts';
import { freePort, sumMetric } from './controller.ts';
import { type Finding, KeyNeedles, readRecord, recordLeakText, scanTexts } from './faults-leaks.ts';
import { sealFor } from './seal.ts';
import { forEachOutputLine } from './processes.ts';

// ---------------------------------------------------------------------------------
// Small utilities

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Runs fn over items with at most `limit` in flight; rejects with the first error. */
export async function inParallel<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Retries a Kubernetes call on transient failures (the API server restarting, 5xx, 429). */
export async function withRetry<T>(call: () => Promise<T>, attempts = 30): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const transient = error instanceof KubeApiError && (error.status === 0 || error.status === 429 || error.status >= 500);
      if (!transient || attempt >= attempts) throw error;
      await sleep(Math.min(250 * attempt, 2000));
    }
  }
}

// ---------------------------------------------------------------------------------
// The load: many EnvelopeSecrets and what their Secrets must be

/** What one Secret must be, exactly. */
export interface ExpectedSecret {
  namespace: string;
  name: string;
  values: Record<string, string>;
  type: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export const keyOf = (item: { namespace: string; name: string }) => `${item.namespace}/${item.name}`;

export interface LoadOptions {
  namespaces: readonly string[];
  count: number;
  /** Name prefix; names are `${prefix}-${index}`. */
  prefix: string;
  targets: readonly RecipientTarget[];
  providers: ProviderRegistry;
  scope?: Scope;
}

/** Values for one item in one round: every value carries the shared canary marker. */
export function valuesFor(index: number, round: number): Record<string, string> {
  return {
    PASSWORD: `CANARY-${randomBytes(12).toString('hex')}`,
    API_TOKEN: `CANARY-tok-${randomBytes(16).toString('base64url')}`,
    USER: `user-${index}`,
    ROUND: String(round),
  };
}

/** The custom Secret type of odd items: spawnController allows it, as an operator would (--allowed-secret-types). */
export const FAULT_TEST_SECRET_TYPE = 'example.com/fault-test';

export function templateFor(index: number, round: number): { type: string; labels: Record<string, string>; annotations: Record<string, string> } {
  return {
    type: index % 2 === 0 ? 'Opaque' : FAULT_TEST_SECRET_TYPE,
    labels: { 'fault-test/round': String(round), 'fault-test/parity': index % 2 === 0 ? 'even' : 'odd' },
    annotations: { 'fault-test/note': `item ${index}` },
  };
}

/** Seals one item's manifest for the load's recipients. */
export async function sealItem(options: LoadOptions, item: ExpectedSecret): Promise<EnvelopeSecret> {
  const template: SecretTemplate = { type: item.type, metadata: { labels: item.labels, annotations: item.annotations } };
  return sealFor({
    namespace: item.namespace,
    name: item.name,
    values: item.values,
    targets: options.targets,
    providers: options.providers,
    template,
    ...(options.scope ? { scope: options.scope } : {}),
  });
}

/** The items of a round: fresh values and labels for every object of the load. */
export function roundItems(options: LoadOptions, round: number): ExpectedSecret[] {
  return Array.from({ length: options.count }, (_, index) => {
    const namespace = options.namespaces[index % options.namespaces.length]!;
    const t = templateFor(index, round);
    return { namespace, name: `${options.prefix}-${index}`, values: valuesFor(index, round), type: t.type, labels: t.labels, annotations: t.annotations };
  });
}

/** Seals every item (in parallel: KMS sealing waits on the network). */
export async function sealAll(options: LoadOptions, items: readonly ExpectedSecret[], concurrency = 8): Promise<EnvelopeSecret[]> {
  const sealed: EnvelopeSecret[] = new Array(items.length);
  await inParallel(items, concurrency, async (item, i) => {
    sealed[i] = await sealItem(options, item);
  });
  return sealed;
}

/** Creates the manifests, or replaces their spec when they exist, with parallel requests. */
export async function applyAll(client: KubeClient, manifests: readonly EnvelopeSecret[], concurrency = 24): Promise<void> {
  await inParallel(manifests, concurrency, async (manifest) => {
    const namespace = manifest.metadata.namespace ?? '';
    await withRetry(async () => {
      try {
        await client.request({ method: 'POST', path: paths.envelopeSecrets(namespace), body: manifest });
      } catch (error) {
        if (!(error instanceof KubeApiError && error.conflict)) throw error;
        // Exists: replace the spec (a merge patch replaces lists wholesale).
        await client.request({
          method: 'PATCH',
          path: paths.envelopeSecret(namespace, manifest.metadata.name),
          body: { spec: manifest.spec },
          patchType: 'merge',
        });
      }
    });
  });
}

interface Listed {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  };
}
export type LiveSecret = Listed & { type?: string; immutable?: boolean; data?: Record<string, string> };
export type LiveEnvelopeSecret = Listed & EnvelopeSecret;

/** Every object of a collection in the namespaces (paged lists). */
export async function listAll<T>(
  client: KubeClient,
  collection: (namespace: string) => string,
  namespaces: readonly string[],
  query: Record<string, string> = {},
): Promise<T[]> {
  const all: T[] = [];
  for (const namespace of namespaces) {
    let token: string | undefined;
    do {
      const page = await client.request<{ items: T[]; metadata: { continue?: string } }>({
        method: 'GET',
        path: collection(namespace),
        query: { ...query, limit: 500, continue: token },
      });
      all.push(...page.items);
      token = page.metadata.continue || undefined;
    } while (token);
  }
  return all;
}

export interface Verification {
  /** Objects checked. */
  checked: number;
  /** One line per wrong object (names and what is wrong; never a value). */
  problems: string[];
}

const canonical = (map: Record<string, string>) => JSON.stringify(Object.entries(map).sort(([a], [b]) => (a < b ? -1 : 1)));
const decodeData = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

/**
 * Checks every expected Secret: it exists, holds exactly the expected data, type,
 * labels and template annotations, is owned (controller reference) by its
 * EnvelopeSecret, records the hash of the current spec, and the EnvelopeSecret reports
 * Ready=True Synced for its current generation and the Secret's current
 * resourceVersion. Also: no managed Secret without an expected entry.
 */
export async function verifyAll(client: KubeClient, expected: ReadonlyMap<string, ExpectedSecret>, namespaces: readonly string[]): Promise<Verification> {
  // The statuses first: a status written after its Secret then implies that the Secret
  // list (read after it, consistent) holds that write.
  const sources = await listAll<LiveEnvelopeSecret>(client, paths.envelopeSecrets, namespaces);
  const secrets = await listAll<LiveSecret>(client, paths.secrets, namespaces, { labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}` });
  const secretByKey = new Map(secrets.map((s) => [keyOf(s.metadata), s]));
  const sourceByKey = new Map(sources.map((s) => [keyOf(s.metadata as { namespace: string; name: string }), s]));
  const problems: string[] = [];
  for (const [key, want] of expected) {
    const problem = checkOne(want, sourceByKey.get(key), secretByKey.get(key));
    if (problem) problems.push(`${key}: ${problem}`);
  }
  for (const key of secretByKey.keys()) {
    if (!expected.has(key) && sourceByKey.has(key)) problems.push(`${key}: a managed Secret nobody expects`);
  }
  return { checked: expected.size, problems };
}

function checkOne(want: ExpectedSecret, source: LiveEnvelopeSecret | undefined, secret: LiveSecret | undefined): string | undefined {
  if (!source) return 'EnvelopeSecret missing';
  const ready = source.status?.conditions?.find((c) => c.type === 'Ready');
  if (ready?.status !== 'True' || ready.reason !== 'Synced') return `Ready=${ready?.status ?? 'none'} ${ready?.reason ?? ''}`;
  if (source.status?.observedGeneration !== source.metadata.generation)
    return `status is for generation ${source.status?.observedGeneration}, spec is ${source.metadata.generation}`;
  if (!secret) return 'Secret missing';
  const data = decodeData(secret.data);
  if (canonical(data) !== canonical(want.values)) {
    const keys = Object.keys(data).sort().join(',');
    return `data differs (keys ${keys}; expected ${Object.keys(want.values).sort().join(',')})`;
  }
  if ((secret.type ?? 'Opaque') !== want.type) return `type ${secret.type} instead of ${want.type}`;
  const labels = { ...want.labels, [LABEL_MANAGED_BY]: MANAGED_BY };
  if (canonical(secret.metadata.labels ?? {}) !== canonical(labels)) return `labels ${JSON.stringify(secret.metadata.labels)}`;
  for (const [k, v] of Object.entries(want.annotations)) if (secret.metadata.annotations?.[k] !== v) return `annotation ${k} missing or different`;
  if (secret.metadata.annotations?.[ANNOTATION_SPEC_HASH] !== specHash(source)) return 'spec-hash annotation is not the hash of the current spec';
  const owners = secret.metadata.ownerReferences ?? [];
  const owner = owners[0];
  if (
    owners.length !== 1 ||
    owner?.apiVersion !== 'envseal.dev/v1alpha1' ||
    owner.kind !== 'EnvelopeSecret' ||
    owner.name !== want.name ||
    owner.uid !== source.metadata.uid ||
    owner.controller !== true ||
    owner.blockOwnerDeletion !== true
  ) {
    return `owner references ${JSON.stringify(owners)}`;
  }
  if (source.status?.secretResourceVersion !== secret.metadata.resourceVersion)
    return `status names Secret resourceVersion ${source.status?.secretResourceVersion}, the Secret is at ${secret.metadata.resourceVersion}`;
  return undefined;
}

/** Polls verifyAll until nothing is wrong; throws with the remaining problems after timeoutMs. */
export async function waitAllCorrect(
  client: KubeClient,
  expected: ReadonlyMap<string, ExpectedSecret>,
  namespaces: readonly string[],
  timeoutMs: number,
  progress?: (line: string) => void,
): Promise<{ ms: number; verification: Verification }> {
  const started = Date.now();
  let last: Verification | undefined;
  let lastError = '';
  let reported = started;
  while (Date.now() - started < timeoutMs) {
    try {
      last = await verifyAll(client, expected, namespaces);
      if (last.problems.length === 0) return { ms: Date.now() - started, verification: last };
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (progress && Date.now() - reported > 15_000) {
      reported = Date.now();
      progress(
        `${Math.round((Date.now() - started) / 1000)} s: ${last ? `${last.problems.length} of ${last.checked} not yet right (e.g. ${last.problems[0] ?? ''})` : lastError}`,
      );
    }
    // Each check lists every object: not so often that it loads the API server.
    await sleep(3000);
  }
  const shown = last
    ? `${last.problems.length} of ${last.checked} wrong, e.g.:\n  ${last.problems.slice(0, 15).join('\n  ')}`
    : `never verified (${lastError})`;
  throw new Error(`after ${Math.round(timeoutMs / 1000)} s not every Secret is right: ${shown}`);
}

/**
 * While a fault is under way: samples the Secrets every interval and records every one
 * whose data is neither its previous values nor its new ones (a torn or wrong write).
 * A Secret that is absent or unreachable is not counted here (absence is checked after).
 */
export function sampleNeverWrong(
  client: KubeClient,
  namespaces: readonly string[],
  allowed: ReadonlyMap<string, readonly Record<string, string>[]>,
  intervalMs = 1500,
): { stop(): Promise<{ samples: number; wrong: string[] }> } {
  const wrong = new Set<string>();
  const allowedText = new Map([...allowed].map(([key, maps]) => [key, new Set(maps.map(canonical))]));
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const secrets = await listAll<LiveSecret>(client, paths.secrets, namespaces, { labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}` });
        samples++;
        for (const secret of secrets) {
          const key = keyOf(secret.metadata);
          const ok = allowedText.get(key);
          if (ok && !ok.has(canonical(decodeData(secret.data)))) wrong.add(key);
        }
      } catch {
        // the API server may be down: that is the fault under test
      }
      await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { samples, wrong: [...wrong] };
    },
  };
}

/**
 * A fault bench: one load of EnvelopeSecrets and what every Secret must be. A round
 * re-seals every object (new values, new labels), applies all of them and runs a fault
 * injector once `startAfterSynced` of the round's objects are synced, then waits until
 * every Secret is exactly right. While the fault lasts, a sampler checks that no Secret
 * ever holds anything but its previous or its new values.
 */
export class FaultBench {
  readonly expected = new Map<string, ExpectedSecret>();
  readonly figures: string[] = [];
  /** Rounds so far (the initial load is round 1). */
  rounds = 0;
  readonly client: KubeClient;
  readonly load: LoadOptions;
  readonly tag: string;
  /** Synced reconciles of the controller in charge so far (a restarted process starts at 0 again). */
  readonly synced: () => Promise<number>;
  readonly convergeMs: number;
  readonly #t0 = Date.now();

  constructor(options: { client: KubeClient; load: LoadOptions; tag: string; synced: () => Promise<number>; convergeMs?: number }) {
    this.client = options.client;
    this.load = options.load;
    this.tag = options.tag;
    this.synced = options.synced;
    this.convergeMs = options.convergeMs ?? 300_000;
  }

  progress(line: string): void {
    process.stderr.write(`[${this.tag} +${Math.round((Date.now() - this.#t0) / 1000)}s] ${line}\n`);
  }

  figure(line: string): void {
    this.figures.push(line);
    this.progress(line);
  }

  /** Creates the load and waits until every Secret is right. */
  async initial(): Promise<{ createMs: number; convergeMs: number }> {
    this.rounds++;
    const items = roundItems(this.load, this.rounds);
    const sealStarted = Date.now();
    const manifests = await sealAll(this.load, items);
    this.progress(`sealed ${items.length} in ${((Date.now() - sealStarted) / 1000).toFixed(1)} s`);
    const started = Date.now();
    await applyAll(this.client, manifests);
    const createMs = Date.now() - started;
    for (const item of items) this.expected.set(keyOf(item), item);
    await waitAllCorrect(this.client, this.expected, this.load.namespaces, this.convergeMs, (l) => this.progress(l));
    const convergeMs = Date.now() - started;
    this.figure(
      `initial load: ${items.length} EnvelopeSecrets created in ${(createMs / 1000).toFixed(1)} s; every Secret right ${(convergeMs / 1000).toFixed(1)} s after the first create`,
    );
    return { createMs, convergeMs };
  }

  async faultRound(
    name: string,
    inject: () => Promise<void>,
    options: { startAfterSynced?: number; sampleNeverWrong?: boolean } = {},
  ): Promise<{ totalMs: number; samples: number }> {
    this.rounds++;
    const items = roundItems(this.load, this.rounds);
    const manifests = await sealAll(this.load, items);
    const allowed = new Map(items.map((item) => [keyOf(item), [this.expected.get(keyOf(item))!.values, item.values]]));
    const sampler = options.sampleNeverWrong === false ? undefined : sampleNeverWrong(this.client, this.load.namespaces, allowed);
    const threshold = options.startAfterSynced ?? 100;
    const base = await this.synced();
    const started = Date.now();
    const applying = applyAll(this.client, manifests);
    try {
      await waitFor(`${threshold} objects of round ${this.rounds} synced before the fault`, async () => (await this.synced()) - base >= threshold, {
        timeoutMs: 180_000,
      });
      const faultAt = Date.now() - started;
      this.progress(`round ${this.rounds}: injecting ${name} ${(faultAt / 1000).toFixed(1)} s into the round`);
      await inject();
      await applying;
      for (const item of items) this.expected.set(keyOf(item), item);
      this.progress(`round ${this.rounds} (${name}) applied and injected; waiting for every Secret`);
      await waitAllCorrect(this.client, this.expected, this.load.namespaces, this.convergeMs, (l) => this.progress(l));
      const totalMs = Date.now() - started;
      const sampled = await sampler?.stop();
      this.figure(
        `${name}: fault injected ${(faultAt / 1000).toFixed(1)} s into a round of ${items.length}; every Secret right ${(totalMs / 1000).toFixed(1)} s after the round began${sampled ? `; ${sampled.samples} samples of all Secrets during the round, ${sampled.wrong.length} ever wrong` : ''}`,
      );
      if (sampled && sampled.wrong.length > 0)
        throw new Error(`Secrets seen with data that was neither the old nor the new values: ${sampled.wrong.slice(0, 10).join(', ')}`);
      if (sampled && sampled.samples === 0) throw new Error('the sampler never managed to list the Secrets');
      return { totalMs, samples: sampled?.samples ?? 0 };
    } finally {
      await sampler?.stop();
      await applying.catch(() => {});
    }
  }
}

/** Counts EnvelopeSecrets by Ready reason (for progress and mid-reconcile checks). */
export async function readyCounts(client: KubeClient, namespaces: readonly string[]): Promise<Record<string, number>> {
  const sources = await listAll<LiveEnvelopeSecret>(client, paths.envelopeSecrets, namespaces);
  const counts: Record<string, number> = {};
  for (const s of sources) {
    const ready = s.status?.conditions?.find((c) => c.type === 'Ready');
    const current = s.status?.observedGeneration === s.metadata.generation;
    const key = `${ready?.status ?? 'None'}/${ready?.reason ?? 'None'}${current ? '' : '(stale)'}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

// ---------------------------------------------------------------------------------
// The controller as a process

export interface ControllerProcessOptions {
  /** A kubeconfig file (e.g. one pointing at a proxy). */
  kubeconfig: string;
  namespace: string;
  namespaces: readonly string[];
  identity: string;
  /** More flags, e.g. --workers 8, --lease-duration 8s. */
  args?: readonly string[];
  env?: Record<string, string>;
}

export interface ControllerProcess {
  readonly pid: number;
  readonly metricsUrl: string;
  readonly identity: string;
  /** Every log line (pino JSON) it wrote so far. */
  readonly logs: string[];
  /** Settles when the process exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after graceMs; resolves when it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** The value of a counter or gauge, summed over the series matching labels; undefined when unreachable. */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  /** Saves a scrape of /metrics for the leak check. */
  recordMetrics(): Promise<void>;
}

/** Entry point that runs the envseal CLI from source (Node 24 strips the types). */
const CLI_ENTRY = path.join(repoRoot, 'test/harness/faults-envseal.ts');

/** Starts `envseal controller` as a child process with its own metrics port on 127.0.0.1. */
export async function spawnController(options: ControllerProcessOptions): Promise<ControllerProcess> {
  const port = await freePort();
  const args = [
    CLI_ENTRY,
    'controller',
    '--kubeconfig',
    options.kubeconfig,
    '--controller-namespace',
    options.namespace,
    '--namespaces',
    options.namespaces.join(','),
    '--metrics-address',
    `127.0.0.1:${port}`,
    '--identity',
    options.identity,
    '--allowed-secret-types',
    `*=${FAULT_TEST_SECRET_TYPE}`,
    ...(options.args ?? []),
  ];
  const env: NodeJS.ProcessEnv = {};
  for (const name of ['PATH', 'HOME', 'LANG', 'TMPDIR']) if (process.env[name] !== undefined) env[name] = process.env[name];
  const child: ChildProcess = spawn(process.execPath, args, { env: { ...env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  forEachOutputLine(child, (line) => {
    logs.push(line);
    recordLeakText('log', line);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  const handle: ControllerProcess = {
    pid: child.pid ?? -1,
    metricsUrl,
    identity: options.identity,
    logs,
    exited,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    async metric(name, labels = {}) {
      const text = await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) }).then(
        (r) => r.text(),
        () => undefined,
      );
      if (text === undefined) return undefined;
      return sumMetric(text, name, labels);
    },
    async recordMetrics() {
      const text = await fetch(metricsUrl, { signal: AbortSignal.timeout(5000) }).then(
        (r) => r.text(),
        () => undefined,
      );
      if (text !== undefined) recordLeakText('metrics', text);
    },
  };
  // Ready once /healthz answers (the process loads in about a second).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`the controller exited at start (code ${child.exitCode}):\n${logs.slice(-20).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`the controller did not serve /healthz within 30 s:\n${logs.slice(-20).join('\n')}`);
    await sleep(100);
  }
  return handle;
}

/**
 * Keeps a controller process running as the kubelet keeps a container running
 * (restartPolicy Always): when it exits without being asked to, it is started again
 * after restartDelayMs. `restarts` counts those restarts.
 */
export class SupervisedController {
  readonly #options: ControllerProcessOptions;
  readonly #restartDelayMs: number;
  #current: ControllerProcess | undefined;
  #stopping = false;
  #loop: Promise<void> | undefined;
  restarts = 0;
  /** Every process this supervisor started, in order. */
  readonly history: ControllerProcess[] = [];
  /** Exit codes and signals of processes that exited by themselves. */
  readonly unexpectedExits: string[] = [];

  constructor(options: ControllerProcessOptions, restartDelayMs = 1000) {
    this.#options = options;
    this.#restartDelayMs = restartDelayMs;
  }

  get current(): ControllerProcess {
    if (!this.#current) throw new Error('controller not started');
    return this.#current;
  }

  async start(): Promise<void> {
    this.#current = await spawnController(this.#options);
    this.history.push(this.#current);
    this.#loop = this.#watch();
  }

  async #watch(): Promise<void> {
    while (!this.#stopping) {
      const exit = await this.current.exited;
      if (this.#stopping) return;
      this.unexpectedExits.push(`code ${exit.code} signal ${exit.signal}`);
      await sleep(this.#restartDelayMs);
      if (this.#stopping) return;
      for (;;) {
        try {
          this.#current = await spawnController(this.#options);
          break;
        } catch {
          await sleep(this.#restartDelayMs);
          if (this.#stopping) return;
        }
      }
      this.history.push(this.#current);
      this.restarts++;
    }
  }

  /** SIGKILLs the running process (the supervisor then starts a new one); resolves once it is dead. */
  async crash(): Promise<ControllerProcess> {
    const victim = this.current;
    victim.kill('SIGKILL');
    await victim.exited;
    return victim;
  }

  /** Waits until a process other than `previous` runs and serves /healthz. */
  async waitForReplacement(previous: ControllerProcess, timeoutMs = 30_000): Promise<ControllerProcess> {
    const deadline = Date.now() + timeoutMs;
    while (this.#current === previous) {
      if (Date.now() > deadline) throw new Error('the supervisor did not start a replacement');
      await sleep(100);
    }
    return this.current;
  }

  /** Stops supervising and SIGKILLs the process: a replica whose node died (no restart). */
  async abandon(): Promise<ControllerProcess> {
    this.#stopping = true;
    const victim = this.current;
    victim.kill('SIGKILL');
    await victim.exited;
    await this.#loop;
    return victim;
  }

  /** Everything every process of this supervisor logged. */
  allLogs(): string[] {
    return this.history.flatMap((p) => p.logs);
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#current?.recordMetrics();
    await this.#current?.stop();
    await this.#loop;
  }
}

/** A copy of the admin kubeconfig whose server is `server` (e.g. a proxy on 127.0.0.1). */
export function kubeconfigFor(server: string, file: string): string {
  const text = fs.readFileSync(sharedCluster().kubeconfigPath, 'utf8');
  const replaced = text.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: ${server}`);
  if (replaced === text) throw new Error('could not find the server in the admin kubeconfig');
  fs.writeFileSync(file, replaced, { mode: 0o600 });
  return file;
}

/** A scratch directory inside the shared cluster's temp dir (removed with it). */
export function scratchDir(name: string): string {
  const dir = path.join(sharedCluster().dir, 'faults', `${name}-${randomBytes(3).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

// ---------------------------------------------------------------------------------
// Fault injectors

export interface TcpProxy {
  readonly port: number;
  /** Connections currently open through the proxy. */
  readonly open: number;
  /** Connections cut so far. */
  cuts: number;
  /** Destroys every open connection (watches included) at once. */
  cutAll(): void;
  /** Cuts everything and refuses (resets) new connections until resume(). */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of 127.0.0.1:targetPort (TLS passes through). */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let paused = false;
  const server = net.createServer((client) => {
    if (paused) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const proxy: TcpProxy = {
    port: (server.address() as net.AddressInfo).port,
    get open() {
      return pairs.size;
    },
    cuts: 0,
    cutAll() {
      for (const pair of [...pairs]) {
        proxy.cuts++;
        pair.client.resetAndDestroy();
        pair.upstream.destroy();
      }
    },
    pause() {
      paused = true;
      proxy.cutAll();
    },
    resume() {
      paused = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        proxy.cutAll();
        server.close(() => resolve());
      }),
  };
  return proxy;
}

export interface KmsFaultProxy {
  /** http://127.0.0.1:PORT: give this to the controller as its KMS endpoint. */
  readonly endpoint: string;
  /** Where requests go (changed when the emulator restarts on another port). */
  upstream: string;
  /** Answer the next n requests of these operations (default Decrypt) with ThrottlingException. */
  throttleNext(n: number, operations?: readonly string[]): void;
  /** Answer every request of these operations (default Decrypt) with ThrottlingException for ms. */
  throttleFor(ms: number, operations?: readonly string[]): void;
  /** Throttled answers given so far. */
  readonly throttled: number;
  /** Requests still to be throttled. */
  readonly pendingThrottles: number;
  /** Forwarded requests by operation (TrentService.X -> X). */
  readonly forwarded: Map<string, number>;
  /** Requests that found no emulator listening (connection reset). */
  readonly failedUpstream: number;
  close(): Promise<void>;
}

/**
 * An HTTP proxy in front of a KMS emulator: forwards every request unchanged, except
 * that it can answer a burst -- the next N requests, or every request for a while --
 * with the KMS's throttling error (HTTP 400, x-amzn-ErrorType ThrottlingException), and
 * resets the connection when the emulator does not answer (as a load balancer without a
 * backend does).
 */
export async function startKmsFaultProxy(upstream: string): Promise<KmsFaultProxy> {
  let throttleLeft = 0;
  let throttleUntil = 0;
  let throttleOps: ReadonlySet<string> = new Set(['Decrypt']);
  let throttled = 0;
  let failedUpstream = 0;
  const forwarded = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const operation = String(req.headers['x-amz-target'] ?? '').replace(/^TrentService\./, '');
      if ((throttleLeft > 0 || Date.now() < throttleUntil) && throttleOps.has(operation)) {
        if (throttleLeft > 0) throttleLeft--;
        throttled++;
        const body = JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' });
        res.writeHead(400, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-errortype': 'ThrottlingException',
          'x-amzn-requestid': randomBytes(8).toString('hex'),
          'content-length': Buffer.byteLength(body),
        });
        res.end(body);
        return;
      }
      const target = new URL(req.url ?? '/', proxy.upstream);
      const upstreamReq = http.request(target, { method: req.method, headers: req.headers }, (upstreamRes) => {
        forwarded.set(operation, (forwarded.get(operation) ?? 0) + 1);
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      });
      upstreamReq.on('error', () => {
        failedUpstream++;
        req.socket.resetAndDestroy();
      });
      upstreamReq.end(Buffer.concat(chunks));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const proxy: KmsFaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    upstream,
    throttleNext(n, operations = ['Decrypt']) {
      throttleLeft = n;
      throttleOps = new Set(operations);
    },
    throttleFor(ms, operations = ['Decrypt']) {
      throttleUntil = Date.now() + ms;
      throttleOps = new Set(operations);
    },
    get throttled() {
      return throttled;
    },
    get pendingThrottles() {
      return throttleLeft;
    },
    forwarded,
    get failedUpstream() {
      return failedUpstream;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  return proxy;
}

// ---------------------------------------------------------------------------------
// etcd

/** The etcd client URL of the shared control plane (from the API server's flags). */
export function etcdUrl(): string {
  const dir = sharedCluster().dir;
  const pids = fs.readFileSync(path.join(dir, 'pgids'), 'utf8').split('\n').filter(Boolean);
  for (const pid of pids) {
    let cmdline: string;
    try {
      cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    const flag = cmdline.split('\0').find((arg) => arg.startsWith('--etcd-servers=') || arg.startsWith('--listen-client-urls='));
    if (flag) return flag.slice(flag.indexOf('=') + 1).split(',')[0]!;
  }
  throw new Error(`no etcd URL found from the processes in ${dir}/pgids`);
}

/** Compacts etcd's history up to its current revision (what kube-apiserver does every 5 minutes). */
export async function compactEtcd(): Promise<{ revision: number }> {
  const base = etcdUrl();
  const post = async <T>(p: string, body: unknown): Promise<T> => {
    const res = await fetch(`${base}${p}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`etcd ${p}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  };
  const range = await post<{ header: { revision: string } }>('/v3/kv/range', { key: Buffer.from('/registry/namespaces/default').toString('base64') });
  const revision = Number(range.header.revision);
  await post('/v3/kv/compaction', { revision: String(revision), physical: true });
  return { revision };
}

/**
 * Scans a fault file's controller logs and a fresh scrape of its metrics for every data
 * key the suite declared so far (base64, hex) and for the canary marker. Returns how
 * many keys were looked for, how many lines were read, and what was found (nothing, if
 * all is well).
 */
export async function scanControllerOutput(options: {
  logs: readonly string[];
  metricsUrl: string;
}): Promise<{ keys: number; lines: number; findings: Finding[] }> {
  const keys = new KeyNeedles();
  for (const key of readRecord().declaredDataKeys) keys.add(key);
  const metrics = await fetch(options.metricsUrl, { signal: AbortSignal.timeout(10_000) }).then((r) => r.text());
  const findings = scanTexts(
    new Map([
      ['controller logs', options.logs.join('\n')],
      ['metrics', metrics],
    ]),
    keys,
  );
  return { keys: keys.size, lines: options.logs.length, findings };
}
