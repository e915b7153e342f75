// The status port of the real `pilot-agent proxy` (Envoy stand-in, production limits) against
// hostile peers: a metrics source whose response never ends, many scrapes with sources that hang,
// refuse or break (no socket left behind), a flood of idle and slow connections (readiness still
// answered, file descriptors bounded), and peers that reset their connections.

import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { useStatusAgent } from './agent-harness.js';
import { call } from './support.js';

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
const agents = useStatusAgent('hello.yaml.injected', async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
const { base, waitReady } = agents;
// Envoy's Prometheus endpoint: the stand-in serves it on its admin port
const start = (env: Record<string, string> = {}) => agents.start({ env: { ENVOY_PROMETHEUS_PORT: String(agents.adminPort()), ...env } });

/** A raw TCP server: `onConnection` gets each accepted socket (tracked, errors ignored). */
async function rawServer(onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** Answers the request with `head`, then writes `filler` for as long as the agent reads. */
const endlessAnswer =
  (head: string, filler: string) =>
  (s: net.Socket): void => {
    const chunk = Buffer.from(filler.repeat(65_536 / filler.length));
    s.once('data', () => {
      s.write(head);
      const pump = (): void => {
        while (!s.destroyed) if (!s.write(chunk)) return void s.once('drain', pump);
      };
      pump();
    });
  };

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
});
