/**
 * The folders of src/ form layers that import in one direction only (docs/providers.md,
 * issue 16): a folder imports its own files and folders of lower layers, never one of
 * its own layer or above. This test reads every import (static, re-export, dynamic) of
 * the source files and fails on one that runs against the layers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** Lowest first. */
const LAYERS: readonly (readonly string[])[] = [
  ['util'], // small helpers for messages
  ['envelope'], // pure: the envelope's crypto and encodings
  ['providers', 'kube'], // key services; Kubernetes transport
  ['api'], // the EnvelopeSecret resource: types, validation, tenancy policy
  ['sealing', 'files'], // manifests and files, through the keyring
  ['controller'], // the reconciler and its machinery
  ['cli'], // the commands, the controller command among them
  ['test-support'], // helpers for tests only
];

const srcRoot = import.meta.dirname;
const layerOf = new Map(LAYERS.flatMap((folders, level) => folders.map((f) => [f, level] as const)));

/** The relative imports of a source text, with their lines. */
function importsOf(file: string, source: string): { specifier: string; line: number }[] {
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const found: { specifier: string; line: number }[] = [];
  const add = (node: ts.Node, specifier: string) => found.push({ specifier, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier))
      add(node, node.moduleSpecifier.text);
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0]))
      add(node, node.arguments[0].text);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found.filter((i) => i.specifier.startsWith('.'));
}

/** Why importing `to` from `from` (paths relative to src/) runs against the layers, or undefined. */
function layerViolation(from: string, to: string): string | undefined {
  const fromFolder = from.split('/')[0]!;
  const toFolder = to.split('/')[0]!;
  if (fromFolder === toFolder) return undefined;
  const fromLayer = layerOf.get(fromFolder);
  const toLayer = layerOf.get(toFolder);
  if (fromLayer === undefined) return `${fromFolder}/ is in no layer`;
  if (toLayer === undefined) return `${toFolder}/ is in no layer`;
  if (toLayer > fromLayer) return `${fromFolder}/ imports ${toFolder}/, a higher layer`;
  if (toLayer === fromLayer) return `${fromFolder}/ imports ${toFolder}/, of its own layer`;
  return undefined;
}

describe('the layers of src/', () => {
  it('every import runs downward', () => {
    const files = readdirSync(srcRoot, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && e.parentPath !== srcRoot)
      .map((e) => path.relative(srcRoot, path.join(e.parentPath, e.name)));
    expect(files.length).toBeGreaterThan(50);
    const violations: string[] = [];
    for (const file of files) {
      for (const { specifier, line } of importsOf(file, readFileSync(path.join(srcRoot, file), 'utf8'))) {
        const target = path.relative(srcRoot, path.resolve(srcRoot, path.dirname(file), specifier));
        if (target.startsWith('..')) {
          violations.push(`${file}:${line} imports ${specifier}, outside src/`);
          continue;
        }
        const why = layerViolation(file, target);
        if (why) violations.push(`${file}:${line} ${why} (${target})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('no source file is over 400 lines (split by concern instead)', () => {
    const long = readdirSync(srcRoot, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
      .map((e) => path.join(e.parentPath, e.name))
      .map((file) => ({ file: path.relative(srcRoot, file), lines: readFileSync(file, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > 400);
    expect(long).toEqual([]);
  });

  it('tells an upward, a sideways and a downward import apart', () => {
    expect(layerViolation('kube/cluster-recipient.ts', 'controller/age-identity.ts')).toMatch(/higher layer/);
    expect(layerViolation('files/materials.ts', 'sealing/seal.ts')).toMatch(/its own layer/);
    expect(layerViolation('cli/run.ts', 'controller/manager.ts')).toBeUndefined();
    expect(layerViolation('controller/x.ts', 'cli/args.ts')).toMatch(/higher layer/);
    expect(
      importsOf('a.ts', "import a from './a.ts';\nexport { b } from '../b.ts';\nconst c = await import('./c.ts');\nimport 'node:fs';").map((i) => [
        i.specifier,
        i.line,
      ]),
    ).toEqual([
      ['./a.ts', 1],
      ['../b.ts', 2],
      ['./c.ts', 3],
    ]);
  });
});
