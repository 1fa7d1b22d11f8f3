// Adversarial input on the real control plane. Each one is refused with a clear
// message -- by the CRD when it is applied, or by the controller with a Ready=False
// condition and an Event -- and no Secret is written or changed. Inputs within every
// limit (names at the Kubernetes length limits, 10,000 keys over 10 envelopes) are
// materialized exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Envelope, EnvelopeSecret } from '../../src/api/types.ts';
import type { Scope } from '../../src/envelope/context.ts';
import { systemRandom } from '../../src/envelope/random.ts';
import { createAgeProvider, generateAgeIdentity } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { openEnvelopeSecret } from '../../src/sealing/open.ts';
import { sealNewEnvelope } from '../../src/sealing/seal.ts';
import type { RecipientTarget } from '../../src/providers/types.ts';
import { EnvelopeError } from '../../src/envelope/errors.ts';
import { adminKubeConfig, uniqueName, waitFor } from '../harness/cluster.ts';
import { startTestController, type TestController } from '../harness/controller.ts';
import { declaringDataKeys } from '../harness/faults-leaks.ts';
import { type KmsEmulator, startLocalKms } from '../harness/kms-emulators.ts';
import { createAwsKmsProvider } from '../../src/providers/aws-kms/index.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, kubectl, kubectlApply, paths, publishedRecipient } from '../harness/kube.ts';
import { sealFor } from '../harness/seal.ts';

const client = adminClient();
const controllerNamespace = uniqueName('envseal-adv');
const nsA = uniqueName('adv-a');
const nsB = uniqueName('adv-b');
// A namespace name at the limit: 63 characters.
const longNs = `adv-${'n'.repeat(50)}-${uniqueName('x').slice(2)}`.slice(0, 63);
let controller: TestController;
let cluster: RecipientTarget;
let other: { identity: string; recipient: string };
let kms: KmsEmulator;
let kmsKey: RecipientTarget;
let sealer: ProviderRegistry;

interface Secret {
  metadata: { name: string; uid: string; resourceVersion: string };
  type?: string;
  data?: Record<string, string>;
}
type Live = EnvelopeSecret & { metadata: { uid: string; generation: number } };

const bytes = (values: Record<string, string>) => Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));
const decode = (data: Record<string, string> | undefined) =>
  Object.fromEntries(Object.entries(data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;
const canary = (label: string) => `CANARY-adv-${label}-${Math.random().toString(36).slice(2)}`;

async function seal(
  namespace: string,
  name: string,
  values: Record<string, string>,
  options: { scope?: Scope; targets?: RecipientTarget[] } = {},
): Promise<EnvelopeSecret> {
  return sealFor({ namespace, name, values, targets: options.targets ?? [cluster], providers: sealer, ...(options.scope ? { scope: options.scope } : {}) });
}

async function sealEnvelope(
  namespace: string,
  name: string,
  values: Record<string, string>,
  scope: Scope = 'strict',
  targets: RecipientTarget[] = [cluster],
): Promise<Envelope> {
  return sealNewEnvelope({ values: bytes(values), binding: { scope, namespace, name }, targets, providers: sealer, random: systemRandom });
}

/** The manifest as another object: same spec, other namespace and/or name. */
const as = (sealed: EnvelopeSecret, namespace: string, name: string): EnvelopeSecret => ({ ...clone(sealed), metadata: { name, namespace } });

async function apply(object: unknown): Promise<void> {
  const result = await kubectlApply(object);
  if (result.code !== 0) throw new Error(`kubectl apply failed: ${result.stderr}`);
}

/** Large objects: server-side apply (client-side apply keeps a copy in an annotation, limited to 256 KiB). */
async function applyServerSide(object: unknown): Promise<{ code: number; stderr: string }> {
  return kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(object));
}

const getSecret = (namespace: string, name: string) => getOrUndefined<Secret>(client, paths.secret(namespace, name));
const getEs = (namespace: string, name: string) => getOrUndefined<Live>(client, paths.envelopeSecret(namespace, name));
const readyOf = (es: Live | undefined) => es?.status?.conditions?.find((c) => c.type === 'Ready');

async function waitReady(namespace: string, name: string, reason: string, timeoutMs = 60_000) {
  const status = reason === 'Synced' ? 'True' : 'False';
  const es = await waitFor(
    `${namespace}/${name} Ready=${status} ${reason}`,
    async () => {
      const live = await getEs(namespace, name);
      const c = readyOf(live);
      return c?.status === status && c.reason === reason && live?.status?.observedGeneration === live?.metadata.generation ? live : undefined;
    },
    { timeoutMs },
  );
  return { es, message: readyOf(es)!.message };
}

async function warningEvents(namespace: string, name: string): Promise<{ reason: string; message: string }[]> {
  const list = await client.request<{ items: { type: string; reason: string; message: string; involvedObject: { name: string } }[] }>({
    method: 'GET',
    path: paths.events(namespace),
  });
  return list.items.filter((e) => e.involvedObject.name === name && e.type === 'Warning');
}

/** Refused by the controller: the condition and a Warning event say why; no Secret exists. */
async function expectRefusedNew(namespace: string, name: string, reason: string, message: RegExp): Promise<string> {
  const refused = await waitReady(namespace, name, reason);
  expect(refused.message).toMatch(message);
  await waitFor(`a ${reason} Warning event for ${name}`, async () => (await warningEvents(namespace, name)).some((e) => e.reason === reason));
  expect(await getSecret(namespace, name)).toBeUndefined();
  return refused.message;
}

/** A good object, synced; returns its Secret as written. */
async function synced(namespace: string, name: string, values: Record<string, string>, scope: Scope = 'strict'): Promise<Secret> {
  await apply(await seal(namespace, name, values, { scope }));
  await waitReady(namespace, name, 'Synced');
  const secret = (await getSecret(namespace, name))!;
  expect(decode(secret.data)).toEqual(values);
  return secret;
}

/** An update of a synced object refused by the controller: its Secret is not touched. */
async function expectRefusedUpdate(namespace: string, name: string, before: Secret, reason: string, message: RegExp): Promise<string> {
  const refused = await waitReady(namespace, name, reason);
  expect(refused.message).toMatch(message);
  const after = (await getSecret(namespace, name))!;
  expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
  expect(after.data).toEqual(before.data);
  return refused.message;
}

/** Refused by the API server when applied: the message says why; nothing is stored. */
async function expectRefusedAtApply(object: EnvelopeSecret | Record<string, unknown>, message: RegExp, serverSide = false): Promise<string> {
  const result = serverSide ? await applyServerSide(object) : await kubectlApply(object);
  expect(result.code).not.toBe(0);
  expect(result.stderr).toMatch(message);
  const meta = (object as { metadata: { namespace: string; name: string } }).metadata;
  expect(await getSecret(meta.namespace, meta.name)).toBeUndefined();
  return result.stderr;
}

beforeAll(async () => {
  await installCrd();
  for (const ns of [controllerNamespace, nsA, nsB, longNs]) await createNamespace(client, ns);
  kms = await startLocalKms();
  const kmsOptions = { endpoint: kms.endpoint, region: kms.region, credentials: kms.credentials };
  kmsKey = { provider: 'aws-kms', target: (await createAwsKmsProvider(kmsOptions).createKey({ alias: `alias/${controllerNamespace}` })).keyArn };
  sealer = ProviderRegistry.of([declaringDataKeys(createAgeProvider({})), declaringDataKeys(createAwsKmsProvider(kmsOptions))]);
  controller = await startTestController({
    kubeConfig: adminKubeConfig(),
    config: { namespace: controllerNamespace, namespaces: [nsA, nsB, longNs], providers: { 'aws-kms': { ...kmsOptions, maxAttempts: 2 } } },
  });
  cluster = { provider: 'age', target: await publishedRecipient(client, controllerNamespace) };
  other = await generateAgeIdentity();
});

afterAll(async () => {
  await controller?.stop();
  await kms?.stop();
});

describe('ciphertext copied from another namespace or name, for every scope', () => {
  it('strict: refuses a manifest copied to another namespace over an existing Secret, which stays as it was', async () => {
    const before = await synced(nsB, 'victim-strict', { K: canary('victim') });
    const attacker = await seal(nsA, 'victim-strict', { K: canary('attacker') });
    await apply(as(attacker, nsB, 'victim-strict'));
    await expectRefusedUpdate(nsB, 'victim-strict', before, 'ContextMismatch', /sealed for another namespace, name or scope/);
  });

  it('strict: refuses a manifest renamed within its namespace', async () => {
    await apply(as(await seal(nsA, 'strict-orig', { K: canary('renamed') }), nsA, 'strict-renamed'));
    await expectRefusedNew(nsA, 'strict-renamed', 'ContextMismatch', new RegExp(`${nsA}/strict-renamed \\(scope strict\\)`));
  });

  it('namespace: refuses a manifest copied to another namespace, accepts it under another name in its own', async () => {
    const sealed = await seal(nsA, 'ns-orig', { K: canary('ns-scope') }, { scope: 'namespace' });
    await apply(as(sealed, nsB, 'ns-orig'));
    await expectRefusedNew(nsB, 'ns-orig', 'ContextMismatch', new RegExp(`namespace ${nsB} \\(scope namespace\\)`));
    // By design: namespace scope binds the namespace only.
    await apply(as(sealed, nsA, 'ns-renamed'));
    await waitReady(nsA, 'ns-renamed', 'Synced');
  });

  it('cluster: by design opens anywhere; its scope cannot be changed to strict or namespace', async () => {
    const sealed = await seal(nsA, 'cl-orig', { K: canary('cluster') }, { scope: 'cluster' });
    await apply(as(sealed, nsB, 'cl-anywhere'));
    await waitReady(nsB, 'cl-anywhere', 'Synced');
    for (const scope of ['strict', 'namespace'] as const) {
      const name = `cl-as-${scope}`;
      const changed = as(sealed, nsB, name);
      changed.spec.scope = scope;
      await apply(changed);
      await expectRefusedNew(nsB, name, 'ContextMismatch', /another namespace, name or scope/);
    }
  });

  it('refuses a strict or namespace manifest whose scope was edited to cluster to make it portable', async () => {
    for (const scope of ['strict', 'namespace'] as const) {
      const name = `widened-${scope}`;
      const sealed = await seal(nsA, name, { K: canary('widened') }, { scope });
      const widened = clone(sealed);
      widened.spec.scope = 'cluster';
      await apply(widened);
      await expectRefusedNew(nsA, name, 'ContextMismatch', /cluster scope/);
      await apply(as(widened, nsB, name));
      await expectRefusedNew(nsB, name, 'ContextMismatch', /cluster scope/);
    }
  });

  it('refuses an envelope copied from another object into a multi-envelope manifest, writing none of its good keys', async () => {
    const before = await synced(nsA, 'mixed', { OWN: canary('own') });
    const live = (await getEs(nsA, 'mixed'))!;
    const foreign = await sealEnvelope(nsB, 'elsewhere', { STOLEN: canary('stolen') });
    await apply({
      apiVersion: live.apiVersion,
      kind: live.kind,
      metadata: { name: 'mixed', namespace: nsA },
      spec: { ...live.spec, envelopes: [...live.spec.envelopes, foreign] },
    });
    await expectRefusedUpdate(nsA, 'mixed', before, 'ContextMismatch', /envelope #1/);
    expect(Object.keys(decode((await getSecret(nsA, 'mixed'))!.data))).toEqual(['OWN']);
  });

  it('refuses a single value copied from another object under the same key name', async () => {
    const before = await synced(nsA, 'value-victim', { TOKEN: canary('v1'), OTHER: 'kept' });
    const live = (await getEs(nsA, 'value-victim'))!;
    const donor = await seal(nsA, 'value-donor', { TOKEN: canary('donor') });
    const edited = { apiVersion: live.apiVersion, kind: live.kind, metadata: { name: 'value-victim', namespace: nsA }, spec: clone(live.spec) };
    edited.spec.envelopes[0]!.data.TOKEN = donor.spec.envelopes[0]!.data.TOKEN!;
    await apply(edited);
    const message = await expectRefusedUpdate(nsA, 'value-victim', before, 'DecryptFailed', /"TOKEN" did not authenticate/);
    expect(message).not.toContain('"OTHER"');
  });
});

describe('ciphertext copied, with aws-kms: the KMS refuses the encryption context too', () => {
  it('refuses a KMS-sealed manifest moved to another namespace or name, or widened to another scope, naming the key', async () => {
    const strict = await seal(nsA, 'kms-strict', { K: canary('kms-strict') }, { targets: [kmsKey] });
    const namespaced = await seal(nsA, 'kms-ns', { K: canary('kms-ns') }, { scope: 'namespace', targets: [kmsKey] });
    const cases: [string, EnvelopeSecret][] = [
      ['strict, other namespace', as(strict, nsB, 'kms-strict')],
      ['strict, other name', as(strict, nsA, 'kms-strict-renamed')],
      ['namespace scope, other namespace', as(namespaced, nsB, 'kms-ns')],
    ];
    const widened = clone(strict);
    widened.spec.scope = 'cluster';
    cases.push(['strict widened to cluster', widened]);
    for (const [what, manifest] of cases) {
      await apply(manifest);
      const message = await expectRefusedNew(manifest.metadata.namespace!, manifest.metadata.name, 'ContextMismatch', new RegExp(kmsKey.target));
      expect(message, what).toMatch(/InvalidCiphertext/);
    }
    // The same KMS-sealed manifest where it was sealed for: materialized.
    await apply(strict);
    await waitReady(nsA, 'kms-strict', 'Synced');
  });

  it('refuses a wrapped data key copied from another object sealed for the same key', async () => {
    const before = await synced(nsA, 'kms-victim', { K: 'kept' });
    const victim = await seal(nsA, 'kms-victim', { K: canary('kms-victim') }, { targets: [kmsKey] });
    await apply(victim);
    await waitReady(nsA, 'kms-victim', 'Synced');
    const written = (await getSecret(nsA, 'kms-victim'))!;
    expect(written.metadata.resourceVersion).not.toBe(before.metadata.resourceVersion);
    // A second version of the same object: its wrapped key, the first version's values.
    const other2 = await seal(nsA, 'kms-victim', { K: canary('kms-other') }, { targets: [kmsKey] });
    const mixed = clone(victim);
    mixed.spec.envelopes[0]!.recipients = other2.spec.envelopes[0]!.recipients;
    await apply(mixed);
    await expectRefusedUpdate(nsA, 'kms-victim', written, 'CommitmentMismatch', new RegExp(`aws-kms ${kmsKey.target} wraps a data key that does not match`));
  });
});

describe('tampered envelopes', () => {
  it('refuses values swapped between keys, naming both', async () => {
    const sealed = await seal(nsA, 'swapped', { USER: canary('user'), PASSWORD: canary('password') });
    const data = sealed.spec.envelopes[0]!.data;
    [data.USER, data.PASSWORD] = [data.PASSWORD!, data.USER!];
    await apply(sealed);
    // Every value fails: the error reads as a manifest sealed for another binding.
    await expectRefusedNew(nsA, 'swapped', 'ContextMismatch', /no value authenticates/);
    const partly = await seal(nsA, 'swapped-part', { A: canary('a'), B: canary('b'), C: 'unchanged' });
    const d = partly.spec.envelopes[0]!.data;
    [d.A, d.B] = [d.B!, d.A!];
    await apply(partly);
    const message = await expectRefusedNew(nsA, 'swapped-part', 'DecryptFailed', /"A", "B" did not authenticate/);
    expect(message).not.toContain('"C"');
  });

  it('refuses recipients that wrap different data keys (CommitmentMismatch), whichever recipient the controller can use', async () => {
    // The recipient the controller holds wraps another data key than the commitment's.
    const honest = await seal(nsA, 'forged', { K: canary('honest') }, { targets: [{ provider: 'age', target: other.recipient }, cluster] });
    const decoy = await seal(nsA, 'forged', { K: canary('decoy') }, { targets: [cluster] });
    honest.spec.envelopes[0]!.recipients[1] = decoy.spec.envelopes[0]!.recipients[0]!;
    await apply(honest);
    await expectRefusedNew(nsA, 'forged', 'CommitmentMismatch', /does not match the envelope's commitment/);

    // The other way round: the controller's recipient is honest and opens it; the other
    // recipient's holder is refused by the same commitment check (not a different value).
    const second = await seal(nsA, 'forged-2', { K: canary('honest-2') }, { targets: [cluster, { provider: 'age', target: other.recipient }] });
    const decoy2 = await seal(nsA, 'forged-2', { K: canary('decoy-2') }, { targets: [{ provider: 'age', target: other.recipient }] });
    second.spec.envelopes[0]!.recipients[1] = decoy2.spec.envelopes[0]!.recipients[0]!;
    await apply(second);
    await waitReady(nsA, 'forged-2', 'Synced');
    const otherHolder = ProviderRegistry.of([createAgeProvider({ identities: [other.identity] })]);
    await expect(openEnvelopeSecret({ secret: second, providers: otherHolder })).rejects.toSatisfy(
      (e: unknown) => e instanceof EnvelopeError && e.code === 'CommitmentMismatch',
    );
  });

  it('refuses an envelope id replaced by another (the key derivation changes: CommitmentMismatch)', async () => {
    const sealed = await seal(nsA, 'new-id', { K: canary('id') });
    sealed.spec.envelopes[0]!.id = (await sealEnvelope(nsA, 'new-id', { K: 'x' })).id;
    await apply(sealed);
    await expectRefusedNew(nsA, 'new-id', 'CommitmentMismatch', /commitment/);
  });
});

describe('key names JavaScript cannot hold', () => {
  it('refuses a key named __proto__ with a clear condition (the CRD allows it, envseal cannot store it)', async () => {
    const sealed = await seal(nsA, 'proto', { K: canary('proto') });
    const envelope = sealed.spec.envelopes[0]!;
    // Moved under the key name "__proto__" (defineProperty: an own key, as JSON.parse makes it).
    const value = envelope.data.K!;
    envelope.data = {};
    Object.defineProperty(envelope.data, '__proto__', { value, enumerable: true, writable: true, configurable: true });
    expect(JSON.stringify(sealed)).toContain('"__proto__"');
    await apply(sealed);
    await expectRefusedNew(nsA, 'proto', 'InvalidSpec', /data\["__proto__"\]: invalid key name: must not be '__proto__'/);
  });
});

describe('downgraded or unknown format, suite or provider', () => {
  it('the CRD refuses a non-committing (downgraded) or unknown suite', async () => {
    for (const suite of ['A256GCM-HKDF-SHA512', 'A256GCM-HKDF-SHA512-COMMIT-V2', '']) {
      const sealed = await seal(nsA, 'suite', { K: canary('suite') });
      sealed.spec.envelopes[0]!.suite = suite;
      await expectRefusedAtApply(
        sealed,
        new RegExp(`spec\\.envelopes\\[0\\]\\.suite: Unsupported value: "${suite}": supported values: "A256GCM-HKDF-SHA512-COMMIT"`),
      );
    }
    expect(await getEs(nsA, 'suite')).toBeUndefined();
  });

  it('refuses an unknown format (a field this version does not know, another API version) and an unknown provider', async () => {
    const sealed = await seal(nsA, 'format', { K: canary('format') });
    await expectRefusedAtApply(
      { ...clone(sealed), spec: { ...clone(sealed.spec), envelopes: [{ ...clone(sealed.spec.envelopes[0]!), format: '2' }] } },
      /strict decoding error: unknown field "spec\.envelopes\[0\]\.format"/,
    );
    await expectRefusedAtApply({ ...clone(sealed), apiVersion: 'envseal.dev/v2' }, /no matches for kind "EnvelopeSecret" in version "envseal\.dev\/v2"/);
    const provider = clone(sealed);
    provider.spec.envelopes[0]!.recipients[0]!.provider = 'gcp-kms';
    await expectRefusedAtApply(provider, /recipients\[0\]\.provider: Unsupported value: "gcp-kms": supported values: "aws-kms", "age"/);
    expect(await getEs(nsA, 'format')).toBeUndefined();
  });
});

describe('truncated, oversized or garbage base64', () => {
  it('the controller refuses a truncated value, a value with non-canonical base64, and a garbage or truncated wrapped key', async () => {
    const truncated = await seal(nsA, 'truncated', { LONG: canary('truncated').repeat(4), OK: 'fine' });
    truncated.spec.envelopes[0]!.data.LONG = truncated.spec.envelopes[0]!.data.LONG!.slice(0, -8);
    await apply(truncated);
    await expectRefusedNew(nsA, 'truncated', 'DecryptFailed', /"LONG" did not authenticate/);

    // 24 bytes of value: 52 sealed bytes, so the base64 ends in "==" and its last character has spare bits.
    const noncanonical = await seal(nsA, 'noncanonical', { K: 'CANARY-adv-noncanonical-' });
    const value = noncanonical.spec.envelopes[0]!.data.K!;
    expect(value.endsWith('==')).toBe(true);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const i = value.length - 3;
    noncanonical.spec.envelopes[0]!.data.K = value.slice(0, i) + alphabet[alphabet.indexOf(value[i]!) ^ 1] + value.slice(i + 1);
    await apply(noncanonical);
    await expectRefusedNew(nsA, 'noncanonical', 'InvalidSpec', /data\["K"\]: is not standard padded base64/);

    // Garbage is not an age file: the CRD refuses it at apply time.
    const garbageKey = await seal(nsA, 'garbage-key', { K: canary('gk') });
    garbageKey.spec.envelopes[0]!.recipients[0]!.encryptedKey = Buffer.alloc(200, 0x5a).toString('base64');
    await expectRefusedAtApply(garbageKey, /an age encryptedKey is one age file with a single recipient stanza/);

    // A wrapped key of the right shape with an altered byte: only opening it tells.
    const alteredKey = await seal(nsA, 'altered-key', { K: canary('ak') });
    const wrapped = Buffer.from(alteredKey.spec.envelopes[0]!.recipients[0]!.encryptedKey, 'base64');
    wrapped[wrapped.length - 1]! ^= 1;
    alteredKey.spec.envelopes[0]!.recipients[0]!.encryptedKey = wrapped.toString('base64');
    await apply(alteredKey);
    await expectRefusedNew(nsA, 'altered-key', 'DecryptFailed', /age-encrypted key for age .* is malformed or was altered/);

    // A truncated one still starts like an age file; the controller's validation refuses it.
    const cutKey = await seal(nsA, 'cut-key', { K: canary('ck') });
    const key = cutKey.spec.envelopes[0]!.recipients[0]!.encryptedKey;
    cutKey.spec.envelopes[0]!.recipients[0]!.encryptedKey = key.slice(0, Math.floor(key.length / 8) * 4);
    await apply(cutKey);
    await expectRefusedNew(nsA, 'cut-key', 'InvalidSpec', /recipients\[0\]\.encryptedKey: is truncated/);
  });

  it('the CRD refuses garbage, base64url, short and oversized values and ids', async () => {
    // A fixed length: the sealed value's base64 ends in "==" (base64url drops it).
    const base = await seal(nsA, 'b64', { K: 'CANARY-adv-base64-value-' });
    const variants: [string, (e: Envelope) => void, RegExp, boolean][] = [
      [
        'garbage characters',
        (e) => (e.data.K = `${e.data.K!.slice(0, 10)}!${e.data.K!.slice(11)}`),
        /spec\.envelopes\[0\]\.data\.K in body should match/,
        false,
      ],
      [
        'base64url',
        (e) => (e.data.K = Buffer.from(e.data.K!, 'base64').toString('base64url')),
        /spec\.envelopes\[0\]\.data\.K in body should match|should be at least 40 chars long/,
        false,
      ],
      [
        'shorter than nonce and tag',
        (e) => (e.data.K = e.data.K!.slice(0, 32)),
        /spec\.envelopes\[0\]\.data\.K in body should be at least 40 chars long/,
        false,
      ],
      ['an id of 31 bytes', (e) => (e.id = Buffer.alloc(31, 1).toString('base64')), /spec\.envelopes\[0\]\.id in body should match/, false],
      ['a wrapped key that is not base64', (e) => (e.recipients[0]!.encryptedKey = 'not base64 at all'), /encryptedKey in body should match/, false],
      [
        'a value over 1,398,140 characters (1 MiB sealed)',
        (e) => (e.data.K = Buffer.alloc(1_100_000, 7).toString('base64')),
        /spec\.envelopes\[0\]\.data\.K: Too long: may not be more than 1398140 bytes/,
        true,
      ],
    ];
    for (const [what, change, message, serverSide] of variants) {
      const manifest = clone(base);
      change(manifest.spec.envelopes[0]!);
      expect(await expectRefusedAtApply(manifest, message, serverSide), what).toBeTruthy();
    }
    expect(await getEs(nsA, 'b64')).toBeUndefined();
  });

  it('the CRD refuses values that total more than a Secret can hold', async () => {
    // Each value is within the CRD's bound for one value; together they exceed 1 MiB. (The
    // controller's own check of the same limit: src/api/limits.test.ts.)
    const sealed = await seal(nsA, 'too-big', { A: 'a'.repeat(540_000), B: 'b'.repeat(540_000) });
    await expectRefusedAtApply(sealed, /the values total more than 1 MiB \(1048576 bytes\) of plaintext, more than a Secret holds/, true);
    expect(await getEs(nsA, 'too-big')).toBeUndefined();
  });
});

describe('size limits', () => {
  it('the API server refuses a 10 MB manifest', async () => {
    const sealed = await seal(nsA, 'ten-mb', { K: canary('10mb') });
    sealed.spec.envelopes[0]!.data.BIG = Buffer.alloc(7_500_000, 3).toString('base64');
    expect(JSON.stringify(sealed).length).toBeGreaterThan(10_000_000);
    await expectRefusedAtApply(sealed, /Request entity too large: limit is 3145728/);
    await expectRefusedAtApply(sealed, /Request entity too large: limit is 3145728/, true);
    expect(await getEs(nsA, 'ten-mb')).toBeUndefined();
  });

  it('the CRD refuses 10,000 keys in one envelope', async () => {
    const values = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`KEY_${i}`, 'v']));
    const sealed = await seal(nsA, 'ten-k', values);
    await expectRefusedAtApply(sealed, /spec\.envelopes\[0\]\.data: Too many: 10000: must have at most 1024 items/, true);
  });

  it('materializes 10,000 keys spread over 10 envelopes exactly (within every limit)', async () => {
    const envelopes: Envelope[] = [];
    const all: Record<string, string> = {};
    for (let e = 0; e < 10; e++) {
      const values = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`E${e}_KEY_${i}`, `v${e}-${i}`]));
      Object.assign(all, values);
      envelopes.push(await sealEnvelope(nsA, 'ten-k-spread', values));
    }
    const manifest = {
      apiVersion: 'envseal.dev/v1alpha1',
      kind: 'EnvelopeSecret',
      metadata: { name: 'ten-k-spread', namespace: nsA },
      spec: { scope: 'strict', envelopes },
    };
    const result = await applyServerSide(manifest);
    expect(result.code, result.stderr).toBe(0);
    const { message } = await waitReady(nsA, 'ten-k-spread', 'Synced', 120_000);
    expect(message).toContain('(10000 keys)');
    expect(decode((await getSecret(nsA, 'ten-k-spread'))!.data)).toEqual(all);
  });
});

describe('names at the Kubernetes length limits', () => {
  const name253 = ['a'.repeat(63), 'b'.repeat(63), 'c'.repeat(63), 'd'.repeat(61)].join('.');
  const key253 = `K${'_'.repeat(125)}.${'x'.repeat(126)}`;

  it('materializes a 253-character name in a 63-character namespace with a 253-character key', async () => {
    expect(name253).toHaveLength(253);
    expect(longNs).toHaveLength(63);
    expect(key253).toHaveLength(253);
    const values = { [key253]: canary('long-key'), SHORT: 'v' };
    await apply(await seal(longNs, name253, values));
    await waitReady(longNs, name253, 'Synced');
    const secret = (await getSecret(longNs, name253))!;
    expect(decode(secret.data)).toEqual(values);
    // Its Events exist too (the API server shortens the generated name).
    const events = await client.request<{ items: { reason: string; involvedObject: { name: string } }[] }>({ method: 'GET', path: paths.events(longNs) });
    expect(events.items.some((e) => e.involvedObject.name === name253 && e.reason === 'Synced')).toBe(true);
    // Strict scope binds the full name: the same manifest under a name one character shorter is refused.
    await apply(as(await seal(longNs, name253, { K: canary('long') }), longNs, name253.slice(0, 252)));
    await expectRefusedNew(longNs, name253.slice(0, 252), 'ContextMismatch', /another namespace, name or scope/);
  });

  it('refuses names and keys one character over the limits', async () => {
    const name254 = `${name253}e`;
    await expectRefusedAtApply(
      as(await seal(nsA, 'x', { K: canary('254') }), nsA, name254),
      /metadata\.name: Invalid value: .*must be no more than 253 characters/,
    );
    const longKey = await seal(nsA, 'long-key', { [`${key253}y`]: canary('254-key') });
    await expectRefusedAtApply(longKey, /data key names must be valid Secret keys: .* at most 253 characters/);
    const ns64 = await kubectl(['create', 'namespace', `${longNs}z`]);
    expect(ns64.code).not.toBe(0);
    expect(ns64.stderr).toMatch(/must be no more than 63 characters/);
  });
});

describe('the controller after all of it', () => {
  it('still serves every good object, and reported every refusal in its metrics by reason only', async () => {
    await synced(nsB, 'still-fine', { K: canary('fine') });
    const metrics = await fetch(controller.metricsUrl).then((r) => r.text());
    expect(metrics).not.toMatch(/CANARY-/);
    await waitFor('the Ready gauge to count refusals', async () => (await controller.metric('envseal_envelopesecrets', { ready: 'False' })) >= 15, {
      timeoutMs: 30_000,
    });
    expect(await controller.metric('envseal_reconcile_total', { result: 'terminal' })).toBeGreaterThanOrEqual(15);
    // No refusal crashed a worker or left an unexpected error.
    expect(controller.logs.filter((l) => l.includes('reconcile failed unexpectedly'))).toEqual([]);
  });
});
