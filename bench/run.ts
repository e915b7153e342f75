// `npm run bench -- <name> [--json] [--runs N] [soak: --minutes M --sotw --agent-env K=V,...]`:
// runs one benchmark (or `all`).

import { printResult, type Bench } from './harness.js';
import { bootstrapBench } from './bootstrap.js';
import { dnsBench } from './dns.js';
import { httpClientsBench } from './http-clients.js';
import { metricsBench } from './metrics.js';
import { sdsBench } from './sds.js';
import { soakBench } from './soak.js';
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
  'http-clients': httpClientsBench,
  sds: sdsBench,
  soak: soakBench,
};

/** Options that take a value (`--runs 5`); other `--x` options are switches. */
const VALUE_OPTIONS = new Set(['--runs', '--minutes', '--agent-env']);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const options = new Map<string, string>();
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) names.push(a);
    else if (VALUE_OPTIONS.has(a)) options.set(a, args[++i] ?? '');
    else options.set(a, '');
  }
  const json = options.has('--json');
  const runs = options.has('--runs') ? Number(options.get('--runs')) : 15;
  const selected = names.length === 0 || names.includes('all') ? Object.keys(BENCHES) : names;
  for (const name of selected) {
    const bench = BENCHES[name];
    if (!bench) {
      process.stderr.write(`unknown bench "${name}"; available: ${Object.keys(BENCHES).join(', ')}\n`);
      process.exit(2);
    }
    printResult(name, await bench({ runs, options }), json);
  }
}

void main();
