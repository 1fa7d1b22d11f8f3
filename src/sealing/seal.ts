import type { Envelope, EnvelopeSecret, Recipient, SecretTemplate } from '../api/types.ts';
import { API_VERSION, KIND } from '../api/types.ts';
import { type Binding, kmsEncryptionContext } from '../envelope/context.ts';
import { newDataKey, sealEnvelope } from '../envelope/envelope.ts';
import type { RandomSource } from '../envelope/random.ts';
import type { ProviderRegistry } from '../providers/registry.ts';
import type { RecipientTarget } from './targets.ts';

export interface SealEnvelopeRequest {
  values: Record<string, Uint8Array>;
  binding: Binding;
  targets: readonly RecipientTarget[];
  providers: ProviderRegistry;
  random: RandomSource;
  signal?: AbortSignal;
}

/**
 * Seals values under one new envelope: the data key comes from the first target whose
 * provider has a key service (KMS GenerateDataKey), else from the local random source;
 * the same key is then wrapped for every other target.
 */
export async function sealNewEnvelope(request: SealEnvelopeRequest): Promise<Envelope> {
  const { targets, providers, binding, signal } = request;
  if (targets.length === 0) throw new Error('at least one recipient is needed to seal');
  const resolved = await Promise.all(targets.map(async (t) => ({ ...t, provider: await providers.get(t.provider) })));
  for (const t of resolved) t.provider.parseTarget(t.target);
  const encryptionContext = kmsEncryptionContext(binding);

  const recipients: (Recipient | undefined)[] = new Array(resolved.length);
  let dataKey: Uint8Array | undefined;
  try {
    const generatorIndex = resolved.findIndex((t) => t.provider.generateDataKey !== undefined);
    if (generatorIndex >= 0) {
      const generator = resolved[generatorIndex]!;
      const generated = await generator.provider.generateDataKey!({ target: generator.target, encryptionContext, signal });
      dataKey = generated.dataKey;
      recipients[generatorIndex] = generated.recipient;
    } else {
      dataKey = newDataKey(request.random);
    }
    const key = dataKey;
    await Promise.all(
      resolved.map(async (t, i) => {
        if (recipients[i] === undefined) recipients[i] = await t.provider.wrap({ target: t.target, dataKey: key, encryptionContext, signal });
      }),
    );
    const body = sealEnvelope({ dataKey: key, binding, values: request.values, random: request.random });
    return { id: body.id, suite: body.suite, commitment: body.commitment, recipients: recipients as Recipient[], data: body.data };
  } finally {
    dataKey?.fill(0);
  }
}

export interface BuildEnvelopeSecretRequest extends SealEnvelopeRequest {
  template?: SecretTemplate;
}

/** A new EnvelopeSecret holding every value in one envelope. */
export async function sealEnvelopeSecret(request: BuildEnvelopeSecretRequest): Promise<EnvelopeSecret> {
  const envelope = await sealNewEnvelope(request);
  const { binding } = request;
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: binding.namespace ? { name: binding.name, namespace: binding.namespace } : { name: binding.name },
    spec: {
      scope: binding.scope,
      envelopes: [envelope],
      ...(request.template && Object.keys(request.template).length > 0 ? { template: request.template } : {}),
    },
  };
}
