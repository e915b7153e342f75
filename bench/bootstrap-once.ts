// One cold bootstrap generation in a fresh process (run by bench `bootstrap`): imports the
// renderer, loads the hello pod's configuration and renders; prints the timings as JSON.

import { performance } from 'node:perf_hooks';
import { injectedProxy } from '../test/support/hello-pod.js';

// the fixture is test input, read before the clock starts
const pod = injectedProxy('hello.yaml.injected');
const t0 = performance.now();
const { loadAgentConfig } = await import('../src/config/load.js');
const { renderEnvoyBootstrap } = await import('../src/bootstrap/envoy-bootstrap.js');
const tImport = performance.now();
const config = loadAgentConfig({ env: { ...pod.env, PROXY_CONFIG: '{"controlPlaneAuthPolicy":"NONE"}' }, flags: { domain: 'default.svc.cluster.local' }, cwd: process.argv[2] ?? process.cwd(), hostAddresses: ['10.244.1.17'] });
const tConfig = performance.now();
const first = renderEnvoyBootstrap(config);
const tFirst = performance.now();
const warm: number[] = [];
for (let i = 0; i < 50; i++) {
  const s = performance.now();
  renderEnvoyBootstrap(config);
  warm.push(performance.now() - s);
}
warm.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ totalMs: tFirst - t0, importMs: tImport - t0, configMs: tConfig - tImport, firstRenderMs: tFirst - tConfig, warmRenderMs: warm[25], bytes: first.text.length }) + '\n');
