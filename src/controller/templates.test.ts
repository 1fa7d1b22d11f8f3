// The reconciler with spec.template.data: rendered keys beside the sealed ones, a value a
// template cannot take (TemplateFailed), a template that reads a key that is not sealed
// (InvalidSpec), never a value in a status, Event or log line.
import { beforeAll, describe, expect, it } from 'vitest';
import type { EnvelopeSecret } from '../api/types.ts';
import { seededRandom } from '../envelope/random.ts';
import { createAgeProvider, generateAgeIdentity } from '../providers/age.ts';
import { ProviderRegistry } from '../providers/registry.ts';
import { unwrapDataKey } from '../sealing/open.ts';
import { sealEnvelopeSecret } from '../sealing/seal.ts';
import { captureLogger } from '../test-support/capture-logger.ts';
import { ManualClock } from '../test-support/manual-clock.ts';
import { TestWorld } from '../test-support/reconciler-world.ts';
import { TerminalError } from './controller.ts';
import { DataKeyCache } from './dek-cache.ts';
import { desiredSecret, sealedDataDigest } from './desired.ts';
import { ControllerMetrics } from './metrics.ts';
import { Reconciler } from './reconciler.ts';
import type { EnvelopeSecretObject } from './records.ts';

const KEY = 'prod/db';
const CANARY = 'CANARY-templates';
const CONFIG_TEXT = 'password: {{ .DB_PASSWORD | json }}\n';
let identity: { identity: string; recipient: string };

beforeAll(async () => {
  identity = await generateAgeIdentity();
});

async function sealed(values: Record<string, string | Buffer>, templates: Record<string, string>): Promise<EnvelopeSecretObject> {
  const secret = await sealEnvelopeSecret({
    values: Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v)])),
    binding: { scope: 'strict', namespace: 'prod', name: 'db' },
    targets: [{ provider: 'age', target: identity.recipient }],
    providers: ProviderRegistry.of([createAgeProvider({})]),
    random: seededRandom(JSON.stringify(Object.keys(values))),
  });
  return { ...secret, spec: { ...secret.spec, template: { data: templates } } } as EnvelopeSecretObject;
}

function setup() {
  const world = new TestWorld();
  const clock = new ManualClock();
  const { logger, lines: logs } = captureLogger();
  const providers = ProviderRegistry.of([createAgeProvider({ identities: [identity.identity] })]);
  const reconciler = new Reconciler({
    api: world.api,
    envelopeSecrets: world.records,
    secrets: world.secretCache,
    unwrap: (r) => unwrapDataKey({ ...r, providers }),
    dataKeys: new DataKeyCache({ maxEntries: 16, ttlMs: 60_000, now: () => clock.now() }),
    events: world.eventSink,
    logger,
    metrics: new ControllerMetrics({ defaultMetrics: false }),
    clock,
  });
  const reconcile = () => reconciler.reconcile({ namespace: 'prod', name: 'db' }, AbortSignal.timeout(10_000));
  const said = () => JSON.stringify([...world.envelopeSecrets.values()].map((o) => o.status)) + JSON.stringify(world.events) + logs.join('');
  return { world, reconcile, said };
}

describe('Reconciler with templates', () => {
  it('writes the rendered keys beside the sealed ones, and renders again when a value changes', async () => {
    const s = setup();
    const templates = { 'config.yaml': 'password: {{ .DB_PASSWORD | json }}\nhost: db\n', auth: '{{ .USER }}:{{ .DB_PASSWORD }}' };
    s.world.putEnvelopeSecret(await sealed({ DB_PASSWORD: `${CANARY}-1`, USER: 'app' }, templates));
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)).toEqual({
      DB_PASSWORD: `${CANARY}-1`,
      USER: 'app',
      'config.yaml': `password: "${CANARY}-1"\nhost: db\n`,
      auth: `app:${CANARY}-1`,
    });
    expect(s.world.ready(KEY)).toMatchObject({ status: 'True', reason: 'Synced', message: 'Secret db is up to date (4 keys)' });

    const changed = await sealed({ DB_PASSWORD: `${CANARY}-2`, USER: 'app' }, templates);
    s.world.putEnvelopeSecret({ ...changed, metadata: { ...changed.metadata, generation: 2 } } as EnvelopeSecretObject);
    expect(await s.reconcile()).toEqual({ outcome: 'synced' });
    expect(s.world.secretValues(KEY)?.['config.yaml']).toBe(`password: "${CANARY}-2"\nhost: db\n`);
    expect(s.said()).not.toContain('CANARY');
  });

  it('costs no API call more than the same object without templates: the rendered keys go in the same apply', async () => {
    const counts: string[][] = [];
    for (const templates of [{}, { 'config.yaml': CONFIG_TEXT, auth: '{{ .USER }}:{{ .DB_PASSWORD | b64enc }}' }] as Record<string, string>[]) {
      const s = setup();
      s.world.putEnvelopeSecret(await sealed({ DB_PASSWORD: `${CANARY}-1`, USER: 'app' }, templates));
      expect(await s.reconcile()).toEqual({ outcome: 'synced' });
      counts.push(s.world.calls.map((c) => c.call));
    }
    expect(counts[1]).toEqual(counts[0]);
    expect(counts[0]!.filter((c) => c === 'applySecret')).toHaveLength(1);
  });

  it('TemplateFailed: a value b64dec cannot take; terminal, names the place, writes no Secret, quotes no value', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ CERT: `${CANARY}-not-base64!` }, { 'tls.crt': 'x\n{{ .CERT | b64dec }}' }));
    const error = await s.reconcile().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TerminalError);
    expect((error as TerminalError).reason).toBe('TemplateFailed');
    expect(s.world.ready(KEY)).toMatchObject({
      status: 'False',
      reason: 'TemplateFailed',
      message: 'template "tls.crt" line 2 column 12: the value piped to b64dec is not standard padded base64',
    });
    expect(s.world.secrets.has(KEY)).toBe(false);
    expect(s.said()).not.toContain('CANARY');
    // Not tried again for the same generation.
    expect(await s.reconcile()).toEqual({ outcome: 'terminal' });
  });

  it('InvalidSpec: a template that reads a key that is not sealed, named with its line and column', async () => {
    const s = setup();
    s.world.putEnvelopeSecret(await sealed({ A: `${CANARY}` }, { k: '{{ .A }}{{ .B }}' }));
    const error = await s.reconcile().catch((e: unknown) => e);
    expect((error as TerminalError).reason).toBe('InvalidSpec');
    expect(s.world.ready(KEY)?.message).toBe(
      'spec.template.data["k"]: template "k" line 1 column 12: references key "B", which is not sealed in this EnvelopeSecret',
    );
    expect(s.world.secrets.has(KEY)).toBe(false);
  });
});

describe('desiredSecret', () => {
  it('is the sealed values plus the rendered templates, in base64', async () => {
    const source = (await sealed({ A: 'a' }, { t: '<{{ .A | b64enc }}>' })) as EnvelopeSecret;
    const desired = desiredSecret({ source, data: { A: Buffer.from('a') }, specHash: 'sha256:x' });
    expect(desired.data).toEqual({ A: Buffer.from('a').toString('base64'), t: Buffer.from(`<${Buffer.from('a').toString('base64')}>`).toString('base64') });
  });
});

describe('sealedDataDigest (the restart annotation)', () => {
  it('changes when a template changes, and is unchanged for a manifest without templates', async () => {
    const source = (await sealed({ A: 'a' }, { t: '{{ .A }}' })) as EnvelopeSecret;
    const edited = { ...source, spec: { ...source.spec, template: { data: { t: '{{ .A }}!' } } } };
    const none = { ...source, spec: { ...source.spec, template: {} } };
    expect(sealedDataDigest(edited)).not.toBe(sealedDataDigest(source));
    const { createHash } = await import('node:crypto');
    const legacy = `sha256:${createHash('sha256')
      .update(JSON.stringify(source.spec.envelopes.map((e) => [e.id, Object.fromEntries(Object.entries(e.data).sort())])))
      .digest('hex')}`;
    expect(sealedDataDigest(none)).toBe(legacy);
  });
});
