// The CRD refuses malformed EnvelopeSecrets at `kubectl apply` time, with a message that
// names the problem; its limits (the same numbers as src/api/validation.ts) hold at their
// bound and refuse one past it; a ResourceQuota caps how many a namespace may create.
import { beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../../src/api/types.ts';
import {
  MAX_DATA_KEYS_PER_ENVELOPE,
  MAX_ENVELOPES,
  MAX_KEY_ID_LENGTH,
  MAX_RECIPIENT_LENGTH,
  MAX_RECIPIENTS,
  MAX_RECIPIENTS_PER_ENVELOPE,
  MAX_RESTART_WORKLOADS,
  MAX_SEALED_VALUE_LENGTH,
  MAX_SECRET_DATA_BYTES,
  MAX_TEMPLATE_ANNOTATIONS,
  MAX_TEMPLATE_ANNOTATIONS_BYTES,
  MAX_TEMPLATE_LABELS,
  VALUE_OVERHEAD_BYTES,
} from '../../src/api/validation.ts';
import { MAX_AGE_ENCRYPTED_KEY_BYTES } from '../../src/providers/age.ts';
import { MAX_AWS_KMS_ENCRYPTED_KEY_BYTES } from '../../src/providers/aws-kms/index.ts';
import { ageShapedKey } from '../../src/test-support/age-file.ts';
import { seededRandom } from '../../src/envelope/random.ts';
import { generateAgeIdentity } from '../../src/providers/age.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../../src/sealing/seal.ts';
import { uniqueName, waitFor } from '../harness/cluster.ts';
import { DEFAULT_MARGIN_BYTES, LARGEST_REQUEST_BYTES, largestEnvelopeSecret } from '../harness/largest.ts';
import { adminClient, createNamespace, getOrUndefined, installCrd, kubectl, kubectlApply } from '../harness/kube.ts';

const ns = uniqueName('crd');
let valid: EnvelopeSecret;

type Mutable = { metadata: { name: string; namespace?: string }; spec: Record<string, unknown> & { envelopes: Record<string, unknown>[] } };
function variant(name: string, change: (doc: Mutable) => void): unknown {
  const doc = structuredClone(valid) as unknown as Mutable;
  doc.metadata.name = name;
  change(doc);
  return doc;
}

beforeAll(async () => {
  await installCrd();
  await createNamespace(adminClient(), ns);
  const { recipient } = await generateAgeIdentity();
  valid = await sealEnvelopeSecret({
    values: { A: Buffer.from('a'), B: Buffer.from('b') },
    binding: { scope: 'strict', namespace: ns, name: 'valid' },
    targets: [{ provider: 'age', target: recipient }],
    providers: new ProviderRegistry({}),
    random: seededRandom('crd'),
  });
});

describe('the EnvelopeSecret CRD', () => {
  it('accepts a sealed manifest and defaults the scope', async () => {
    const noScope = variant('defaulted', (d) => delete d.spec.scope);
    expect((await kubectlApply(valid)).code).toBe(0);
    expect((await kubectlApply(noScope)).code).toBe(0);
    const scope = await kubectl(['get', 'esec', '-n', ns, 'defaulted', '-o', 'jsonpath={.spec.scope}']);
    expect(scope.stdout).toBe('strict');
  });

  it.each([
    ['an unknown scope', (d: Mutable) => (d.spec.scope = 'global'), /spec.scope: Unsupported value: "global"/],
    ['no envelopes', (d: Mutable) => (d.spec.envelopes = []), /spec.envelopes: Invalid value: 0: spec.envelopes in body should have at least 1 items/],
    ['empty recipients', (d: Mutable) => (d.spec.envelopes[0]!.recipients = []), /recipients in body should have at least 1 items/],
    [
      'an unknown provider',
      (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.provider = 'vault'),
      /provider: Unsupported value: "vault"/,
    ],
    [
      'an aws-kms recipient without a key ARN',
      (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.provider = 'aws-kms'),
      /an aws-kms recipient needs keyId, the full key ARN/,
    ],
    ['an unknown suite', (d: Mutable) => (d.spec.envelopes[0]!.suite = 'A128CBC-HS256'), /suite: Unsupported value: "A128CBC-HS256"/],
    [
      'an invalid data key name',
      (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>)['bad key!'] = (d.spec.envelopes[0]!.data as Record<string, string>).A!),
      /data key names must be valid Secret keys/,
    ],
    [
      'a data key named ..x',
      (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>)['..x'] = (d.spec.envelopes[0]!.data as Record<string, string>).A!),
      /data key names must be valid Secret keys/,
    ],
    [
      'a data key in two envelopes',
      (d: Mutable) => d.spec.envelopes.push(structuredClone(d.spec.envelopes[0]!)),
      /data key names must be unique across envelopes/,
    ],
    [
      'a value that is not base64',
      (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>).A = 'this is not base64 at all, clearly; it has spaces and punctuation!'),
      /data.A in body should match/,
    ],
    [
      'URL-safe base64 in the id',
      (d: Mutable) => (d.spec.envelopes[0]!.id = String(d.spec.envelopes[0]!.id).replace(/.$/, '').replace(/.$/, '_=')),
      /id in body should match/,
    ],
    ['a truncated commitment', (d: Mutable) => (d.spec.envelopes[0]!.commitment = 'AAAA'), /commitment in body should match/],
    [
      'a truncated value',
      (d: Mutable) => ((d.spec.envelopes[0]!.data as Record<string, string>).A = 'AAAA'),
      /data.A in body should be at least 40 chars long/,
    ],
    [
      'a non-base64 encryptedKey',
      (d: Mutable) => ((d.spec.envelopes[0]!.recipients as Record<string, unknown>[])[0]!.encryptedKey = 'a-b-c-d'),
      /encryptedKey in body should match/,
    ],
    ['a restart of an unsupported kind', (d: Mutable) => (d.spec.restartWorkloads = [{ kind: 'CronJob', name: 'x' }]), /kind: Unsupported value: "CronJob"/],
  ])('refuses %s', async (what, change, message) => {
    const name = `bad-${what.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`.slice(0, 60).replace(/-$/, '');
    const result = await kubectlApply(variant(name, change));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
    const got = await kubectl(['get', 'envelopesecret', '-n', ns, name]);
    expect(got.code).not.toBe(0);
  });

  it('has printer columns, a short name and a status subresource', async () => {
    const table = await kubectl(['get', 'esec', '-n', ns]);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAME\s+READY\s+REASON\s+AGE/);
    const wide = await kubectl(['get', 'esec', '-n', ns, '-o', 'wide']);
    expect(wide.stdout.split('\n')[0]).toMatch(/SCOPE/);
    // A spec update cannot write status; the status subresource can.
    const patched = await kubectl(['patch', 'esec', '-n', ns, 'valid', '--subresource=status', '--type=merge', '-p', '{"status":{"observedGeneration":1}}']);
    expect(patched.code).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// Tenant rules and limits: each refused with a message that names it; each limit holds at
// its bound and refuses one past it.

type Recipient = Record<string, unknown>;
type Envelope = { id: string; suite: string; commitment: string; recipients: Recipient[]; data: Record<string, string> };
type Doc = {
  metadata: { name: string; namespace?: string };
  spec: { envelopes: Envelope[]; template?: Record<string, unknown>; restartWorkloads?: unknown[] };
};

// Large objects: server-side apply (client-side apply copies the object into an annotation,
// which may not exceed 256 KiB).
const applyServerSide = (object: unknown) => kubectl(['apply', '--server-side', '--field-manager=crd-test', '-f', '-'], JSON.stringify(object));

let counter = 0;
function shaped(change: (doc: Doc) => void): Doc {
  const doc = structuredClone(valid) as unknown as Doc;
  doc.metadata.name = `limit-${counter++}`;
  change(doc);
  return doc;
}
const first = (d: Doc) => d.spec.envelopes[0]!;
const b64 = (bytes: number, fill = 7) => Buffer.alloc(bytes, fill).toString('base64');
/** A value of `plaintext` bytes: the CRD counts sizes, it cannot open anything. */
const sealedOf = (plaintext: number) => b64(plaintext + VALUE_OVERHEAD_BYTES);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
/** `count` envelopes, each a copy of the first with its own key names. */
function envelopes(d: Doc, count: number, recipients = 1, keysEach = 1): void {
  const base = first(d);
  d.spec.envelopes = range(count).map((e) => ({
    ...structuredClone(base),
    recipients: range(recipients).map(() => structuredClone(base.recipients[0]!)),
    data: Object.fromEntries(range(keysEach).map((k) => [`E${e}_K${k}`, base.data.A!])),
  }));
}
const kmsRecipient = (encryptedKey: string, keyId = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'): Recipient => ({
  provider: 'aws-kms',
  keyId,
  encryptedKey,
});
const labels = (d: Doc, map: Record<string, string>) => (d.spec.template = { ...d.spec.template, metadata: { labels: map } });
const annotations = (d: Doc, map: Record<string, string>) => (d.spec.template = { ...d.spec.template, metadata: { annotations: map } });
const many = (n: number, prefix: string, value = 'v') => Object.fromEntries(range(n).map((i) => [`${prefix}${i}`, value]));

async function expectAdmitted(doc: Doc): Promise<void> {
  const result = await applyServerSide(doc);
  expect(result.code, result.stderr).toBe(0);
  // Nothing reconciles here; remove it again so the namespace stays small.
  expect((await kubectl(['delete', 'esec', '-n', ns, doc.metadata.name, '--wait=false'])).code).toBe(0);
}

async function expectRefused(doc: Doc, message: RegExp): Promise<void> {
  const result = await applyServerSide(doc);
  expect(result.code).not.toBe(0);
  expect(result.stderr).toMatch(message);
  expect((await kubectl(['get', 'esec', '-n', ns, doc.metadata.name])).code).not.toBe(0);
}

const RESERVED =
  /is reserved: prefixes kubernetes.io\/, k8s.io\/, envseal.dev\/ and their subdomains are reserved \(app.kubernetes.io\/ is allowed, except app.kubernetes.io\/managed-by\)/;

describe('what a tenant may ask for', () => {
  it.each([
    [
      'kubernetes.io/service-account-token',
      /spec.template.type: Invalid value: "string": kubernetes.io\/service-account-token asks the cluster to mint credentials; envseal never creates such a Secret/,
    ],
    [
      'bootstrap.kubernetes.io/token',
      /spec.template.type: Invalid value: "string": bootstrap.kubernetes.io\/token asks the cluster to mint credentials; envseal never creates such a Secret/,
    ],
  ])('refuses the type %s outright', async (type, message) => {
    await expectRefused(
      shaped((d) => (d.spec.template = { type })),
      message,
    );
  });

  it('admits other types (the controller and the chart decide per namespace) and the app.kubernetes.io labels', async () => {
    await expectAdmitted(
      shaped(
        (d) =>
          (d.spec.template = {
            type: 'example.com/config',
            metadata: {
              labels: { 'app.kubernetes.io/name': 'web', 'app.kubernetes.io/part-of': 'shop', team: 'a' },
              annotations: { 'app.kubernetes.io/version': '1', 'example.com/owner': 'x' },
            },
          }),
      ),
    );
  });

  it.each([
    ['labels', 'kubernetes.io/service-account.name'],
    ['labels', 'k8s.io/x'],
    ['labels', 'node-role.kubernetes.io/control-plane'],
    ['labels', 'rbac.authorization.k8s.io/aggregate-to-admin'],
    ['labels', 'envseal.dev/role'],
    ['labels', 'app.kubernetes.io/managed-by'],
    ['annotations', 'kubernetes.io/service-account.name'],
    ['annotations', 'kubectl.kubernetes.io/last-applied-configuration'],
    ['annotations', 'envseal.dev/spec-hash'],
    ['annotations', 'x.envseal.dev/adopt'],
  ] as const)('refuses the reserved %s key %s, naming it', async (field, key) => {
    const message = new RegExp(
      `spec.template.metadata.${field}: Invalid value: "object": ${field === 'labels' ? 'label' : 'annotation'} ${key.replaceAll('.', '\\.')} ${RESERVED.source}`,
    );
    await expectRefused(
      shaped((d) => (field === 'labels' ? labels(d, { [key]: 'x' }) : annotations(d, { [key]: 'x' }))),
      message,
    );
  });

  it('refuses label and annotation keys and label values that no Secret could carry', async () => {
    await expectRefused(
      shaped((d) => labels(d, { 'Bad Key': 'x' })),
      /spec.template.metadata.labels: Invalid value: "object": label keys must be a name of at most 63 characters/,
    );
    await expectRefused(
      shaped((d) => annotations(d, { 'a/b/c': 'x' })),
      /spec.template.metadata.annotations: Invalid value: "object": annotation keys must be a name of at most 63 characters/,
    );
    await expectRefused(
      shaped((d) => labels(d, { app: 'not a label value' })),
      /spec.template.metadata.labels.app in body should match/,
    );
  });
});

describe('the limits, at the bound and one past it', () => {
  // [what, at the bound, one past it, the refusal]
  const cases: [string, (d: Doc) => void, (d: Doc) => void, RegExp][] = [
    ['envelopes', (d) => envelopes(d, MAX_ENVELOPES), (d) => envelopes(d, MAX_ENVELOPES + 1), /spec.envelopes: Too many: 33: must have at most 32 items/],
    [
      'recipients per envelope',
      (d) => envelopes(d, 1, MAX_RECIPIENTS_PER_ENVELOPE),
      (d) => envelopes(d, 1, MAX_RECIPIENTS_PER_ENVELOPE + 1),
      /spec: Invalid value: "object": at most 16 recipients per envelope \(64 with scope namespaces\)/,
    ],
    [
      'recipients in all',
      (d) => envelopes(d, MAX_RECIPIENTS / 16, 16),
      (d) => envelopes(d, 5, 13),
      /spec: Invalid value: "object": at most 64 recipients in all envelopes together \(256 with scope namespaces/,
    ],
    [
      'data keys per envelope',
      (d) => envelopes(d, 1, 1, MAX_DATA_KEYS_PER_ENVELOPE),
      (d) => envelopes(d, 1, 1, MAX_DATA_KEYS_PER_ENVELOPE + 1),
      /spec.envelopes\[0\].data: Too many: 1025: must have at most 1024 items/,
    ],
    [
      'plaintext in all (padding counted exactly)',
      (d) => (first(d).data = { A: sealedOf(MAX_SECRET_DATA_BYTES / 2), B: sealedOf(MAX_SECRET_DATA_BYTES / 2 - 1), C: sealedOf(1) }),
      (d) => (first(d).data = { A: sealedOf(MAX_SECRET_DATA_BYTES / 2), B: sealedOf(MAX_SECRET_DATA_BYTES / 2 - 1), C: sealedOf(2) }),
      /spec: Invalid value: "object": the values total more than 1 MiB \(1048576 bytes\) of plaintext, more than a Secret holds/,
    ],
    // 1 MiB + 1 byte still fits 1,398,140 characters (base64 rounds up to 3 bytes; the total rule refuses it); + 2 does not.
    [
      'one value',
      (d) => (first(d).data = { A: sealedOf(MAX_SECRET_DATA_BYTES) }),
      (d) => (first(d).data = { A: sealedOf(MAX_SECRET_DATA_BYTES + 2) }),
      /spec.envelopes\[0\].data.A: Too long: may not be more than 1398140 bytes/,
    ],
    [
      'an aws-kms encryptedKey',
      (d) => (first(d).recipients = [kmsRecipient(b64(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES))]),
      (d) => (first(d).recipients = [kmsRecipient(b64(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES + 1))]),
      /encryptedKey: Too long: may not be more than 8192 bytes/,
    ],
    [
      'an age encryptedKey (one post-quantum tag stanza)',
      (d) => (first(d).recipients[0]!.encryptedKey = ageShapedKey({ type: 'mlkem768p256tag' })),
      (d) => (first(d).recipients[0]!.encryptedKey = b64(MAX_AGE_ENCRYPTED_KEY_BYTES + 1).replace(/^.{32}/, ageShapedKey().slice(0, 32))),
      /spec.envelopes\[0\].recipients\[0\]: Invalid value: "object": an age encryptedKey is one age file with a single recipient stanza: it starts with the age header and is at most 1743 bytes \(2324 base64 characters\)/,
    ],
    [
      'a keyId',
      (d) => (first(d).recipients = [kmsRecipient(b64(300), `arn:${'k'.repeat(MAX_KEY_ID_LENGTH - 4)}`)]),
      (d) => (first(d).recipients = [kmsRecipient(b64(300), `arn:${'k'.repeat(MAX_KEY_ID_LENGTH - 3)}`)]),
      /keyId: Too long: may not be more than 2048 bytes/,
    ],
    [
      'a recipient',
      (d) => (first(d).recipients[0]!.recipient = `age1${'q'.repeat(MAX_RECIPIENT_LENGTH - 4)}`),
      (d) => (first(d).recipients[0]!.recipient = `age1${'q'.repeat(MAX_RECIPIENT_LENGTH - 3)}`),
      /recipient: Too long: may not be more than 2048 bytes/,
    ],
    [
      'template labels',
      (d) => labels(d, many(MAX_TEMPLATE_LABELS, 'l')),
      (d) => labels(d, many(MAX_TEMPLATE_LABELS + 1, 'l')),
      /spec.template.metadata.labels: Too many: 65: must have at most 64 items/,
    ],
    [
      'a label value',
      (d) => labels(d, { a: 'v'.repeat(63) }),
      (d) => labels(d, { a: 'v'.repeat(64) }),
      /spec.template.metadata.labels.a: Too long: may not be more than 63 bytes/,
    ],
    [
      'template annotations',
      (d) => annotations(d, many(MAX_TEMPLATE_ANNOTATIONS, 'a')),
      (d) => annotations(d, many(MAX_TEMPLATE_ANNOTATIONS + 1, 'a')),
      /spec.template.metadata.annotations: Too many: 65: must have at most 64 items/,
    ],
    // Bytes, not characters: "é" is two.
    [
      'annotation bytes',
      (d) => annotations(d, { a: 'é'.repeat((MAX_TEMPLATE_ANNOTATIONS_BYTES - 2) / 2), b: '' }),
      (d) => annotations(d, { a: 'é'.repeat((MAX_TEMPLATE_ANNOTATIONS_BYTES - 2) / 2), bb: '' }),
      /spec.template.metadata.annotations: Invalid value: "object": the annotations total more than 65536 bytes \(keys and values\)/,
    ],
    [
      'restart workloads',
      (d) => (d.spec.restartWorkloads = range(MAX_RESTART_WORKLOADS).map((i) => ({ kind: 'Deployment', name: `w${i}` }))),
      (d) => (d.spec.restartWorkloads = range(MAX_RESTART_WORKLOADS + 1).map((i) => ({ kind: 'Deployment', name: `w${i}` }))),
      /spec.restartWorkloads: Too many: 33: must have at most 32 items/,
    ],
  ];

  it.each(cases)('%s', async (_what, at, over, message) => {
    await expectAdmitted(shaped(at));
    await expectRefused(shaped(over), message);
  });

  it('keeps MAX_SEALED_VALUE_LENGTH the base64 of 1 MiB sealed', () => {
    expect(sealedOf(MAX_SECRET_DATA_BYTES).length).toBe(MAX_SEALED_VALUE_LENGTH);
  });
});

describe('the largest EnvelopeSecret the API server stores', () => {
  it('is bounded by etcd, not the CRD: stored just under the limit, refused just over it', async () => {
    const name = 'big01';
    const largest = largestEnvelopeSecret({ namespace: ns, name });
    expect(JSON.stringify(largest).length).toBe(LARGEST_REQUEST_BYTES - 2 * (ns.length - 2) - DEFAULT_MARGIN_BYTES);
    const create = (object: unknown) => kubectl(['create', '-f', '-'], JSON.stringify(object));
    // Within a few bytes either way (etcd's request header varies): 16 bytes over is refused.
    const over = await create(largestEnvelopeSecret({ namespace: ns, name: 'big02', marginBytes: -16 }));
    expect(over.code).not.toBe(0);
    expect(over.stderr).toMatch(/etcdserver: request is too large/);
    const stored = await create(largest);
    expect(stored.code, stored.stderr).toBe(0);
    const served = await kubectl(['get', '--raw', `/apis/envseal.dev/v1alpha1/namespaces/${ns}/envelopesecrets/${name}`]);
    // What a list or watch hands the controller per object: about 1.5 MiB (docs/helm.md).
    expect(served.stdout.length).toBeGreaterThan(1_572_000);
    expect(served.stdout.length).toBeLessThanOrEqual(1_572_864);
    await kubectl(['delete', 'esec', '-n', ns, name, '--wait=false']);
  });
});

describe('a ResourceQuota on count/envelopesecrets.envseal.dev (docs/helm.md)', () => {
  it('caps how many EnvelopeSecrets a namespace may create', async () => {
    const quotaNs = uniqueName('crd-quota');
    await createNamespace(adminClient(), quotaNs);
    const quota = {
      apiVersion: 'v1',
      kind: 'ResourceQuota',
      metadata: { name: 'envelopesecrets', namespace: quotaNs },
      spec: { hard: { 'count/envelopesecrets.envseal.dev': '2' } },
    };
    // Admission enforces a quota once kube-controller-manager's quota controller has counted
    // it ("status unknown for quota" before). That controller finds a new CRD's resource by
    // discovery every 30 s, and counts a quota created before that only at its next full
    // resync (5 min): as docs/helm.md says, a quota created afterwards is counted at once.
    let createdAt = 0;
    await waitFor(
      'the quota counted',
      async () => {
        const path = `/api/v1/namespaces/${quotaNs}/resourcequotas/envelopesecrets`;
        const live = await getOrUndefined<{ status?: { used?: Record<string, string> } }>(adminClient(), path);
        if (live?.status?.used?.['count/envelopesecrets.envseal.dev'] === '0') return true;
        if (Date.now() - createdAt > 5000) {
          if (live) await kubectl(['delete', 'resourcequota', '-n', quotaNs, 'envelopesecrets']);
          expect((await kubectlApply(quota)).code).toBe(0);
          createdAt = Date.now();
        }
        return false;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const inQuota = (name: string) => ({ ...structuredClone(valid), metadata: { name, namespace: quotaNs } });
    for (const name of ['one', 'two']) {
      const result = await kubectlApply(inQuota(name));
      expect(result.code, result.stderr).toBe(0);
    }
    const third = await kubectlApply(inQuota('three'));
    expect(third.code).not.toBe(0);
    expect(third.stderr).toMatch(
      /exceeded quota: envelopesecrets, requested: count\/envelopesecrets.envseal.dev=1, used: count\/envelopesecrets.envseal.dev=2, limited: count\/envelopesecrets.envseal.dev=2/,
    );
    expect((await kubectl(['get', 'esec', '-n', quotaNs, '-o', 'name'])).stdout.trim().split('\n')).toEqual([
      'envelopesecret.envseal.dev/one',
      'envelopesecret.envseal.dev/two',
    ]);
    await kubectl(['delete', 'namespace', quotaNs, '--wait=false']);
  });
});
