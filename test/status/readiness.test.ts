// /healthz/ready against the Envoy stand-in, its stats driven through not-ready -> ready ->
// draining; DISABLE_ENVOY; the gRPC bootstrap and DNS checks; the startup metric; `pilot-agent wait`.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { registry } from '../../src/metrics/registry.js';
import { configureLogging } from '../../src/util/logger.js';
import { startEnvoyStandIn, type StandInProcess } from '../support/envoy-stand-in-harness.js';
import { repoRoot } from '../support/paths.js';
import { call, closeStarted, startStatus } from './support.js';

const logs: string[] = [];
configureLogging({ write: (l) => void logs.push(l) });

let envoy: StandInProcess;
let adminPort: number;
let dir: string;

beforeAll(async () => {
  envoy = await startEnvoyStandIn({ env: { ENVOY_STANDIN_START_STATE: 'pre_init' } });
  adminPort = Number(new URL(envoy.adminUrl).port);
  dir = mkdtempSync(join(tmpdir(), 'pa-status-ready-'));
});
afterAll(async () => {
  await envoy?.stop();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => closeStarted());

const ready = async (port: number) => call(`http://127.0.0.1:${port}/healthz/ready`);

describe('/healthz/ready with the Envoy stand-in', () => {
  it('follows Envoy from not-ready to ready to draining, logging transitions only', async () => {
    const status = await startStatus({ adminPort, startedAt: performance.now() - 1500 });
    logs.length = 0;

    // PRE_INITIALIZING: no CDS/LDS update yet (usedonly hides the declared counters)
    let r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toBe('config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected\n');
    await ready(status.port);
    expect(logs.filter((l) => l.includes('NOT ready')).length).toBe(1); // not logged again

    // CDS accepted, LDS rejected
    await envoy.setStats({ 'cluster_manager.cds.update_success': { value: 1, type: 'counter' }, 'listener_manager.lds.update_rejected': { value: 1, type: 'counter' } });
    r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toContain('config received from XDS server, but was rejected: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected');

    // LDS accepted too, but the server is still initializing and workers have not started
    await envoy.setStats({ 'listener_manager.lds.update_success': { value: 1, type: 'counter' } });
    r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/^listener_manager\.workers_started is not yet updated/);
    await envoy.setStats({ 'server.state': 3, 'listener_manager.workers_started': 0 });
    expect((await ready(status.port)).body).toBe('server is not live, current state is: INITIALIZING\n');
    await envoy.setStats({ 'server.state': 0 });
    expect((await ready(status.port)).body).toBe('workers have not yet started\n');

    // LIVE, workers started
    await envoy.setStats({ 'listener_manager.workers_started': 1 });
    r = await ready(status.port);
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
    expect(logs.filter((l) => l.includes('Envoy proxy is ready')).length).toBe(1);
    await ready(status.port);
    expect(logs.filter((l) => l.includes('Envoy proxy is ready')).length).toBe(1);
    // the first success is cached for the config check, as Istio: a later rejection does not matter
    await envoy.setStats({ 'listener_manager.lds.update_rejected': { value: 5, type: 'counter' } });
    expect((await ready(status.port)).status).toBe(200);

    // startup_duration_seconds recorded once, from the given start
    const startup = (await registry.getSingleMetric('istio_agent_startup_duration_seconds')!.get()).values[0]!.value;
    expect(startup).toBeGreaterThanOrEqual(1.5);
    expect(startup).toBeLessThan(60);

    // DRAINING
    await envoy.setStats({ 'server.state': 1 });
    r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toBe('server is not live, current state is: DRAINING\n');
    expect(logs.filter((l) => l.includes('NOT ready')).length).toBe(2);
    expect(logs.some((l) => l.includes('Readiness succeeded in'))).toBe(true);

    // back to LIVE (health check ok again)
    await envoy.setStats({ 'server.state': 0 });
    expect((await ready(status.port)).status).toBe(200);

    // queried the way Istio does
    const calls = (await envoy.get('/standin/calls')).body;
    expect(calls).toContain('"filter":"^(cluster_manager\\\\.cds|listener_manager\\\\.lds)\\\\.(update_success|update_rejected)$"');
    expect(calls).toContain('"filter":"^(server\\\\.state|listener_manager\\\\.workers_started)"');
  });

  it('is not ready while Envoy admin is unreachable, and after close() says the server is terminated', async () => {
    const status = await startStatus({ adminPort: 1 });
    const r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/ECONNREFUSED/);
    const result = status.checkReadiness();
    await status.close();
    await result;
    await status.close(); // idempotent
    await expect(ready(status.port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('recovers once Envoy admin answers again after it answered 101 Switching Protocols and went silent', { timeout: 30_000 }, async () => {
    // a front for a LIVE stand-in's admin API that, while `handOver` is set, answers every request
    // with a 101 and then holds the connection: node's client reports neither a response nor an
    // error for that, so only the admin call's own deadline can end the check
    const live = await startEnvoyStandIn({});
    const held = new Set<net.Socket>();
    let handOver = true;
    const front = net.createServer((sock) => {
      if (handOver) {
        held.add(sock);
        sock.on('close', () => held.delete(sock));
        sock.once('data', () => sock.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n'));
        return;
      }
      const admin = net.connect(Number(new URL(live.adminUrl).port), '127.0.0.1');
      sock.pipe(admin).pipe(sock);
      sock.on('error', () => admin.destroy());
      admin.on('error', () => sock.destroy());
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    try {
      const status = await startStatus({ adminPort: (front.address() as net.AddressInfo).port });
      const during = await ready(status.port);
      expect(during.status).toBe(503);
      await vi.waitFor(() => expect(held.size).toBe(0), { timeout: 5000 }); // each handed-over connection was closed
      handOver = false;
      await vi.waitFor(async () => expect((await ready(status.port)).status).toBe(200), { timeout: 10_000, interval: 200 });
    } finally {
      front.close();
      for (const s of held) s.destroy();
      await live.stop();
    }
  });

  it('once Envoy was LIVE, an admin API that stalls or goes away does not fail readiness (Istio caches it); a DRAINING it reports still does', { timeout: 30_000 }, async () => {
    // a front for a LIVE stand-in's admin API: `mode` pipes to it, holds each connection without
    // answering (a main thread busy with a large push), or refuses connections
    const live = await startEnvoyStandIn({});
    let mode: 'pipe' | 'stall' = 'pipe';
    const sockets = new Set<net.Socket>();
    const front = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => undefined);
      if (mode === 'stall') return;
      const admin = net.connect(Number(new URL(live.adminUrl).port), '127.0.0.1');
      sock.pipe(admin).pipe(sock);
      admin.on('error', () => sock.destroy());
    });
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const frontPort = (front.address() as net.AddressInfo).port;
    try {
      const status = await startStatus({ adminPort: frontPort });
      expect((await ready(status.port)).status).toBe(200);

      mode = 'stall';
      for (let i = 0; i < 3; i++) {
        const t0 = Date.now();
        expect((await ready(status.port)).status).toBe(200);
        // well inside the kubelet's timeout for the sidecar's probe (3 s), where the admin call's own is 3 s
        expect(Date.now() - t0).toBeLessThan(2000);
      }
      // the stalled calls are shared, not one more per probe
      expect(sockets.size).toBeLessThanOrEqual(1);

      const closed = new Promise<void>((r) => front.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
      // refused now: still the last state Envoy reported
      expect((await ready(status.port)).status).toBe(200);

      // answering again, and DRAINING: that is Envoy's own state, so readiness fails
      mode = 'pipe';
      await new Promise<void>((r) => front.listen(frontPort, '127.0.0.1', r));
      await live.setStats({ 'server.state': 1 });
      await vi.waitFor(async () => expect((await ready(status.port)).body).toBe('server is not live, current state is: DRAINING\n'), { timeout: 10_000, interval: 200 });
    } finally {
      front.close();
      for (const s of sockets) s.destroy();
      await live.stop();
    }
  });

  it('with DISABLE_ENVOY skips the Envoy checks; the gRPC bootstrap and DNS checks still apply', async () => {
    const bootstrap = join(dir, 'grpc-bootstrap.json');
    const certDir = join(dir, 'certs');
    let dnsReady = false;
    const status = await startStatus({ adminPort: 1, noEnvoy: true, grpcBootstrapPath: bootstrap, dnsReady: () => dnsReady });
    let r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toMatch(new RegExp(`^failed loading ${bootstrap}: ENOENT`));

    writeFileSync(
      bootstrap,
      JSON.stringify({
        xds_servers: [{ server_uri: 'unix:///etc/istio/proxy/XDS' }],
        certificate_providers: {
          default: {
            plugin_name: 'file_watcher',
            config: { certificate_file: join(certDir, 'cert-chain.pem'), private_key_file: join(certDir, 'key.pem'), ca_certificate_file: join(certDir, 'root-cert.pem'), refresh_interval: '900s' },
          },
        },
      }),
    );
    r = await ready(status.port);
    expect(r.body).toBe(`${join(certDir, 'cert-chain.pem')} does not exist\n`);
    rmSync(certDir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(certDir);
    for (const f of ['cert-chain.pem', 'key.pem', 'root-cert.pem']) writeFileSync(join(certDir, f), 'x');

    r = await ready(status.port);
    expect(r.status).toBe(503);
    expect(r.body).toBe('istio DNS capture is turned ON and DNS lookup table is not ready yet\n');
    dnsReady = true;
    expect((await ready(status.port)).status).toBe(200);
  });

  it('`pilot-agent wait` returns once the readiness answers 200', async () => {
    const fresh = await startEnvoyStandIn({ env: { ENVOY_STANDIN_START_STATE: 'pre_init' } });
    try {
      const status = await startStatus({ adminPort: Number(new URL(fresh.adminUrl).port) });
      const bin = join(repoRoot, 'bin', 'pilot-agent.js');
      const child = spawn(process.execPath, [bin, 'wait', `--url=http://127.0.0.1:${status.port}/healthz/ready`, '--timeoutSeconds=20', '--periodMillis=100', '--log_output_level=default:debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      // it asked twice and was told "not ready": it keeps waiting
      await vi.waitFor(() => expect(out.match(/Not ready yet: HTTP status code 503/g)?.length ?? 0).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 20 });
      expect(child.exitCode).toBeNull();
      await fresh.post('/standin/live');
      expect(await exited, out).toBe(0);
      expect(out).toContain('Envoy is ready!');
    } finally {
      await fresh.stop();
    }
  });
});
