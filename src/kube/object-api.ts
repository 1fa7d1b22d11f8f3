import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ApiException,
  createConfiguration,
  KubernetesObjectApi,
  type Middleware,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
} from '@kubernetes/client-node';
import { KubeApiError, type KubeClient, KubeConfigError, type KubeObject, kubeApiError } from './client.ts';

/** Which object a call is about: for the error message (no values). */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

/** One call in flight: its AbortSignal, the body of the last successful answer, and the object read's resourceVersion floor. */
interface CallState {
  signal: AbortSignal | undefined;
  body?: string;
  notOlderThan?: { name: string; resourceVersion: string };
}

/** What a caller sets for one call; `body` is filled in as it runs. */
type CallOptions = Omit<CallState, 'body'>;

/**
 * client-node's KubernetesObjectApi as envseal uses it: every request on the KubeClient's
 * shared keep-alive Agent (client-node makes a new one, a new TLS connection, per request),
 * the caller's AbortSignal honoured (KubernetesObjectApi ignores per-call options: the
 * signal travels in the async context to a middleware of the instance), its errors
 * turned into KubeApiError with the redaction of src/kube/client.ts (client-node's
 * ApiException carries the whole answer in its message, which may quote a Secret's
 * value), and objects answered as the API server wrote them: client-node's model
 * objects (timestamps as Date, unknown fields dropped, `_continue`) are not what the
 * caches and the reconciler read. Measurements and the upstream issues: docs/controller.md,
 * "The Kubernetes client".
 */
export class KubeObjectApi {
  readonly #api: KubernetesObjectApi;
  readonly #call = new AsyncLocalStorage<CallState>();
  readonly #client: KubeClient;

  constructor(client: KubeClient) {
    this.#client = client;
    const cluster = client.kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeConfigError('the kubeconfig has no current cluster (set one with kubectl config use-context)');
    const transport: Middleware = {
      pre: async (context: RequestContext) => {
        context.setDispatcher((await client.dispatcher(context)) as never);
        const state = this.#call.getStore();
        if (state?.signal) context.setSignal(state.signal as never);
        // On the object's own request only, not on a discovery request before it.
        if (state?.notOlderThan && isObjectPath(new URL(context.getUrl()).pathname, state.notOlderThan.name)) {
          context.setQueryParam('resourceVersion', state.notOlderThan.resourceVersion);
        }
        return context;
      },
      post: async (response: ResponseContext) => {
        const state = this.#call.getStore();
        if (state && response.httpStatusCode >= 200 && response.httpStatusCode <= 299) {
          // Kept as JSON text: the last successful answer of a call is its object's
          // (a discovery request, when there is one, comes first).
          const text = await response.body.text();
          state.body = text;
          response.body = { text: async () => text, binary: async () => Buffer.from(text), stream: () => null };
        }
        return response;
      },
    };
    this.#api = new KubernetesObjectApi(
      createConfiguration({
        baseServer: new ServerConfiguration(cluster.server, {}),
        authMethods: { default: client.kubeConfig },
        promiseMiddleware: [transport],
      }),
    );
  }

  /**
   * Reads one object. With `notOlderThan` (a resourceVersion the caller has seen, from a
   * watch), the API server answers from its watch cache with a version at least that new,
   * instead of reading etcd: what an informer-backed read gives in client-go, one etcd
   * round trip fewer per reconcile.
   */
  read<T = KubeObject>(ref: ObjectRef, options: { signal?: AbortSignal; notOlderThan?: string | undefined } = {}): Promise<T> {
    const call: CallOptions = {
      signal: options.signal,
      ...(options.notOlderThan ? { notOlderThan: { name: ref.name, resourceVersion: options.notOlderThan } } : {}),
    };
    return this.#run<T>('GET', ref, call, () => this.#api.read(specOf(ref)));
  }

  /** Server-side apply of `object` (its apiVersion, kind and metadata name the target). */
  apply<T = KubeObject>(object: KubeObject, options: { fieldManager: string; force?: boolean; signal?: AbortSignal }): Promise<T> {
    return this.#run<T>('PATCH', refOf(object), { signal: options.signal }, () =>
      this.#api.patch(object as never, undefined, undefined, options.fieldManager, options.force, PatchStrategy.ServerSideApply),
    );
  }

  /** Creates `object` (a `metadata.generateName` lets the API server pick the name). */
  create<T = KubeObject>(object: KubeObject, options: { fieldManager?: string; signal?: AbortSignal } = {}): Promise<T> {
    return this.#run<T>('POST', refOf(object), { signal: options.signal }, () => this.#api.create(object as never, undefined, undefined, options.fieldManager));
  }

  /** Replaces `object`; its `metadata.resourceVersion` is a precondition (409 Conflict when it changed). */
  replace<T = KubeObject>(object: KubeObject, options: { fieldManager?: string; signal?: AbortSignal } = {}): Promise<T> {
    return this.#run<T>('PUT', refOf(object), { signal: options.signal }, () => this.#api.replace(object as never, undefined, undefined, options.fieldManager));
  }

  /**
   * A JSON merge patch (RFC 7386) of the object `patch` names by its apiVersion, kind and
   * metadata. A `metadata.resourceVersion` in it is a precondition: the API server answers
   * 409 Conflict when the object has changed since.
   */
  mergePatch<T = KubeObject>(patch: KubeObject, options: { fieldManager?: string; signal?: AbortSignal }): Promise<T> {
    return this.#run<T>('PATCH', refOf(patch), { signal: options.signal }, () =>
      this.#api.patch(patch as never, undefined, undefined, options.fieldManager, undefined, PatchStrategy.MergePatch),
    );
  }

  /** Deletes one object; with `uid`, only if it is still that object (else 409 Conflict). */
  async delete(ref: ObjectRef, options: { uid?: string; signal?: AbortSignal } = {}): Promise<void> {
    const body = options.uid === undefined ? undefined : { preconditions: { uid: options.uid } };
    await this.#run('DELETE', ref, { signal: options.signal }, () =>
      this.#api.delete(specOf(ref), undefined, undefined, undefined, undefined, undefined, body),
    );
  }

  #run<T>(method: string, ref: ObjectRef, call: CallOptions, run: () => Promise<unknown>): Promise<T> {
    return this.#client.gate.run(() => this.#runOnce<T>(method, ref, call, run), call.signal);
  }

  async #runOnce<T>(method: string, ref: ObjectRef, call: CallOptions, run: () => Promise<unknown>): Promise<T> {
    const what = `${method} ${ref.kind} ${ref.namespace === undefined ? '' : `${ref.namespace}/`}${ref.name}`;
    const { signal } = call;
    // A fresh state per send: the gate may send the call again after a 429.
    const state: CallState = { ...call };
    try {
      await this.#call.run(state, run);
    } catch (error) {
      signal?.throwIfAborted();
      if (error instanceof ApiException) {
        const body: unknown = error.body;
        const text = typeof body === 'string' ? body : JSON.stringify(body ?? '');
        // Not chained: the ApiException's message holds the server's whole answer.
        throw kubeApiError({
          what,
          secretData: method !== 'GET' && method !== 'DELETE' && ref.kind === 'Secret' && ref.apiVersion === 'v1',
          status: error.code,
          text,
          retryAfter: headerOf(error.headers, 'retry-after'),
        });
      }
      // undici's fetch fails with a TypeError ("fetch failed") when there is no answer.
      if (error instanceof TypeError) throw new KubeApiError(0, 'Unreachable', `${what}: the API server did not answer (${error.message})`, { cause: error });
      throw error;
    }
    return (state.body ? JSON.parse(state.body) : undefined) as T;
  }
}

function specOf(ref: ObjectRef): never {
  const metadata = { name: ref.name, ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }) };
  return { apiVersion: ref.apiVersion, kind: ref.kind, metadata } as never;
}

/**
 * Whether a request path is the object's own (`/api/v1/[namespaces/NS/]PLURAL/NAME`, or
 * under `/apis/GROUP/VERSION/`), not the discovery request (`/api/v1`, `/apis/GROUP/VERSION`)
 * that client-node may send first.
 */
function isObjectPath(pathname: string, name: string): boolean {
  return pathname.split('/').length > (pathname.startsWith('/apis/') ? 4 : 3) && pathname.endsWith(`/${encodeURIComponent(name)}`);
}

function refOf(object: KubeObject): ObjectRef {
  return {
    apiVersion: object.apiVersion ?? 'v1',
    kind: object.kind ?? '',
    name: object.metadata?.name ?? '',
    ...(object.metadata?.namespace === undefined ? {} : { namespace: object.metadata.namespace }),
  };
}

/** A header of client-node's ApiException (its names are as the server sent them). */
function headerOf(headers: Record<string, string> | undefined, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers ?? {})) if (key.toLowerCase() === name) return value;
  return undefined;
}
