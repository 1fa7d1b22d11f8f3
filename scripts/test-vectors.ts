// Prints the format v1 test vectors of docs/format.md as JSON. The vectors are derived
// from fixed inputs and a seeded random source; src/envelope/vectors.test.ts and
// test/vectors/verify_vectors.py (an independent Python implementation) check them.
import { deriveKeys } from '../src/envelope/kdf.ts';
import { type Binding, kmsEncryptionContext, valueAad } from '../src/envelope/context.ts';
import { FORMAT_VERSION, SUITE, sealEnvelope } from '../src/envelope/envelope.ts';
import { seededRandom } from '../src/envelope/random.ts';

const cases: { description: string; binding: Binding; values: Record<string, string> }[] = [
  {
    description: 'strict scope, two values',
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    values: { DB_PASSWORD: 'correct horse battery staple', 'api.token': 'tøken-✓' },
  },
  { description: 'namespace scope', binding: { scope: 'namespace', namespace: 'team-a', name: 'shared' }, values: { KEY: 'value' } },
  { description: 'cluster scope, empty value', binding: { scope: 'cluster', namespace: 'anywhere', name: 'common' }, values: { EMPTY: '' } },
  {
    description: 'namespaces scope, three namespaces, read in the second',
    binding: { scope: 'namespaces', namespace: 'team-b', name: 'registry', namespaces: ['team-a', 'team-b', 'team-c'] },
    values: { '.dockerconfigjson': '{"auths":{}}' },
  },
];

const vectors = cases.map((c, n) => {
  const dataKey = Buffer.from(Array.from({ length: 32 }, (_, i) => (i + n * 32) & 0xff));
  const recorded: Buffer[] = [];
  const seeded = seededRandom(`envseal/v1 test vector ${n + 1}`);
  const random = (length: number) => {
    const bytes = Buffer.from(seeded(length));
    recorded.push(bytes);
    return bytes;
  };
  const values = Object.fromEntries(Object.entries(c.values).map(([k, v]) => [k, Buffer.from(v, 'utf8')]));
  const envelope = sealEnvelope({ dataKey, binding: c.binding, values, random });
  const derived = deriveKeys(dataKey, Buffer.from(envelope.id, 'base64'));
  return {
    description: c.description,
    binding: c.binding,
    dataKey: dataKey.toString('hex'),
    envelopeId: envelope.id,
    valueKey: derived.valueKey.toString('hex'),
    commitment: envelope.commitment,
    kmsEncryptionContext: kmsEncryptionContext(c.binding),
    // Scope namespaces: one wrapping per listed namespace, each under its own context.
    ...(c.binding.namespaces
      ? { kmsEncryptionContextsByNamespace: Object.fromEntries(c.binding.namespaces.map((ns) => [ns, kmsEncryptionContext({ ...c.binding, namespace: ns })])) }
      : {}),
    values: Object.entries(c.values).map(([key, plaintext], i) => ({
      key,
      plaintext,
      nonce: recorded[i + 1]!.toString('hex'),
      aad: valueAad({ binding: c.binding, formatVersion: FORMAT_VERSION, suite: SUITE, envelopeId: envelope.id, key }).toString('hex'),
      sealed: envelope.data[key]!,
    })),
  };
});

process.stdout.write(`${JSON.stringify({ format: FORMAT_VERSION, suite: SUITE, vectors }, null, 2)}\n`);
