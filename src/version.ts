// Build identity. `istioCompatVersion` is the Istio release whose pilot-agent behaviour (and
// Envoy) this agent matches; it is what istiod sees as the proxy's ISTIO_VERSION, since istiod
// gates generated config on that version.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from './util/package-root.js';

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export const buildInfo = Object.freeze({
  version: packageVersion(),
  istioCompatVersion: '1.31.0',
  nodeVersion: process.version,
});
