// The limits of src/api/validation.ts and the CRD are the same numbers: this test reads
// crds/envelopesecrets.envseal.dev.yaml and fails when one of them drifts. Then each limit
// is checked at its bound and one past it, offline (the CRD side runs against the real API
// server in test/e2e/crd.test.ts).
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { generateAgeIdentity } from '../providers/age.ts';
import { MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES } from '../providers/vault-transit/index.ts';
import { AGE_BASE64_PREFIX, AGE_STANZA_ARGUMENTS, ageFileBytes, ageFileProblem, MAX_AGE_ENCRYPTED_KEY_BYTES } from '../providers/age.ts';
import { MAX_AWS_KMS_ENCRYPTED_KEY_BYTES } from '../providers/aws-kms/index.ts';

const VAULT_TRANSIT_BASE64_PREFIX = Buffer.from('vault:').toString('base64');
import { createAgeProvider } from '../providers/age.ts';
import { ageShapedKey } from '../test-support/age-file.ts';
import { MAX_LABEL_VALUE_LENGTH } from './names.ts';
import { CREDENTIAL_MINTING_SECRET_TYPES } from './policy.ts';
import { API_VERSION, KIND } from './types.ts';
import {
  base64Length,
  MAX_DATA_KEYS_PER_ENVELOPE,
  MAX_ENCRYPTED_KEY_LENGTH,
  MAX_ENVELOPES,
  MAX_KEY_ID_LENGTH,
  MAX_RECIPIENT_LENGTH,
  MAX_RECIPIENTS,
  MAX_RECIPIENTS_PER_ENVELOPE,
  MAX_RESTART_WORKLOADS,
  MAX_SEALED_VALUE_LENGTH,
  MAX_SECRET_DATA_BYTES,
  MAX_SECRET_TYPE_LENGTH,
  MAX_TEMPLATE_ANNOTATIONS,
  MAX_TEMPLATE_ANNOTATIONS_BYTES,
  MAX_TEMPLATE_LABELS,
  VALUE_OVERHEAD_BYTES,
  validateEnvelopeSecret,
} from './validation.ts';
import { MAX_NAMESPACES_SCOPE_RECIPIENTS, MAX_NAMESPACES_SCOPE_RECIPIENTS_PER_ENVELOPE } from './namespaces-scope.ts';
import { MAX_SCOPE_NAMESPACES } from '../envelope/context.ts';

interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema;
  maxItems?: number;
  maxLength?: number;
  maxProperties?: number;
  'x-kubernetes-validations'?: { rule: string; message?: string; messageExpression?: string }[];
}

const crd = parse(readFileSync(new URL('../../crds/envelopesecrets.envseal.dev.yaml', import.meta.url), 'utf8')) as {
  spec: { versions: { schema: { openAPIV3Schema: Schema } }[] };
};
const root = crd.spec.versions[0]!.schema.openAPIV3Schema;
const spec = root.properties!.spec!;
const envelope = spec.properties!.envelopes!.items!;
const recipient = envelope.properties!.recipients!.items!;
const template = spec.properties!.template!;
const labels = template.properties!.metadata!.properties!.labels!;
const annotations = template.properties!.metadata!.properties!.annotations!;

/** The one rule of `schema` whose text contains `part`. */
function rule(schema: Schema, part: string): { rule: string; message?: string; messageExpression?: string } {
  const found = (schema['x-kubernetes-validations'] ?? []).filter((r) => r.rule.includes(part));
  expect(found, `a rule containing ${part}`).toHaveLength(1);
  return found[0]!;
}

describe('the CRD states the limits of src/api/validation.ts', () => {
  it('counts: envelopes, recipients, data keys, restart workloads, labels, annotations', () => {
    expect(spec.properties!.envelopes!.maxItems).toBe(MAX_ENVELOPES);
    // Scope namespaces wraps once per namespace: a larger schema bound, the usual one by a rule.
    expect(envelope.properties!.recipients!.maxItems).toBe(MAX_NAMESPACES_SCOPE_RECIPIENTS_PER_ENVELOPE);
    expect(rule(spec, 'size(e.recipients) <=').rule).toBe(
      `self.scope == 'namespaces' || self.envelopes.all(e, size(e.recipients) <= ${MAX_RECIPIENTS_PER_ENVELOPE})`,
    );
    expect(envelope.properties!.data!.maxProperties).toBe(MAX_DATA_KEYS_PER_ENVELOPE);
    expect(rule(spec, 'size(e.recipients)).sum()').rule).toBe(
      `self.envelopes.map(e, size(e.recipients)).sum() <= ${MAX_RECIPIENTS} || (self.scope == 'namespaces' && self.envelopes.map(e, size(e.recipients)).sum() <= ${MAX_NAMESPACES_SCOPE_RECIPIENTS})`,
    );
    expect(rule(spec, 'size(e.recipients)).sum()').message).toContain(`at most ${MAX_RECIPIENTS} recipients`);
    expect(spec.properties!.namespaces!.maxItems).toBe(MAX_SCOPE_NAMESPACES);
    expect(spec.properties!.namespaces!.items!.maxLength).toBe(63);
    expect(spec.properties!.restartWorkloads!.maxItems).toBe(MAX_RESTART_WORKLOADS);
    expect(labels.maxProperties).toBe(MAX_TEMPLATE_LABELS);
    expect(annotations.maxProperties).toBe(MAX_TEMPLATE_ANNOTATIONS);
  });

  it('sizes: plaintext total, sealed value, encryptedKey per provider, keyId, recipient, type, label values, annotation bytes', () => {
    const total = rule(spec, '.sum()).sum()');
    expect(total.rule).toContain(`- ${VALUE_OVERHEAD_BYTES}).sum()).sum() <= ${MAX_SECRET_DATA_BYTES}`);
    expect(total.message).toContain(`(${MAX_SECRET_DATA_BYTES} bytes)`);
    expect(envelope.properties!.data!.additionalProperties!.maxLength).toBe(MAX_SEALED_VALUE_LENGTH);
    expect(recipient.properties!.encryptedKey!.maxLength).toBe(MAX_ENCRYPTED_KEY_LENGTH);
    expect(recipient.properties!.keyId!.maxLength).toBe(MAX_KEY_ID_LENGTH);
    expect(recipient.properties!.recipient!.maxLength).toBe(MAX_RECIPIENT_LENGTH);
    const kms = rule(recipient, "self.provider != 'aws-kms' || size(");
    expect(kms.rule).toContain(`size(self.encryptedKey) <= ${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)}`);
    expect(kms.message).toContain(`${MAX_AWS_KMS_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES)} base64`);
    const age = rule(recipient, "self.provider != 'age'");
    expect(age.rule).toContain(`self.encryptedKey.startsWith('${AGE_BASE64_PREFIX}')`);
    expect(age.rule).toContain(`size(self.encryptedKey) <= ${base64Length(MAX_AGE_ENCRYPTED_KEY_BYTES)}`);
    expect(age.message).toContain(`${MAX_AGE_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_AGE_ENCRYPTED_KEY_BYTES)} base64`);
    const vault = rule(recipient, "self.provider != 'vault-transit' || (self.encryptedKey");
    expect(vault.rule).toContain(`self.encryptedKey.startsWith('${VAULT_TRANSIT_BASE64_PREFIX}')`);
    expect(vault.rule).toContain(`size(self.encryptedKey) <= ${base64Length(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES)}`);
    expect(vault.message).toContain(`${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES} bytes (${base64Length(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES)} base64`);
    expect(template.properties!.type!.maxLength).toBe(MAX_SECRET_TYPE_LENGTH);
    for (const type of CREDENTIAL_MINTING_SECRET_TYPES) expect(rule(template.properties!.type!, type).rule).toContain(`'${type}'`);
    expect(labels.additionalProperties!.maxLength).toBe(MAX_LABEL_VALUE_LENGTH);
    expect(rule(annotations, 'bytes(').rule).toBe(`self.map(k, size(k) + size(bytes(self[k]))).sum() <= ${MAX_TEMPLATE_ANNOTATIONS_BYTES}`);
  });
});

// ---------------------------------------------------------------------------------------
// Offline validation at each bound

const b64 = (bytes: number, fill = 1) => Buffer.alloc(bytes, fill).toString('base64');
const ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

interface Shape {
  envelopes?: number;
  recipientsPerEnvelope?: number;
  /** Plaintext bytes per value, per envelope. */
  values?: number[];
  encryptedKey?: string;
  provider?: 'age' | 'aws-kms';
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  restartWorkloads?: number;
  type?: string;
}

let keyCounter = 0;
function manifest(shape: Shape = {}): Record<string, unknown> {
  const provider = shape.provider ?? 'age';
  const encryptedKey = shape.encryptedKey ?? (provider === 'age' ? ageShapedKey() : b64(200));
  const r =
    provider === 'age'
      ? { provider, recipient: 'age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq', encryptedKey }
      : { provider, keyId: ARN, encryptedKey };
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: 'app', namespace: 'team-a' },
    spec: {
      envelopes: Array.from({ length: shape.envelopes ?? 1 }, () => ({
        id: b64(32),
        suite: 'A256GCM-HKDF-SHA512-COMMIT',
        commitment: b64(32, 2),
        recipients: Array.from({ length: shape.recipientsPerEnvelope ?? 1 }, () => r),
        data: Object.fromEntries((shape.values ?? [1]).map((bytes) => [`K${keyCounter++}`, b64(bytes + VALUE_OVERHEAD_BYTES, 3)])),
      })),
      template: { ...(shape.type ? { type: shape.type } : {}), metadata: { labels: shape.labels ?? {}, annotations: shape.annotations ?? {} } },
      ...(shape.restartWorkloads
        ? { restartWorkloads: Array.from({ length: shape.restartWorkloads }, (_, i) => ({ kind: 'Deployment', name: `w${i}` })) }
        : {}),
    },
  };
}

const messages = (doc: unknown) => validateEnvelopeSecret(doc).map((i) => `${i.path}: ${i.message}`);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('offline validation at each limit and one past it', () => {
  it.each<[string, Shape, Shape, RegExp]>([
    ['envelopes', { envelopes: MAX_ENVELOPES }, { envelopes: MAX_ENVELOPES + 1 }, /spec.envelopes: has 33 envelopes; at most 32/],
    [
      'recipients per envelope',
      { recipientsPerEnvelope: MAX_RECIPIENTS_PER_ENVELOPE },
      { recipientsPerEnvelope: MAX_RECIPIENTS_PER_ENVELOPE + 1 },
      /recipients: has 17 recipients; at most 16 per envelope/,
    ],
    [
      'recipients in all',
      { envelopes: 4, recipientsPerEnvelope: 16 },
      { envelopes: 5, recipientsPerEnvelope: 13 },
      /spec.envelopes: has 65 recipients in all; at most 64/,
    ],
    [
      'data keys per envelope',
      { values: range(MAX_DATA_KEYS_PER_ENVELOPE).map(() => 1) },
      { values: range(MAX_DATA_KEYS_PER_ENVELOPE + 1).map(() => 1) },
      /data: has 1025 keys; at most 1024 per envelope/,
    ],
    [
      'plaintext total',
      { envelopes: 2, values: [MAX_SECRET_DATA_BYTES / 2 - 1, 1] },
      { envelopes: 2, values: [MAX_SECRET_DATA_BYTES / 2 - 1, 2] },
      /values total 1048578 bytes; a Secret holds at most 1048576/,
    ],
    ['one value of 1 MiB', { values: [MAX_SECRET_DATA_BYTES] }, { values: [MAX_SECRET_DATA_BYTES + 3] }, /is longer than 1398140 characters/],
    [
      'aws-kms encryptedKey',
      { provider: 'aws-kms', encryptedKey: b64(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES) },
      { provider: 'aws-kms', encryptedKey: b64(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES + 1) },
      /encryptedKey: is longer than 8192 characters/,
    ],
    [
      'template labels',
      { labels: Object.fromEntries(range(64).map((i) => [`l${i}`, 'v'])) },
      { labels: Object.fromEntries(range(65).map((i) => [`l${i}`, 'v'])) },
      /labels: has 65 keys; at most 64/,
    ],
    [
      'template annotations',
      { annotations: Object.fromEntries(range(64).map((i) => [`a${i}`, 'v'])) },
      { annotations: Object.fromEntries(range(65).map((i) => [`a${i}`, 'v'])) },
      /annotations: has 65 keys; at most 64/,
    ],
    [
      'annotation bytes',
      { annotations: { a: 'x'.repeat(MAX_TEMPLATE_ANNOTATIONS_BYTES - 1) } },
      { annotations: { a: 'é'.repeat(MAX_TEMPLATE_ANNOTATIONS_BYTES / 2) } },
      /annotations: total 65537 bytes; at most 65536/,
    ],
    ['label value', { labels: { a: 'v'.repeat(63) } }, { labels: { a: 'v'.repeat(64) } }, /labels\["a"\]: invalid value: must be at most 63/],
    [
      'label key name',
      { labels: { [`example.com/${'n'.repeat(63)}`]: 'v' } },
      { labels: { [`example.com/${'n'.repeat(64)}`]: 'v' } },
      /invalid key: must have a name of at most 63/,
    ],
    [
      'label key prefix',
      { labels: { [`${'p'.repeat(253)}/n`]: 'v' } },
      { labels: { [`${'p'.repeat(254)}/n`]: 'v' } },
      /invalid key: must have a prefix that is a lowercase DNS subdomain of at most 253/,
    ],
    [
      'restart workloads',
      { restartWorkloads: MAX_RESTART_WORKLOADS },
      { restartWorkloads: MAX_RESTART_WORKLOADS + 1 },
      /restartWorkloads: lists 33 workloads; at most 32/,
    ],
    [
      'type length',
      { type: `example.com/${'t'.repeat(241)}` },
      { type: `example.com/${'t'.repeat(242)}` },
      /spec.template.type: must be a non-empty string of at most 253/,
    ],
  ])('%s', (_what, at, over, message) => {
    expect(messages(manifest(at))).toEqual([]);
    const refused = messages(manifest(over));
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.join('\n')).toMatch(message);
  });

  it('refuses credential-minting types and reserved keys, naming them', () => {
    for (const type of CREDENTIAL_MINTING_SECRET_TYPES)
      expect(messages(manifest({ type }))).toEqual([`spec.template.type: ${type} asks the cluster to mint credentials; envseal never creates such a Secret`]);
    expect(messages(manifest({ type: 'example.com/custom' }))).toEqual([]);
    expect(
      messages(manifest({ labels: { 'envseal.dev/x': 'y' }, annotations: { 'kubernetes.io/service-account.name': 'admin', 'app.kubernetes.io/name': 'ok' } })),
    ).toEqual([
      'spec.template.metadata.labels["envseal.dev/x"]: label "envseal.dev/x" is reserved: prefixes kubernetes.io/, k8s.io/, envseal.dev/ and their subdomains are reserved (app.kubernetes.io/ is allowed, except app.kubernetes.io/managed-by)',
      'spec.template.metadata.annotations["kubernetes.io/service-account.name"]: annotation "kubernetes.io/service-account.name" is reserved: prefixes kubernetes.io/, k8s.io/, envseal.dev/ and their subdomains are reserved (app.kubernetes.io/ is allowed, except app.kubernetes.io/managed-by)',
    ]);
  });

  it('sums plaintext exactly over any split of the values (base64 padding included)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 200_000 }), { minLength: 1, maxLength: 12 }), (sizes) => {
        const total = sizes.reduce((a, b) => a + b, 0);
        const refused = messages(manifest({ values: sizes })).some((m) => m.includes('a Secret holds at most'));
        expect(refused).toBe(total > MAX_SECRET_DATA_BYTES);
      }),
      { numRuns: 200 },
    );
  });
});

describe('age encryptedKeys: exactly one stanza, as envseal writes them', () => {
  it('accepts what the age provider writes, for X25519 and post-quantum hybrid recipients, at the size the limit assumes', async () => {
    const provider = createAgeProvider({});
    for (const kind of ['x25519', 'hybrid'] as const) {
      const { recipient } = await generateAgeIdentity(kind);
      const wrapped = await provider.wrap({ target: recipient, dataKey: new Uint8Array(32).fill(1), encryptionContext: {} });
      const file = Buffer.from(wrapped.encryptedKey, 'base64');
      expect(ageFileProblem(file), kind).toBeUndefined();
      expect(file.length).toBe(ageFileBytes(kind === 'x25519' ? 'X25519' : 'mlkem768x25519'));
      expect(messages(manifest({ encryptedKey: wrapped.encryptedKey }))).toEqual([]);
    }
  });

  it('has its largest shape at the limit, and every shape with the CRD prefix', () => {
    const sizes = Object.keys(AGE_STANZA_ARGUMENTS).map((type) => Buffer.from(ageShapedKey({ type }), 'base64').length);
    expect(sizes).toEqual(Object.keys(AGE_STANZA_ARGUMENTS).map(ageFileBytes));
    expect(Math.max(...sizes)).toBe(MAX_AGE_ENCRYPTED_KEY_BYTES);
    for (const type of Object.keys(AGE_STANZA_ARGUMENTS)) {
      expect(ageFileProblem(Buffer.from(ageShapedKey({ type }), 'base64')), type).toBeUndefined();
      expect(ageShapedKey({ type }).startsWith(AGE_BASE64_PREFIX)).toBe(true);
    }
  });

  it.each([
    ['two stanzas', { stanzas: 2 }, /holds more than one recipient stanza; envseal writes exactly one/],
    ['twenty stanzas', { stanzas: 20 }, /encryptedKey: is \d+ bytes; an age encryptedKey is at most 1743/],
    [
      'an unknown stanza type',
      { type: 'scrypt' },
      /has a stanza of another type than the ones envseal writes \(X25519, mlkem768x25519, p256tag, mlkem768p256tag\)/,
    ],
    ['a longer payload', { payloadBytes: 65 }, /has a payload of 65 bytes; a wrapped data key has 64/],
    ['no payload', { payloadBytes: 0 }, /has a payload of 0 bytes/],
  ])('refuses %s', (_what, options, message) => {
    expect(messages(manifest({ encryptedKey: ageShapedKey(options) })).join('\n')).toMatch(message);
  });

  it('never throws and never accepts random bytes or a mangled file', () => {
    const valid = Buffer.from(ageShapedKey(), 'base64');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.nat(), fc.nat(255), (random, at, byte) => {
        expect(typeof (ageFileProblem(Buffer.from(random)) ?? 'ok')).toBe('string');
        const mangled = Buffer.from(valid);
        const i = at % (valid.length - 64);
        mangled[i] = byte;
        const problem = ageFileProblem(mangled);
        // A byte of the header changed: still accepted only if it stayed base64 of the same length.
        if (problem === undefined) expect(/[A-Za-z0-9+/]/.test(String.fromCharCode(byte)) || byte === valid[i]).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('vault-transit recipients offline', () => {
  const vaultKey = (bytes: number) => Buffer.from(`vault:v1:${'A'.repeat(bytes - 'vault:v1:'.length)}`).toString('base64');
  const withRecipient = (recipient: Record<string, unknown>) => {
    const doc = manifest() as { spec: { envelopes: { recipients: unknown[] }[] } };
    doc.spec.envelopes[0]!.recipients = [recipient];
    return messages(doc);
  };

  it('accepts a transit ciphertext up to its bound under MOUNT/keys/NAME, and names each problem past it', () => {
    expect(withRecipient({ provider: 'vault-transit', keyId: 'transit/keys/app', encryptedKey: vaultKey(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES) })).toEqual([]);
    expect(withRecipient({ provider: 'vault-transit', keyId: 'transit/keys/app', encryptedKey: vaultKey(MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES + 1) })).toEqual([
      `spec.envelopes[0].recipients[0].encryptedKey: is ${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES + 1} bytes; a vault-transit encryptedKey is at most ${MAX_VAULT_TRANSIT_ENCRYPTED_KEY_BYTES}`,
    ]);
    expect(withRecipient({ provider: 'vault-transit', keyId: 'app', encryptedKey: vaultKey(89) })).toEqual([
      'spec.envelopes[0].recipients[0].keyId: must be the transit key path MOUNT/keys/NAME',
    ]);
    expect(withRecipient({ provider: 'vault-transit', keyId: 'transit/keys/app', encryptedKey: b64(89) })).toEqual([
      'spec.envelopes[0].recipients[0].encryptedKey: is not the base64 of a transit ciphertext (vault:vN:...)',
    ]);
  });
});
