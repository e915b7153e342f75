// Every timer in src whose delay is not a constant goes through timerDelay (src/util/timer-delay.ts):
// Node turns a delay past 2^31-1 ms into 1 ms, so a configured long duration would fire at once.
// Read from the sources, so a new timer with a computed delay fails here until it is bounded.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/paths.js';
import { agentSources } from './sources.js';

/** The arguments of the call whose '(' is at `open`, split at its top level. */
function callArguments(text: string, open: number): string[] {
  const args: string[] = [];
  let depth = 0;
  let start = open + 1;
  let quote: string | undefined;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') quote = c;
    else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      depth--;
      if (depth === 0) {
        args.push(text.slice(start, i).trim());
        return args;
      }
    } else if (c === ',' && depth === 1) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  return args;
}

/** A delay that needs no bound: a number, a product of numbers, or an UPPER_CASE constant. */
const CONSTANT = /^(?:[\d_]+|[A-Z][A-Z0-9_]*)(?:\s*\*\s*(?:[\d_]+|[A-Z][A-Z0-9_]*))*$/;

function unboundedTimers(): string[] {
  const found: string[] = [];
  for (const file of agentSources()) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\b(setTimeout|setInterval)\(/g)) {
      const args = callArguments(text, m.index + m[0].length - 1);
      // socket.setTimeout(ms, fn) takes the delay first; the global timers take it second
      const method = text[m.index - 1] === '.';
      const delay = (method ? args[0] : args[1]) ?? '';
      if (CONSTANT.test(delay) || delay.startsWith('timerDelay(')) continue;
      const line = text.slice(0, m.index).split('\n').length;
      found.push(`${path.relative(repoRoot, file)}:${line} ${m[1]} delay \`${delay}\``);
    }
  }
  return found;
}

describe('timers', () => {
  it('bound every computed delay with timerDelay', () => {
    expect(unboundedTimers()).toEqual([]);
  });
});
