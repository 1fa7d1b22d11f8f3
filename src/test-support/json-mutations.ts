// Mutations of JSON documents shared by the fuzz tests (src/**/fuzz.test.ts). Test code
// only: tsconfig.build.json leaves src/test-support out of dist/.

export type PathPart = string | number;
export type JsonParent = Record<string | number, unknown>;

/** The path of every node of `doc` (the root's is []), depth first. */
export function nodes(doc: unknown, at: PathPart[] = [], out: PathPart[][] = []): PathPart[][] {
  out.push(at);
  if (Array.isArray(doc)) for (const [i, v] of doc.entries()) nodes(v, [...at, i], out);
  else if (doc !== null && typeof doc === 'object') for (const [k, v] of Object.entries(doc)) nodes(v, [...at, k], out);
  return out;
}

/** The node holding the node at `path`, and its key there; undefined for the root. */
export function parentOf(doc: unknown, path: PathPart[]): { parent: JsonParent; key: PathPart } | undefined {
  if (path.length === 0) return undefined;
  let node = doc as JsonParent;
  for (const part of path.slice(0, -1)) node = node[part] as JsonParent;
  return { parent: node, key: path[path.length - 1]! };
}

const COMMON_MUTATION_KINDS = ['replace', 'delete', 'flip', 'truncate', 'swap'] as const;
export type CommonMutationKind = (typeof COMMON_MUTATION_KINDS)[number];

export function isCommonMutation(kind: string): kind is CommonMutationKind {
  return (COMMON_MUTATION_KINDS as readonly string[]).includes(kind);
}

/**
 * Applies one of the mutations every fuzz test uses to `parent[key]`: replace it with
 * `value`; delete it; flip one bit (of the decoded bytes when it is canonical base64,
 * else of one character; numbers and booleans change too); truncate a string or list to
 * `n` modulo its length; swap it with a sibling picked by `n`.
 */
export function applyCommonMutation(parent: JsonParent, key: PathPart, kind: CommonMutationKind, value: unknown, n: number): void {
  const current = parent[key];
  switch (kind) {
    case 'replace':
      parent[key] = value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
      break;
    case 'flip':
      if (typeof current === 'string' && current.length > 0) {
        const bytes = Buffer.from(current, 'base64');
        if (bytes.length > 0 && bytes.toString('base64') === current) {
          const bit = n % (bytes.length * 8);
          bytes[bit >> 3]! ^= 1 << (bit & 7);
          parent[key] = bytes.toString('base64');
        } else {
          const i = n % current.length;
          parent[key] = current.slice(0, i) + String.fromCharCode(current.charCodeAt(i) ^ 1) + current.slice(i + 1);
        }
      } else if (typeof current === 'number') parent[key] = current + 1;
      else if (typeof current === 'boolean') parent[key] = !current;
      break;
    case 'truncate':
      if (typeof current === 'string') parent[key] = current.slice(0, n % (current.length + 1));
      else if (Array.isArray(current)) current.length = n % (current.length + 1);
      break;
    case 'swap': {
      const siblings = Object.keys(parent);
      const other = siblings[n % siblings.length]!;
      const otherKey = Array.isArray(parent) ? Number(other) : other;
      [parent[key], parent[otherKey]] = [parent[otherKey], current];
      break;
    }
  }
}
