// The status port of the real `pilot-agent proxy` (Envoy stand-in, production limits) against
// hostile peers: a metrics source whose response never ends, many scrapes with sources that hang,
// refuse or break (no socket left behind), a flood of idle and slow connections (readiness still
// answered, file descriptors bounded), and peers that reset their connections.

import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import { STATUS_PORT_LIMITS } from '../../src/status/server.js';
import { useStatusAgent } from './agent-harness.js';
import { call, closeRawServers, endlessAnswer, freePort, openRawConnections, rawServer } from './support.js';

const agents = useStatusAgent('hello.yaml.injected', closeRawServers);
const { base, waitReady } = agents;
// Envoy's Prometheus endpoint: the stand-in serves it on its admin port
const start = (env: Record<string, string> = {}) => agents.start({ env: { ENVOY_PROMETHEUS_PORT: String(agents.adminPort()), ...env } });

/** Open file descriptors of a process (sockets included). */
const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

const failures = (metrics: string, type: string): number => Number(new RegExp(`^istio_agent_scrape_failures_total\\{type="${type}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);

describe('status port of pilot-agent proxy against hostile peers', () => {
  it('an app target whose chunked trailer never ends is a failed target, logged once, and the agent lives', async () => {
    const app = await rawServer(endlessAnswer('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n7\r\napp 1\n\r\n0\r\nX-Trailer: ', 'x'));
    const agent = start({ ISTIO_PROMETHEUS_ANNOTATIONS: JSON.stringify({ scrape: 'true', port: String(app), path: '/metrics' }) });
    await waitReady(agent);
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(`${base()}/stats/prometheus`).catch((err: Error) => {
        throw new Error(`scrape failed (${err.message}); agent exit ${agent.child.exitCode}, output:\n${agent.output().slice(-2000)}`);
      });
      expect(r.status, agent.output()).toBe(200);
      expect(r.body).toContain('envoy_server_live');
      counts.push(failures(r.body, 'application'));
    }
    // each scrape counts the previous ones' failures (agent metrics are rendered first)
    expect(counts).toEqual([0, 1, 2]);
    expect(agent.output().match(/response trailers larger than 65536 bytes/g)).toHaveLength(1);
    expect(agent.child.exitCode).toBeNull();
    expect((await call(`${base()}/healthz/ready`)).status).toBe(200);
  });

  it('scrapes with sources that hang, refuse, fail or never end, and clients that leave, leave no descriptor behind', async () => {
    const hang = await rawServer((s) => s.resume());
    const refused = await freePort();
    const failing = await rawServer((s) => s.once('data', () => s.end('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n')));
    const trailer = await rawServer(endlessAnswer('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: ', 'x'));
    const targets = [hang, refused, failing, trailer].map((port) => ({ port: String(port), path: '/metrics' }));
    const agent = start({ ISTIO_PROMETHEUS_ANNOTATIONS: JSON.stringify({ scrape: 'true', targets }) });
    await waitReady(agent);
    const pid = agent.child.pid!;
    const url = `${base()}/stats/prometheus`;
    const round = async (): Promise<void> => {
      for (const timeout of ['0.3', '0.5', '0.3']) expect((await call(url, { headers: { 'x-prometheus-scrape-timeout-seconds': timeout } })).status).toBe(200);
      // a client that leaves as soon as the answer starts
      await new Promise<void>((resolve) => {
        const req = http.get(url, { agent: false, headers: { 'x-prometheus-scrape-timeout-seconds': '0.3' } }, (res) => res.once('data', () => (req.destroy(), resolve())));
        req.on('error', () => resolve());
      });
    };
    await round(); // warm-up: lazily loaded code, pooled buffers
    // the agent's connections to the sources are gone when the test servers see them close
    await vi.waitFor(() => expect(openRawConnections()).toBe(0), { timeout: 10_000 });
    const baseline = openFds(pid);
    for (let i = 0; i < 5; i++) await round();
    await vi.waitFor(() => expect(openRawConnections()).toBe(0), { timeout: 10_000 });
    await vi.waitFor(() => expect(openFds(pid)).toBeLessThanOrEqual(baseline), { timeout: 10_000 });
    expect(agent.child.exitCode).toBeNull();
  });

  it('under a flood of idle and slow connections, readiness is answered and descriptors stay bounded', async () => {
    const agent = start();
    await waitReady(agent);
    const pid = agent.child.pid!;
    const baseline = openFds(pid);
    const port = Number(new URL(base()).port);
    const flood: net.Socket[] = [];
    const open = (send: string): Promise<void> =>
      new Promise((resolve) => {
        const s = net.connect({ port, host: '127.0.0.1' }, () => (send && s.write(send), resolve()));
        s.on('error', () => resolve());
        flood.push(s);
      });
    try {
      // more than the limit: connections that send nothing, and slowloris ones that never finish their headers
      for (let i = 0; i < STATUS_PORT_LIMITS.maxConnections + 100; i++) await open(i % 2 ? '' : 'GET /healthz/ready HTTP/1.1\r\nHost: x\r\nX-Slow: ');
      for (let i = 0; i < 10; i++) {
        expect((await call(`${base()}/healthz/ready`)).status).toBe(200);
        // the agent holds at most the limit of status connections (plus its own: Envoy, sockets, files)
        expect(openFds(pid)).toBeLessThanOrEqual(baseline + STATUS_PORT_LIMITS.maxConnections + 2);
      }
    } finally {
      for (const s of flood) s.destroy();
    }
    await vi.waitFor(() => expect(openFds(pid)).toBeLessThanOrEqual(baseline), { timeout: 10_000 });
    expect(agent.child.exitCode).toBeNull();
  });
});
