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

/**
 * Istio's reference data (see its README): `../shared/istio-testdata` next to the repository, or
 * $ISTIO_TESTDATA_DIR. It is not part of the repository (it stays Istio's, unchanged), so a clone
 * elsewhere must say where it is; without it the tests and the demo would fail file by file with
 * bare ENOENTs, so its absence stops them here with what to do.
 */
export const istioTestdata = process.env.ISTIO_TESTDATA_DIR ? path.resolve(process.env.ISTIO_TESTDATA_DIR) : path.resolve(repoRoot, '..', 'shared', 'istio-testdata');
if (!fs.existsSync(path.join(istioTestdata, 'injection'))) {
  throw new Error(
    `Istio's reference data (golden bootstraps, injected pods, config dumps, capture goldens) is not at ${istioTestdata}: ` +
      'the tests and the demo read it from shared/istio-testdata next to the repository; clone the repository beside it, or set ISTIO_TESTDATA_DIR to its location',
  );
}

/** The Envoy stand-in launcher; it runs the compiled copy under dist-test/ (`npm run build:test`). */
export const envoyStandInPath = path.join(repoRoot, 'test', 'envoy-stand-in', 'envoy');
