// Scope namespaces in files: `envseal seal --namespaces a,b,c` writes one YAML stream of
// one document per listed namespace, identical but for metadata.namespace, so that
// `kubectl apply -f` creates each. The other commands read such a stream as one
// manifest and write it back whole, so the copies never drift apart.
import { isDeepStrictEqual } from 'node:util';
import type { EnvelopeSecret } from '../api/types.ts';
import { parseEnvelopeSecret, validateEnvelopeSecret, type ValidationIssue } from '../api/validation.ts';
import { formatDocument, type OutputFormat, type ParsedDocument } from './documents.ts';
import { CliError } from './errors.ts';

/** The problem of a stream of several documents, or undefined when it is one manifest per listed namespace. */
export function streamProblem(values: readonly unknown[]): string | undefined {
  if (values.length <= 1) return undefined;
  if (values.some((v) => validateEnvelopeSecret(v).length > 0)) return undefined; // reported per document
  const secrets = values as EnvelopeSecret[];
  const first = secrets[0]!;
  const why = `holds ${secrets.length} documents; envseal reads several only as the stream envseal seal --namespaces writes (one per listed namespace, identical but for metadata.namespace)`;
  if (first.spec.scope !== 'namespaces') return why;
  const namespaces = secrets.map((s) => s.metadata.namespace);
  if (!isDeepStrictEqual(namespaces, first.spec.namespaces)) return `${why}: its documents are for ${namespaces.join(', ')}, not spec.namespaces in order`;
  const different = secrets.findIndex((s) => !isDeepStrictEqual(withNamespace(s, first.metadata.namespace!), first));
  if (different > 0) return `${why}: document #${different} differs from document #0 beyond metadata.namespace`;
  return undefined;
}

function withNamespace(secret: EnvelopeSecret, namespace: string): EnvelopeSecret {
  return { ...secret, metadata: { ...secret.metadata, namespace } };
}

export interface LoadedStream {
  /** The first document (the stream's documents differ only in metadata.namespace). */
  secret: EnvelopeSecret;
  format: OutputFormat;
  /** The input was a stream of one document per listed namespace: write it back so. */
  stream: boolean;
}

/** One EnvelopeSecret manifest, or the stream of one per listed namespace (exit 3 with every issue listed). */
export function loadManifestDocuments(documents: readonly ParsedDocument[], source: string): LoadedStream {
  const secrets = documents.map((d, i) => parseEnvelopeSecret(d.value, documents.length > 1 ? `${source} (document #${i})` : source));
  const problem = streamProblem(secrets);
  if (problem !== undefined) throw new CliError('InvalidInput', `${source}: ${problem}`);
  return { secret: secrets[0]!, format: documents[0]!.format, stream: secrets.length > 1 };
}

/** Every document's validation issues, each path prefixed with its document when there are several. */
export function streamIssues(values: readonly unknown[]): ValidationIssue[] {
  if (values.length === 1) return validateEnvelopeSecret(values[0]);
  return values.flatMap((v, i) => validateEnvelopeSecret(v).map((issue) => ({ ...issue, path: `document #${i}: ${issue.path}` })));
}

/** The text of a manifest: for `stream`, one YAML document per listed namespace. */
export function formatManifest(secret: EnvelopeSecret, format: OutputFormat, stream: boolean): string {
  if (!stream || secret.spec.scope !== 'namespaces') return formatDocument(secret, format);
  if (format === 'json')
    throw new CliError('Usage', 'a manifest for several namespaces is a YAML stream (one document per namespace): -o json cannot write it');
  return (secret.spec.namespaces ?? []).map((namespace) => formatDocument(withNamespace(secret, namespace), 'yaml')).join('---\n');
}
