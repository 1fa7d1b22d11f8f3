// spec.template.data in validateEnvelopeSecret: the offline checks the controller and
// `envseal verify` apply before any value is opened.
import { describe, expect, it } from 'vitest';
import { API_VERSION, KIND } from './types.ts';
import { MAX_SECRET_DATA_BYTES, MAX_TEMPLATE_LENGTH, MAX_TEMPLATES, VALUE_OVERHEAD_BYTES, validateEnvelopeSecret } from './validation.ts';

const b64 = (bytes: number, fill = 1) => Buffer.alloc(bytes, fill).toString('base64');

/** A manifest sealing `values` (key -> plaintext length) with these templates. */
function manifest(values: Record<string, number>, data: Record<string, unknown>, type?: string): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: 'app', namespace: 'team-a' },
    spec: {
      envelopes: [
        {
          id: b64(32),
          suite: 'A256GCM-HKDF-SHA512-COMMIT',
          commitment: b64(32, 2),
          recipients: [{ provider: 'aws-kms', keyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab', encryptedKey: b64(200) }],
          data: Object.fromEntries(Object.entries(values).map(([key, bytes]) => [key, b64(bytes + VALUE_OVERHEAD_BYTES, 3)])),
        },
      ],
      template: { ...(type ? { type } : {}), data },
    },
  };
}

const messages = (doc: unknown) => validateEnvelopeSecret(doc).map((i) => `${i.path}: ${i.message} [${i.check}]`);

describe('spec.template.data, offline', () => {
  it('accepts templates that read sealed keys', () => {
    expect(messages(manifest({ DB_PASSWORD: 10 }, { 'config.yaml': 'password: {{ .DB_PASSWORD | json }}\nhost: db' }))).toEqual([]);
  });

  it('refuses a key both templated and sealed (a name collision)', () => {
    expect(messages(manifest({ DB_PASSWORD: 10 }, { DB_PASSWORD: 'x{{ .DB_PASSWORD }}' }))).toEqual([
      'spec.template.data["DB_PASSWORD"]: key "DB_PASSWORD" is also sealed in spec.envelopes[0]; a Secret key comes from a template or a sealed value, not both [duplicate-key]',
    ]);
  });

  it('names a reference to a key that is not sealed, with its line and column', () => {
    expect(messages(manifest({ A: 1 }, { 'app.ini': '[db]\npassword = {{ .PASSWORD }}' }))).toEqual([
      'spec.template.data["app.ini"]: template "app.ini" line 2 column 15: references key "PASSWORD", which is not sealed in this EnvelopeSecret [structure]',
    ]);
  });

  it('names a syntax error', () => {
    expect(messages(manifest({ A: 1 }, { k: '{{ .A | upper }}' }))).toEqual([
      'spec.template.data["k"]: template "k" line 1 column 9: unknown function "upper" (known: b64enc, b64dec, json, default, indent, nindent, index) [structure]',
    ]);
  });

  it('refuses bad key names and values that are not strings', () => {
    expect(messages(manifest({ A: 1 }, { 'bad key': 'x' }))).toEqual([
      `spec.template.data["bad key"]: invalid key name: must consist of alphanumeric characters, '-', '_' or '.' [structure]`,
    ]);
    expect(messages(manifest({ A: 1 }, { k: 3 }))).toEqual(['spec.template.data: must map Secret keys to template text [structure]']);
  });

  it('bounds the number and the length of templates, at the limit and one past it', () => {
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`t${i}`, 'x']));
    expect(messages(manifest({ A: 1 }, many(MAX_TEMPLATES)))).toEqual([]);
    expect(messages(manifest({ A: 1 }, many(MAX_TEMPLATES + 1)))).toEqual([
      `spec.template.data: has ${MAX_TEMPLATES + 1} templates; at most ${MAX_TEMPLATES} [size]`,
    ]);
    // Characters as the API server counts them: an astral character is one, not two UTF-16 units.
    expect(messages(manifest({ A: 1 }, { k: '😀'.repeat(MAX_TEMPLATE_LENGTH) }))).toEqual([]);
    expect(messages(manifest({ A: 1 }, { k: 'x'.repeat(MAX_TEMPLATE_LENGTH + 1) }))).toEqual([
      `spec.template.data["k"]: is longer than ${MAX_TEMPLATE_LENGTH} characters [size]`,
    ]);
  });

  it('counts rendered output toward the 1 MiB of the Secret, with the sealed values', () => {
    const half = MAX_SECRET_DATA_BYTES / 2;
    expect(messages(manifest({ A: half }, { copy: '{{ .A }}' }))).toEqual([]);
    expect(messages(manifest({ A: half }, { copy: '{{ .A }}!' }))).toEqual([
      `spec.template.data["copy"]: template "copy" can render up to ${half + 1} bytes; at most ${half} fit in the Secret [size]`,
    ]);
    // b64enc grows 4/3, json up to 6x: bounded by the worst case, whatever the value.
    expect(messages(manifest({ A: 1000 }, { k: '{{ .A | json }}' }))).toEqual([]);
    expect(messages(manifest({ A: 200_000 }, { k: '{{ .A | json }}' })).join('\n')).toMatch(/can render up to 1200002 bytes; at most 848576 fit/);
  });

  it('for a dockerconfigjson Secret, the JSON the API server parses reads values through json only', () => {
    const type = 'kubernetes.io/dockerconfigjson';
    expect(messages(manifest({ AUTH: 20 }, { '.dockerconfigjson': '{"auths":{"r":{"auth":{{ .AUTH | b64enc | json }}}}}' }, type))).toEqual([]);
    expect(messages(manifest({ AUTH: 20 }, { '.dockerconfigjson': '{"auths":{"r":{"auth":"{{ .AUTH | b64enc }}"}}}' }, type))).toEqual([
      `spec.template.data[".dockerconfigjson"]: template ".dockerconfigjson" line 1 column 24: the API server parses .dockerconfigjson of a ${type} Secret as JSON; end each pipeline that reads a value with "| json" [structure]`,
    ]);
  });
});
