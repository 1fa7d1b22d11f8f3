import { type HttpMethod, type KubeConfig, RequestContext } from '@kubernetes/client-node';
import { createHash } from 'node:crypto';
import type https from 'node:https';
import { Agent, fetch } from 'undici';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { capMessage } from '../util/message.ts';
import { RequestGate } from './request-gate.ts';
import { EnvsealError, type ExitClass } from '../util/errors.ts';

/**
 * A thin Kubernetes REST client: client-node supplies the kubeconfig and authentication,
 * this adds what its generated APIs lack: an AbortSignal on every call, one typed error,
 * and watch streams whose timeouts the caller controls.
 */

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
    deletionTimestamp?: string;
    creationTimestamp?: string;
    [extra: string]: unknown;
  };
  [extra: string]: unknown;
}

export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export type PatchType = 'apply' | 'merge' | 'json' | 'strategic';
const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  apply: 'application/apply-patch+yaml',
  merge: 'application/merge-patch+json',
  json: 'application/json-patch+json',
  strategic: 'application/strategic-merge-patch+json',
};

export interface RequestOptions {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  patchType?: PatchType;
  signal?: AbortSignal;
  /** Told the length of a successful answer's body (characters), e.g. to size list pages. */
  onResponseBytes?: (length: number) => void;
}

/** One field the API server refused: its path (e.g. `data[.dockerconfigjson]`) and a reason code (`FieldValueInvalid`). */
export interface StatusCause {
  field: string;
  reason: string;
}

/** A kubeconfig envseal cannot use. */
export class KubeConfigError extends EnvsealError {
  readonly code = 'InvalidKubeconfig';
  constructor(message: string) {
    super(message);
    this.name = 'KubeConfigError';
  }

  override get exitClass(): ExitClass {
    return 'usage';
  }
}

/** An error answer of the API server, with its HTTP status and Status reason. */
export class KubeApiError extends EnvsealError {
  readonly status: number;
  readonly reason: string;
  /** The refused fields, without the server's wording (which may quote the value). */
  readonly causes: readonly StatusCause[];
  /** The answer's Retry-After, when it had one in seconds (APF's 429s do). */
  readonly retryAfterMs: number | undefined;
  constructor(
    status: number,
    reason: string,
    message: string,
    options?: { cause?: unknown; causes?: readonly StatusCause[]; retryAfterMs?: number | undefined },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
    this.causes = options?.causes ?? [];
    this.retryAfterMs = options?.retryAfterMs;
  }
  /** `HTTP404`, ...: the status; `reason` has the Status reason. */
  get code(): string {
    return `HTTP${this.status}`;
  }

  /** Throttled (429), a server error or a timeout: the same request may succeed later. */
  override get retryable(): boolean {
    return this.status === 429 || this.status >= 500 || this.status === 408;
  }

  get notFound(): boolean {
    return this.status === 404;
  }
  get conflict(): boolean {
    return this.status === 409;
  }
  get gone(): boolean {
    return this.status === 410;
  }
}

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly #server: string;
  #pool: { key: string; dispatcher: Agent } | undefined;

  /** Every request but watches goes through it: 429s are waited out and sent again (src/kube/request-gate.ts). */
  readonly gate: RequestGate;

  constructor(kubeConfig: KubeConfig, options: { gate?: RequestGate } = {}) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeConfigError('the kubeconfig has no current cluster (set one with kubectl config use-context)');
    this.kubeConfig = kubeConfig;
    this.#server = cluster.server.replace(/\/+$/, '');
    this.gate = options.gate ?? new RequestGate({ throttled: throttledBy });
  }

  request<T>(options: RequestOptions): Promise<T> {
    return this.gate.run(() => this.#request<T>(options), options.signal);
  }

  async #request<T>(options: RequestOptions): Promise<T> {
    const response = await this.#send(options);
    let text: string;
    try {
      text = await response.text();
    } catch (cause) {
      // The connection broke while the answer was coming in ("terminated").
      options.signal?.throwIfAborted();
      throw new KubeApiError(
        0,
        'Unreachable',
        `${options.method} ${options.path}: the answer of the API server was cut off (${cause instanceof Error ? cause.message : 'network error'})`,
        { cause },
      );
    }
    if (!response.ok) throw errorFromResponse(options, response, text);
    options.onResponseBytes?.(text.length);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Streams one watch request until the server closes it, `idleTimeoutMs` passes without
   * a line, or `signal` aborts. Rejects with KubeApiError on an error answer, including
   * an ERROR event (410 Gone when the resourceVersion expired).
   */
  async watch<T>(options: {
    path: string;
    query: Record<string, string | number | boolean | undefined>;
    idleTimeoutMs: number;
    signal: AbortSignal;
    onEvent: (event: WatchEvent<T>) => void;
  }): Promise<void> {
    const idle = new AbortController();
    const signal = AbortSignal.any([options.signal, idle.signal]);
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(new Error('watch idle timeout')), options.idleTimeoutMs);
      timer.unref();
    };
    arm();
    try {
      const response = await this.#send({ method: 'GET', path: options.path, query: { ...options.query, watch: true }, signal });
      if (!response.ok) throw errorFromResponse({ method: 'GET', path: options.path }, response, await response.text());
      if (!response.body) return;
      const lines = createInterface({ input: Readable.fromWeb(response.body as import('node:stream/web').ReadableStream) });
      for await (const line of lines) {
        arm();
        if (line.trim() === '') continue;
        const event = JSON.parse(line) as WatchEvent<T>;
        if (event.type === 'ERROR') {
          const status = event.object as { code?: number; reason?: string; message?: string };
          throw new KubeApiError(status.code ?? 500, status.reason ?? 'WatchError', capMessage(`watch ${options.path}: ${status.message ?? 'error event'}`));
        }
        options.onEvent(event);
      }
    } catch (error) {
      // An idle timeout just ends this watch; the caller resumes from its resourceVersion.
      if (idle.signal.aborted && !options.signal.aborted) return;
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * client-node gives every request a new undici Agent: a new TLS connection and
   * handshake per request (measured: 4x the latency and 6x the client CPU of a reused
   * connection), over HTTP/2, where a connection reset (RST) can leave requests hanging
   * until undici's 5-minute timeouts. One HTTP/1.1 keep-alive Agent is kept per client
   * instead, while the TLS material (re-read from the kubeconfig on every call, so that
   * rotated certificates are picked up) stays the same. Proxies (proxy-url) are left to
   * client-node. Also serves client-node's API classes (src/kube/object-api.ts).
   */
  async dispatcher(context: RequestContext): Promise<unknown> {
    const fresh = context.getDispatcher();
    if (!(fresh instanceof Agent)) return fresh;
    void fresh.close();
    const tls: https.RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(tls);
    const key = tlsFingerprint([tls.ca, tls.cert, tls.key, tls.pfx, tls.passphrase, tls.rejectUnauthorized, tls.servername]);
    if (this.#pool?.key !== key) {
      const previous = this.#pool?.dispatcher;
      const connect = Object.fromEntries(
        Object.entries({
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
          pfx: tls.pfx,
          passphrase: tls.passphrase,
          rejectUnauthorized: tls.rejectUnauthorized,
          servername: tls.servername,
        }).filter(([, v]) => v !== undefined),
      );
      this.#pool = { key, dispatcher: new Agent({ allowH2: false, connect: { ...connect, keepAlive: true, keepAliveInitialDelay: 30_000 } }) };
      // Let requests (watches) in flight on the old pool finish.
      void previous?.close();
    }
    return this.#pool.dispatcher;
  }

  async #send(options: RequestOptions) {
    const url = new URL(this.#server + options.path);
    for (const [key, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    const context = new RequestContext(url.toString(), options.method as HttpMethod);
    await this.kubeConfig.applySecurityAuthentication(context);
    const dispatcher = await this.dispatcher(context);
    const headers: Record<string, string> = { ...context.getHeaders(), accept: 'application/json' };
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = options.patchType ? PATCH_CONTENT_TYPES[options.patchType] : 'application/json';
      body = JSON.stringify(options.body);
    }
    try {
      return await fetch(url, { method: options.method, headers, body, dispatcher: dispatcher as never, signal: options.signal });
    } catch (cause) {
      options.signal?.throwIfAborted();
      throw new KubeApiError(
        0,
        'Unreachable',
        `${options.method} ${options.path}: the API server did not answer (${cause instanceof Error ? cause.message : 'network error'})`,
        { cause },
      );
    }
  }
}

/**
 * Whether a request sends Secret data. The API server's answer to such a request may
 * quote what it parsed: a kubernetes.io/dockerconfigjson Secret whose value is not JSON
 * is refused with "invalid character 'S' looking for beginning of value", the first byte
 * of the secret.
 */
function sendsSecretData(options: Pick<RequestOptions, 'method' | 'path'>): boolean {
  return options.method !== 'GET' && options.method !== 'DELETE' && SECRETS_PATH.test(options.path);
}
const SECRETS_PATH = /^\/api\/v1\/(?:namespaces\/[^/]+\/)?secrets(?:\/|$)/;

function errorFromResponse(
  options: Pick<RequestOptions, 'method' | 'path'>,
  response: { status: number; headers: { get(name: string): string | null } },
  text: string,
): KubeApiError {
  return kubeApiError({
    what: `${options.method} ${options.path}`,
    secretData: sendsSecretData(options),
    status: response.status,
    text,
    retryAfter: response.headers.get('retry-after'),
  });
}

/** The RequestGate's view of an error: the API server's 429 (APF's, or any other) and its Retry-After. */
export function throttledBy(error: unknown): { retryAfterMs: number | undefined } | undefined {
  return error instanceof KubeApiError && error.status === 429 ? { retryAfterMs: error.retryAfterMs } : undefined;
}

/** Retry-After in milliseconds when it is given in seconds (an HTTP date is not used by the API server). */
export function retryAfterMs(header: string | null | undefined): number | undefined {
  if (header === null || header === undefined || !/^\s*\d{1,6}\s*$/.test(header)) return undefined;
  return Number(header) * 1000;
}

/**
 * The KubeApiError of an error answer (`text`: its body). With `secretData` (the request
 * sent Secret values) it keeps only the field paths and reason codes of the Status.
 */
export function kubeApiError(options: {
  what: string;
  secretData: boolean;
  status: number;
  text: string;
  retryAfter?: string | null | undefined;
}): KubeApiError {
  const { status, text } = options;
  const retryAfter = retryAfterMs(options.retryAfter);
  let reason = 'Unknown';
  let message = text;
  let causes: StatusCause[] = [];
  try {
    const parsed = JSON.parse(text) as { reason?: string; message?: string; details?: { causes?: { field?: unknown; reason?: unknown }[] } };
    reason = typeof parsed.reason === 'string' ? parsed.reason : reason;
    message = typeof parsed.message === 'string' ? parsed.message : message;
    causes = (parsed.details?.causes ?? []).map((c) => ({
      field: typeof c.field === 'string' ? c.field : '',
      reason: typeof c.reason === 'string' ? c.reason : '',
    }));
  } catch {
    // not a Status object; keep the text
  }
  const what = `${options.what}: ${status} ${reason}`;
  if (options.secretData) {
    // Only the field paths and reason codes: never the server's wording about a value.
    const fields = causes.filter((c) => c.field !== '' || c.reason !== '').map((c) => `${c.field || '(object)'} ${c.reason || 'refused'}`);
    return new KubeApiError(status, reason, capMessage(fields.length > 0 ? `${what}: ${fields.join('; ')}` : what), { causes, retryAfterMs: retryAfter });
  }
  return new KubeApiError(status, reason, capMessage(`${what}: ${message}`), { causes, retryAfterMs: retryAfter });
}

/** Paths of the resources envseal uses. */
export const paths = {
  secrets: (namespace?: string) => (namespace ? `/api/v1/namespaces/${namespace}/secrets` : '/api/v1/secrets'),
  secret: (namespace: string, name: string) => `/api/v1/namespaces/${namespace}/secrets/${encodeURIComponent(name)}`,
  configMap: (namespace: string, name: string) => `/api/v1/namespaces/${namespace}/configmaps/${encodeURIComponent(name)}`,
  events: (namespace: string) => `/api/v1/namespaces/${namespace}/events`,
  envelopeSecrets: (namespace?: string) =>
    namespace ? `/apis/envseal.dev/v1alpha1/namespaces/${namespace}/envelopesecrets` : '/apis/envseal.dev/v1alpha1/envelopesecrets',
  envelopeSecret: (namespace: string, name: string) => `/apis/envseal.dev/v1alpha1/namespaces/${namespace}/envelopesecrets/${encodeURIComponent(name)}`,
  lease: (namespace: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${encodeURIComponent(name)}`,
  leases: (namespace: string) => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`,
};

/**
 * A digest of TLS material, to notice when it changed: each part hashed as it is (a
 * Buffer's bytes, a string's UTF-8), with its length, so that parts cannot run into each
 * other. Runs on every request: no JSON or base64 of certificates (measured: 9% of a
 * cold start's CPU when it did).
 */
export function tlsFingerprint(parts: readonly unknown[]): string {
  const hash = createHash('sha256');
  const length = Buffer.alloc(8);
  const add = (tag: number, bytes: Uint8Array) => {
    length.writeUInt32BE(tag, 0);
    length.writeUInt32BE(bytes.byteLength, 4);
    hash.update(length).update(bytes);
  };
  for (const part of parts) {
    const list = Array.isArray(part) ? part : [part];
    for (const item of list) {
      if (item === undefined || item === null) add(0, new Uint8Array(0));
      else if (item instanceof Uint8Array) add(1, item);
      else add(2, Buffer.from(String(item), 'utf8'));
    }
    add(3, new Uint8Array(0));
  }
  return hash.digest('hex');
}
