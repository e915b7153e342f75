// Where this package's own files live (package.json, bootstrap-templates/). The code runs from
// several depths: src/ under vitest, dist/ after tsc, dist-test/src/ in the test build, and
// dist/bundle/ once bundled, so the root is found by walking up rather than by a fixed `../..`.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bootstrap-templates'))) return dir;
    if (dirname(dir) === dir) return start;
  }
}

/** The package root: the nearest ancestor holding both package.json and bootstrap-templates/. */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));
