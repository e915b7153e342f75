// The agent's own source files, which the convention tests read: src/ without tests and without
// generated code (src/gen).

import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/paths.js';

function walk(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'gen' ? [] : walk(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [full] : [];
  });
}

/** Absolute paths of the agent's hand-written source files. */
export function agentSources(): string[] {
  return walk(path.join(repoRoot, 'src'));
}
