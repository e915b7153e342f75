// Well-known locations for tests, independent of the working directory vitest runs in.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findRepoRoot(start: string): string {
  // Works both from the sources (test/support) and the compiled copy (dist-test/test/support).
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'tsconfig.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the repository root above ${start}`);
    dir = up;
  }
}

export const repoRoot = findRepoRoot(path.dirname(fileURLToPath(import.meta.url)));

/** Istio's reference data (see its README): `../shared/istio-testdata` next to the repository. */
export const istioTestdata = path.resolve(repoRoot, '..', 'shared', 'istio-testdata');

/** The Envoy stand-in launcher; it runs the compiled copy under dist-test/ (`npm run build:test`). */
export const envoyStandInPath = path.join(repoRoot, 'test', 'envoy-stand-in', 'envoy');
