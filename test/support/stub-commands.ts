// Commands a test puts ahead of the real ones on PATH: shell scripts standing in for a binary the
// code under test runs (an iptables-restore that fails or is slow, xtables binaries with chosen
// answers). Each set lives in a temporary directory of its own, removed by `remove()`.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface StubCommands {
  /** The directory holding the scripts. */
  readonly dir: string;
  /** `dir` ahead of `basePath` (the test's own PATH by default): what the child's PATH should be. */
  pathAhead(basePath?: string): string;
  remove(): void;
}

/** Writes `name -> body` as executable `#!/bin/sh` scripts in a new temporary directory. */
export function stubCommands(scripts: Readonly<Record<string, string>>): StubCommands {
  const dir = mkdtempSync(join(tmpdir(), 'pa-stub-commands-'));
  for (const [name, body] of Object.entries(scripts)) {
    writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(dir, name), 0o755);
  }
  return {
    dir,
    pathAhead: (basePath = process.env.PATH ?? '') => (basePath ? `${dir}:${basePath}` : dir),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
