// The agent never asks for the local time zone. V8 answers Date's local-time methods, and also
// toISOString()/toUTCString() (Node's HTTP Date headers), through ICU's time-zone data: 0.6 MiB
// paged into every pod and ~0.7 ms on the first call, for text that is UTC anyway. The agent writes
// its timestamps and Date headers from the UTC fields (util/time.ts). Checked on the real agent,
// through a pod's life: start-up, certificates from the CA, xDS through the proxy to the Envoy
// stand-in, readiness, merged metrics, the xDS debug port, and the SIGTERM drain. A preload wraps
// every Date method that consults the time zone, and the HTTP servers' responses, and records
// who called them.

import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { freePort, tempDir } from '../support/processes.js';
import { useSdsPods } from '../support/sds-pod.js';

const TOKEN = 'no-local-time-token';

/** Date methods whose answer depends on the local time zone, or that V8 answers through it. */
const ZONE_METHODS = [
  'toISOString', 'toJSON', 'toUTCString', 'toGMTString', 'toString', 'toDateString', 'toTimeString',
  'toLocaleString', 'toLocaleDateString', 'toLocaleTimeString', 'getTimezoneOffset',
  'getFullYear', 'getMonth', 'getDate', 'getDay', 'getHours', 'getMinutes', 'getSeconds', 'getMilliseconds',
  'setFullYear', 'setMonth', 'setDate', 'setHours', 'setMinutes', 'setSeconds', 'setMilliseconds',
];

const preload = (out: string): string => `
import { appendFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
const out = ${JSON.stringify(out)};
// the agent only: NODE_OPTIONS reaches the processes it starts too (the Envoy stand-in)
const isAgent = /pilot-agent\\.js$/.test(process.argv[1] ?? '');
const note = (what) => appendFileSync(out, JSON.stringify({ what, stack: new Error().stack.split('\\n').slice(2, 8).join('\\n') }) + '\\n');
if (isAgent) {
  for (const name of ${JSON.stringify(ZONE_METHODS)}) {
    const original = Date.prototype[name];
    if (typeof original !== 'function') continue;
    Date.prototype[name] = function (...args) {
      note('Date.prototype.' + name);
      return original.apply(this, args);
    };
  }
  const DateTimeFormat = Intl.DateTimeFormat;
  Intl.DateTimeFormat = function (...args) {
    note('Intl.DateTimeFormat');
    return new DateTimeFormat(...args);
  };
  // Node writes its own Date headers with primordials (out of reach of the wrappers above): what
  // would make it is a response sent with sendDate left on
  const writeHead = http.ServerResponse.prototype.writeHead;
  http.ServerResponse.prototype.writeHead = function (...args) {
    if (this.sendDate) note('HTTP/1.1 response with the Date header Node writes');
    return writeHead.apply(this, args);
  };
  for (const make of ['createServer', 'createSecureServer']) {
    const original = http2[make];
    http2[make] = function (...args) {
      const server = original.apply(this, args);
      server.prependListener('stream', (stream) => {
        const respond = stream.respond;
        stream.respond = function (headers, options) {
          if (options?.sendDate !== false) note('HTTP/2 response with the date header Node writes');
          return respond.call(this, headers, options);
        };
      });
      return server;
    };
  }
}
`;

const pods = useSdsPods(TOKEN);
let scratch: ReturnType<typeof tempDir> | undefined;
afterEach(() => {
  scratch?.cleanup();
  scratch = undefined;
});

describe('no local time zone', () => {
  it('a sidecar pod never calls a Date method that consults the time zone, from start to drain', { timeout: 90_000 }, async () => {
    scratch = tempDir('pa-no-local-time-');
    const calls = join(scratch.path, 'zone-calls.jsonl');
    const probe = join(scratch.path, 'zone-probe.mjs');
    writeFileSync(probe, preload(calls));
    const statusPort = await freePort();
    const debugPort = await freePort();
    // the stand-in over ADS and SDS: xDS through the proxy, the certificate from the CA
    const { agent } = await pods.start('pa-no-local-time-pod-', { NODE_OPTIONS: `--import=${probe}`, ENVOY_STANDIN_ADS: '1', PROXY_XDS_DEBUG_VIA_AGENT_PORT: String(debugPort) }, undefined, { statusPort });
    // ready: the workload certificate came from the CA over SDS, CDS and LDS through the xDS proxy
    await vi.waitFor(
      async () => {
        if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
        expect((await httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`)).status).toBe(200);
      },
      { timeout: 60_000, interval: 200 },
    );
    const ready = await httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`);
    // as Go's net/http: a Date header on every answer, in IMF-fixdate form
    const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;
    expect(ready.headers.date).toMatch(IMF_FIXDATE);
    expect(Math.abs(Date.parse(ready.headers.date!) - Date.now())).toBeLessThan(60_000);
    const metrics = await httpRequest(`http://127.0.0.1:${statusPort}/stats/prometheus`);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^istio_agent_/m);
    const debug = await httpRequest(`http://127.0.0.1:${debugPort}/not-debug`);
    expect(debug.status).toBe(404);
    expect(debug.headers.date).toMatch(IMF_FIXDATE);

    agent.child.kill('SIGTERM');
    const exit = await agent.exited;
    expect(exit.code).toBe(0);
    // the agent logged through all of it, each line stamped in UTC
    expect(agent.output()).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\tinfo\t/m);
    const seen = existsSync(calls) ? readFileSync(calls, 'utf8').trim() : '';
    expect(seen, 'Date methods that consult the time zone were called').toBe('');
  });
});
