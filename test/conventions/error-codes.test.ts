// Every error class of the agent carries a stable `code` (its own, or one it inherits), so callers
// and logs can tell failures apart without matching message text; and no two classes share one.
// Read from the sources, so a new error class without a code fails here.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/paths.js';
import { agentSources } from './sources.js';

interface ErrorClass {
  readonly name: string;
  readonly parent: string;
  readonly file: string;
  readonly code: string | undefined;
}

/** Classes extending Error (directly or through another class found here), with their own `code`. */
function errorClasses(): ErrorClass[] {
  const all: ErrorClass[] = [];
  for (const file of agentSources()) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:export )?class (\w+) extends (\w+)\b[^{]*\{/gm)) {
      // the class body up to the first line that closes it at the start of a line
      const body = text.slice(m.index + m[0].length, text.indexOf('\n}', m.index) + 2);
      const code = /readonly code(?::\s*string)?\s*=\s*([^;\n]+)/.exec(body)?.[1]?.trim();
      all.push({ name: m[1]!, parent: m[2]!, file: path.relative(repoRoot, file), code });
    }
  }
  const byName = new Map(all.map((c) => [c.name, c]));
  const isError = (c: ErrorClass | undefined, depth = 0): boolean =>
    !!c && depth < 10 && (c.parent === 'Error' || c.parent === 'RangeError' || c.parent === 'TypeError' || isError(byName.get(c.parent), depth + 1));
  return all.filter((c) => isError(c));
}

describe('error classes', () => {
  const classes = errorClasses();

  it('are found in the sources', () => {
    expect(classes.map((c) => c.name)).toEqual(expect.arrayContaining(['ConfigError', 'GrpcCallError', 'EnvoyAdminError', 'WasmFetchError', 'TemplateError']));
  });

  it('each carry a code, their own or inherited', () => {
    const byName = new Map(classes.map((c) => [c.name, c]));
    const codeOf = (c: ErrorClass | undefined): string | undefined => (c ? (c.code ?? codeOf(byName.get(c.parent))) : undefined);
    expect(classes.filter((c) => codeOf(c) === undefined).map((c) => `${c.file}: ${c.name}`)).toEqual([]);
  });

  it('never share a code', () => {
    const seen = new Map<string, string>();
    const clashes: string[] = [];
    for (const c of classes) {
      if (c.code === undefined) continue;
      const other = seen.get(c.code);
      if (other) clashes.push(`${c.name} and ${other}: ${c.code}`);
      seen.set(c.code, c.name);
    }
    expect(clashes).toEqual([]);
  });
});
