// Scope `namespaces` (docs/format.md): the list, the per-namespace wrappings of key
// services that bind the encryption context, and what a reader in one namespace may try.
import { type Binding, MAX_SCOPE_NAMESPACES, namespaceListProblem } from '../envelope/context.ts';
import { PROVIDERS } from '../providers/registry.ts';
import type { Recipient } from '../providers/types.ts';
import { quoteName } from './names.ts';
import type { ValidationCheck } from './types.ts';

/** A KMS key wraps once per listed namespace: more wrappings than other scopes allow. */
export const MAX_NAMESPACES_SCOPE_RECIPIENTS_PER_ENVELOPE = 64;
export const MAX_NAMESPACES_SCOPE_RECIPIENTS = 256;
/** What a reader in one namespace may try stays the other scopes' bound (16 per envelope, 64 in all). */
export const MAX_RECIPIENTS_PER_NAMESPACE_PER_ENVELOPE = 16;
export const MAX_RECIPIENTS_PER_NAMESPACE = 64;

type Add = (check: ValidationCheck, path: string, message: string) => void;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether the provider's key service binds the encryption context (one wrapping per namespace). */
export function bindsContext(provider: unknown): boolean {
  return PROVIDERS.some((p) => p.name === provider && p.bindsEncryptionContext === true);
}

/**
 * The recipients a reader in `binding.namespace` may try: for scope `namespaces`, the
 * context-free ones and those wrapped for its namespace; for the other scopes, all.
 */
export function recipientsFor(recipients: readonly Recipient[], binding: Binding): Recipient[] {
  if (binding.scope !== 'namespaces') return [...recipients];
  return recipients.filter((r) => (bindsContext(r.provider) ? r.namespace === binding.namespace : r.namespace === undefined));
}

/**
 * The checks of `spec.namespaces` and of recipients' `namespace` fields; `envelopes` is
 * the list validated elsewhere (only its well-formed recipients are looked at here).
 */
export function checkNamespacesScope(spec: Record<string, unknown>, scope: string, add: Add): void {
  const list = spec.namespaces;
  const envelopes = Array.isArray(spec.envelopes) ? spec.envelopes : [];
  if (scope !== 'namespaces') {
    if (list !== undefined) add('structure', 'spec.namespaces', 'is only allowed with scope namespaces');
    envelopes.forEach((envelope: unknown, e) => {
      if (!isRecord(envelope) || !Array.isArray(envelope.recipients)) return;
      envelope.recipients.forEach((r: unknown, i) => {
        if (isRecord(r) && r.namespace !== undefined)
          add('structure', `spec.envelopes[${e}].recipients[${i}].namespace`, 'is only allowed with scope namespaces');
      });
    });
    return;
  }
  if (!Array.isArray(list)) {
    add('structure', 'spec.namespaces', 'is required with scope namespaces: the sorted list of namespaces the values are sealed for');
    return;
  }
  const problem = namespaceListProblem(list);
  if (problem !== undefined) {
    add(list.length > MAX_SCOPE_NAMESPACES ? 'size' : 'structure', 'spec.namespaces', problem);
    return;
  }
  const names = list as string[];
  let applicableInAll = 0;
  envelopes.forEach((envelope: unknown, e) => {
    if (!isRecord(envelope) || !Array.isArray(envelope.recipients)) return;
    const at = `spec.envelopes[${e}]`;
    // provider and key -> the namespaces it wraps for
    const wrappings = new Map<string, string[]>();
    let contextFree = 0;
    envelope.recipients.forEach((r: unknown, i) => {
      if (!isRecord(r) || typeof r.provider !== 'string') return;
      const rat = `${at}.recipients[${i}].namespace`;
      const definition = PROVIDERS.find((p) => p.name === r.provider);
      if (definition === undefined) return;
      if (definition.bindsEncryptionContext !== true) {
        if (r.namespace !== undefined)
          add('structure', rat, `is not allowed on a ${definition.name} recipient: it binds no encryption context, one wrapping serves every namespace`);
        else contextFree++;
        return;
      }
      if (typeof r.namespace !== 'string') {
        add('structure', rat, `is required on a ${definition.name} recipient with scope namespaces: the namespace whose encryption context wrapped the key`);
        return;
      }
      if (!names.includes(r.namespace)) {
        add('structure', rat, `${quoteName(r.namespace)} is not in spec.namespaces`);
        return;
      }
      const key = `${definition.name}\n${definition.targetOf(r as unknown as Recipient)}`;
      const seen = wrappings.get(key) ?? [];
      if (seen.includes(r.namespace))
        add('structure', rat, `${definition.describe(r as unknown as Recipient)} wraps for namespace ${quoteName(r.namespace)} twice`);
      seen.push(r.namespace);
      wrappings.set(key, seen);
    });
    for (const [key, seen] of wrappings) {
      const missing = names.filter((n) => !seen.includes(n));
      if (missing.length > 0) {
        const [provider, target] = key.split('\n');
        add(
          'structure',
          `${at}.recipients`,
          `${provider} ${quoteName(target ?? '')} has no wrapping for namespace ${quoteName(missing[0]!)}: each key wraps once per listed namespace`,
        );
      }
    }
    const applicable = contextFree + wrappings.size;
    applicableInAll += applicable;
    if (applicable > MAX_RECIPIENTS_PER_NAMESPACE_PER_ENVELOPE)
      add(
        'size',
        `${at}.recipients`,
        `a reader in one namespace may try ${applicable} recipients; at most ${MAX_RECIPIENTS_PER_NAMESPACE_PER_ENVELOPE} per envelope`,
      );
  });
  if (applicableInAll > MAX_RECIPIENTS_PER_NAMESPACE)
    add('size', 'spec.envelopes', `a reader in one namespace may try ${applicableInAll} recipients in all; at most ${MAX_RECIPIENTS_PER_NAMESPACE}`);
}
