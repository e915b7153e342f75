// /app-health and /app-lifecycle: the probes of the hello-probes and tcp-probes fixtures (their
// ISTIO_KUBE_APP_PROBERS, ports remapped to real test servers), https with a self-signed
// certificate, gRPC health, redirects, headers, timeouts, and start-up validation.

import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { loadAgentConfig } from '../../src/config/load.js';
import { parseAppProbers } from '../../src/status/app-probers.js';
import { statusServerOptionsFrom } from '../../src/status/from-config.js';
import { StatusServer } from '../../src/status/server.js';
import { configureLogging } from '../../src/util/logger.js';
import {
  call,
  closeStarted,
  freePort,
  grpcHealthServer,
  httpServer,
  type GrpcHealthServer,
  portsIn,
  proxyEnv,
  remapPorts,
  selfSignedCert,
  startStatus,
  tcpServer,
  type TestServer,
} from './support.js';

const logs: string[] = [];
configureLogging({ write: (l) => void logs.push(l) });

const servers: { close(): Promise<void> }[] = [];
afterEach(() => closeStarted());
afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function keep<T extends { close(): Promise<void> }>(s: T): T {
  servers.push(s);
  return s;
}

/** Closes `server` after the file, its connections first (a TLS server keeps them past close()). */
function keepClosing(server: net.Server): ReadonlySet<net.Socket> {
  const open = new Set<net.Socket>();
  server.on('connection', (c: net.Socket) => void (open.add(c), c.on('close', () => open.delete(c))));
  servers.push({
    close: () => {
      for (const c of open) c.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  });
  return open;
}

describe('hello-probes: httpGet and tcpSocket probes against real servers', () => {
  const raw = proxyEnv('hello-probes.yaml.injected').ISTIO_KUBE_APP_PROBERS!;
  const apps = new Map<number, TestServer>();
  let probers: string;

  beforeAll(async () => {
    expect(portsIn(raw).sort((a, b) => a - b)).toEqual([80, 90, 91, 93, 3333]);
    const map = new Map<number, number>();
    for (const p of portsIn(raw)) {
      const server = keep(
        p === 93
          ? await tcpServer()
          : await httpServer((req, res) => {
              if (p === 3333) {
                res.writeHead(503, { 'content-type': 'text/plain' });
                res.end('not yet');
              } else {
                res.writeHead(200);
                res.end(`ok from ${p} ${req.url}`);
              }
            }),
      );
      apps.set(p, server);
      map.set(p, server.port);
    }
    probers = remapPorts(raw, map);
  });

  it('answers each probe path with what the app answered', async () => {
    const status = await startStatus({ kubeAppProbers: probers, podIp: '127.0.0.1' });
    const base = `http://127.0.0.1:${status.port}`;
    expect(status.appProbePaths.sort()).toEqual(['/app-health/hello/livez', '/app-health/hello/readyz', '/app-health/world/livez', '/app-lifecycle/hello/poststartz', '/app-lifecycle/hello/prestopz']);

    const live = await call(`${base}/app-health/hello/livez`, { headers: { 'user-agent': 'kube-probe/1.31', 'x-custom': 'yes', host: `10.244.1.17:${status.port}` } });
    expect(live.status).toBe(200);
    expect(live.body).toBe('ok from 80 /');
    const seen = apps.get(80)!.seen.at(-1)!;
    expect(seen.headers['user-agent']).toBe('kube-probe/1.31');
    expect(seen.headers['x-custom']).toBe('yes');
    expect(seen.headers.host).toBe(`10.244.1.17:${apps.get(80)!.port}`); // status port swapped for the app port
    expect(seen.remoteAddress).toBe('127.0.0.6'); // Istio's upstream local address

    const notReady = await call(`${base}/app-health/hello/readyz`);
    expect(notReady.status).toBe(503);
    expect(notReady.body).toBe('not yet');
    expect((await call(`${base}/app-health/world/livez`)).body).toBe('ok from 90 /');
    expect((await call(`${base}/app-lifecycle/hello/prestopz`)).status).toBe(200);
    expect((await call(`${base}/app-lifecycle/hello/poststartz`)).status).toBe(200);
    expect(apps.get(93)!.seen.length).toBeGreaterThan(0);

    const unknown = await call(`${base}/app-health/nobody/livez`);
    expect(unknown.status).toBe(400);
    expect(unknown.body).toBe('app prober config does not exists for /app-health/nobody/livez');
  });

  it('answers 500 when the app is down', async () => {
    const down = await freePort();
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: down } }, '/app-health/a/readyz': { tcpSocket: { port: down } } }) });
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/livez`)).status).toBe(500);
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/readyz`)).status).toBe(500);
  });
});

describe('tcp-probes', () => {
  it('succeeds while the port accepts connections and fails once it does not', async () => {
    const raw = proxyEnv('tcp-probes.yaml.injected').ISTIO_KUBE_APP_PROBERS!;
    const live = await tcpServer();
    const ready = await tcpServer();
    const probers = remapPorts(raw, new Map([[80, live.port], [3333, ready.port]]));
    const status = await startStatus({ kubeAppProbers: probers, podIp: '127.0.0.1' });
    const base = `http://127.0.0.1:${status.port}`;
    expect((await call(`${base}/app-health/hello/livez`)).status).toBe(200);
    expect((await call(`${base}/app-health/hello/readyz`)).status).toBe(200);
    expect(live.seen.at(-1)!.remoteAddress).toBe('127.0.0.6');
    await ready.close();
    expect((await call(`${base}/app-health/hello/readyz`)).status).toBe(500);
    await live.close();
  });
});

describe('httpGet details', () => {
  it("sends the probe's configured httpHeaders over the caller's (Host included), the caller's others as they are", async () => {
    const app = keep(await httpServer((_req, res) => res.end('ok')));
    const httpHeaders = [
      { name: 'Host', value: 'probe.example.com' },
      { name: 'X-Custom', value: 'configured' },
      { name: 'x-multi', value: 'one' },
      { name: 'X-Multi', value: 'two' },
    ];
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port, path: '/h', httpHeaders } } }) });
    const url = `http://127.0.0.1:${status.port}/app-health/a/livez`;
    // another caller: its values for the configured names are replaced, its other headers forwarded
    await call(url, { headers: { host: `10.244.1.17:${status.port}`, 'x-custom': 'caller', 'x-multi': 'caller', 'x-caller': 'kept', 'user-agent': 'curl/8' } });
    const seen = app.seen.at(-1)!.headers;
    expect([seen.host, seen['x-custom'], seen['x-multi'], seen['x-caller'], seen['user-agent']]).toEqual(['probe.example.com', 'configured', 'one, two', 'kept', 'curl/8']);
    // the kubelet, which sends the configured headers itself (Host as the request's host): each once, not twice
    await call(url, { headers: { host: 'probe.example.com', 'x-custom': 'configured', 'user-agent': 'kube-probe/1.31' } });
    const kubelet = app.seen.at(-1)!.headers;
    expect([kubelet.host, kubelet['x-custom'], kubelet['x-multi'], kubelet['user-agent']]).toEqual(['probe.example.com', 'configured', 'one, two', 'kube-probe/1.31']);
  });

  it('probes https without verifying the certificate, as kubelet', async () => {
    const app = keep(await httpServer((req, res) => res.end(`tls ${req.url}`), { tls: selfSignedCert() }));
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/app/readyz': { httpGet: { port: app.port, path: 'healthz', scheme: 'HTTPS' } } }) });
    const r = await call(`http://127.0.0.1:${status.port}/app-health/app/readyz`);
    expect(r.status).toBe(200);
    expect(r.body).toBe('tls /healthz');
  });

  it('speaks HTTP/2 to an HTTPS app that picks it in ALPN (ISTIO_ENABLE_HTTP2_PROBING, on by default), HTTP/1.1 only when it is off; no SNI for the pod IP', async () => {
    const seen: { path: string; authority: string; custom: string; sni: string | undefined; version: string }[] = [];
    const cert = selfSignedCert();
    let sni: string | undefined;
    const app = http2.createSecureServer({ ...cert, allowHTTP1: false, SNICallback: (name, cb) => void ((sni = name), cb(null)) }, (req, res) => {
      seen.push({ path: req.url, authority: req.authority, custom: String(req.headers['x-custom']), sni, version: req.httpVersion });
      sni = undefined;
      res.end('h2 ok');
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const sessions = new Set<http2.ServerHttp2Session>();
    app.on('session', (s) => void (sessions.add(s), s.on('close', () => sessions.delete(s))));
    keepClosing(app);
    const port = (app.address() as net.AddressInfo).port;
    const probers = JSON.stringify({ '/app-health/a/readyz': { httpGet: { port, path: '/healthz?deep=1', scheme: 'HTTPS', httpHeaders: [{ name: 'Host', value: 'hello.local' }, { name: 'X-Custom', value: 'yes' }] } } });
    const probeWith = async (env: Record<string, string>): Promise<{ status: number; body: string }> => {
      const config = loadAgentConfig({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '127.0.0.1', ISTIO_KUBE_APP_PROBERS: probers, ...env }, cwd: tmpdir(), hostAddresses: ['127.0.0.1'] });
      const { port: _configured, ...opts } = statusServerOptionsFrom(config, { onQuit: () => undefined, onDrain: () => undefined });
      const status = await startStatus(opts);
      const r = await call(`http://127.0.0.1:${status.port}/app-health/a/readyz`);
      await status.close();
      return r;
    };
    const on = await probeWith({});
    expect([on.status, on.body]).toEqual([200, 'h2 ok']);
    expect(seen).toEqual([{ path: '/healthz?deep=1', authority: 'hello.local', custom: 'yes', sni: undefined, version: '2.0' }]);
    // the connection is closed after the answer, as a probe without keep-alive
    await vi.waitFor(() => expect(sessions.size).toBe(0), { timeout: 3000 });
    const off = await probeWith({ ISTIO_ENABLE_HTTP2_PROBING: 'false' });
    expect(off.status).not.toBe(200);
    expect(seen).toHaveLength(1);
  });

  it('sends no SNI to an HTTPS app at an IP over HTTP/1.1 either, whatever the Host header says (Go sends the URL host only, never an IP)', async () => {
    const names: (string | undefined)[] = [];
    const cert = selfSignedCert();
    const app = https.createServer({ ...cert, SNICallback: (name, cb) => void (names.push(name), cb(null)) }, (_req, res) => res.end('ok'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const open = keepClosing(app);
    const port = (app.address() as net.AddressInfo).port;
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port, scheme: 'HTTPS', httpHeaders: [{ name: 'Host', value: 'hello.local' }] } } }) });
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/livez`)).status).toBe(200);
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/livez`, { headers: { host: 'other.local' } })).status).toBe(200);
    // SNICallback runs only for a ClientHello that carries a name
    expect(names).toEqual([]);
    // the agent closed each probe's connection
    await vi.waitFor(() => expect(open.size).toBe(0), { timeout: 3000 });
  });

  it('opens a connection per probe, as kubelet; ENABLE_PROBE_KEEPALIVE_CONNECTIONS=true keeps one open (http and https)', async () => {
    const plain = keep(await httpServer((_req, res) => res.end('ok')));
    const tls = keep(await httpServer((_req, res) => res.end('ok'), { tls: selfSignedCert() }));
    const probers = JSON.stringify({
      '/app-health/plain/livez': { httpGet: { port: plain.port, path: '/p' } },
      '/app-health/tls/livez': { httpGet: { port: tls.port, path: '/t', scheme: 'HTTPS' } },
    });
    const connectionsAfterThreeProbes = async (env: Record<string, string>): Promise<number[]> => {
      const config = loadAgentConfig({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', INSTANCE_IP: '127.0.0.1', ISTIO_KUBE_APP_PROBERS: probers, ...env }, cwd: tmpdir(), hostAddresses: ['127.0.0.1'] });
      const { port: _configured, ...opts } = statusServerOptionsFrom(config, { onQuit: () => undefined, onDrain: () => undefined });
      const status = await startStatus(opts);
      const counts: number[] = [];
      for (const [app, path] of [[plain, 'plain'], [tls, 'tls']] as const) {
        const before = app.seen.length;
        for (let i = 0; i < 3; i++) expect((await call(`http://127.0.0.1:${status.port}/app-health/${path}/livez`)).status).toBe(200);
        counts.push(new Set(app.seen.slice(before).map((r) => r.remotePort)).size);
      }
      await status.close();
      return counts;
    };
    expect(await connectionsAfterThreeProbes({})).toEqual([3, 3]);
    expect(await connectionsAfterThreeProbes({ ENABLE_PROBE_KEEPALIVE_CONNECTIONS: 'true' })).toEqual([1, 1]);
  });

  it('follows redirects on the same host, answers 200 for a redirect elsewhere, fails after 10', async () => {
    const app = keep(
      await httpServer((req, res) => {
        const n = Number(/\/hop\/(\d+)/.exec(req.url ?? '')?.[1] ?? -1);
        if (req.url === '/start') res.writeHead(302, { location: '/final' }).end();
        else if (req.url === '/final') res.writeHead(418).end('teapot');
        else if (req.url === '/away') res.writeHead(301, { location: 'http://example.invalid/x' }).end();
        else if (n >= 0) res.writeHead(302, { location: `/hop/${n + 1}` }).end();
        else res.writeHead(404).end();
      }),
    );
    const probe = (path: string) => ({ httpGet: { port: app.port, path } });
    const status = await startStatus({
      kubeAppProbers: JSON.stringify({ '/app-health/a/livez': probe('/start'), '/app-health/a/readyz': probe('/away'), '/app-health/a/startupz': probe('/hop/0') }),
    });
    const base = `http://127.0.0.1:${status.port}`;
    const same = await call(`${base}/app-health/a/livez`);
    expect([same.status, same.body]).toEqual([418, 'teapot']);
    expect(await call(`${base}/app-health/a/readyz`).then((r) => r.status)).toBe(200);
    expect(app.seen.some((s) => s.url === '/x')).toBe(false);
    expect(await call(`${base}/app-health/a/startupz`).then((r) => r.status)).toBe(500);
    expect(app.seen.filter((s) => s.url.startsWith('/hop/')).length).toBe(10);
  });

  it('honours timeoutSeconds and returns at most 10 KiB of the body', async () => {
    const app = keep(
      await httpServer((req, res) => {
        if (req.url === '/slow') setTimeout(() => res.end('late'), 3000).unref();
        else res.end('x'.repeat(50_000));
      }),
    );
    const status = await startStatus({
      kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port: app.port, path: '/slow' }, timeoutSeconds: 1 }, '/app-health/a/readyz': { httpGet: { port: app.port, path: '/big' } } }),
    });
    const t0 = Date.now();
    expect((await call(`http://127.0.0.1:${status.port}/app-health/a/livez`)).status).toBe(500);
    expect(Date.now() - t0).toBeLessThan(2500);
    const big = await call(`http://127.0.0.1:${status.port}/app-health/a/readyz`);
    expect(big.status).toBe(200);
    expect(big.body.length).toBe(10 * 1024);
  });

  it('sets no deadline without timeoutSeconds (lifecycle hooks have none), as Istio: the hook runs as long as the app takes, until the caller hangs up', async () => {
    const hung = new Set<string>();
    const app = keep(
      await httpServer((req, res) => {
        if (req.url === '/drain') setTimeout(() => res.end('drained'), 1500).unref();
        else {
          hung.add(req.url ?? '');
          req.socket.once('close', () => hung.delete(req.url ?? ''));
        }
      }),
    );
    const status = await startStatus({
      kubeAppProbers: JSON.stringify({ '/app-lifecycle/a/prestopz': { httpGet: { port: app.port, path: '/drain' } }, '/app-lifecycle/a/poststartz': { httpGet: { port: app.port, path: '/hang' } } }),
    });
    const t0 = Date.now();
    const r = await call(`http://127.0.0.1:${status.port}/app-lifecycle/a/prestopz`);
    expect([r.status, r.body]).toEqual([200, 'drained']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    // a caller that gives up ends the agent's request to the app
    await expect(call(`http://127.0.0.1:${status.port}/app-lifecycle/a/poststartz`, { timeoutMs: 500 })).rejects.toThrow(/timeout/);
    expect(hung.has('/hang') || app.seen.some((s) => s.url === '/hang')).toBe(true);
    await vi.waitFor(() => expect(hung.size).toBe(0), { timeout: 3000 });
  });

  it('fails a probe the app answers with 101 Switching Protocols within timeoutSeconds, every time, leaving nothing behind', async () => {
    // the app hands the connection over and then says nothing: node's client emits no response
    // and no error for a 101, so only the deadline can end the probe
    const held = new Set<net.Socket>();
    const app = net.createServer((sock) => {
      held.add(sock);
      sock.on('close', () => held.delete(sock));
      sock.once('data', () => sock.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    servers.push({ close: () => new Promise<void>((r) => app.close(() => r())) });
    const port = (app.address() as net.AddressInfo).port;
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/livez': { httpGet: { port, path: '/ws' }, timeoutSeconds: 1 } }) });
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      const r = await call(`http://127.0.0.1:${status.port}/app-health/a/livez`);
      expect(r.status).toBe(500);
      expect(Date.now() - t0).toBeLessThan(2500);
    }
    expect(logs.some((l) => l.includes('the app answered 101'))).toBe(true);
    // the agent closed each handed-over connection
    await vi.waitFor(() => expect(held.size).toBe(0), { timeout: 3000 });
  });

  it("passes an answer whose headers exceed node's 16 KiB (Go's client takes up to 10 MiB)", async () => {
    const app = keep(
      await httpServer((_req, res) => {
        res.writeHead(200, { 'content-security-policy': 'x'.repeat(40_000) });
        res.end('ok');
      }),
    );
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/a/readyz': { httpGet: { port: app.port, path: '/' } } }) });
    const r = await call(`http://127.0.0.1:${status.port}/app-health/a/readyz`);
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok');
  });
});

describe('grpc probes', () => {
  it('is 200 for SERVING and 500 for NOT_SERVING, unknown services, servers without the health service, and nothing listening', async () => {
    const app = keep(await grpcHealthServer());
    app.statuses.set('sick', 'NOT_SERVING');
    const bare = keep(await grpcHealthServer({ implementHealth: false }));
    const down = await freePort();
    const status = await startStatus({
      kubeAppProbers: JSON.stringify({
        '/app-health/g/livez': { grpc: { port: app.port, service: null } },
        '/app-health/g/readyz': { grpc: { port: app.port, service: 'sick' } },
        '/app-health/g/startupz': { grpc: { port: app.port, service: 'nope' } },
        '/app-health/h/livez': { grpc: { port: bare.port } },
        '/app-health/h/readyz': { grpc: { port: down }, timeoutSeconds: 1 },
      }),
    });
    const base = `http://127.0.0.1:${status.port}`;
    expect((await call(`${base}/app-health/g/livez`, { headers: { 'user-agent': 'kube-probe/1.31' } })).status).toBe(200);
    expect(app.userAgents.at(-1)).toMatch(/^kube-probe\/1\.31/);
    expect((await call(`${base}/app-health/g/readyz`)).status).toBe(500);
    expect((await call(`${base}/app-health/g/startupz`)).status).toBe(500);
    logs.length = 0;
    expect((await call(`${base}/app-health/h/livez`)).status).toBe(500);
    expect(logs.join('')).toContain('server does not implement the grpc health protocol');
    const t0 = Date.now();
    expect((await call(`${base}/app-health/h/readyz`)).status).toBe(500);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("dials from Istio's upstream local address to the pod IP", async () => {
    const app = keep(await grpcHealthServer());
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/g/livez': { grpc: { port: app.port } } }), podIp: '127.0.0.1' });
    expect((await call(`http://127.0.0.1:${status.port}/app-health/g/livez`)).status).toBe(200);
    expect(app.peers.at(-1)).toBe('127.0.0.6');
  });

  it('dials again until the timeout when the connection does not come up (grpc-go WithBlock, as kubelet and Istio)', async () => {
    // the first connection is dropped before HTTP/2 starts; the health server then takes the port
    let app: GrpcHealthServer | undefined;
    let accepted = 0;
    let port = 0;
    const gate = net.createServer((sock) => {
      accepted++;
      sock.destroy();
      gate.close(() => void grpcHealthServer({ port }).then((s) => (app = keep(s))));
    });
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
    port = (gate.address() as net.AddressInfo).port;
    const status = await startStatus({ kubeAppProbers: JSON.stringify({ '/app-health/g/livez': { grpc: { port }, timeoutSeconds: 10 } }) });
    expect((await call(`http://127.0.0.1:${status.port}/app-health/g/livez`)).status).toBe(200);
    expect(accepted).toBe(1);
    expect(app!.peers).toHaveLength(1);
  });
});

describe('ISTIO_KUBE_APP_PROBERS validation at start-up', () => {
  const errorOf = (raw: string): ConfigError => {
    try {
      new StatusServer({ port: 15020, proxyType: 'sidecar', adminPort: 15000, kubeAppProbers: raw });
    } catch (err) {
      if (err instanceof ConfigError) return err;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };

  it('names the variable, every bad entry and why', () => {
    const err = errorOf(
      JSON.stringify({
        '/app-health/ok/livez': { httpGet: { port: 8080 } },
        '/bad/path': { httpGet: { port: 8080 } },
        '/app-health/x/readyz': { httpGet: { port: 'http' } },
        '/app-health/y/readyz': { httpGet: { port: 80 }, tcpSocket: { port: 80 } },
        '/app-health/z/readyz': { exec: { command: ['true'] } },
        '/app-health/w/readyz': { grpc: { port: 70000 } },
        '/app-health/v/readyz': { tcpSocket: { port: 15020 } },
      }),
    );
    expect(err.issues.map((i) => [i.source, i.field])).toEqual([
      ['env ISTIO_KUBE_APP_PROBERS', '/bad/path'],
      ['env ISTIO_KUBE_APP_PROBERS', '/app-health/x/readyz'],
      ['env ISTIO_KUBE_APP_PROBERS', '/app-health/y/readyz'],
      ['env ISTIO_KUBE_APP_PROBERS', '/app-health/z/readyz'],
      ['env ISTIO_KUBE_APP_PROBERS', '/app-health/w/readyz'],
      ['env ISTIO_KUBE_APP_PROBERS', '/app-health/v/readyz'],
    ]);
    expect(err.message).toContain('env ISTIO_KUBE_APP_PROBERS: /bad/path: invalid path, must be in form of regex pattern');
    expect(err.message).toContain('/app-health/x/readyz: httpGet.port: the port must be int type');
    expect(err.message).toContain('invalid prober type, must be one of type httpGet, tcpSocket or gRPC');
    expect(err.message).toContain("the agent's status port");
  });

  it('refuses httpHeaders a request could not carry, naming the header', () => {
    const err = errorOf(JSON.stringify({ '/app-health/a/livez': { httpGet: { port: 80, httpHeaders: [{ name: 'X Bad', value: 'v' }, { name: 'X-Ok', value: 'a\r\nInjected: 1' }] } } }));
    expect(err.message).toContain('httpGet.httpHeaders[0]: invalid header name "X Bad"');
    expect(err.message).toContain('httpGet.httpHeaders[1]: invalid value for header "X-Ok" (control characters)');
  });

  it('reports JSON that does not parse', () => {
    const err = errorOf('{"/app-health/a/livez": {');
    expect(err.message).toMatch(/env ISTIO_KUBE_APP_PROBERS: failed to decode app prober: not valid JSON/);
  });

  it('accepts the fixtures as the injector wrote them', () => {
    expect(parseAppProbers(proxyEnv('hello-probes.yaml.injected').ISTIO_KUBE_APP_PROBERS!).size).toBe(5);
    const tcp = parseAppProbers(proxyEnv('tcp-probes.yaml.injected').ISTIO_KUBE_APP_PROBERS!);
    expect(tcp.get('/app-health/hello/livez')).toEqual({ kind: 'tcpSocket', port: 80, timeoutMs: undefined });
  });
});
