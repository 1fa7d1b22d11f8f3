// Test support for the reconciler's unit tests: plain objects standing in for what the
// reconciler talks to (the API calls, the caches, the Event sink), with the API server's
// rules that the reconciler relies on (immutable Secrets and types cannot change in place,
// preconditions, resourceVersions that change on every write). The e2e tests run the
// real API server; these run in milliseconds.
import { KubeApiError } from '../kube/client.ts';
import type { EventInput, InvolvedObject } from '../controller/events.ts';
import type { ReconcilerApi, Workload } from '../controller/reconciler-api.ts';
import { type EnvelopeSecretObject, type EnvelopeSecretRecord, envelopeSecretRecord, type SecretObject, secretRecord } from '../controller/records.ts';

export type ApiCall = keyof ReconcilerApi;

export class TestWorld {
  /** What the API server holds. */
  readonly envelopeSecrets = new Map<string, EnvelopeSecretObject>();
  readonly secrets = new Map<string, SecretObject>();
  readonly workloads = new Map<string, Workload>();
  /** What the watches put in the caches. */
  readonly records = new Map<string, EnvelopeSecretRecord>();
  readonly secretCache = new Map<string, SecretObject>();
  readonly events: (EventInput & { object: InvolvedObject })[] = [];
  readonly calls: { call: ApiCall; args: unknown[] }[] = [];
  /** Data keys of Secrets that another field manager owns: apply keeps them. */
  readonly foreignKeys = new Set<string>();
  /** The next call of this kind fails with this error. */
  readonly failNext = new Map<ApiCall, unknown>();
  #rv = 100;

  nextResourceVersion(): string {
    return String(++this.#rv);
  }

  /** Creates or updates an EnvelopeSecret as a user would, and lets the watch tell. */
  putEnvelopeSecret(object: EnvelopeSecretObject): EnvelopeSecretObject {
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    const old = this.envelopeSecrets.get(key);
    const specChanged = old !== undefined && JSON.stringify(old.spec) !== JSON.stringify(object.spec);
    const stored: EnvelopeSecretObject = structuredClone({
      ...object,
      metadata: {
        ...object.metadata,
        uid: object.metadata.uid ?? old?.metadata.uid ?? `uid-${object.metadata.name}`,
        generation: old ? (old.metadata.generation ?? 1) + (specChanged ? 1 : 0) : 1,
        resourceVersion: this.nextResourceVersion(),
      },
      ...(old?.status ? { status: old.status } : {}),
    });
    this.envelopeSecrets.set(key, stored);
    this.records.set(key, envelopeSecretRecord(structuredClone(stored)));
    return stored;
  }

  /** Creates or changes a Secret as another writer would (`manager`), and lets the watch tell. */
  putSecret(secret: SecretObject, manager = 'kubectl'): SecretObject {
    const key = `${secret.metadata?.namespace}/${secret.metadata?.name}`;
    const stored = structuredClone({
      ...secret,
      metadata: {
        ...secret.metadata,
        uid: secret.metadata?.uid ?? this.secrets.get(key)?.metadata?.uid ?? `uid-secret-${this.#rv}`,
        resourceVersion: this.nextResourceVersion(),
        managedFields: [{ manager }],
      },
    });
    this.secrets.set(key, stored);
    if (stored.metadata.labels?.['app.kubernetes.io/managed-by'] === 'envseal') this.secretCache.set(key, secretRecord(structuredClone(stored)));
    return stored;
  }

  deleteSecret(key: string): void {
    this.secrets.delete(key);
    this.secretCache.delete(key);
  }

  status(key: string) {
    return this.envelopeSecrets.get(key)?.status;
  }

  ready(key: string) {
    return this.status(key)?.conditions?.find((c) => c.type === 'Ready');
  }

  /** The values of the Secret as a pod would read them. */
  secretValues(key: string): Record<string, string> | undefined {
    const data = this.secrets.get(key)?.data;
    return data && Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
  }

  callsOf(call: ApiCall): unknown[][] {
    return this.calls.filter((c) => c.call === call).map((c) => c.args);
  }

  #enter(call: ApiCall, args: unknown[]): void {
    this.calls.push({ call, args });
    const failure = this.failNext.get(call);
    if (failure !== undefined) {
      this.failNext.delete(call);
      throw failure;
    }
  }

  readonly api: ReconcilerApi = {
    getEnvelopeSecret: async (namespace, name, _signal, notOlderThan) => {
      this.#enter('getEnvelopeSecret', [namespace, name, notOlderThan]);
      return structuredClone(this.envelopeSecrets.get(`${namespace}/${name}`));
    },
    getSecret: async (namespace, name) => {
      this.#enter('getSecret', [namespace, name]);
      return structuredClone(this.secrets.get(`${namespace}/${name}`));
    },
    applySecret: async (desired) => {
      this.#enter('applySecret', [desired]);
      const key = `${desired.metadata.namespace}/${desired.metadata.name}`;
      const live = this.secrets.get(key);
      const kept = Object.fromEntries(Object.entries(live?.data ?? {}).filter(([k]) => this.foreignKeys.has(k)));
      const data = { ...kept, ...desired.data };
      if (live && (live.type ?? 'Opaque') !== desired.type)
        throw new KubeApiError(422, 'Invalid', `Secret "${desired.metadata.name}" is invalid: type: Invalid value: field is immutable`);
      if (live?.immutable === true && JSON.stringify(live.data) !== JSON.stringify(data))
        throw new KubeApiError(422, 'Invalid', `Secret "${desired.metadata.name}" is invalid: data: Forbidden: field is immutable when immutable is set`);
      const written = structuredClone({
        ...desired,
        data,
        metadata: {
          ...desired.metadata,
          uid: live?.metadata?.uid ?? `uid-secret-${this.#rv}`,
          resourceVersion: this.nextResourceVersion(),
          managedFields: [{ manager: 'envseal' }],
        },
      }) as SecretObject;
      this.secrets.set(key, written);
      this.secretCache.set(key, secretRecord(structuredClone(written)));
      return structuredClone(written);
    },
    createSecret: async (desired) => {
      this.#enter('createSecret', [desired]);
      const key = `${desired.metadata.namespace}/${desired.metadata.name}`;
      if (this.secrets.has(key)) throw new KubeApiError(409, 'AlreadyExists', `secrets "${desired.metadata.name}" already exists`);
      const written = structuredClone({
        ...desired,
        metadata: { ...desired.metadata, uid: `uid-secret-${this.#rv}`, resourceVersion: this.nextResourceVersion(), managedFields: [{ manager: 'envseal' }] },
      }) as SecretObject;
      this.secrets.set(key, written);
      this.secretCache.set(key, secretRecord(structuredClone(written)));
      return structuredClone(written);
    },
    deleteSecret: async (namespace, name, uid) => {
      this.#enter('deleteSecret', [namespace, name, uid]);
      const key = `${namespace}/${name}`;
      const live = this.secrets.get(key);
      if (!live) throw new KubeApiError(404, 'NotFound', `secrets "${name}" not found`);
      if (uid !== undefined && live.metadata?.uid !== uid) throw new KubeApiError(409, 'Conflict', 'Precondition failed: UID in precondition does not match');
      this.deleteSecret(key);
    },
    removeSecretKeys: async (namespace, name, { resourceVersion, keys }) => {
      this.#enter('removeSecretKeys', [namespace, name, keys]);
      const key = `${namespace}/${name}`;
      const live = this.secrets.get(key);
      if (!live || live.metadata?.resourceVersion !== resourceVersion) throw new KubeApiError(409, 'Conflict', 'the Secret changed');
      const data = { ...live.data };
      for (const k of keys) delete data[k];
      const written = { ...live, data, metadata: { ...live.metadata, resourceVersion: this.nextResourceVersion() } };
      this.secrets.set(key, written);
      this.secretCache.set(key, secretRecord(structuredClone(written)));
      return structuredClone(written);
    },
    getWorkload: async (namespace, kind, name) => {
      this.#enter('getWorkload', [namespace, kind, name]);
      return structuredClone(this.workloads.get(`${namespace}/${kind}/${name}`));
    },
    annotatePodTemplate: async (namespace, kind, name, annotations) => {
      this.#enter('annotatePodTemplate', [namespace, kind, name, annotations]);
      const workload = this.workloads.get(`${namespace}/${kind}/${name}`);
      if (!workload) throw new KubeApiError(404, 'NotFound', `${kind} ${name} not found`);
      workload.spec ??= {};
      workload.spec.template ??= {};
      const template = workload.spec.template;
      template.metadata = { ...template.metadata, annotations: { ...template.metadata?.annotations, ...annotations } };
    },
    patchStatus: async (namespace, name, status) => {
      this.#enter('patchStatus', [namespace, name, status]);
      const key = `${namespace}/${name}`;
      const object = this.envelopeSecrets.get(key);
      if (!object) throw new KubeApiError(404, 'NotFound', `envelopesecrets "${name}" not found`);
      const updated = { ...object, status: structuredClone(status), metadata: { ...object.metadata, resourceVersion: this.nextResourceVersion() } };
      this.envelopeSecrets.set(key, updated);
      this.records.set(key, envelopeSecretRecord(structuredClone(updated)));
    },
  };

  readonly eventSink = {
    record: (object: InvolvedObject, event: EventInput) => {
      this.events.push({ ...event, object });
    },
  };
}
