// Start-up loads only what Envoy's spawn needs: the YAML library and the Prometheus client are
// loaded on first use (util/yaml.ts, metrics/registry.ts), since evaluating them cost ~25 ms of
// CPU each before Envoy could start. Checked in a fresh process on the compiled agent, through
// Node's CommonJS cache (both libraries are CommonJS packages): the configuration of a pod whose
// inputs are JSON, and every metric declaration, must leave both unloaded; the first count or
// scrape loads prom-client and lists every declared family, touched or not.

import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { injectedProxy } from '../support/hello-pod.js';
import { repoRoot } from '../support/paths.js';

const run = promisify(execFile);

const script = `
import { createRequire } from 'node:module';
const dist = ${JSON.stringify(path.join(repoRoot, 'dist'))};
const loaded = (name) => Object.keys(createRequire(dist + '/').cache).some((k) => k.includes('/node_modules/' + name + '/'));
const { loadAgentConfig } = await import(dist + '/config/load.js');
const { metrics, registry } = await import(dist + '/metrics/registry.js');
await import(dist + '/sds/metrics.js');
const config = loadAgentConfig({ env: JSON.parse(process.env.POD_ENV), cwd: process.cwd(), hostAddresses: ['10.0.0.1'] });
const out = { afterConfig: { yaml: loaded('yaml'), promClient: loaded('prom-client') }, proxyConfigRead: config.proxyConfig.discoveryAddress };
metrics.xdsProxyRequests.inc();
out.afterCount = { promClient: loaded('prom-client') };
out.exposition = await registry.metrics();
const { parseYaml } = await import(dist + '/util/yaml.js');
parseYaml('a: 1');
out.afterYamlText = { yaml: loaded('yaml') };
console.log(JSON.stringify(out));
`;

describe('libraries loaded on first use', () => {
  it('leaves yaml and prom-client unloaded through configuration and metric declarations, and loads them when used', async () => {
    const pod = injectedProxy('hello.yaml.injected');
    const env = { ...pod.env, PROXY_CONFIG: JSON.stringify({ discoveryAddress: 'istiod.example:15012' }) };
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '', POD_ENV: JSON.stringify(env) }, cwd: repoRoot });
    const out = JSON.parse(stdout) as { afterConfig: { yaml: boolean; promClient: boolean }; proxyConfigRead: string; afterCount: { promClient: boolean }; exposition: string; afterYamlText: { yaml: boolean } };
    expect(out.proxyConfigRead).toBe('istiod.example:15012');
    expect(out.afterConfig).toEqual({ yaml: false, promClient: false });
    expect(out.afterCount).toEqual({ promClient: true });
    // the touched counter and families nobody touched (the xDS proxy's and SDS's) are all listed
    expect(out.exposition).toMatch(/^istio_agent_xds_proxy_requests 1$/m);
    expect(out.exposition).toMatch(/^# TYPE istio_agent_xds_proxy_responses counter$/m);
    expect(out.exposition).toMatch(/^# TYPE istio_agent_pilot_total_xds_rejects counter$/m);
    expect(out.afterYamlText).toEqual({ yaml: true });
  });
});
