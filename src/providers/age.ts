/**
 * The age key provider: data keys wrapped for age recipients (X25519, post-quantum
 * hybrid, tag), opened with age identities. The age-encryption package is loaded on
 * first use: checking a manifest or sealing for a KMS never loads it.
 */
import type { Recipient } from './types.ts';
import { decodeBase64, encodeBase64 } from '../envelope/base64.ts';
import { DATA_KEY_LENGTH } from '../envelope/kdf.ts';
import {
  type KeyProvider,
  type ProviderDefinition,
  ProviderError,
  type ProviderSettingsSource,
  quoteTarget,
  type RecipientProblem,
  type UnwrapRequest,
  type WrapRequest,
} from './types.ts';
import { abbreviate } from '../util/message.ts';

const PROVIDER = 'age';
const loadAge = () => import('age-encryption');

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
  for (const [index, identity] of identities.entries()) checkIdentity(identity, `age identity #${index + 1}`);

  return {
    name: PROVIDER,
    parseTarget: checkRecipient,
    async wrap(request: WrapRequest): Promise<Recipient> {
      request.signal?.throwIfAborted();
      checkRecipient(request.target);
      const { Encrypter } = await loadAge();
      const encrypter = new Encrypter();
      let wrapped: Uint8Array;
      try {
        encrypter.addRecipient(request.target);
        wrapped = await readAll(await encrypter.encrypt(streamOf(request.dataKey)));
      } catch (cause) {
        throw new ProviderError('InvalidRecipient', `age could not encrypt to recipient ${shorten(request.target)}`, {
          provider: PROVIDER,
          cause: sanitized(cause),
        });
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
      const { Decrypter } = await loadAge();
      const decrypter = new Decrypter();
      for (const identity of identities) decrypter.addIdentity(identity);
      // Tried last, so reached only when no identity opened the stanza: how envseal tells
      // "not for these identities" from "altered", without reading the library's message.
      let noneMatched = false;
      decrypter.addIdentity({
        unwrapFileKey: () => {
          noneMatched = true;
          return null;
        },
      });
      let dataKey: Uint8Array;
      try {
        dataKey = await readAll(await decrypter.decrypt(streamOf(file)));
      } catch (cause) {
        if (noneMatched) {
          throw new ProviderError('NoIdentity', `none of the configured age identities can open the key for ${describe(request.recipient)}`, {
            provider: PROVIDER,
          });
        }
        throw new ProviderError('InvalidCiphertext', `the age-encrypted key for ${describe(request.recipient)} is malformed or was altered`, {
          provider: PROVIDER,
          cause: sanitized(cause),
        });
      }
      if (dataKey.length !== DATA_KEY_LENGTH) {
        dataKey.fill(0);
        throw new ProviderError(
          'InvalidCiphertext',
          `the age-encrypted key for ${describe(request.recipient)} does not hold a ${DATA_KEY_LENGTH}-byte data key`,
          { provider: PROVIDER },
        );
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
const shorten = abbreviate;

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
  const { generateHybridIdentity, generateX25519Identity, identityToRecipient } = await loadAge();
  const identity = kind === 'hybrid' ? await generateHybridIdentity() : await generateX25519Identity();
  return { identity, recipient: await identityToRecipient(identity) };
}

export async function recipientOfIdentity(identity: string): Promise<string> {
  checkIdentity(identity, 'age identity');
  const { identityToRecipient } = await loadAge();
  return identityToRecipient(identity);
}

/** The text of an identity file, in the format age-keygen writes. */
export function formatAgeIdentityFile(generated: GeneratedAgeIdentity, createdAt: Date): string {
  return `# created: ${createdAt.toISOString()}\n# public key: ${generated.recipient}\n${generated.identity}\n`;
}

// ---------------------------------------------------------------------------------
// The manifest form of an age recipient: `recipient` (public, for inventory) and
// `encryptedKey`, the base64 of an age file (age-encryption.org/v1) of the shape envseal
// writes: the header line, exactly one stanza wrapping the 16-byte file key (body: 16
// bytes + 16-byte tag), the MAC line, then the payload (16-byte nonce, the 32-byte data
// key, 16-byte tag). A stanza's arguments are unpadded base64 of fixed sizes per type. A
// forged file with many stanzas would cost the controller one key agreement per stanza;
// only this exact shape is accepted.

const AGE_VERSION_LINE = 'age-encryption.org/v1\n';
/** Byte lengths of each argument after the type, per stanza type envseal can write. */
export const AGE_STANZA_ARGUMENTS: Readonly<Record<string, readonly number[]>> = Object.freeze({
  X25519: [32],
  mlkem768x25519: [1120],
  p256tag: [4, 65],
  mlkem768p256tag: [4, 1153],
});
const AGE_STANZA_BODY_BYTES = 32;
const AGE_MAC_BYTES = 32;
const AGE_PAYLOAD_BYTES = 16 + 32 + 16;
const unpaddedBase64Length = (bytes: number) => Math.ceil((bytes * 4) / 3);
const UNPADDED_BASE64 = /^[A-Za-z0-9+/]+$/;

/** The exact size in bytes of the age file envseal writes for each stanza type. */
export function ageFileBytes(type: string): number {
  const args = AGE_STANZA_ARGUMENTS[type]!;
  const stanzaLine = `-> ${type}`.length + args.reduce((sum, n) => sum + 1 + unpaddedBase64Length(n), 0) + 1;
  const bodyLine = unpaddedBase64Length(AGE_STANZA_BODY_BYTES) + 1;
  const macLine = 4 + unpaddedBase64Length(AGE_MAC_BYTES) + 1;
  return AGE_VERSION_LINE.length + stanzaLine + bodyLine + macLine + AGE_PAYLOAD_BYTES;
}

/** The largest age encryptedKey, in bytes (a post-quantum tag stanza: 1,743). */
export const MAX_AGE_ENCRYPTED_KEY_BYTES = Math.max(...Object.keys(AGE_STANZA_ARGUMENTS).map(ageFileBytes));
/** The start of every age file's base64: "age-encryption.org/v1\n->" (24 bytes, 32 characters). */
export const AGE_BASE64_PREFIX = Buffer.from('age-encryption.org/v1\n->').toString('base64');

/**
 * Why `file` is not an age file of the shape envseal writes (one stanza of a known type
 * wrapping a data key), or undefined. Quotes nothing of the file.
 */
export function ageFileProblem(file: Uint8Array): string | undefined {
  if (file.length > MAX_AGE_ENCRYPTED_KEY_BYTES) return `is ${file.length} bytes; an age-wrapped data key is at most ${MAX_AGE_ENCRYPTED_KEY_BYTES}`;
  const text = Buffer.from(file.buffer, file.byteOffset, file.byteLength).toString('latin1');
  if (!text.startsWith(AGE_VERSION_LINE)) return 'is not an age file (age-encryption.org/v1)';
  let position = AGE_VERSION_LINE.length;
  const nextLine = (): string | undefined => {
    const end = text.indexOf('\n', position);
    if (end < 0) return undefined;
    const line = text.slice(position, end);
    position = end + 1;
    return line;
  };
  const stanza = nextLine();
  if (stanza === undefined) return 'is truncated';
  if (!stanza.startsWith('-> ')) return 'has no recipient stanza';
  const [type = '', ...args] = stanza.slice(3).split(' ');
  const expected = Object.hasOwn(AGE_STANZA_ARGUMENTS, type) ? AGE_STANZA_ARGUMENTS[type]! : undefined;
  // The type is not quoted: nothing decoded from a wrapped key goes into a message.
  if (expected === undefined) return `has a stanza of another type than the ones envseal writes (${Object.keys(AGE_STANZA_ARGUMENTS).join(', ')})`;
  if (args.length !== expected.length || args.some((arg, i) => arg.length !== unpaddedBase64Length(expected[i]!) || !UNPADDED_BASE64.test(arg)))
    return `has a malformed ${type} stanza`;
  const body = nextLine();
  if (body === undefined) return 'is truncated';
  if (body.length !== unpaddedBase64Length(AGE_STANZA_BODY_BYTES) || !UNPADDED_BASE64.test(body)) return `has a malformed ${type} stanza`;
  const mac = nextLine();
  if (mac === undefined) return 'is truncated';
  if (mac.startsWith('-> ')) return 'holds more than one recipient stanza; envseal writes exactly one';
  if (!mac.startsWith('--- ') || mac.length !== 4 + unpaddedBase64Length(AGE_MAC_BYTES) || !UNPADDED_BASE64.test(mac.slice(4)))
    return 'has a malformed header MAC';
  if (file.length - position !== AGE_PAYLOAD_BYTES) return `has a payload of ${file.length - position} bytes; a wrapped data key has ${AGE_PAYLOAD_BYTES}`;
  return undefined;
}

function checkManifestRecipient(_recipient: Readonly<Record<string, unknown>>, encryptedKey: Uint8Array | undefined): RecipientProblem[] {
  const problems: RecipientProblem[] = [];
  if (encryptedKey !== undefined) {
    if (encryptedKey.length > MAX_AGE_ENCRYPTED_KEY_BYTES) {
      problems.push({
        field: 'encryptedKey',
        check: 'size',
        message: `is ${encryptedKey.length} bytes; an age encryptedKey is at most ${MAX_AGE_ENCRYPTED_KEY_BYTES}`,
      });
    } else {
      const problem = ageFileProblem(encryptedKey);
      if (problem) problems.push({ field: 'encryptedKey', check: 'structure', message: problem });
    }
  }
  return problems;
}

const IDENTITY_PREFIX = 'AGE-SECRET-KEY-';
const IDENTITY_ENV = 'ENVSEAL_AGE_IDENTITY';
const MAX_IDENTITY_FILE_BYTES = 1024 * 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The age identities named by --identity, else ENVSEAL_AGE_IDENTITY (the path of an
 * identity file, or for CI the identity itself). None configured is not an error here:
 * unwrapping then names what is missing. Never quotes a file's content.
 */
async function resolveIdentities(source: ProviderSettingsSource): Promise<AgeProviderOptions> {
  if (!source.unwrap || source.role !== 'cli') return {};
  const flagged = source.values.identity;
  const files = (Array.isArray(flagged) ? flagged : flagged === undefined ? [] : [flagged]).filter((f): f is string => typeof f === 'string');
  const fromEnv = source.env[IDENTITY_ENV];
  if (files.length === 0 && fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.trimStart().startsWith(IDENTITY_PREFIX)) return { identities: parseAgeIdentityFile(fromEnv, IDENTITY_ENV) };
    return { identities: await readIdentityFile(source, fromEnv, IDENTITY_ENV) };
  }
  const identities: string[] = [];
  for (const file of files) identities.push(...(await readIdentityFile(source, file, '--identity')));
  return { identities };
}

async function readIdentityFile(source: ProviderSettingsSource, file: string, origin: string): Promise<string[]> {
  const bytes = await source.readFile(file, { maxBytes: MAX_IDENTITY_FILE_BYTES, what: 'age identity file', origin, private: true });
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ProviderError('NoIdentity', `age identity file ${quoteTarget(file)} is not UTF-8 text`, { provider: PROVIDER });
  }
  return parseAgeIdentityFile(text, quoteTarget(file));
}

/** The age provider: see the top of this file. */
export const ageProvider: ProviderDefinition = {
  name: PROVIDER,
  targetHint: 'age1...',
  parseTarget: checkRecipient,
  checkRecipient: checkManifestRecipient,
  maxEncryptedKeyBytes: MAX_AGE_ENCRYPTED_KEY_BYTES,
  crdRules: [
    {
      rule: `self.provider != 'age' || (self.encryptedKey.startsWith('${AGE_BASE64_PREFIX}') && size(self.encryptedKey) <= ${4 * Math.ceil(MAX_AGE_ENCRYPTED_KEY_BYTES / 3)})`,
      message: `an age encryptedKey is one age file with a single recipient stanza: it starts with the age header and is at most ${MAX_AGE_ENCRYPTED_KEY_BYTES} bytes (${4 * Math.ceil(MAX_AGE_ENCRYPTED_KEY_BYTES / 3)} base64 characters)`,
    },
  ],
  describe,
  targetOf: (recipient) => recipient.recipient ?? '',
  // envseal's own provider id (other SDKs skip it); provider info = the age recipient
  // (public); ciphertext = the binary age file holding the data key.
  edk: {
    providerId: 'envseal-age',
    encode: (recipient) => ({ providerInfo: Buffer.from(recipient.recipient ?? '', 'utf8'), ciphertext: Buffer.from(recipient.encryptedKey, 'base64') }),
    decode(edk) {
      let info: string;
      try {
        info = utf8.decode(edk.providerInfo);
      } catch {
        return undefined;
      }
      return {
        provider: PROVIDER,
        ...(info === '' ? {} : { recipient: info }),
        encryptedKey: Buffer.from(edk.ciphertext.buffer, edk.ciphertext.byteOffset, edk.ciphertext.byteLength).toString('base64'),
      };
    },
  },
  settings: {
    cliOptions: {
      identity: { type: 'string', short: 'i', multiple: true, value: 'FILE', help: `age identity file (default: ${IDENTITY_ENV})`, unwrapOnly: true },
    },
    controllerOptions: {},
    resolve: resolveIdentities,
  },
  create: async (options) => createAgeProvider((options ?? {}) as AgeProviderOptions),
  localIdentity: {
    kinds: ['x25519', 'hybrid'],
    generate: (kind) => generateAgeIdentity(kind === 'hybrid' ? 'hybrid' : 'x25519'),
    recipientOf: recipientOfIdentity,
    parseFile: parseAgeIdentityFile,
    formatFile: formatAgeIdentityFile,
    options: (identities): AgeProviderOptions => ({ identities: [...identities] }),
    identitiesOf: (options) => (options as AgeProviderOptions | undefined)?.identities ?? [],
  },
};
