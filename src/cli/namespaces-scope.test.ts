import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { parse, parseAllDocuments, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import { type AgeKey, ageKey, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
});
afterEach(() => ws.cleanup());

async function documentsOf(name: string): Promise<EnvelopeSecret[]> {
  return parseAllDocuments(await ws.read(name)).map((d) => d.toJS() as EnvelopeSecret);
}

async function sealStream(): Promise<void> {
  const sealed = await ws.cli([
    'seal',
    '--name',
    'registry',
    '--from-literal',
    'TOKEN=s3cret',
    '--namespaces',
    'team-b, team-a,team-b',
    '-r',
    `age:${key.recipient}`,
    '-w',
    'registry.yaml',
  ]);
  expect(sealed.stderr).toMatch(/sealed 1 value/);
  expect(sealed.code).toBe(0);
}

describe('envseal seal --namespaces', () => {
  it('writes one document per listed namespace, sorted and without duplicates, identical but for metadata.namespace', async () => {
    await sealStream();
    const documents = await documentsOf('registry.yaml');
    expect(documents.map((d) => d.metadata.namespace)).toEqual(['team-a', 'team-b']);
    for (const document of documents) {
      expect(document.spec.scope).toBe('namespaces');
      expect(document.spec.namespaces).toEqual(['team-a', 'team-b']);
      // age binds no context: one wrapping serves both namespaces.
      expect(document.spec.envelopes[0]!.recipients).toHaveLength(1);
      expect(document.spec.envelopes[0]!.recipients[0]!.namespace).toBeUndefined();
    }
    expect({ ...documents[1]!, metadata: documents[0]!.metadata }).toEqual(documents[0]);
    const verified = await ws.cli(['verify', '-f', 'registry.yaml', '--decrypt', '-i', key.file]);
    expect(verified.stdout).toMatch(/scope namespaces.*all 1 value open/);
    expect(verified.code).toBe(0);
  });

  it('writes only the -n namespace document when -n is given, and refuses an unlisted -n', async () => {
    const one = await ws.cli(['seal', '--name', 'r', '-n', 'team-b', '--from-literal', 'A=1', '--namespaces', 'team-a,team-b', '-r', `age:${key.recipient}`]);
    expect(one.code).toBe(0);
    const documents = parseAllDocuments(one.stdout).map((d) => d.toJS() as EnvelopeSecret);
    expect(documents).toHaveLength(1);
    expect(documents[0]!.metadata.namespace).toBe('team-b');
    const unlisted = await ws.cli([
      'seal',
      '--name',
      'r',
      '-n',
      'team-c',
      '--from-literal',
      'A=1',
      '--namespaces',
      'team-a,team-b',
      '-r',
      `age:${key.recipient}`,
    ]);
    expect(unlisted.stderr).toMatch(/namespace "team-c" is not one of --namespaces team-a,team-b/);
    expect(unlisted.code).toBe(2);
    const wrongScope = await ws.cli(['seal', '--name', 'r', '--scope', 'strict', '--from-literal', 'A=1', '--namespaces', 'a', '-r', `age:${key.recipient}`]);
    expect(wrongScope.stderr).toMatch(/--namespaces seals for scope namespaces, not --scope strict/);
    expect(wrongScope.code).toBe(2);
    const badName = await ws.cli(['seal', '--name', 'r', '--from-literal', 'A=1', '--namespaces', 'a,B_x', '-r', `age:${key.recipient}`]);
    expect(badName.stderr).toMatch(/namespace "B_x"/);
    expect(badName.code).not.toBe(0);
  });

  it('unseals the stream, and add-recipient and compact rewrite it whole', async () => {
    await sealStream();
    const opened = await ws.cli(['unseal', '-f', 'registry.yaml', '-i', key.file, '-o', 'json']);
    expect(opened.code).toBe(0);
    expect(JSON.parse(opened.stdout).data).toEqual({ TOKEN: Buffer.from('s3cret').toString('base64') });
    const other = await ageKey(ws, 'other.key');
    const added = await ws.cli(['add-recipient', '-f', 'registry.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file]);
    expect(added.code).toBe(0);
    const documents = await documentsOf('registry.yaml');
    expect(documents.map((d) => d.metadata.namespace)).toEqual(['team-a', 'team-b']);
    for (const document of documents) expect(document.spec.envelopes[0]!.recipients).toHaveLength(2);
    const byOther = await ws.cli(['unseal', '-f', 'registry.yaml', '-i', other.file, '-o', 'json']);
    expect(byOther.code).toBe(0);
  });

  it('edit, remove-recipient and compact keep the stream whole and each document opening', async () => {
    await sealStream();
    const other = await ageKey(ws, 'other.key');
    expect((await ws.cli(['add-recipient', '-f', 'registry.yaml', '--in-place', '-r', `age:${other.recipient}`, '-i', key.file])).code).toBe(0);
    const edited = await ws.cli(['edit', 'registry.yaml', '-i', key.file], {
      env: { EDITOR: 'test-editor' },
      spawnEditor: async ({ file }) => {
        const doc = parse(await readFile(file, 'utf8')) as { stringData: Record<string, string> };
        doc.stringData.TOKEN = 'rotated';
        doc.stringData.EXTRA = 'added';
        await writeFile(file, stringify(doc));
        return 0;
      },
    });
    expect(edited.code).toBe(0);
    expect((await documentsOf('registry.yaml')).map((d) => d.metadata.namespace)).toEqual(['team-a', 'team-b']);
    const removed = await ws.cli(['remove-recipient', '-f', 'registry.yaml', '--in-place', '-r', `age:${key.recipient}`]);
    expect(removed.code).toBe(0);
    const compacted = await ws.cli(['compact', '-f', 'registry.yaml', '--in-place', '-i', other.file]);
    expect(compacted.code).toBe(0);
    const documents = await documentsOf('registry.yaml');
    expect(documents.map((d) => d.metadata.namespace)).toEqual(['team-a', 'team-b']);
    expect(documents[0]!.spec.envelopes).toHaveLength(1);
    expect(documents[0]!.spec.envelopes[0]!.recipients.map((r) => r.recipient)).toEqual([other.recipient]);
    for (const [i, document] of documents.entries()) {
      await ws.write(`one-${i}.yaml`, stringify(document));
      const opened = await ws.cli(['unseal', '-f', `one-${i}.yaml`, '-i', other.file, '-o', 'json']);
      expect(opened.code).toBe(0);
      expect(JSON.parse(opened.stdout).data).toEqual({ TOKEN: Buffer.from('rotated').toString('base64'), EXTRA: Buffer.from('added').toString('base64') });
    }
  });

  it('merge-driver merges two branches of a stream per key and writes the stream back whole', async () => {
    await sealStream();
    for (const [file, value] of [
      ['ours.yaml', 'OURS=o'],
      ['theirs.yaml', 'THEIRS=t'],
    ] as const) {
      await ws.write(file, await ws.read('registry.yaml'));
      expect((await ws.cli(['seal', '--merge-into', file, '--from-literal', value])).code).toBe(0);
    }
    const merged = await ws.cli(['merge-driver', 'registry.yaml', 'ours.yaml', 'theirs.yaml', 'registry.yaml']);
    expect(merged.stderr).toBe('');
    expect(merged.code).toBe(0);
    expect((await documentsOf('ours.yaml')).map((d) => d.metadata.namespace)).toEqual(['team-a', 'team-b']);
    const opened = await ws.cli(['unseal', '-f', 'ours.yaml', '-i', key.file, '-o', 'json']);
    expect(Object.keys(JSON.parse(opened.stdout).data).sort()).toEqual(['OURS', 'THEIRS', 'TOKEN']);
  });

  it('refuses a copy in an unlisted namespace, an edited list, and a stream whose documents differ', async () => {
    await sealStream();
    const [first, second] = await documentsOf('registry.yaml');
    await ws.write('moved.yaml', stringify({ ...first, metadata: { ...first!.metadata, namespace: 'team-c' } }));
    const verify = await ws.cli(['verify', '-f', 'moved.yaml']);
    expect(verify.stderr).toMatch(/metadata.namespace "team-c" is not in spec.namespaces/);
    expect(verify.code).not.toBe(0);
    const unseal = await ws.cli(['unseal', '-f', 'moved.yaml', '-i', key.file]);
    expect(unseal.stderr).toMatch(/namespace "team-c" is not one of the namespaces the manifest is sealed for/);
    expect(unseal.stdout).toBe('');
    expect(unseal.code).not.toBe(0);

    // Adding team-c to the list (kept canonical) breaks every value's AAD.
    const widened = { ...first!, metadata: { ...first!.metadata, namespace: 'team-c' }, spec: { ...first!.spec, namespaces: ['team-a', 'team-b', 'team-c'] } };
    await ws.write('widened.yaml', stringify(widened));
    const opened = await ws.cli(['unseal', '-f', 'widened.yaml', '-i', key.file]);
    expect(opened.stderr).toMatch(/did not authenticate/);
    expect(opened.stdout).toBe('');
    expect(opened.code).not.toBe(0);

    const unsorted = { ...first!, spec: { ...first!.spec, namespaces: ['team-b', 'team-a'] } };
    await ws.write('unsorted.yaml', stringify(unsorted));
    const refused = await ws.cli(['verify', '-f', 'unsorted.yaml']);
    expect(refused.stderr).toMatch(/spec.namespaces: entry #1 is not after entry #0/);
    expect(refused.code).not.toBe(0);

    const altered = { ...second!, spec: { ...second!.spec, template: { type: 'Opaque' } } };
    await ws.write('mixed.yaml', `${stringify(first)}---\n${stringify(altered)}`);
    const mixed = await ws.cli(['unseal', '-f', 'mixed.yaml', '-i', key.file]);
    expect(mixed.stderr).toMatch(/document #1 differs from document #0 beyond metadata.namespace/);
    expect(mixed.code).not.toBe(0);
  });
});
