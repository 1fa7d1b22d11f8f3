import { KubeApiError } from '../kube/client.ts';
import { EnvsealError } from '../util/errors.ts';
import type { SecretManifest } from './desired.ts';
import type { ReconcilerApi } from './reconciler-api.ts';
import type { SecretObject } from './records.ts';

/**
 * Create before apply. Once the cache of managed Secrets holds its first complete list, a
 * Secret it does not hold is most likely absent: the reconciler then creates it (a POST,
 * which fails if a Secret of that name exists, a foreign one included) instead of reading
 * it first (a GET answering 404) and applying it. That is one request fewer per new
 * Secret, and a create costs the API server less than a server-side apply. A create that
 * finds a Secret there makes that key read first from then on (a foreign Secret is never
 * in the managed cache), and the reconcile starts over with what the read says.
 */
export class CreateFirst {
  readonly #listed: () => boolean;
  /** Keys whose Secret exists though the managed cache does not hold it (bounded by such collisions). */
  readonly #mustRead = new Set<string>();

  constructor(listed: () => boolean) {
    this.#listed = listed;
  }

  /** Whether a Secret missing from the cache may be taken as absent (to be created, not read). */
  assumeAbsent(key: string): boolean {
    return this.#listed() && !this.#mustRead.has(key);
  }

  /** Creates the Secret; a Secret already there is a SecretExistsError (start over, reading it). */
  async create(api: Pick<ReconcilerApi, 'createSecret'>, key: string, desired: SecretManifest, signal: AbortSignal): Promise<SecretObject> {
    try {
      return await api.createSecret(desired, signal);
    } catch (error) {
      if (error instanceof KubeApiError && error.status === 409 && error.reason === 'AlreadyExists') {
        this.#mustRead.add(key);
        throw new SecretExistsError(`Secret ${key} exists though the controller's cache does not hold it; reading it`, { cause: error });
      }
      throw error;
    }
  }

  forget(key: string): void {
    this.#mustRead.delete(key);
  }
}

/** The Secret to create was there: the reconcile starts over with the live Secret read. */
export class SecretExistsError extends EnvsealError {
  readonly code = 'SecretExists';
}
