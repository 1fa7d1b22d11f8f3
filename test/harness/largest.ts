// The largest EnvelopeSecret the API server stores, for load and denial-of-service tests.
// The CRD's limits (src/api/validation.ts) admit more than etcd's request limit (1.5 MiB
// by default) lets through, so etcd binds: 1 MiB of plaintext in one sealed value, 16
// aws-kms recipients of the largest size, and a template annotation filling up to the
// limit. test/e2e/crd.test.ts proves that this object is stored and one byte more is not.
import { VALUE_OVERHEAD_BYTES, MAX_KEY_ID_LENGTH, MAX_SECRET_DATA_BYTES } from '../../src/api/validation.ts';
import { MAX_AWS_KMS_ENCRYPTED_KEY_BYTES } from '../../src/providers/aws-kms/index.ts';

/**
 * The compact JSON length (as JSON.stringify writes it) of the largest EnvelopeSecret etcd
 * accepts, for a 5-character name in a 2-character namespace: measured against the
 * harness's etcd 3.6 / kube-apiserver 1.34. The object as the API server then serves it
 * (GET, with uid, creationTimestamp, generation, resourceVersion) is 1,572,756 bytes.
 */
export const LARGEST_REQUEST_BYTES = 1_572_611;
const MEASURED_NAME_LENGTH = 5;
const MEASURED_NAMESPACE_LENGTH = 2;

/**
 * etcd counts its own request header too, whose request id is a varint: the limit moves by
 * a byte or two from one request to the next. The default margin absorbs that.
 */
export const DEFAULT_MARGIN_BYTES = 16;

/**
 * An EnvelopeSecret of the largest size etcd stores, less `marginBytes` (default 16; give a
 * larger margin when the object is written with server-side apply, whose managedFields take
 * room, or carries labels). Its values cannot be opened: the controller reports it Ready=False.
 */
export function largestEnvelopeSecret(options: { namespace: string; name: string; marginBytes?: number }): Record<string, unknown> {
  const { namespace, name } = options;
  const recipient = {
    provider: 'aws-kms',
    keyId: `arn:${'k'.repeat(MAX_KEY_ID_LENGTH - 4)}`,
    encryptedKey: Buffer.alloc(MAX_AWS_KMS_ENCRYPTED_KEY_BYTES, 1).toString('base64'),
  };
  const build = (filler: number) => ({
    apiVersion: 'envseal.dev/v1alpha1',
    kind: 'EnvelopeSecret',
    metadata: { name, namespace },
    spec: {
      envelopes: [
        {
          id: `${'A'.repeat(43)}=`,
          suite: 'A256GCM-HKDF-SHA512-COMMIT',
          commitment: `${'A'.repeat(43)}=`,
          recipients: Array.from({ length: 16 }, () => recipient),
          data: { V: Buffer.alloc(MAX_SECRET_DATA_BYTES + VALUE_OVERHEAD_BYTES, 7).toString('base64') },
        },
      ],
      template: { metadata: { annotations: { a: 'x'.repeat(filler) } } },
    },
  });
  // The name and namespace are also in etcd's key, which a create's transaction holds
  // twice (the compare and the put): each character counts three times.
  const target =
    LARGEST_REQUEST_BYTES -
    2 * (name.length - MEASURED_NAME_LENGTH + namespace.length - MEASURED_NAMESPACE_LENGTH) -
    (options.marginBytes ?? DEFAULT_MARGIN_BYTES);
  const filler = target - JSON.stringify(build(0)).length;
  if (filler < 0) throw new Error(`largestEnvelopeSecret: name and namespace too long for a margin of ${options.marginBytes ?? DEFAULT_MARGIN_BYTES} bytes`);
  return build(filler);
}
