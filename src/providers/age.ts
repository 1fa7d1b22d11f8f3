import { Decrypter, Encrypter, generateHybridIdentity, generateX25519Identity, identityToRecipient } from 'age-encryption';
import type { Recipient } from './types.ts';
import { decodeBase64, encodeBase64 } from '../envelope/base64.ts';
import { DATA_KEY_LENGTH } from '../envelope/kdf.ts';
import { type KeyProvider, ProviderError, type UnwrapRequest, type WrapRequest } from './types.ts';

const PROVIDER = 'age';

// Bech32 data characters; the recipient types the age-encryption package encrypts to.
const RECIPIENT_PATTERN = /^age1(?:pq1|tag1|tagpq1)?[02-9ac-hj-np-z]{20,}$/;
const IDENTITY_PATTERN = /^AGE-SECRET-KEY-(?:PQ-)?1[02-9AC-HJ-NP-Z]{20,}$/;

export interface AgeProviderOptions {
  /** Identity strings (AGE-SECRET-KEY-1..., AGE-SECRET-KEY-PQ-1...); needed only to unwrap. */
  identities?: readonly string[];
}

export type AgeIdentityKind = 'x25519' | 'hybrid';

export function createAgeProvider(options: AgeProviderOptions): KeyProvider {
  const identities = [...(options.identities ?? [])];
  identities.forEach((identity, index) => checkIdentity(identity, `age identity #${index + 1}`));

  return {
    name: PROVIDER,
    parseTarget: checkRecipient,
    async wrap(request: WrapRequest): Promise<Recipient> {
      request.signal?.throwIfAborted();
      checkRecipient(request.target);
      const encrypter = new Encrypter();
      let wrapped: Uint8Array;
      try {
        encrypter.addRecipient(request.target);
        wrapped = await readAll(await encrypter.encrypt(streamOf(request.dataKey)));
      } catch (cause) {
        throw new ProviderError('InvalidRecipient', `age could not encrypt to recipient ${shorten(request.target)}`, { provider: PROVIDER, cause: sanitized(cause) });
      }
      return { provider: PROVIDER, recipient: request.target, encryptedKey: encodeBase64(wrapped) };
    },
    async unwrap(request: UnwrapRequest): Promise<Uint8Array> {
      request.signal?.throwIfAborted();
      if (identities.length === 0) {
        throw new ProviderError('NoIdentity', 'no age identity is configured (--identity FILE or ENVSEAL_AGE_IDENTITY)', { provider: PROVIDER });
      }
      let file: Buffer;
      try {
        file = decodeBase64(request.recipient.encryptedKey, 'age encryptedKey');
      } catch (cause) {
        throw new ProviderError('InvalidCiphertext', 'age encryptedKey is not standard padded base64', { provider: PROVIDER, cause });
      }
      const decrypter = new Decrypter();
      for (const identity of identities) decrypter.addIdentity(identity);
      let dataKey: Uint8Array;
      try {
        dataKey = await readAll(await decrypter.decrypt(streamOf(file)));
      } catch (cause) {
        const message = cause instanceof Error ? cause.message : '';
        if (/no identity matched/i.test(message)) {
          throw new ProviderError('NoIdentity', `none of the configured age identities can open the key for ${describe(request.recipient)}`, { provider: PROVIDER });
        }
        throw new ProviderError('InvalidCiphertext', `the age-encrypted key for ${describe(request.recipient)} is malformed or was altered`, { provider: PROVIDER, cause: sanitized(cause) });
      }
      if (dataKey.length !== DATA_KEY_LENGTH) {
        dataKey.fill(0);
        throw new ProviderError('InvalidCiphertext', `the age-encrypted key for ${describe(request.recipient)} does not hold a ${DATA_KEY_LENGTH}-byte data key`, { provider: PROVIDER });
      }
      return dataKey;
    },
    canUnwrap: (recipient) => recipient.provider === PROVIDER && identities.length > 0,
    describe,
    targetOf: (recipient) => recipient.recipient ?? '',
  };
}

// The age library reads a Uint8Array result through `new Response(stream)`, and the first
// Response loads Node's whole fetch stack (undici, http, tls, http2, zlib): about a third
// of the CPU time of a one-shot `envseal seal`. Given a stream, it returns a stream,
// which these helpers read without fetch.
function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
  }
  if (chunks.length === 1) return chunks[0]!;
  const all = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
    chunk.fill(0);
  }
  return all;
}

function describe(recipient: Recipient): string {
  return `age ${recipient.recipient ? shorten(recipient.recipient) : '(recipient not recorded)'}`;
}

function checkRecipient(target: string): void {
  if (!RECIPIENT_PATTERN.test(target)) {
    throw new ProviderError('InvalidRecipient', `"${shorten(target)}" is not an age recipient (age1...)`, { provider: PROVIDER });
  }
}

function checkIdentity(identity: string, what: string): void {
  if (!IDENTITY_PATTERN.test(identity)) {
    // Never quote the text: it may be a mangled private key.
    throw new ProviderError('NoIdentity', `${what} is not an age identity (AGE-SECRET-KEY-1...)`, { provider: PROVIDER });
  }
}

/** Hybrid (post-quantum) recipients are about 2 KB; keep messages readable. */
function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 20)}…${text.slice(-8)}` : text;
}

// The age library's messages can quote input; keep only its error name.
function sanitized(cause: unknown): Error {
  return new Error(cause instanceof Error ? cause.name : 'age error');
}

/** Parses an age identity file: one identity per line, `#` comments and blank lines ignored. */
export function parseAgeIdentityFile(text: string, source: string): string[] {
  const identities: string[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    checkIdentity(line, `${source} line ${index + 1}`);
    identities.push(line);
  });
  if (identities.length === 0) {
    throw new ProviderError('NoIdentity', `${source} holds no age identity`, { provider: PROVIDER });
  }
  return identities;
}

export interface GeneratedAgeIdentity {
  identity: string;
  recipient: string;
}

export async function generateAgeIdentity(kind: AgeIdentityKind = 'x25519'): Promise<GeneratedAgeIdentity> {
  const identity = kind === 'hybrid' ? await generateHybridIdentity() : await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

export async function recipientOfIdentity(identity: string): Promise<string> {
  checkIdentity(identity, 'age identity');
  return identityToRecipient(identity);
}

/** The text of an identity file, in the format age-keygen writes. */
export function formatAgeIdentityFile(generated: GeneratedAgeIdentity, createdAt: Date): string {
  return `# created: ${createdAt.toISOString()}\n# public key: ${generated.recipient}\n${generated.identity}\n`;
}
