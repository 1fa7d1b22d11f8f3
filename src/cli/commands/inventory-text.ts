import type { Inventory } from '../../sealing/inventory.ts';

/** A long key (a post-quantum age recipient is 2,000 characters) shortened for a table; JSON keeps it whole. */
function shortKey(key: string): string {
  return key.length <= 100 ? key : `${key.slice(0, 60)}…${key.slice(-20)}`;
}

/** Whole days, hours or minutes: what a person reads in a table. */
export function formatAge(seconds: number | null): string {
  if (seconds === null) return 'unknown';
  if (seconds < 0) return 'in the future';
  if (seconds >= 86_400) return `${Math.floor(seconds / 86_400)}d`;
  if (seconds >= 3_600) return `${Math.floor(seconds / 3_600)}h`;
  return `${Math.floor(seconds / 60)}m`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** The inventory as two tables: envelopes per manifest, then keys with the manifests they open. */
export function formatInventoryText(inventory: Inventory, options: { key?: string | undefined }): string {
  const lines: string[] = [];
  const rows = [['MANIFEST', 'OBJECT', 'ENVELOPE', 'VALUES', 'SEALED AT', 'AGE', 'KEYS']];
  for (const manifest of inventory.manifests) {
    const where = manifest.document > 0 ? `${manifest.file}#${manifest.document}` : manifest.file;
    const object = manifest.namespace === null ? manifest.name : `${manifest.namespace}/${manifest.name}`;
    for (const envelope of manifest.envelopes) {
      const sealedAt = envelope.sealedAt === null ? 'unknown' : envelope.ageSource === 'git' ? `${envelope.sealedAt} (git)` : envelope.sealedAt;
      rows.push([
        where,
        object,
        String(envelope.index),
        String(envelope.values.length),
        sealedAt,
        formatAge(envelope.ageSeconds),
        envelope.keys.map(shortKey).join(', '),
      ]);
    }
  }
  if (rows.length > 1) lines.push(table(rows), '');
  if (inventory.keys.length > 0) {
    const keyRows = [['KEY', 'MANIFESTS', 'OBJECTS']];
    for (const key of inventory.keys) {
      const objects = key.manifests.map(
        (m) => `${m.namespace === null ? m.name : `${m.namespace}/${m.name}`} (${m.file}${m.document > 0 ? `#${m.document}` : ''})`,
      );
      keyRows.push([shortKey(key.key), String(key.manifests.length), objects.join(', ')]);
    }
    lines.push(table(keyRows), '');
  } else if (options.key !== undefined) {
    lines.push(`no manifest depends on ${shortKey(options.key)} (keys are matched as manifests record them: a key ARN, not an alias)`, '');
  }
  const envelopes = inventory.manifests.reduce((n, m) => n + m.envelopes.length, 0);
  const unknown = inventory.manifests.reduce((n, m) => n + m.envelopes.filter((e) => e.sealedAt === null).length, 0);
  const summary = [
    `${inventory.manifests.length} manifest${inventory.manifests.length === 1 ? '' : 's'}`,
    `${envelopes} envelope${envelopes === 1 ? '' : 's'} (${unknown} of unknown age)`,
    `${inventory.keys.length} key${inventory.keys.length === 1 ? '' : 's'}`,
    `${inventory.skippedDocuments} other document${inventory.skippedDocuments === 1 ? '' : 's'} skipped`,
  ];
  if (inventory.problems.length > 0) summary.push(`${inventory.problems.length} problem${inventory.problems.length === 1 ? '' : 's'} (on stderr)`);
  lines.push(`${summary.join(', ')}; ages as of ${inventory.generatedAt}`);
  return `${lines.join('\n')}\n`;
}
