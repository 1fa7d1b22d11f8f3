import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { EnvelopeSecret } from '../api/types.ts';
import type { EditorRequest } from './io.ts';
import { ageKey, type AgeKey, type CliOptions, type Workspace, workspace } from './test-fixtures.ts';

let ws: Workspace;
let key: AgeKey;
let tmp: string;

const BINARY = Buffer.from([0xff, 0x00, 0xfe, 0x10]);
const TRICKY = {
  MULTI: 'line one\nline two\n\n',
  SPACES: '  leading and trailing  ',
  QUOTES: `it's "quoted" # not a comment`,
  EMPTY: '',
  YAMLISH: 'yes',
  NUMBER: '007',
  UNICODE: 'snowman ☃ and tab\t',
};

beforeEach(async () => {
  ws = await workspace();
  key = await ageKey(ws);
  tmp = ws.path('tmp');
  await mkdir(tmp);
  await ws.write('bin.dat', BINARY);
  const literals = Object.entries({ A: 'alpha', B: 'beta', C: 'gamma' }).flatMap(([k, v]) => ['--from-literal', `${k}=${v}`]);
  expect(
    (await ws.cli(['seal', '--name', 'db', '-n', 'prod', ...literals, '--from-file', 'BIN=bin.dat', '-r', `age:${key.recipient}`, '-w', 'db.yaml'])).code,
  ).toBe(0);
  expect((await ws.cli(['seal', '--merge-into', 'db.yaml', '--from-literal', 'D=delta'])).code).toBe(0);
});
afterEach(() => ws.cleanup());

interface EditorLog {
  calls: number;
  seen: string[];
  modes: { dir: number; file: number }[];
}

/** An editor that applies `change` to the file's text and exits with `status`. */
function editor(change: (text: string, call: number) => string | Promise<string>, log: EditorLog, status = 0) {
  return async (request: EditorRequest): Promise<number> => {
    const text = await readFile(request.file, 'utf8');
    log.seen.push(text);
    log.modes.push({ dir: (await stat(path.dirname(request.file))).mode & 0o777, file: (await stat(request.file)).mode & 0o777 });
    await writeFile(request.file, await change(text, log.calls++));
    return status;
  };
}

function newLog(): EditorLog {
  return { calls: 0, seen: [], modes: [] };
}

function editValues(change: (values: { stringData: Record<string, string>; data?: Record<string, string> }) => void) {
  return (text: string) => {
    const doc = parse(text) as { stringData: Record<string, string>; data?: Record<string, string> };
    change(doc);
    return stringify(doc);
  };
}

async function runEdit(spawnEditor: CliOptions['spawnEditor'], options: CliOptions = {}) {
  return ws.cli(['edit', 'db.yaml', '-i', key.file], { env: { TMPDIR: tmp, EDITOR: 'fake-editor' }, spawnEditor, ...options });
}

async function values(): Promise<Record<string, string>> {
  const result = await ws.cli(['unseal', '-f', 'db.yaml', '-o', 'json', '-i', key.file]);
  expect(result.code).toBe(0);
  return (JSON.parse(result.stdout) as { data: Record<string, string> }).data;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('envseal edit', () => {
  it('re-seals changed, added and removed values; unchanged values keep their ciphertext; the temp file is private and removed', async () => {
    const before = parse(await ws.read('db.yaml')) as EnvelopeSecret;
    const log = newLog();
    const result = await runEdit(
      editor(
        editValues((doc) => {
          doc.stringData.B = 'BETA';
          doc.stringData.E = 'epsilon';
          delete doc.stringData.C;
        }),
        log,
      ),
    );
    expect(result.stderr).toMatch(/re-sealed "db.yaml"/);
    expect(result.code).toBe(0);
    expect(log.seen[0]).toMatch(/^# envseal edit: EnvelopeSecret "prod\/db"/);
    expect(parse(log.seen[0]!)).toEqual({ stringData: { A: 'alpha', B: 'beta', C: 'gamma', D: 'delta' }, data: { BIN: BINARY.toString('base64') } });
    expect(log.modes).toEqual([{ dir: 0o700, file: 0o600 }]);
    expect(await readdir(tmp)).toEqual([]);

    const after = parse(await ws.read('db.yaml')) as EnvelopeSecret;
    expect(after.spec.envelopes[0]!.data.A).toBe(before.spec.envelopes[0]!.data.A);
    expect(after.spec.envelopes[0]!.data.BIN).toBe(before.spec.envelopes[0]!.data.BIN);
    expect(after.spec.envelopes[0]!.data.B).not.toBe(before.spec.envelopes[0]!.data.B);
    expect(after.spec.envelopes[0]!.data.C).toBeUndefined();
    expect(after.spec.envelopes[1]!.data.D).toBe(before.spec.envelopes[1]!.data.D);
    expect(await values()).toEqual({ A: b64('alpha'), B: b64('BETA'), BIN: BINARY.toString('base64'), D: b64('delta'), E: b64('epsilon') });
  });

  it('does not write when the file is saved unchanged', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await runEdit(editor((text) => text, newLog()));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/no changes/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
    expect(await readdir(tmp)).toEqual([]);
  });

  it('does not write when only the formatting changed', async () => {
    const snapshot = await ws.snapshot('db.yaml');
    const result = await runEdit(editor((text) => JSON.stringify(parse(text)), newLog()));
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/no changes to the values/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
  });

  it('round-trips tricky text values exactly', async () => {
    const literals = Object.entries(TRICKY).flatMap(([k, v]) => ['--from-literal', `${k}=${v}`]);
    expect((await ws.cli(['seal', '--name', 't', '-n', 'prod', ...literals, '-r', `age:${key.recipient}`, '-w', 'db.yaml'])).code).toBe(0);
    const snapshot = await ws.snapshot('db.yaml');
    const log = newLog();
    // Re-serialize what the editor shows: the values must come back byte for byte.
    const result = await runEdit(editor((text) => stringify(parse(text)), log));
    expect(result.stderr).toMatch(/no changes to the values/);
    expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
    expect((parse(log.seen[0]!) as { stringData: unknown }).stringData).toEqual(TRICKY);
  });

  it('accepts a new binary value under data', async () => {
    const result = await runEdit(
      editor(
        editValues((doc) => {
          doc.data = { ...doc.data, RAW: Buffer.from([1, 2, 3]).toString('base64') };
        }),
        newLog(),
      ),
    );
    expect(result.code).toBe(0);
    const raw = await ws.cli(['unseal', '-f', 'db.yaml', '--key', 'RAW', '-i', key.file]);
    expect(raw.stdoutBytes).toEqual(Buffer.from([1, 2, 3]));
  });

  it('keeps a JSON manifest in JSON', async () => {
    const json = await ws.cli(['seal', '--name', 'j', '-n', 'prod', '--from-literal', 'A=1', '-r', `age:${key.recipient}`, '-o', 'json', '-w', 'db.yaml']);
    expect(json.code).toBe(0);
    const result = await runEdit(
      editor(
        editValues((doc) => (doc.stringData.A = '2')),
        newLog(),
      ),
    );
    expect(result.code).toBe(0);
    expect(JSON.parse(await ws.read('db.yaml'))).toMatchObject({ kind: 'EnvelopeSecret' });
  });

  describe('failures leave FILE untouched and remove the temporary file', () => {
    let snapshot: Awaited<ReturnType<Workspace['snapshot']>>;
    beforeEach(async () => {
      snapshot = await ws.snapshot('db.yaml');
    });
    afterEach(async () => {
      expect(await ws.snapshot('db.yaml')).toEqual(snapshot);
      expect(await readdir(tmp)).toEqual([]);
    });

    it('the editor exits non-zero (exit 5)', async () => {
      const result = await runEdit(
        editor(
          editValues((doc) => (doc.stringData.A = 'changed')),
          newLog(),
          1,
        ),
      );
      expect(result.code).toBe(5);
      expect(result.stderr).toMatch(/editor \("fake-editor"\) exited with status 1; "db.yaml" is unchanged/);
    });

    it('the editor cannot be started (exit 1)', async () => {
      const result = await runEdit(async () => {
        throw Object.assign(new Error('spawn fake-editor ENOENT'), { code: 'ENOENT' });
      });
      expect(result.code).toBe(1);
    });

    it('the edited file is not valid YAML (exit 3, non-interactive)', async () => {
      const result = await runEdit(editor(() => 'stringData: [unclosed', newLog()));
      expect(result.code).toBe(3);
      expect(result.stderr).toMatch(/the edited file: malformed YAML at line 1/);
    });

    it('the edited file has an invalid key name or a bad base64 value (exit 3)', async () => {
      expect(
        (
          await runEdit(
            editor(
              editValues((doc) => (doc.stringData['bad key'] = 'x')),
              newLog(),
            ),
          )
        ).code,
      ).toBe(3);
      expect(
        (
          await runEdit(
            editor(
              editValues((doc) => (doc.data = { BIN: 'not base64!' })),
              newLog(),
            ),
          )
        ).code,
      ).toBe(3);
      expect(
        (
          await runEdit(
            editor(
              editValues((doc) => (doc.data = { A: b64('x') })),
              newLog(),
            ),
          )
        ).stderr,
      ).toMatch(/key "A" is in both stringData and data/);
    });

    it('every value was removed (exit 5)', async () => {
      const result = await runEdit(editor(() => 'stringData: {}\n', newLog()));
      expect(result.code).toBe(5);
      expect(result.stderr).toMatch(/leaves no values/);
    });

    it('the file was emptied (exit 5)', async () => {
      const result = await runEdit(editor(() => '', newLog()));
      expect(result.code).toBe(5);
      expect(result.stderr).toMatch(/empty/);
    });

    it('interactive: an invalid file is reopened with the error; leaving it as is abandons the edit (exit 5)', async () => {
      const log = newLog();
      const result = await runEdit(
        editor((text, call) => (call === 0 ? 'stringData: [unclosed' : text), log),
        { stdinIsTTY: true },
      );
      expect(result.code).toBe(5);
      expect(log.calls).toBe(2);
      expect(log.seen[1]).toMatch(/^# ERROR: the edited file: malformed YAML/);
    });

    it('the process is interrupted while the editor runs (exit 130)', async () => {
      const controller = new AbortController();
      const result = await runEdit(
        editor((text) => {
          controller.abort(new DOMException('interrupted', 'AbortError'));
          return text.replace('alpha', 'changed');
        }, newLog()),
        { signal: controller.signal },
      );
      expect(result.code).toBe(130);
    });

    it('there is no identity (exit 4)', async () => {
      const result = await ws.cli(['edit', 'db.yaml'], { env: { TMPDIR: tmp }, spawnEditor: editor((t) => t, newLog()) });
      expect(result.code).toBe(4);
    });
  });

  it('interactive: an invalid file can be fixed in the reopened editor', async () => {
    const log = newLog();
    const result = await runEdit(
      editor((text, call) => (call === 0 ? text.replace('alpha', '[unclosed') : text.replace('[unclosed', 'fixed')), log),
      { stdinIsTTY: true },
    );
    expect(result.stderr).toMatch(/re-sealed/);
    expect(result.code).toBe(0);
    expect((await values()).A).toBe(b64('fixed'));
    expect(await readdir(tmp)).toEqual([]);
  });

  it('refuses to overwrite FILE when it changed during the edit (exit 5)', async () => {
    const result = await runEdit(
      editor(async (text) => {
        await writeFile(ws.path('db.yaml'), 'changed meanwhile\n');
        return text.replace('alpha', 'changed');
      }, newLog()),
    );
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/changed while it was being edited/);
    expect(await ws.read('db.yaml')).toBe('changed meanwhile\n');
    expect(await readdir(tmp)).toEqual([]);
  });

  it('needs a FILE argument', async () => {
    expect((await ws.cli(['edit'], { spawnEditor: editor((t) => t, newLog()) })).code).toBe(2);
    expect((await ws.cli(['edit', 'a', 'b'], { spawnEditor: editor((t) => t, newLog()) })).code).toBe(2);
  });
});
