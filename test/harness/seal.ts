// Sealing as the tests do it: text values, one object, strict scope unless told.
import type { EnvelopeSecret, SecretTemplate } from '../../src/api/types.ts';
import type { Scope } from '../../src/envelope/context.ts';
import { systemRandom } from '../../src/envelope/random.ts';
import { ProviderRegistry } from '../../src/providers/registry.ts';
import { sealEnvelopeSecret } from '../../src/sealing/seal.ts';
import type { RecipientTarget } from '../../src/providers/types.ts';
import { applyOrThrow } from './kube.ts';

/** Text values as the bytes sealing takes. */
export const asBytes = (values: Record<string, string>): Record<string, Buffer> =>
  Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)]));

export const ageTarget = (recipient: string): RecipientTarget => ({ provider: 'age', target: recipient });

export interface SealForOptions {
  namespace: string;
  name: string;
  values: Record<string, string>;
  targets: readonly RecipientTarget[];
  scope?: Scope;
  template?: SecretTemplate;
  /** Default: a registry with no configuration (enough to seal for age recipients). */
  providers?: ProviderRegistry;
}

/** An EnvelopeSecret for namespace/name holding `values`, sealed for `targets`. */
export function sealFor(options: SealForOptions): Promise<EnvelopeSecret> {
  return sealEnvelopeSecret({
    values: asBytes(options.values),
    binding: { scope: options.scope ?? 'strict', namespace: options.namespace, name: options.name },
    targets: options.targets,
    providers: options.providers ?? new ProviderRegistry({}),
    random: systemRandom,
    ...(options.template ? { template: options.template } : {}),
  });
}

/** Seals as sealFor does and applies the manifest, as `appliedAs` when given (a manifest moved to another name or namespace). */
export async function sealAndApply(options: SealForOptions & { appliedAs?: { name: string; namespace: string } }): Promise<EnvelopeSecret> {
  const sealed = await sealFor(options);
  await applyOrThrow(options.appliedAs ? { ...sealed, metadata: options.appliedAs } : sealed);
  return sealed;
}
