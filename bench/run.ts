// `npm run bench -- <name> [--json] [--runs N]`: runs one benchmark (or `all`).

import { printResult, type Bench } from './harness.js';
import { bootstrapBench } from './bootstrap.js';
import { dnsBench } from './dns.js';
import { metricsBench } from './metrics.js';
import { sdsBench } from './sds.js';
import { startupBench } from './startup.js';
import { wasmBench } from './wasm.js';
import { xdsBench } from './xds.js';

const BENCHES: Record<string, Bench> = {
  startup: startupBench,
  bootstrap: bootstrapBench,
  wasm: wasmBench,
  dns: dnsBench,
  xds: xdsBench,
  metrics: metricsBench,
  sds: sdsBench,
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const runsIdx = args.indexOf('--runs');
  const runs = runsIdx >= 0 ? Number(args[runsIdx + 1]) : 15;
  const names = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs');
  const selected = names.length === 0 || names.includes('all') ? Object.keys(BENCHES) : names;
  for (const name of selected) {
    const bench = BENCHES[name];
    if (!bench) {
      process.stderr.write(`unknown bench "${name}"; available: ${Object.keys(BENCHES).join(', ')}\n`);
      process.exit(2);
    }
    printResult(name, await bench({ runs }), json);
  }
}

void main();
