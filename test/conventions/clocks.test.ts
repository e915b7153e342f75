// Durations and deadlines are measured on the monotonic clock (performance.now()), never on the
// wall clock: NTP steps the wall clock (a VM resumed, a host booted with a wrong RTC), and a step
// back of an hour turned the xDS proxy's dial backoff into an hour of holding Envoy's stream with
// no istiod behind it (test/xds/clock-step.test.ts). Go's time.Now() carries a monotonic reading
// that its subtractions use, so Istio's agent is immune; here the choice is made at each call.
// Read from the sources: a new Date.now() fails here unless it formats a wall time or sits where
// the wall clock is the point (certificate validity, file times).

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../support/paths.js';
import { agentSources } from './sources.js';

/** Where the wall clock is what is meant, and why. */
const WALL_CLOCK_FILES: Readonly<Record<string, string>> = {
  'src/security/secret-manager.ts': 'certificate validity (NotBefore/NotAfter) is wall time',
  'src/security/ca-client.ts': 'a signed chain is checked against its NotAfter',
  'src/security/metrics.ts': 'cert_expiry_seconds is NotAfter minus now',
  'src/xds/upstream-options.ts': 'an expired client certificate is not offered to istiod',
  'src/wasm/cache.ts': "a module's last use is compared with file modification times after a restart",
};

/** Date.now() as the argument of a formatter: a wall time shown, not a duration measured. */
const FORMATTED = /\b(?:isoUtc|httpDate)\(Date\.now\(\)\)/g;

function wallClockReads(): string[] {
  const found: string[] = [];
  for (const file of agentSources()) {
    const rel = path.relative(repoRoot, file);
    if (rel in WALL_CLOCK_FILES) continue;
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (/\bDate\.now\b/.test(line.replace(FORMATTED, ''))) found.push(`${rel}:${i + 1}: ${line.trim()}`);
    });
  }
  return found;
}

describe('clocks', () => {
  it('measures durations on the monotonic clock: Date.now() only formats a time or serves wall-clock checks', () => {
    expect(wallClockReads()).toEqual([]);
  });

  it('names only files that exist and still read the wall clock', () => {
    for (const rel of Object.keys(WALL_CLOCK_FILES)) {
      expect(fs.readFileSync(path.join(repoRoot, rel), 'utf8'), rel).toMatch(/\bDate\.now\b/);
    }
  });
});
