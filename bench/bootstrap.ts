// Bench `bootstrap`: generating the hello pod's Envoy bootstrap in a fresh process (module import,
// configuration, template parse and first render: what start-up pays for it), as a ratio to
// `node -e 0` in the same run. Below 1 means generation costs less than starting node itself.
// The measured script is bundled as the agent ships (scripts/bundle.mjs), so module import is
// timed as the agent pays it.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, round, timeCommand, type Bench } from './harness.js';

interface Once {
  totalMs: number;
  importMs: number;
  configMs: number;
  firstRenderMs: number;
  warmRenderMs: number;
  bytes: number;
}

export const bootstrapBench: Bench = async ({ runs }) => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const { bundleModules } = (await import(pathToFileURL(join(root, 'scripts/bundle.mjs')).href)) as { bundleModules: (entries: Record<string, string>, outdir: string) => Promise<void> };
  await bundleModules({ 'bootstrap-once': 'dist-test/bench/bootstrap-once.js' }, 'dist-test/bench/bundled');
  const script = join(root, 'dist-test/bench/bundled/bootstrap-once.js');
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-bootstrap-'));
  try {
    const baseline: number[] = [];
    const wall: number[] = [];
    const samples: Once[] = [];
    for (let i = 0; i < runs; i++) {
      baseline.push(await timeCommand(process.execPath, ['-e', '0']));
      const t0 = process.hrtime.bigint();
      samples.push(JSON.parse(execFileSync(process.execPath, [script, dir], { encoding: 'utf8' })) as Once);
      wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const b = median(baseline);
    const generation = median(samples.map((s) => s.configMs + s.firstRenderMs));
    const agentPart = median(samples.map((s) => s.totalMs));
    const w = median(wall);
    return {
      rows: [
        ['node -e 0 (median ms)', b.toFixed(1)],
        ['whole process incl. node start and test fixture (median ms)', w.toFixed(1)],
        ['generation: import + config + first render (median ms)', agentPart.toFixed(1)],
        ['    module import (median ms)', median(samples.map((s) => s.importMs)).toFixed(1)],
        ['    config (median ms)', median(samples.map((s) => s.configMs)).toFixed(1)],
        ['    first render incl. template parse (median ms)', median(samples.map((s) => s.firstRenderMs)).toFixed(1)],
        ['warm re-render (median ms)', median(samples.map((s) => s.warmRenderMs)).toFixed(2)],
        ['bootstrap size (bytes)', String(samples[0]!.bytes)],
        ['bootstrap ratio (generation / node -e 0)', (agentPart / b).toFixed(2)],
      ],
      figures: {
        bootstrap_ratio: round(agentPart / b),
        generation_ms: round(agentPart),
        config_and_render_ms: round(generation),
        warm_render_ms: round(median(samples.map((s) => s.warmRenderMs)), 3),
        node_e0_ms: round(b, 1),
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
};
