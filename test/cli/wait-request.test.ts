// `pilot-agent wait` and `pilot-agent request` as the kubelet's hooks run them.

import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { agentBin, freePort, killStarted, runAgent, tempDir } from '../support/processes.js';

let server: Server | undefined;
afterEach(async () => {
  killStarted();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function serve(handler: (calls: number) => number): Promise<{ port: number; calls: () => number }> {
  let calls = 0;
  const port = await freePort();
  server = createServer((_req, res) => {
    calls++;
    res.statusCode = handler(calls);
    res.end(res.statusCode === 200 ? 'LIVE' : 'not ready');
  });
  await new Promise<void>((r) => server!.listen(port, '127.0.0.1', r));
  return { port, calls: () => calls };
}

describe('pilot-agent wait', () => {
  it('polls until the URL answers 200', async () => {
    const srv = await serve((n) => (n < 4 ? 503 : 200));
    const dir = tempDir('pa-wait-');
    try {
      const p = runAgent(['wait', `--url=http://127.0.0.1:${srv.port}/healthz/ready`, '--periodMillis=50', '--timeoutSeconds=10'], { cwd: dir.path, env: {} });
      expect((await p.exited).code, p.output()).toBe(0);
      expect(srv.calls()).toBe(4);
      expect(p.output()).toContain('Envoy is ready!');
    } finally {
      dir.cleanup();
    }
  });

  it('fails after --timeoutSeconds with the last error', async () => {
    const srv = await serve(() => 503);
    const dir = tempDir('pa-wait-');
    try {
      const t0 = Date.now();
      const p = runAgent(['wait', '--url', `http://127.0.0.1:${srv.port}/healthz/ready`, '--periodMillis', '100', '--timeoutSeconds', '1'], { cwd: dir.path, env: {} });
      expect((await p.exited).code).toBe(1);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1000);
      expect(p.output()).toContain('timeout waiting for Envoy proxy to become ready. Last error: HTTP status code 503');
      expect(srv.calls()).toBeGreaterThanOrEqual(5);
    } finally {
      dir.cleanup();
    }
  });
});

describe('pilot-agent request', () => {
  it('refuses ports outside the allow-list', async () => {
    const dir = tempDir('pa-request-');
    try {
      const p = runAgent(['request', '--debug-port=8080', 'GET', 'stats'], { cwd: dir.path, env: {} });
      expect((await p.exited).code).toBe(1);
      expect(p.output()).toContain('debug port 8080 is not in allowed list [15000 15004 15020 15021]');
    } finally {
      dir.cleanup();
    }
  });

  // Port 15020 is fixed by the allow-list, so the call runs in a private network namespace of its
  // own where that port is free (needs root, as CI has).
  it.runIf(process.getuid?.() === 0)('POSTs the preStop drain to the status port and prints the body; fails on 5xx but not 404', () => {
    const serverJs = `
      const http = require('node:http');
      http.createServer((req, res) => {
        if (req.url === '/drain' && req.method === 'POST') { res.end('draining'); return; }
        if (req.url === '/missing') { res.statusCode = 404; res.end('nope'); return; }
        res.statusCode = 503; res.end('broken');
      }).listen(15020, '127.0.0.1', () => process.stdout.write('up\\n'));`;
    const script = `
      ip link set lo up
      node -e "$SERVER_JS" > /dev/null &
      srv=$!
      for i in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/15020) 2>/dev/null && break; sleep 0.05; done
      node ${agentBin} request --debug-port=15020 POST drain; echo "rc=$?"
      node ${agentBin} request --debug-port=15020 GET missing; echo "rc=$?"
      node ${agentBin} request --debug-port=15020 GET broken 2>&1; echo "rc=$?"
      kill $srv`;
    const r = spawnSync('unshare', ['-n', 'bash', '-c', script], { env: { ...process.env, SERVER_JS: serverJs }, encoding: 'utf8', timeout: 60_000 });
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/draining\nrc=0/);
    expect(out).toMatch(/nope\nrc=0/);
    expect(out).toContain('received unsuccessful status code 503: broken');
    expect(out).toMatch(/rc=1\s*$/);
  });
});
