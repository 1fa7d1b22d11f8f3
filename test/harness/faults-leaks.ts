// The leak check across the whole e2e suite.
//
// Convention: every secret value a test seals contains the marker "CANARY-" (data key
// names and object names never do). Recording: every log line of every controller a
// test starts (in-process through ./controller.ts, as a process through ./faults.ts)
// and a scrape of its /metrics when it stops are appended to files under
// <shared cluster dir>/leak-record/; data keys a test generates can be declared there
// too (KMS-sealed ones cannot be recovered once the emulator is gone). The last e2e
// file (test/e2e/zz-leaks.test.ts) scans all of it, plus every Event and every
// EnvelopeSecret status in the cluster, for the marker (raw, base64 at every alignment,
// hex), for age identities, and for every data key (base64, hex) it can recover by
// unwrapping the cluster's envelopes with the cluster age identities found in the
// cluster, together with the value keys derived from them.
import { createDecipheriv } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';
import { Decrypter } from 'age-encryption';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import { deriveKeys } from '../../src/envelope/kdf.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { boundProvider, type KeyProvider } from '../../src/providers/types.ts';

export const CANARY_MARKER = 'CANARY-';
export type LeakRecordKind = 'log' | 'metrics';

let cachedDir: string | null | undefined;

/** <shared cluster dir>/leak-record, or undefined outside the e2e project. */
export function leakRecordDir(): string | undefined {
  if (cachedDir === undefined) {
    try {
      const cluster = inject('envsealCluster');
      cachedDir = cluster ? path.join(cluster.dir, 'leak-record') : null;
      if (cachedDir) fs.mkdirSync(cachedDir, { recursive: true, mode: 0o700 });
    } catch {
      cachedDir = null;
    }
  }
  return cachedDir ?? undefined;
}

/** Appends text (one log line, or a metrics scrape) to this process's record. */
export function recordLeakText(kind: LeakRecordKind, text: string): void {
  const dir = leakRecordDir();
  if (!dir) return;
  fs.appendFileSync(path.join(dir, `${kind}-${process.pid}.txt`), text.endsWith('\n') ? text : `${text}\n`);
}

/** Declares data keys a test generated (hex, one per line) so that the final scan looks for them. */
export function declareDataKeys(keys: readonly Uint8Array[]): void {
  const dir = leakRecordDir();
  if (!dir || keys.length === 0) return;
  fs.appendFileSync(path.join(dir, `datakeys-${process.pid}.txt`), keys.map((k) => `${Buffer.from(k).toString('hex')}\n`).join(''));
}

/**
 * Wraps a sealing provider so that every data key it generates or wraps is declared
 * (copied before the caller zeroes it).
 */
export function declaringDataKeys(provider: KeyProvider): KeyProvider {
  const bound = boundProvider(provider);
  const generate = bound.generateDataKey;
  return {
    ...bound,
    wrap: async (request) => {
      declareDataKeys([Uint8Array.from(request.dataKey)]);
      return bound.wrap(request);
    },
    ...(generate
      ? {
          generateDataKey: async (request: Parameters<typeof generate>[0]) => {
            const generated = await generate(request);
            declareDataKeys([Uint8Array.from(generated.dataKey)]);
            return generated;
          },
        }
      : {}),
  };
}

export interface RecordedMaterial {
  files: number;
  logLines: number;
  metricScrapes: number;
  declaredDataKeys: Uint8Array[];
  /** name of the source -> text */
  texts: Map<string, string>;
}

/** Everything recorded so far by every test file of this run. */
export function readRecord(): RecordedMaterial {
  const dir = leakRecordDir();
  const result: RecordedMaterial = { files: 0, logLines: 0, metricScrapes: 0, declaredDataKeys: [], texts: new Map() };
  if (!dir) return result;
  for (const file of fs.readdirSync(dir).sort()) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    if (file.startsWith('datakeys-')) {
      for (const line of text.split('\n')) if (/^[0-9a-f]{64}$/.test(line)) result.declaredDataKeys.push(Buffer.from(line, 'hex'));
      continue;
    }
    result.files++;
    if (file.startsWith('log-')) result.logLines += text.split('\n').filter(Boolean).length;
    if (file.startsWith('metrics-')) result.metricScrapes += (text.match(/^# HELP envseal_reconcile_total /gm) ?? []).length;
    result.texts.set(`record ${file}`, text);
  }
  return result;
}

// ---------------------------------------------------------------------------------
// Needles

/** The base64 of MARKER at each of the three byte alignments: the characters fixed by the marker alone. */
function base64Alignments(marker: string): string[] {
  const bytes = Buffer.from(marker);
  const out: string[] = [];
  for (let a = 0; a < 3; a++) {
    const zeros = Buffer.concat([Buffer.alloc(a, 0), bytes, Buffer.alloc(2, 0)]).toString('base64');
    const ones = Buffer.concat([Buffer.alloc(a, 0xff), bytes, Buffer.alloc(2, 0xff)]).toString('base64');
    let best = '';
    let run = '';
    for (let i = 0; i < zeros.length; i++) {
      if (zeros[i] === ones[i]) {
        run += zeros[i];
        if (run.length > best.length) best = run;
      } else run = '';
    }
    out.push(best);
  }
  return out;
}

/** Literal strings that must never appear: the canary marker in every encoding, age identities. */
export function markerNeedles(): { label: string; text: string }[] {
  const hex = Buffer.from(CANARY_MARKER).toString('hex');
  return [
    { label: 'canary marker', text: CANARY_MARKER },
    ...base64Alignments(CANARY_MARKER).map((text, a) => ({ label: `canary marker, base64 alignment ${a}`, text })),
    { label: 'canary marker, hex', text: hex },
    { label: 'canary marker, HEX', text: hex.toUpperCase() },
    { label: 'age identity', text: 'AGE-SECRET-KEY-' },
  ];
}

/**
 * A set of secret byte strings (data keys, value keys) searched in base64 and hex. The
 * scan slides a 16-character window over long base64/hex runs only, so that thousands
 * of keys over megabytes of logs take seconds.
 */
export class KeyNeedles {
  readonly #b64 = new Map<string, string[]>();
  readonly #hex = new Map<string, string[]>();
  #count = 0;

  get size(): number {
    return this.#count;
  }

  add(key: Uint8Array): void {
    if (key.length < 16) return;
    const b64 = Buffer.from(key)
      .toString('base64')
      .slice(0, Math.floor((key.length * 4) / 3));
    const hex = Buffer.from(key).toString('hex');
    push(this.#b64, b64.slice(0, 16), b64);
    push(this.#hex, hex.slice(0, 16), hex);
    this.#count++;
  }

  /** Names (never the bytes) of the needles found in text: 'base64' or 'hex' with a count. */
  find(text: string): string[] {
    const found: string[] = [];
    for (const match of text.matchAll(/[A-Za-z0-9+/]{16,}/g)) {
      const token = match[0];
      const lower = token.toLowerCase();
      for (let i = 0; i + 16 <= token.length; i++) {
        for (const full of this.#b64.get(token.slice(i, i + 16)) ?? []) if (token.startsWith(full, i)) found.push('a data key or value key in base64');
        for (const full of this.#hex.get(lower.slice(i, i + 16)) ?? []) if (lower.startsWith(full, i)) found.push('a data key or value key in hex');
      }
    }
    return found;
  }
}

function push(map: Map<string, string[]>, anchor: string, full: string): void {
  const list = map.get(anchor);
  if (list) list.push(full);
  else map.set(anchor, [full]);
}

export interface Finding {
  source: string;
  what: string;
}

/** Every needle found in every text. Findings name the source and the kind of needle, never the text found. */
export function scanTexts(texts: ReadonlyMap<string, string>, keys: KeyNeedles): Finding[] {
  const markers = markerNeedles();
  const findings: Finding[] = [];
  for (const [source, text] of texts) {
    for (const marker of markers) if (text.includes(marker.text)) findings.push({ source, what: marker.label });
    for (const what of new Set(keys.find(text))) findings.push({ source, what });
  }
  return findings;
}

// ---------------------------------------------------------------------------------
// What the cluster holds

export interface ClusterSecrets {
  identities: string[];
  /** Data keys unwrapped from every age recipient the cluster identities open. */
  dataKeys: Uint8Array[];
  /** The value keys derived from them (each with its envelope's id). */
  valueKeys: Uint8Array[];
  /** Plaintext values recovered (without checking the tag) from every value whose data key is known. */
  values: string[];
  envelopeSecrets: number;
}

/**
 * Finds the cluster age identities (Secrets labelled envseal.dev/role=age-identity in
 * every namespace), unwraps every age recipient of every EnvelopeSecret in the cluster
 * with them, and decrypts every value with AES-CTR from the GCM nonce (which needs no
 * AAD: moved and tampered manifests' values are recovered too).
 */
export async function clusterSecrets(client: KubeClient): Promise<ClusterSecrets> {
  const identitySecrets = await client.request<{ items: { data?: Record<string, string> }[] }>({
    method: 'GET',
    path: '/api/v1/secrets',
    query: { labelSelector: 'envseal.dev/role=age-identity' },
  });
  const identities = identitySecrets.items.flatMap((s) =>
    Buffer.from(s.data?.['identity.agekey'] ?? '', 'base64')
      .toString('utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('AGE-SECRET-KEY-')),
  );
  const list: EnvelopeSecret[] = [];
  let token: string | undefined;
  do {
    const page = await client.request<{ items: EnvelopeSecret[]; metadata: { continue?: string } }>({
      method: 'GET',
      path: '/apis/envseal.dev/v1alpha1/envelopesecrets',
      query: { limit: 500, continue: token },
    });
    list.push(...page.items);
    token = page.metadata.continue || undefined;
  } while (token);

  const decrypter = new Decrypter();
  for (const identity of identities) decrypter.addIdentity(identity);
  const dataKeys: Uint8Array[] = [];
  const valueKeys: Uint8Array[] = [];
  const values: string[] = [];
  for (const es of list) {
    for (const envelope of es.spec?.envelopes ?? []) {
      const keysOfEnvelope: Uint8Array[] = [];
      for (const recipient of envelope.recipients ?? []) {
        if (recipient.provider !== 'age' || identities.length === 0) continue;
        try {
          const key = await decrypter.decrypt(Buffer.from(recipient.encryptedKey, 'base64'));
          if (key.length === 32) keysOfEnvelope.push(key);
        } catch {
          // not for a cluster identity, or not an age file
        }
      }
      dataKeys.push(...keysOfEnvelope);
      values.push(...recoverValues(keysOfEnvelope, envelope.id, envelope.data ?? {}, valueKeys));
    }
  }
  return { identities, dataKeys, valueKeys, values, envelopeSecrets: list.length };
}

/** AES-256-GCM's keystream for a 12-byte nonce starts at counter 2: CTR mode decrypts without the tag. */
function recoverValues(dataKeys: readonly Uint8Array[], envelopeId: string, data: Record<string, string>, valueKeys: Uint8Array[]): string[] {
  const out: string[] = [];
  const id = Buffer.from(envelopeId ?? '', 'base64');
  if (id.length !== 32) return out;
  for (const dataKey of dataKeys) {
    const { valueKey, commitment } = deriveKeys(dataKey, id);
    commitment.fill(0);
    valueKeys.push(Uint8Array.from(valueKey));
    for (const sealed of Object.values(data)) {
      const bytes = Buffer.from(String(sealed), 'base64');
      if (bytes.length < 28) continue;
      const iv = Buffer.concat([bytes.subarray(0, 12), Buffer.from([0, 0, 0, 2])]);
      const decipher = createDecipheriv('aes-256-ctr', valueKey, iv);
      out.push(Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8'));
    }
    valueKey.fill(0);
  }
  return out;
}
