import { quoteName } from '../../api/names.ts';
import type { EnvelopeSecret } from '../../api/types.ts';
import { validateEnvelopeSecret } from '../../api/validation.ts';
import { type MergeConflict, mergeEnvelopeSecrets } from '../../sealing/merge.ts';
import { HELP_OPTION } from '../args.ts';
import { type Command, type CommandContext, loadEnvelopeSecret, MAX_MANIFEST_BYTES } from '../command.ts';
import { formatManifest } from '../namespace-stream.ts';
import { CliError, usageError } from '../errors.ts';
import { readInputFile, writeFileAtomic } from '../files.ts';

/** Exit code of a merge with conflicts (git only tells zero from non-zero). */
export const EXIT_CONFLICT = 6;

export const mergeDriverCommand: Command = {
  name: 'merge-driver',
  summary: 'three-way merge of an EnvelopeSecret for git, per data key (no key needed)',
  usage: 'envseal merge-driver ANCESTOR CURRENT OTHER [PATH]',
  description: `
git's merge driver for EnvelopeSecret manifests (%O %A %B, and %P for messages): merges
per data key without any key. A key changed (added, removed) on one side only takes that
side; changed identically on both is fine; changed differently on both is a conflict
that names the key. A value moves with its envelope (its id, commitment and
recipients). Recipient changes of one side are kept; a recipient removed on one side
stays removed (and it is a conflict if the other side sealed new values for it).
Metadata, scope and template merge field by field. The result is written to CURRENT.

On a conflict CURRENT still holds a valid manifest: every change of both sides that does
not conflict, ours for each conflicting key, and a comment block at the top naming the
conflicts (never a value); git marks the file unmerged. Nothing is written when an input
is not a valid EnvelopeSecret.`,
  footer: `
Setup (once per clone; .gitattributes is committed):
  echo '*.envelope.yaml merge=envseal' >> .gitattributes
  git config merge.envseal.name 'envseal EnvelopeSecret merge'
  git config merge.envseal.driver 'envseal merge-driver %O %A %B %P'

Exit codes: 0 merged; 6 conflicts (CURRENT holds ours for them and names them); 2 usage;
3 an input is not a valid EnvelopeSecret (CURRENT untouched).`,
  options: { ...HELP_OPTION },
  positionals: { max: 4 },
  providers: 'none',
  run: mergeDriver,
};

/** The header of a conflicted result: YAML comments, so that the file still parses. */
function conflictComment(conflicts: readonly MergeConflict[], file: string): string {
  const path = file.replaceAll(/[\r\n]/g, '?');
  const shown = conflicts.slice(0, 20).map((c) => `#   ${c.message}`);
  if (conflicts.length > shown.length) shown.push(`#   ... and ${conflicts.length - shown.length} more`);
  const keys = conflicts.filter((c) => c.kind === 'key');
  const example = keys[0]?.name ?? 'KEY';
  return [
    `# envseal merge-driver: CONFLICT in ${path}; resolve it before committing.`,
    '# Kept as on ours (the branch merged into); every other change of both sides is merged:',
    ...shown,
    ...(keys.length > 0 ? ["# Theirs' value of a key:", `#   git show :3:${path} | envseal unseal --key ${example}`] : []),
    `# Resolve: envseal edit ${path} (or envseal seal --merge-into ${path}), or take one side`,
    `# whole (git checkout --ours/--theirs ${path}); delete these lines; git add ${path}.`,
    '',
  ].join('\n');
}

async function load(file: string, role: string, ctx: CommandContext, path: string): Promise<EnvelopeSecret | undefined> {
  const bytes = await readInputFile(file, { cwd: ctx.io.cwd, maxBytes: MAX_MANIFEST_BYTES });
  if (role === 'ancestor' && bytes.toString('utf8').trim() === '') return undefined;
  return loadEnvelopeSecret({ bytes, source: `${path} (${role})`, file }).secret;
}

async function mergeDriver(ctx: CommandContext): Promise<number> {
  const { io } = ctx;
  const [ancestorFile, currentFile, otherFile, pathArg] = ctx.positionals;
  if (ancestorFile === undefined || currentFile === undefined || otherFile === undefined) {
    throw usageError('envseal merge-driver needs ANCESTOR CURRENT OTHER (git passes %O %A %B)');
  }
  const path = pathArg ?? currentFile;
  const base = await load(ancestorFile, 'ancestor', ctx, path);
  const current = await readInputFile(currentFile, { cwd: io.cwd, maxBytes: MAX_MANIFEST_BYTES });
  const ours = loadEnvelopeSecret({ bytes: current, source: `${path} (ours)`, file: currentFile });
  const theirs = await load(otherFile, 'theirs', ctx, path);

  const { merged, conflicts, notes } = mergeEnvelopeSecrets({ base, ours: ours.secret, theirs: theirs! });
  for (const note of notes) io.stderr.write(`envseal merge-driver: ${path}: note: ${note}\n`);
  const issues = validateEnvelopeSecret(merged);
  if (issues.length > 0) {
    const shown = issues.slice(0, 10).map((i) => `\n  ${i.path}: ${i.message}`);
    throw new CliError('Refused', `${quoteName(path)}: the merge of both sides is not a valid EnvelopeSecret; ours is left as it is:${shown.join('')}`, {
      exitCode: EXIT_CONFLICT,
    });
  }
  const header = conflicts.length > 0 && ours.format === 'yaml' ? conflictComment(conflicts, path) : '';
  // A scope-namespaces stream (one document per listed namespace) is written back whole.
  await writeFileAtomic(currentFile, header + formatManifest(merged, ours.format, ours.stream), { cwd: io.cwd, temporaries: io.temporaries });
  if (conflicts.length === 0) return 0;
  for (const conflict of conflicts.slice(0, 20)) io.stderr.write(`envseal merge-driver: ${path}: CONFLICT: ${conflict.message}\n`);
  if (conflicts.length > 20) io.stderr.write(`envseal merge-driver: ${path}: ... and ${conflicts.length - 20} more conflicts\n`);
  return EXIT_CONFLICT;
}
