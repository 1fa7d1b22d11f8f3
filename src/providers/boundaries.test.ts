/**
 * A key provider is one file in src/providers plus its line in registry.ts. These tests
 * fail when code elsewhere names a provider (branches on its name, builds its recipient
 * syntax, imports its file) or when the CRD's provider rules drift from the definitions.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { PROVIDERS } from './registry.ts';

const srcRoot = path.resolve(import.meta.dirname, '..');
const providersDir = path.join(srcRoot, 'providers');
/** The keyring's own files: everything else in src/providers is one provider. */
const INFRASTRUCTURE = new Set(['registry.ts', 'types.ts', 'keyring.ts', 'causes.ts']);
/**
 * The worked example of docs/format.md is a message as AWS's SDK writes it: its EDK's
 * provider id is the AWS Encryption SDK's constant "aws-kms", not a use of our provider.
 */
const ALLOWED = new Map([['files/example.ts', ['aws-kms']]]);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => path.join(e.parentPath, e.name));
}

interface Finding {
  file: string;
  line: number;
  text: string;
}

/** String literals that are a provider's name or start with `NAME:`, and imports of provider files. */
function providerMentions(file: string, source: string, names: readonly string[], providerFiles: ReadonlySet<string>): Finding[] {
  const isProviderFile = (target: string) => [...providerFiles].some((unit) => target === unit || target.startsWith(unit + path.sep));
  const sf = ts.createSourceFile(file, source, ts.ScriptTarget.Latest, true);
  const findings: Finding[] = [];
  const at = (node: ts.Node, text: string) => findings.push({ file, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, text });
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) {
      const spec = node.moduleSpecifier;
      if (spec && ts.isStringLiteral(spec) && spec.text.startsWith('.')) {
        const target = path.resolve(path.dirname(file), spec.text);
        if (isProviderFile(target)) at(node, `imports ${path.relative(srcRoot, target)}`);
      }
      return;
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteral(arg) && arg.text.startsWith('.') && isProviderFile(path.resolve(path.dirname(file), arg.text)))
        at(node, `imports ${arg.text}`);
    }
    if (
      ts.isStringLiteral(node) ||
      ts.isNoSubstitutionTemplateLiteral(node) ||
      ts.isTemplateHead(node) ||
      ts.isTemplateMiddle(node) ||
      ts.isTemplateTail(node)
    ) {
      const text = node.text;
      const whole = ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node);
      for (const name of names) {
        if ((whole && text === name) || text.startsWith(`${name}:`)) at(node, JSON.stringify(text.slice(0, 60)));
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return findings;
}

describe('a key provider is one file (or folder) and one registry line', () => {
  // A provider is a file of src/providers, or a folder whose index.ts is its entry.
  const providerFiles = new Set(
    readdirSync(providersDir, { withFileTypes: true })
      .filter((e) => e.isDirectory() || (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !INFRASTRUCTURE.has(e.name)))
      .map((e) => path.join(providersDir, e.name)),
  );
  const names = PROVIDERS.map((p) => p.name);

  it('no code outside src/providers names a provider or imports a provider file', () => {
    const findings: Finding[] = [];
    for (const file of sourceFiles(srcRoot)) {
      if (file.startsWith(providersDir + path.sep)) continue;
      const rel = path.relative(srcRoot, file);
      const allowed = ALLOWED.get(rel) ?? [];
      findings.push(
        ...providerMentions(rel, readFileSync(file, 'utf8'), names, providerFiles).filter((f) => !allowed.some((a) => f.text === JSON.stringify(a))),
      );
    }
    expect(findings.map((f) => `${f.file}:${f.line} ${f.text}`)).toEqual([]);
  });

  it('the check finds a provider named in code, its recipient syntax and an import of its file', () => {
    const file = path.join(srcRoot, 'cli', 'x.ts');
    const code = [
      "import { ageProvider } from '../providers/age.ts';",
      "if (p === 'aws-kms') f();",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the code under test holds a template literal
      'const t = `vault-transit:${name}`;',
      "const help = 'who can open: a KMS key';",
      "const { createAwsKmsProvider } = await import('../providers/aws-kms/client.ts');",
    ].join('\n');
    const found = providerMentions(file, code, names, providerFiles).map((f) => f.line);
    expect(found).toEqual([1, 2, 3, 5]);
  });

  it('every file in src/providers but the keyring is one registered provider', () => {
    for (const unit of providerFiles) {
      const file = unit.endsWith('.ts') ? unit : path.join(unit, 'index.ts');
      const source = readFileSync(file, 'utf8');
      const exported = [...source.matchAll(/^export const (\w+): ProviderDefinition\b/gm)].map((m) => m[1]);
      expect(exported, path.basename(file)).toHaveLength(1);
    }
    expect(PROVIDERS).toHaveLength(providerFiles.size);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(PROVIDERS.map((p) => p.edk.providerId)).size).toBe(PROVIDERS.length);
  });

  it("the CRD states each provider's rules and lists exactly the registered providers", () => {
    for (const crdPath of ['../../crds/envelopesecrets.envseal.dev.yaml', '../../charts/envseal/crds/envelopesecrets.envseal.dev.yaml']) {
      const crd = parse(readFileSync(new URL(crdPath, import.meta.url), 'utf8'));
      const recipient = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.envelopes.items.properties.recipients.items;
      expect(recipient.properties.provider.enum, crdPath).toEqual(names);
      const rules = (recipient['x-kubernetes-validations'] as { rule: string; message: string }[]).filter((r) =>
        names.some((n) => r.rule.startsWith(`self.provider != '${n}' ||`)),
      );
      expect(rules, crdPath).toEqual(PROVIDERS.flatMap((p) => p.crdRules.map((r) => ({ rule: r.rule, message: r.message }))));
      for (const p of PROVIDERS) for (const r of p.crdRules) expect(r.rule.startsWith(`self.provider != '${p.name}' ||`), r.rule).toBe(true);
    }
  });
});
