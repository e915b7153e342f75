// Kubernetes downward-API files (./etc/istio/pod/labels and annotations): one `key="value"` per
// line, value quoted as Go's strconv.Quote writes it (escapes \n, \", \\, \t, \uXXXX...).

import { readFileSync } from 'node:fs';
import type { IssueList } from './errors.js';

/** Unquotes a Go double-quoted string literal; undefined when malformed. */
export function unquoteGo(s: string): string | undefined {
  if (s.length < 2 || !s.startsWith('"') || !s.endsWith('"')) return undefined;
  try {
    // Go's escapes are a superset of JSON's only in \a \v \xHH \ooo \UXXXXXXXX; translate those first.
    const body = s.slice(1, -1).replace(/\\(a|v|x[0-9a-fA-F]{2}|[0-7]{3}|U[0-9a-fA-F]{8})|\\(.)/g, (m, goOnly: string | undefined) => {
      if (!goOnly) return m;
      if (goOnly === 'a') return '\\u0007';
      if (goOnly === 'v') return '\\u000b';
      const code = goOnly[0] === 'x' ? parseInt(goOnly.slice(1), 16) : goOnly[0] === 'U' ? parseInt(goOnly.slice(1), 16) : parseInt(goOnly, 8);
      return JSON.stringify(String.fromCodePoint(code)).slice(1, -1);
    });
    const v: unknown = JSON.parse(`"${body}"`);
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Parses downward-API content. Bad lines are reported with their line number; good ones kept. */
export function parseDownwardApi(text: string, source: string, issues: IssueList): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const eq = line.indexOf('=');
    if (eq <= 0) {
      issues.add(source, `line ${i + 1}`, line, 'expected key="quoted value"');
      return;
    }
    const key = line.slice(0, eq);
    const value = unquoteGo(line.slice(eq + 1));
    if (value === undefined) {
      issues.add(source, `line ${i + 1}`, line, `value of ${key} is not a valid quoted string`);
      return;
    }
    out[key] = value;
  });
  return out;
}

/** Reads a downward-API file; a missing file is an empty map (not every pod mounts it). */
export function readDownwardApiFile(path: string, issues: IssueList): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    issues.add(`file ${path}`, '', '', `cannot read: ${(err as Error).message}`);
    return {};
  }
  return parseDownwardApi(text, `file ${path}`, issues);
}
