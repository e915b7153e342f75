// Parse trees saved as JSON, so that a template known at build time (the shipped Istio bootstrap
// template) is not lexed and parsed again at every agent start. Why: the first parse of the 25 KB
// template runs in V8's interpreter, before anything is optimised, and cost 6-8 ms on the way to
// Envoy's spawn; reading its trees back from JSON is native JSON.parse plus a walk.
//
// Each entry holds the template text it was parsed from and is served only to that exact text, so
// a template that differs in any byte (a user's template, an edited file) is never served a stale
// tree: it is parsed as before. Entries are found by the text's length and FNV-1a hash, not a
// SHA-256: node:crypto costs ~8 ms to load before Envoy's spawn, and the comparison, not the key,
// is what guarantees the match. The trees hold no template name (the runtime path may differ
// from the build's); it is filled in on reading. Values JSON cannot carry (bigint, GoFloat, non-finite numbers, -0) are
// tagged. The writer is the build (scripts/bundle.mjs); a test checks that what is read back equals
// a fresh parse.

import type { ListNode, Tree } from './ast.js';
import { GoFloat } from './values.js';

/** Bumped when the tree shape changes: entries of another version are ignored (parsed afresh). */
export const PARSE_CACHE_VERSION = 2;

interface SavedTree {
  /** null for the top-level template, whose name is the one it is parsed under. */
  readonly name: string | null;
  readonly root: ListNode;
}

interface SavedEntry {
  readonly version: number;
  /** The template text the trees were parsed from. */
  readonly text: string;
  readonly trees: readonly SavedTree[];
}

/** Where a template text's entry is looked up: its length and 32-bit FNV-1a hash (UTF-16 units). */
export function templateTextKey(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return `${text.length}-${(h >>> 0).toString(16)}`;
}

const TAG = '$pa';

function replacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return { [TAG]: 'bigint', v: value.toString() };
  if (value instanceof GoFloat) return { [TAG]: 'gofloat', v: replacer.call(undefined, '', value.value) };
  if (typeof value === 'number' && (!Number.isFinite(value) || Object.is(value, -0))) return { [TAG]: 'number', v: String(Object.is(value, -0) ? '-0' : value) };
  return value;
}

function untag(t: { [TAG]: string; v: unknown }): unknown {
  switch (t[TAG]) {
    case 'bigint':
      return BigInt(t.v as string);
    case 'gofloat':
      return new GoFloat(revive(t.v) as number);
    case 'number':
      return t.v === '-0' ? -0 : Number(t.v);
    default:
      throw new Error(`unknown tag ${JSON.stringify(t[TAG])}`);
  }
}

/**
 * Replaces tagged values in place, depth first. A walk after a plain JSON.parse, rather than a
 * JSON.parse reviver: the reviver is a call from the parser into JavaScript for every key of the
 * ~70 KB file, and cost more than the parse itself.
 */
function revive(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i]);
    return value;
  }
  const o = value as Record<string, unknown>;
  if (TAG in o) return untag(o as { [TAG]: string; v: unknown });
  for (const k in o) o[k] = revive(o[k]);
  return o;
}

/** The trees of one parse of `text` (parseTrees' result for `topName`), as a cache entry. */
export function saveTrees(trees: ReadonlyMap<string, Tree>, topName: string, text: string): SavedEntry {
  return { version: PARSE_CACHE_VERSION, text, trees: [...trees].map(([name, tree]) => ({ name: name === topName ? null : name, root: tree.root })) };
}

/** Serialises entries (text key -> entry) as the cache file's JSON. */
export function stringifyParseCache(entries: Readonly<Record<string, SavedEntry>>): string {
  return JSON.stringify(entries, replacer);
}

/** Parses a cache file's JSON; throws on malformed input. */
export function parseParseCache(json: string): Record<string, unknown> {
  const parsed = revive(JSON.parse(json) as unknown);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * The trees of `text` parsed as `name` from a cache entry, or undefined when the entry is missing,
 * of another version, of another text or not shaped like one (the caller then parses).
 */
export function treesFromEntry(entry: unknown, name: string, text: string): Map<string, Tree> | undefined {
  if (entry === null || typeof entry !== 'object') return undefined;
  const e = entry as Partial<SavedEntry>;
  if (e.version !== PARSE_CACHE_VERSION || e.text !== text || !Array.isArray(e.trees)) return undefined;
  const trees = new Map<string, Tree>();
  for (const t of e.trees as unknown[]) {
    const saved = t as Partial<SavedTree> | null;
    if (!saved || (saved.name !== null && typeof saved.name !== 'string') || saved.root?.type !== 'list') return undefined;
    const treeName = saved.name ?? name;
    trees.set(treeName, { name: treeName, parseName: name, text, root: saved.root });
  }
  return trees.has(name) ? trees : undefined;
}
