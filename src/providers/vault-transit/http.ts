/** The shapes of one Vault call and its answer, and small helpers for messages. */

export interface CallTarget {
  operation: string;
  /** The key path the call is about. */
  key: string;
  signal: AbortSignal | undefined;
}

export interface VaultResponse {
  data?: Record<string, unknown>;
  auth?: { client_token?: unknown; lease_duration?: unknown };
}

export function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

export function zero(bytes: Uint8Array | undefined): void {
  bytes?.fill(0);
}

/** The address without credentials or query, for messages. */
export function shownAddress(address: string): string {
  try {
    const url = new URL(address);
    return `${url.protocol}//${url.host}${url.pathname === '/' ? '' : url.pathname}`;
  } catch {
    return '(invalid address)';
  }
}
