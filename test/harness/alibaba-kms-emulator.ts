/**
 * An emulator of Alibaba Cloud KMS (API version 2016-01-20, RPC style), written from
 * Alibaba Cloud's API reference because no emulator of it exists: the alibaba-kms
 * provider is tested against this, not against the service (docs/kms-emulators.md).
 *
 * What it checks, as the service documents it:
 * - Requests: GET or POST on `/`, parameters in the query and/or a form body, the common
 *   parameters Action, Version (2016-01-20), Format, AccessKeyId, SignatureMethod
 *   (HMAC-SHA1), SignatureVersion (1.0), SignatureNonce, Timestamp and Signature.
 * - The signature (RPC signature v1): HMAC-SHA1 with `SECRET&` over
 *   `METHOD&%2F&encode(sorted, percent-encoded parameters)`; an unknown AccessKeyId is
 *   404 InvalidAccessKeyId.NotFound, a wrong signature 400 SignatureDoesNotMatch, a
 *   Timestamp more than 15 minutes off 400 InvalidTimeStamp.Expired, a nonce used twice
 *   400 SignatureNonceUsed.
 * - Keys and their states (Enabled, Disabled, PendingDeletion) with the documented
 *   results: cryptographic calls on a disabled key are 409 Rejected.Disabled, on a key
 *   pending deletion 409 Rejected.PendingDeletion; EnableKey/DisableKey/CreateAlias on a
 *   key pending deletion 409 Rejected.StateModifiedFailed; an unknown key or alias 404
 *   Forbidden.KeyNotFound.
 * - EncryptionContext: a JSON object of strings (at most 8192 characters), order not
 *   significant, bound to the ciphertext: a Decrypt with another context fails.
 * - CiphertextBlob: opaque and authenticated (AES-256-GCM under the key's own secret,
 *   its header (key id, key version) and the canonical context as AAD), naming the key
 *   it was made with, as the service's blobs do. A tampered blob or another context is 400 InvalidParameter.
 * - Errors: the documented JSON shape {RequestId, HostId, Code, Message, Recommend}.
 *
 * - STS AssumeRoleWithOIDC (RRSA), when configured, over HTTPS: the OIDC token's
 *   signature (the issuer's JWKS: in the tests, the real API server's), issuer, audience,
 *   expiry and subject (the role's trusted ServiceAccounts) are checked; the temporary
 *   AccessKey it issues is accepted by the KMS only with its SecurityToken and until it
 *   expires.
 *
 * What it does not do: RAM policies (any known AccessKey may do anything), key rotation,
 * asymmetric keys, KMS instances, tags, XML responses.
 *
 * Test hooks outside the API, on the same port: `POST /__emulator/faults` with
 * `{"throttle": N, "unavailable": N}` makes the next N API calls answer 400
 * Throttling.User (or 503 ServiceUnavailableTemporary); `GET /__emulator/calls` returns
 * the count of answered calls by Action and outcome.
 *
 * Run directly (`node test/harness/alibaba-kms-emulator.ts`), it listens on 127.0.0.1
 * and a free port, prints `alibaba-kms-emulator listening on 127.0.0.1:PORT`, takes its
 * AccessKey pairs from ALIBABA_KMS_EMULATOR_ACCESS_KEYS (JSON {id: secret}) and region
 * from ALIBABA_KMS_EMULATOR_REGION, and exits when its standard input closes.
 */
import { createCipheriv, createDecipheriv, createHmac, createPublicKey, type JsonWebKey, randomBytes, randomUUID, timingSafeEqual, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface AlibabaKmsEmulatorOptions {
  /** AccessKey id → AccessKey secret. */
  accessKeys: Readonly<Record<string, string>>;
  /** Default cn-hangzhou. */
  region?: string;
  /** The account id in key ARNs (16 digits). */
  accountId?: string;
  /** The clock (tests). */
  now?: () => number;
  /** STS AssumeRoleWithOIDC for RRSA (served over HTTPS by listenAlibabaKmsEmulator). */
  sts?: StsOptions;
}

export interface StsOptions {
  /** The OIDC provider's ARN that callers must name (acs:ram::ACCOUNT:oidc-provider/NAME). */
  oidcProviderArn: string;
  /** The token issuer (`iss`) and its signing keys (the API server's /openid/v1/jwks). */
  issuer: string;
  jwks: { keys: JsonWebKey[] };
  /** The audience the token must carry (RRSA: sts.aliyuncs.com). */
  audience: string;
  /** Role ARN → the token subjects its trust policy allows (system:serviceaccount:NS:NAME). */
  roles: Record<string, string[]>;
}

type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface EmulatedKey {
  keyId: string;
  arn: string;
  state: KeyState;
  description: string;
  creationDate: string;
  deleteDate: string;
  versionId: string;
  material: Buffer;
}

class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const API_VERSION = '2016-01-20';
const MAX_SKEW_MS = 15 * 60_000;
const MAX_BODY_BYTES = 64 * 1024;
const MAX_CONTEXT_CHARS = 8192;
const BLOB_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const UUID_BYTES = 36;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ALIAS = /^alias\/[A-Za-z0-9:/_-]{1,255}$/;

/** RFC 3986 percent-encoding, as the RPC signature wants it. */
export function percentEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The RPC v1 signature of `params` (Signature itself excluded) for `method`. */
export function rpcSignature(params: Readonly<Record<string, string>>, method: string, secret: string): string {
  const canonical = Object.keys(params)
    .filter((k) => k !== 'Signature')
    .sort()
    .map((k) => `${percentEncode(k)}=${percentEncode(params[k] ?? '')}`)
    .join('&');
  const stringToSign = `${method}&${percentEncode('/')}&${percentEncode(canonical)}`;
  return createHmac('sha1', `${secret}&`).update(stringToSign, 'utf8').digest('base64');
}

function canonicalContext(context: Record<string, string>): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((k) => [k, context[k]]);
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}

export interface AlibabaKmsEmulator {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** STS (AssumeRoleWithOIDC), served over HTTPS. */
  handleSts(req: IncomingMessage, res: ServerResponse): void;
  /** Answered API calls: `Action outcome` (outcome: Success or the error code) → count. */
  calls(): Record<string, number>;
}

export function createAlibabaKmsEmulator(options: AlibabaKmsEmulatorOptions): AlibabaKmsEmulator {
  const region = options.region ?? 'cn-hangzhou';
  const accountId = options.accountId ?? '1234567890123456';
  const now = options.now ?? Date.now;
  const hostId = `kms.${region}.aliyuncs.com`;
  const keys = new Map<string, EmulatedKey>();
  const aliases = new Map<string, string>();
  const nonces = new Map<string, number>();
  const counts: Record<string, number> = {};
  const faults = { throttle: 0, unavailable: 0 };
  /** Temporary credentials issued by AssumeRoleWithOIDC. */
  const stsKeys = new Map<string, { secret: string; token: string; expiresAt: number }>();

  function findKey(ref: string | undefined): EmulatedKey {
    if (ref === undefined || ref === '')
      throw new ApiError(400, 'MissingParameter', 'The input parameter "KeyId" that is mandatory for processing this request is not supplied.');
    let id = ref;
    if (ref.startsWith('alias/')) id = aliases.get(ref) ?? '';
    else if (ref.startsWith('acs:kms:')) {
      const m = /^acs:kms:([^:]+):(\d+):(key|alias)\/(.+)$/.exec(ref);
      if (m === null || m[1] !== region || m[2] !== accountId) id = '';
      else id = m[3] === 'alias' ? (aliases.get(`alias/${m[4]}`) ?? '') : (m[4] ?? '');
    }
    const key = keys.get(id);
    if (key === undefined) throw new ApiError(404, 'Forbidden.KeyNotFound', 'The specified Key is not found.');
    return key;
  }

  function requireUsable(key: EmulatedKey): void {
    if (key.state === 'Disabled') throw new ApiError(409, 'Rejected.Disabled', `The request is rejected because the key state is Disabled.`);
    if (key.state === 'PendingDeletion')
      throw new ApiError(409, 'Rejected.PendingDeletion', `The request is rejected because the key state is PendingDeletion.`);
  }

  function parseContext(text: string | undefined, params: Record<string, string>): Record<string, string> {
    // The service takes the context as one JSON string; a client that flattens the map
    // into EncryptionContext.KEY parameters would bind nothing, so the emulator refuses it.
    if (Object.keys(params).some((k) => k.startsWith('EncryptionContext.'))) {
      throw new ApiError(400, 'InvalidParameter', 'The specified parameter EncryptionContext is not valid.');
    }
    if (text === undefined || text === '') return {};
    if (text.length > MAX_CONTEXT_CHARS) throw new ApiError(400, 'InvalidParameter', 'The specified parameter EncryptionContext is not valid.');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new ApiError(400, 'InvalidParameter', 'The specified parameter EncryptionContext is not valid.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
      throw new ApiError(400, 'InvalidParameter', 'The specified parameter EncryptionContext is not valid.');
    }
    return parsed as Record<string, string>;
  }

  function seal(key: EmulatedKey, plaintext: Buffer, context: Record<string, string>): string {
    const iv = randomBytes(IV_BYTES);
    const header = Buffer.concat([Buffer.from([BLOB_VERSION]), Buffer.from(key.keyId, 'ascii'), Buffer.from(key.versionId, 'ascii')]);
    const cipher = createCipheriv('aes-256-gcm', key.material, iv);
    // Every byte of the blob is authenticated: its header, and the context given again at Decrypt.
    cipher.setAAD(Buffer.concat([header, canonicalContext(context)]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, iv, body, cipher.getAuthTag()]).toString('base64');
  }

  function open(blobText: string | undefined, context: Record<string, string>): { key: EmulatedKey; plaintext: Buffer } {
    if (blobText === undefined || blobText === '')
      throw new ApiError(400, 'MissingParameter', 'The input parameter "CiphertextBlob" that is mandatory for processing this request is not supplied.');
    const invalid = () => new ApiError(400, 'InvalidParameter', 'The specified parameter CiphertextBlob is not valid.');
    const blob = Buffer.from(blobText, 'base64');
    if (blob.byteLength < 1 + 2 * UUID_BYTES + IV_BYTES + TAG_BYTES || blob[0] !== BLOB_VERSION) throw invalid();
    const keyId = blob.subarray(1, 1 + UUID_BYTES).toString('latin1');
    if (!UUID.test(keyId)) throw invalid();
    const key = keys.get(keyId);
    if (key === undefined) throw new ApiError(404, 'Forbidden.KeyNotFound', 'The specified Key is not found.');
    requireUsable(key);
    const ivAt = 1 + 2 * UUID_BYTES;
    const decipher = createDecipheriv('aes-256-gcm', key.material, blob.subarray(ivAt, ivAt + IV_BYTES));
    decipher.setAAD(Buffer.concat([blob.subarray(0, ivAt), canonicalContext(context)]));
    decipher.setAuthTag(blob.subarray(blob.byteLength - TAG_BYTES));
    try {
      return { key, plaintext: Buffer.concat([decipher.update(blob.subarray(ivAt + IV_BYTES, blob.byteLength - TAG_BYTES)), decipher.final()]) };
    } catch {
      throw invalid();
    }
  }

  function metadata(key: EmulatedKey): Record<string, unknown> {
    return {
      KeyId: key.keyId,
      Arn: key.arn,
      KeyState: key.state,
      KeySpec: 'Aliyun_AES_256',
      KeyUsage: 'ENCRYPT/DECRYPT',
      Origin: 'Aliyun_KMS',
      ProtectionLevel: 'SOFTWARE',
      Description: key.description,
      CreationDate: key.creationDate,
      DeleteDate: key.deleteDate,
      PrimaryKeyVersion: key.versionId,
      AutomaticRotation: 'Disabled',
      Creator: accountId,
    };
  }

  function utc(ms: number): string {
    return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  const actions: Record<string, (p: Record<string, string>) => Record<string, unknown>> = {
    CreateKey(p) {
      if (p.KeySpec !== undefined && p.KeySpec !== 'Aliyun_AES_256')
        throw new ApiError(400, 'InvalidParameter', 'The specified parameter KeySpec is not valid.');
      if (p.KeyUsage !== undefined && p.KeyUsage !== 'ENCRYPT/DECRYPT')
        throw new ApiError(400, 'InvalidParameter', 'The specified parameter KeyUsage is not valid.');
      const keyId = randomUUID();
      const key: EmulatedKey = {
        keyId,
        arn: `acs:kms:${region}:${accountId}:key/${keyId}`,
        state: 'Enabled',
        description: p.Description ?? '',
        creationDate: utc(now()),
        deleteDate: '',
        versionId: randomUUID(),
        material: randomBytes(32),
      };
      keys.set(keyId, key);
      return { KeyMetadata: metadata(key) };
    },
    CreateAlias(p) {
      const name = p.AliasName ?? '';
      if (!ALIAS.test(name)) throw new ApiError(400, 'InvalidParameter', 'The specified parameter AliasName is not valid.');
      const key = findKey(p.KeyId);
      if (key.state === 'PendingDeletion')
        throw new ApiError(409, 'Rejected.StateModifiedFailed', 'The request is rejected because the key state is PendingDeletion.');
      if (aliases.has(name)) throw new ApiError(409, 'Forbidden.AliasExists', 'The specified alias already exists.');
      aliases.set(name, key.keyId);
      return {};
    },
    DescribeKey(p) {
      return { KeyMetadata: metadata(findKey(p.KeyId)) };
    },
    EnableKey(p) {
      const key = findKey(p.KeyId);
      if (key.state === 'PendingDeletion')
        throw new ApiError(409, 'Rejected.StateModifiedFailed', 'The request is rejected because the key state is PendingDeletion.');
      key.state = 'Enabled';
      return {};
    },
    DisableKey(p) {
      const key = findKey(p.KeyId);
      if (key.state === 'PendingDeletion')
        throw new ApiError(409, 'Rejected.StateModifiedFailed', 'The request is rejected because the key state is PendingDeletion.');
      key.state = 'Disabled';
      return {};
    },
    ScheduleKeyDeletion(p) {
      const key = findKey(p.KeyId);
      const days = Number(p.PendingWindowInDays);
      if (!Number.isInteger(days) || days < 7 || days > 366)
        throw new ApiError(400, 'InvalidParameter', 'The specified parameter PendingWindowInDays is not valid.');
      if (key.state === 'PendingDeletion')
        throw new ApiError(409, 'Rejected.StateModifiedFailed', 'The request is rejected because the key state is PendingDeletion.');
      key.state = 'PendingDeletion';
      key.deleteDate = utc(now() + days * 86_400_000);
      return {};
    },
    CancelKeyDeletion(p) {
      const key = findKey(p.KeyId);
      if (key.state !== 'PendingDeletion')
        throw new ApiError(409, 'Rejected.StateModifiedFailed', `The request is rejected because the key state is ${key.state}.`);
      key.state = 'Disabled';
      key.deleteDate = '';
      return {};
    },
    GenerateDataKey(p) {
      const key = findKey(p.KeyId);
      const context = parseContext(p.EncryptionContext, p);
      let bytes = 32;
      if (p.NumberOfBytes !== undefined) {
        bytes = Number(p.NumberOfBytes);
        if (!Number.isInteger(bytes) || bytes < 1 || bytes > 1024)
          throw new ApiError(400, 'InvalidParameter', 'The specified parameter NumberOfBytes is not valid.');
      } else if (p.KeySpec === 'AES_128') bytes = 16;
      else if (p.KeySpec !== undefined && p.KeySpec !== 'AES_256') throw new ApiError(400, 'InvalidParameter', 'The specified parameter KeySpec is not valid.');
      requireUsable(key);
      // As the service does: the plaintext that Decrypt returns is the base64 text of the key.
      const plaintext = randomBytes(bytes).toString('base64');
      return { KeyId: key.keyId, KeyVersionId: key.versionId, Plaintext: plaintext, CiphertextBlob: seal(key, Buffer.from(plaintext, 'utf8'), context) };
    },
    Encrypt(p) {
      const key = findKey(p.KeyId);
      const context = parseContext(p.EncryptionContext, p);
      if (p.Plaintext === undefined || p.Plaintext === '')
        throw new ApiError(400, 'MissingParameter', 'The input parameter "Plaintext" that is mandatory for processing this request is not supplied.');
      if (Buffer.byteLength(p.Plaintext, 'utf8') > 6144) throw new ApiError(400, 'InvalidParameter', 'The specified parameter Plaintext is not valid.');
      requireUsable(key);
      return { KeyId: key.keyId, KeyVersionId: key.versionId, CiphertextBlob: seal(key, Buffer.from(p.Plaintext, 'utf8'), context) };
    },
    Decrypt(p) {
      const { key, plaintext } = open(p.CiphertextBlob, parseContext(p.EncryptionContext, p));
      return { KeyId: key.keyId, KeyVersionId: key.versionId, Plaintext: plaintext.toString('utf8') };
    },
  };

  /** Checks the common parameters and the signature; returns the parameters. */
  function authenticate(method: string, params: Record<string, string>): void {
    for (const name of ['AccessKeyId', 'Signature', 'SignatureMethod', 'SignatureNonce', 'Timestamp', 'Action', 'Version']) {
      if (params[name] === undefined || params[name] === '') {
        throw new ApiError(400, 'MissingParameter', `The input parameter "${name}" that is mandatory for processing this request is not supplied.`);
      }
    }
    if (params.Version !== API_VERSION) throw new ApiError(400, 'InvalidVersion', 'Specified parameter Version is not valid.');
    if (params.SignatureMethod !== 'HMAC-SHA1' || (params.SignatureVersion ?? '1.0') !== '1.0') {
      throw new ApiError(400, 'InvalidParameter', 'The specified parameter SignatureMethod is not valid.');
    }
    if (params.Format !== undefined && params.Format.toUpperCase() !== 'JSON')
      throw new ApiError(400, 'InvalidParameter', 'The emulator answers only Format=JSON.');
    const temporary = stsKeys.get(params.AccessKeyId!);
    const secret = Object.hasOwn(options.accessKeys, params.AccessKeyId!) ? options.accessKeys[params.AccessKeyId!] : temporary?.secret;
    if (secret === undefined) throw new ApiError(404, 'InvalidAccessKeyId.NotFound', 'Specified access key is not found.');
    const expected = Buffer.from(rpcSignature(params, method, secret), 'utf8');
    const given = Buffer.from(params.Signature!, 'utf8');
    if (expected.byteLength !== given.byteLength || !timingSafeEqual(expected, given)) {
      throw new ApiError(400, 'SignatureDoesNotMatch', 'Specified signature is not matched with our calculation.');
    }
    const at = Date.parse(params.Timestamp!);
    if (!Number.isFinite(at) || Math.abs(now() - at) > MAX_SKEW_MS)
      throw new ApiError(400, 'InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.');
    for (const [nonce, seen] of nonces) if (now() - seen > MAX_SKEW_MS) nonces.delete(nonce);
    const nonceKey = `${params.AccessKeyId}\n${params.SignatureNonce}`;
    if (nonces.has(nonceKey)) throw new ApiError(400, 'SignatureNonceUsed', 'Specified signature nonce was used already.');
    nonces.set(nonceKey, now());
    if (temporary === undefined && params.SecurityToken !== undefined)
      throw new ApiError(400, 'InvalidSecurityToken.Malformed', 'Specified SecurityToken is malformed.');
    if (temporary !== undefined) {
      const token = Buffer.from(params.SecurityToken ?? '', 'utf8');
      const expected = Buffer.from(temporary.token, 'utf8');
      if (token.byteLength !== expected.byteLength || !timingSafeEqual(token, expected))
        throw new ApiError(400, 'InvalidSecurityToken.MismatchWithAccessKey', 'Specified SecurityToken mismatch with the AccessKey.');
      if (now() >= temporary.expiresAt) throw new ApiError(400, 'InvalidSecurityToken.Expired', 'Specified SecurityToken is expired.');
    }
  }

  function send(res: ServerResponse, status: number, body: Record<string, unknown>): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json;charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function readBody(req: IncomingMessage): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) throw new ApiError(400, 'InvalidParameter', 'The request body is too large.');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID().toUpperCase();
    const url = new URL(req.url ?? '/', 'http://emulator');
    if (url.pathname === '/__emulator/faults' && req.method === 'POST') {
      const asked = JSON.parse((await readBody(req)) || '{}') as { throttle?: number; unavailable?: number };
      faults.throttle = asked.throttle ?? 0;
      faults.unavailable = asked.unavailable ?? 0;
      send(res, 200, {});
      return;
    }
    if (url.pathname === '/__emulator/calls') {
      send(res, 200, { ...counts });
      return;
    }
    let action = 'Unknown';
    try {
      const params: Record<string, string> = {};
      for (const [k, v] of url.searchParams) params[k] = v;
      if (req.method === 'POST') {
        const type = req.headers['content-type'] ?? '';
        const body = await readBody(req);
        if (body !== '') {
          if (!type.startsWith('application/x-www-form-urlencoded'))
            throw new ApiError(400, 'InvalidParameter', 'The request body must be application/x-www-form-urlencoded.');
          for (const [k, v] of new URLSearchParams(body)) params[k] = v;
        }
      } else if (req.method !== 'GET') {
        throw new ApiError(400, 'UnsupportedHTTPMethod', 'Specified signature method is not supported.');
      }
      if (url.pathname !== '/') throw new ApiError(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');
      action = params.Action ?? 'Unknown';
      authenticate(req.method, params);
      const handler = Object.hasOwn(actions, action) ? actions[action] : undefined;
      if (handler === undefined) throw new ApiError(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');
      if (faults.unavailable > 0) {
        faults.unavailable--;
        throw new ApiError(503, 'ServiceUnavailableTemporary', 'Service Unavailable Temporary.');
      }
      if (faults.throttle > 0) {
        faults.throttle--;
        throw new ApiError(400, 'Throttling.User', 'Request was denied due to user flow control.');
      }
      const out = handler(params);
      counts[`${action} Success`] = (counts[`${action} Success`] ?? 0) + 1;
      send(res, 200, { RequestId: requestId, ...out });
    } catch (error) {
      const e = error instanceof ApiError ? error : new ApiError(500, 'InternalFailure', 'Internal Failure.');
      counts[`${action} ${e.code}`] = (counts[`${action} ${e.code}`] ?? 0) + 1;
      send(res, e.status, {
        RequestId: requestId,
        HostId: hostId,
        Code: e.code,
        Message: e.message,
        Recommend: `https://api.aliyun.com/troubleshoot?q=${e.code}&product=Kms`,
      });
    }
  }

  /** Verifies an OIDC token (JWT, RS256/ES256) against the configured issuer and keys; returns its subject. */
  function verifyOidcToken(sts: StsOptions, token: string): string {
    const invalid = (why: string) => new ApiError(400, 'AuthenticationFail.OIDCToken.Invalid', `The OIDC token is invalid: ${why}.`);
    const parts = token.trim().split('.');
    if (parts.length !== 3) throw invalid('not a JWT');
    let header: { alg?: string; kid?: string };
    let claims: { iss?: string; aud?: string | string[]; sub?: string; exp?: number; nbf?: number };
    try {
      header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as typeof header;
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as typeof claims;
    } catch {
      throw invalid('not a JWT');
    }
    const jwk = sts.jwks.keys.find((k) => (k as { kid?: string }).kid === header.kid);
    if (jwk === undefined || (header.alg !== 'RS256' && header.alg !== 'ES256')) throw invalid('unknown signing key');
    const signed = Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii');
    const signature = Buffer.from(parts[2]!, 'base64url');
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    const ok = header.alg === 'RS256' ? verify('sha256', signed, key, signature) : verify('sha256', signed, { key, dsaEncoding: 'ieee-p1363' }, signature);
    if (!ok) throw invalid('bad signature');
    if (claims.iss !== sts.issuer) throw invalid('wrong issuer');
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(sts.audience)) throw invalid('wrong audience');
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= now())
      throw new ApiError(400, 'AuthenticationFail.OIDCToken.Expired', 'The OIDC token is expired.');
    if (typeof claims.nbf === 'number' && claims.nbf * 1000 > now() + 60_000) throw invalid('not yet valid');
    if (typeof claims.sub !== 'string') throw invalid('no subject');
    return claims.sub;
  }

  async function serveSts(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID().toUpperCase();
    let action = 'Unknown';
    try {
      const sts = options.sts;
      if (sts === undefined || req.method !== 'POST')
        throw new ApiError(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');
      const url = new URL(req.url ?? '/', 'https://sts');
      const params: Record<string, string> = {};
      for (const [k, v] of url.searchParams) params[k] = v;
      for (const [k, v] of new URLSearchParams(await readBody(req))) params[k] = v;
      action = params.Action ?? 'Unknown';
      if (action !== 'AssumeRoleWithOIDC' || params.Version !== '2015-04-01')
        throw new ApiError(404, 'InvalidAction.NotFound', 'Specified api is not found, please check your url and method.');
      if (params.OIDCProviderArn !== sts.oidcProviderArn) throw new ApiError(404, 'EntityNotExist.OIDCProvider', 'The specified OIDC provider does not exist.');
      const allowed = Object.hasOwn(sts.roles, params.RoleArn ?? '') ? sts.roles[params.RoleArn!] : undefined;
      if (allowed === undefined) throw new ApiError(404, 'EntityNotExist.Role', 'The specified Role not exists.');
      const subject = verifyOidcToken(sts, params.OIDCToken ?? '');
      if (!allowed.includes(subject)) throw new ApiError(403, 'AuthenticationFail.NoPermission', 'You are not authorized to assume this role.');
      const seconds = Math.min(Math.max(Number(params.DurationSeconds ?? 3600) || 3600, 900), 43_200);
      const accessKeyId = `STS.${randomBytes(12).toString('hex')}`;
      const credentials = { secret: randomBytes(20).toString('base64url'), token: randomBytes(48).toString('base64'), expiresAt: now() + seconds * 1000 };
      stsKeys.set(accessKeyId, credentials);
      counts[`${action} Success`] = (counts[`${action} Success`] ?? 0) + 1;
      send(res, 200, {
        RequestId: requestId,
        AssumedRoleUser: {
          Arn: `${params.RoleArn!.replace(':role/', ':assumed-role/')}/${params.RoleSessionName ?? 'session'}`,
          AssumedRoleId: `${randomBytes(8).toString('hex')}:${params.RoleSessionName ?? 'session'}`,
        },
        OIDCTokenInfo: { Subject: subject, Issuer: sts.issuer, ClientIds: sts.audience },
        Credentials: {
          AccessKeyId: accessKeyId,
          AccessKeySecret: credentials.secret,
          SecurityToken: credentials.token,
          Expiration: utc(credentials.expiresAt),
        },
      });
    } catch (error) {
      const e = error instanceof ApiError ? error : new ApiError(500, 'InternalError', 'The request processing has failed due to some unknown error.');
      counts[`${action} ${e.code}`] = (counts[`${action} ${e.code}`] ?? 0) + 1;
      send(res, e.status, {
        RequestId: requestId,
        HostId: 'sts.aliyuncs.com',
        Code: e.code,
        Message: e.message,
        Recommend: `https://api.aliyun.com/troubleshoot?q=${e.code}&product=Sts`,
      });
    }
  }

  return {
    handleSts(req, res) {
      serveSts(req, res).catch(() => res.destroy());
    },
    handle(req, res) {
      serve(req, res).catch(() => {
        if (!res.headersSent) send(res, 500, { Code: 'InternalFailure', Message: 'Internal Failure.' });
        else res.destroy();
      });
    },
    calls: () => ({ ...counts }),
  };
}

/**
 * Listens on 127.0.0.1 (port 0: a free one); with `stsTls`, also serves STS over HTTPS
 * on another free port (the SDK's credentials library speaks only HTTPS to STS).
 */
export async function listenAlibabaKmsEmulator(
  options: AlibabaKmsEmulatorOptions & { port?: number; stsTls?: { cert: string; key: string } },
): Promise<{ server: Server; port: number; sts?: { server: Server; port: number } }> {
  const emulator = createAlibabaKmsEmulator(options);
  const listen = async (server: Server, port: number): Promise<number> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return (server.address() as AddressInfo).port;
  };
  const server = createServer((req, res) => emulator.handle(req, res));
  const port = await listen(server, options.port ?? 0);
  if (options.stsTls === undefined) return { server, port };
  const sts = createTlsServer({ cert: options.stsTls.cert, key: options.stsTls.key }, (req, res) => emulator.handleSts(req, res));
  return { server, port, sts: { server: sts, port: await listen(sts, 0) } };
}

if (import.meta.main) {
  const accessKeys = JSON.parse(process.env.ALIBABA_KMS_EMULATOR_ACCESS_KEYS ?? '{}') as Record<string, string>;
  const region = process.env.ALIBABA_KMS_EMULATOR_REGION;
  // STS: ALIBABA_KMS_EMULATOR_STS (JSON StsOptions) with a TLS certificate and key (PEM files).
  const stsJson = process.env.ALIBABA_KMS_EMULATOR_STS;
  const sts = stsJson ? (JSON.parse(stsJson) as StsOptions) : undefined;
  const stsTls = sts
    ? { cert: readFileSync(process.env.ALIBABA_KMS_EMULATOR_STS_CERT ?? '', 'utf8'), key: readFileSync(process.env.ALIBABA_KMS_EMULATOR_STS_KEY ?? '', 'utf8') }
    : undefined;
  const {
    server,
    port,
    sts: stsServer,
  } = await listenAlibabaKmsEmulator({ accessKeys, ...(region ? { region } : {}), ...(sts ? { sts } : {}), ...(stsTls ? { stsTls } : {}) });
  if (stsServer) process.stdout.write(`alibaba-sts-emulator listening on 127.0.0.1:${stsServer.port}\n`);
  process.stdout.write(`alibaba-kms-emulator listening on 127.0.0.1:${port}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    server.close();
    server.closeAllConnections();
    stsServer?.server.close();
    process.exit(0);
  });
  process.on('SIGTERM', () => process.exit(0));
}
