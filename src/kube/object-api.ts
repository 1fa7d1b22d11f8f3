import { AsyncLocalStorage } from 'node:async_hooks';
import {
  ApiException,
  createConfiguration,
  KubernetesObjectApi,
  type KubernetesObject,
  type Middleware,
  PatchStrategy,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
} from '@kubernetes/client-node';
import { KubeApiError, type KubeClient, KubeConfigError, kubeApiError } from './client.ts';

/** Which object a call is about: for the error message (no values). */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
}

/**
 * client-node's KubernetesObjectApi as envseal uses it: every request on the KubeClient's
 * shared keep-alive Agent (client-node makes a new one, a new TLS connection, per request),
 * the caller's AbortSignal honoured (KubernetesObjectApi ignores per-call options: the
 * signal travels in the async context to a middleware of the instance), and its errors
 * turned into KubeApiError with the redaction of src/kube/client.ts (client-node's
 * ApiException carries the whole answer in its message, which may quote a Secret's
 * value). Measurements and the upstream issue: docs/controller.md, "The Kubernetes client".
 */
export class KubeObjectApi {
  readonly #api: KubernetesObjectApi;
  readonly #signal = new AsyncLocalStorage<AbortSignal | undefined>();

  constructor(client: KubeClient) {
    const cluster = client.kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeConfigError('the kubeconfig has no current cluster (set one with kubectl config use-context)');
    const transport: Middleware = {
      pre: async (context: RequestContext) => {
        context.setDispatcher((await client.dispatcher(context)) as never);
        const signal = this.#signal.getStore();
        if (signal) context.setSignal(signal as never);
        return context;
      },
      post: async (response: ResponseContext) => response,
    };
    const api = new KubernetesObjectApi(
      createConfiguration({
        baseServer: new ServerConfiguration(cluster.server, {}),
        authMethods: { default: client.kubeConfig },
        promiseMiddleware: [transport],
      }),
    );
    this.#api = api;
  }

  /** Reads one object. */
  read<T extends KubernetesObject>(ref: ObjectRef, options: { signal?: AbortSignal } = {}): Promise<T> {
    const spec = {
      apiVersion: ref.apiVersion,
      kind: ref.kind,
      metadata: { name: ref.name, ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }) },
    };
    return this.#call('GET', ref, options.signal, () => this.#api.read<T>(spec as never));
  }

  /** Server-side apply of `object` (its apiVersion, kind and metadata name the target). */
  apply<T extends KubernetesObject>(object: T, options: { fieldManager: string; force?: boolean; signal?: AbortSignal }): Promise<T> {
    const ref = {
      apiVersion: object.apiVersion ?? 'v1',
      kind: object.kind ?? '',
      name: object.metadata?.name ?? '',
      ...(object.metadata?.namespace === undefined ? {} : { namespace: object.metadata.namespace }),
    };
    return this.#call('PATCH', ref, options.signal, () =>
      this.#api.patch<T>(object, undefined, undefined, options.fieldManager, options.force, PatchStrategy.ServerSideApply),
    );
  }

  async #call<T>(method: string, ref: ObjectRef, signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
    const what = `${method} ${ref.kind} ${ref.namespace === undefined ? '' : `${ref.namespace}/`}${ref.name}`;
    try {
      return await this.#signal.run(signal, run);
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
        });
      }
      // undici's fetch fails with a TypeError ("fetch failed") when there is no answer.
      if (error instanceof TypeError) throw new KubeApiError(0, 'Unreachable', `${what}: the API server did not answer (${error.message})`, { cause: error });
      throw error;
    }
  }
}
