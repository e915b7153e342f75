// /quitquitquit, /drain and /debug/*: loopback only (403 from a network namespace the test creates),
// POST only (405), wired to callbacks; `pilot-agent request --debug-port=15020 POST drain`; the
// debug views (no secrets); options built from an AgentConfig; start/close.

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { debugRequest } from '../../src/cli/request.js';
import { loadAgentConfig } from '../../src/config/load.js';
import { statusServerOptionsFrom } from '../../src/status/from-config.js';
import { StatusServer } from '../../src/status/server.js';
import { configureLogging } from '../../src/util/logger.js';
import { injectedProxy } from '../support/hello-pod.js';
import { repoRoot } from '../support/paths.js';
import { call, closeStarted, httpServer, startStatus } from './support.js';

configureLogging({ write: () => undefined });
afterEach(() => closeStarted());

let cwd: string;
beforeAll(() => {
  cwd = mkdtempSync(join(tmpdir(), 'pa-status-life-'));
});
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

function helloConfig(extraEnv: Record<string, string> = {}) {
  const pod = injectedProxy('hello.yaml.injected');
  return loadAgentConfig({ env: { ...pod.env, ...extraEnv }, cwd, hostAddresses: ['10.244.1.17'] });
}

describe('quit and drain', () => {
  it('are POST only and call the agent back after answering', async () => {
    const calls: string[] = [];
    const status = await startStatus({ onQuit: () => void calls.push('quit'), onDrain: async () => void calls.push('drain') });
    const base = `http://127.0.0.1:${status.port}`;
    const get = await call(`${base}/drain`);
    expect([get.status, get.body]).toEqual([405, 'Method Not Allowed\n']);
    expect((await call(`${base}/quitquitquit`, { method: 'PUT' })).status).toBe(405);
    const drain = await call(`${base}/drain`, { method: 'POST' });
    expect([drain.status, drain.body]).toEqual([200, 'OK']);
    const quit = await call(`http://[::1]:${status.port}/quitquitquit`, { method: 'POST' }).catch(() => call(`${base}/quitquitquit`, { method: 'POST' }));
    expect([quit.status, quit.body]).toEqual([200, 'OK']);
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toEqual(['drain', 'quit']);
  });

  it('`pilot-agent request --debug-port=15020 POST drain` drains', async (ctx) => {
    let drained = 0;
    const status = new StatusServer({ port: 15020, proxyType: 'sidecar', adminPort: 1, onDrain: () => void drained++ });
    try {
      await status.start();
    } catch {
      ctx.skip(); // port 15020 is taken on this machine
      return;
    }
    try {
      expect(await debugRequest({ port: 15020, method: 'POST', path: 'drain', body: '' })).toBe('OK');
      // the CLI's `request` against it (npm test builds dist/ first: a missing build fails here)
      // asynchronously: the server answering runs in this process
      const child = spawn(process.execPath, [join(repoRoot, 'bin', 'pilot-agent.js'), 'request', '--debug-port=15020', 'POST', 'drain'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, out).toBe(0);
      expect(out.trim()).toBe('OK');
      expect(drained).toBe(2);
    } finally {
      await status.close();
    }
  });
});

describe('debug views', () => {
  it('serve the effective config without secrets, xDS sync state, certs, wasm and ndsz', async () => {
    const config = helloConfig({ XDS_HEADER_AUTHORIZATION: 'Bearer xds-secret', CA_HEADER_X_TOKEN: 'ca-secret', ISTIO_META_MY_TOKEN: 'meta-secret', HTTPS_PROXY: 'http://proxy-user:proxy-secret@proxy.corp:3128' });
    const sync = new Map([['type.googleapis.com/envoy.config.cluster.v3.Cluster', { lastVersion: 'v1', lastNonce: 'n1', lastResources: 3, lastBytes: 120, responses: 1, lastAck: 'ACK' as const }]]);
    const opts = statusServerOptionsFrom(config, { onQuit: () => undefined, onDrain: () => undefined, xdsSyncState: () => sync });
    expect(opts).toMatchObject({ port: 15020, proxyType: 'sidecar', adminPort: 15000, localhost: '127.0.0.1', podIp: '10.244.1.17', envoyPrometheusPort: 15090, noEnvoy: false, mergeEnvoyStats: true });
    const status = await startStatus({ ...opts, port: undefined, adminPort: 1 });
    const base = `http://127.0.0.1:${status.port}`;

    const cfg = await call(`${base}/debug/config`);
    expect(cfg.status).toBe(200);
    expect(cfg.headers['content-type']).toBe('application/json');
    const view = JSON.parse(cfg.body) as { proxyConfig: { statusPort?: number; discoveryAddress: string }; env: Record<string, unknown>; xdsHeaders: Record<string, string>; caHeaders: Record<string, string>; metadata: Record<string, string> };
    expect(view.proxyConfig.discoveryAddress).toBe('istiod.istio-system.svc:15012');
    expect(view.env.SECRET_TTL).toBe(86_400_000);
    expect(view.xdsHeaders).toEqual({ AUTHORIZATION: '<redacted>' });
    expect(view.caHeaders).toEqual({ X_TOKEN: '<redacted>' });
    expect(view.metadata.ISTIO_META_MY_TOKEN).toBe('<redacted>');
    expect(view.env.HTTPS_PROXY).toBe('http://<redacted>@proxy.corp:3128');
    for (const secret of ['xds-secret', 'ca-secret', 'meta-secret', 'proxy-secret']) expect(cfg.body).not.toContain(secret);

    for (const path of ['/debug/syncz', '/debug/xds']) {
      const s = JSON.parse((await call(`${base}${path}`)).body) as { types: Record<string, { lastVersion: string; lastAck: string }> };
      expect(s.types['type.googleapis.com/envoy.config.cluster.v3.Cluster']).toMatchObject({ lastVersion: 'v1', lastAck: 'ACK' });
    }
    expect(JSON.parse((await call(`${base}/debug/certs`)).body)).toEqual({ certificates: [] });
    expect(JSON.parse((await call(`${base}/debug/wasm`)).body)).toEqual({ modules: [] });
    const ndsz = await call(`${base}/debug/ndsz`);
    expect([ndsz.status, ndsz.body.trim()]).toEqual([404, '{}']);
    expect((await call(`${base}/debug/nope`)).status).toBe(404);
    expect((await call(`${base}/debug/config`, { method: 'POST' })).status).toBe(405);
    expect((await call(`${base}/nothing-here`)).status).toBe(404);
  });

  it('turns off with status port 0; close() is idempotent', async () => {
    const off = new StatusServer({ port: 0, proxyType: 'sidecar', adminPort: 1 });
    await off.start();
    expect(off.port).toBe(0);
    await off.close();
    const on = await startStatus({});
    const port = on.port;
    await Promise.all([on.close(), on.close()]);
    await expect(call(`http://127.0.0.1:${port}/healthz/ready`)).rejects.toThrow();
  });

  it('refuses a port in use with a clear error', async () => {
    const taken = await httpServer((_q, r) => r.end());
    try {
      await expect(new StatusServer({ port: taken.port, host: '127.0.0.1', proxyType: 'sidecar', adminPort: 1 }).start()).rejects.toThrow(`status server: cannot listen on 127.0.0.1:${taken.port}`);
    } finally {
      await taken.close();
    }
  });
});

// ----- non-loopback callers, from a network namespace ----------------------------------------------

const isRoot = process.getuid?.() === 0;
const id = process.pid % 100_000;
const NS = `pa-st-${id}`;
const HOST_IF = `pah${id}`;
const NS_IF = `pan${id}`;
const octet = 100 + (process.pid % 150); // a private /30 of our own: 10.254.<octet>.0/30
const HOST_IP = `10.254.${octet}.1`;
const NS_IP = `10.254.${octet}.2`;

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function setUpNamespace(): boolean {
  if (!isRoot) return false;
  try {
    ip('netns', 'add', NS);
  } catch {
    return false; // no CAP_SYS_ADMIN here
  }
  try {
    ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF);
    ip('link', 'set', NS_IF, 'netns', NS);
    ip('addr', 'add', `${HOST_IP}/30`, 'dev', HOST_IF);
    ip('link', 'set', HOST_IF, 'up');
    ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/30`, 'dev', NS_IF);
    ip('netns', 'exec', NS, 'ip', 'link', 'set', NS_IF, 'up');
    ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
    return true;
  } catch (err) {
    tearDownNamespace();
    throw err;
  }
}

function tearDownNamespace(): void {
  try {
    ip('netns', 'del', NS); // removes NS_IF and with it its peer HOST_IF
  } catch {
    /* not there */
  }
  try {
    ip('link', 'del', HOST_IF);
  } catch {
    /* already gone with the namespace */
  }
}

/** Runs requests from inside the namespace; returns `METHOD path -> status`. */
function fromNamespace(port: number, requests: [string, string][]): Promise<Record<string, number>> {
  const script = `
    const reqs = ${JSON.stringify(requests)};
    (async () => {
      const out = {};
      for (const [method, path] of reqs) {
        const r = await fetch('http://${HOST_IP}:${port}' + path, { method, signal: AbortSignal.timeout(10000) });
        await r.arrayBuffer();
        out[method + ' ' + path] = r.status;
      }
      process.stdout.write(JSON.stringify(out));
    })().catch((e) => { process.stderr.write(String(e)); process.exit(1); });`;
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, number>) : reject(new Error(`client in ${NS} failed (${code}): ${err}`))));
  });
}

describe('non-loopback callers (network namespace)', () => {
  let ready = false;
  beforeAll(() => {
    ready = setUpNamespace();
  });
  afterAll(() => {
    if (ready) tearDownNamespace();
  });

  it('get 403 on quit, drain, debug and (with METRICS_LOCALHOST_ACCESS_ONLY) metrics; readiness and probes stay open', async (ctx) => {
    if (!ready) {
      ctx.skip(); // needs root and network namespaces
      return;
    }
    const calls: string[] = [];
    const app = await httpServer((_q, r) => r.end('app ok'));
    try {
      const status = await startStatus({
        metricsLocalhostOnly: true,
        profiling: true,
        noEnvoy: true,
        onQuit: () => void calls.push('quit'),
        onDrain: () => void calls.push('drain'),
        kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port } } }),
        podIp: '127.0.0.1',
      });
      const got = await fromNamespace(status.port, [
        ['POST', '/quitquitquit'],
        ['POST', '/drain'],
        ['GET', '/debug/config'],
        ['GET', '/debug/syncz'],
        ['GET', '/debug/pprof/'],
        ['GET', '/debug/pprof/profile?seconds=1'],
        ['GET', '/debug/pprof/heap'],
        ['GET', '/stats/prometheus'],
        ['GET', '/healthz/ready'],
        ['GET', '/app-health/a/livez'],
      ]);
      expect(got).toEqual({
        'POST /quitquitquit': 403,
        'POST /drain': 403,
        'GET /debug/config': 403,
        'GET /debug/syncz': 403,
        'GET /debug/pprof/': 403,
        'GET /debug/pprof/profile?seconds=1': 403,
        'GET /debug/pprof/heap': 403,
        'GET /stats/prometheus': 403,
        'GET /healthz/ready': 200,
        'GET /app-health/a/livez': 200,
      });
      expect(calls).toEqual([]);
      // the same calls from loopback are served
      expect((await call(`http://127.0.0.1:${status.port}/stats/prometheus`)).status).toBe(200);
      expect((await call(`http://127.0.0.1:${status.port}/debug/config`)).status).toBe(404); // no provider given
      expect((await call(`http://127.0.0.1:${status.port}/debug/pprof/cmdline`)).status).toBe(200);
      // metrics are open to everyone without METRICS_LOCALHOST_ACCESS_ONLY
      const open = await startStatus({ noEnvoy: true });
      expect(await fromNamespace(open.port, [['GET', '/metrics']])).toEqual({ 'GET /metrics': 200 });
    } finally {
      await app.close();
    }
  });
});
