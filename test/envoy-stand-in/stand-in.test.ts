import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  ensureStandInBuilt,
  freePort,
  istioEnvoyArgs,
  minimalBootstrap,
  startEnvoyStandIn,
  type StandInProcess,
  type StartOptions,
} from '../support/envoy-stand-in-harness.js';
import { istioTestdata } from '../support/paths.js';
import { parseEnvoyArgs } from './options.js';
import { StatsStore, TagExtractor, statsMatcher } from './stats.js';
import { findXdsTargets } from './xds-seam.js';
import { toCanonicalJson, BOOTSTRAP_TYPE } from '../support/envoy-protos.js';

const started: StandInProcess[] = [];

async function start(opts: StartOptions = {}): Promise<StandInProcess> {
  const p = await startEnvoyStandIn(opts);
  started.push(p);
  return p;
}

/** Starts a run expected to end on its own (bad flags, bad config, crash). */
async function run(opts: StartOptions): Promise<StandInProcess> {
  return start({ waitForAdmin: false, ...opts });
}

beforeAll(() => ensureStandInBuilt(), 60_000);

afterEach(async () => {
  // only the PIDs this file started; SIGKILL if a test left one running
  await Promise.all(started.splice(0).map((p) => p.stop()));
});

afterAll(async () => {
  expect(started).toEqual([]);
  // every child this file spawned has been reaped (handles close a tick after 'exit')
  await vi.waitFor(() => expect(process.getActiveResourcesInfo().filter((r) => r === 'ProcessWrap')).toEqual([]));
});

describe('startup and readiness', () => {
  it('starts with the argv pilot-agent passes, serves /ready on a free loopback port and records argv', async () => {
    const port = await freePort();
    const p = await start({
      bootstrap: minimalBootstrap({ adminPort: port }),
      args: istioEnvoyArgs('{config}', ['--file-flush-min-size-kb', '64', '-l', 'warning', '--component-log-level', 'misc:error', '--skip-deprecated-logs', '--concurrency', '2']),
    });
    expect(p.adminUrl).toBe(`http://127.0.0.1:${port}`);
    const ready = await p.get('/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toBe('LIVE\n');
    expect(ready.headers['content-type']).toBe('text/plain; charset=UTF-8');
    expect(ready.headers.server).toBe('envoy');
    const startEvent = p.record().find((e) => e.event === 'start');
    expect(startEvent?.argv).toEqual(istioEnvoyArgs(p.configPath, ['--file-flush-min-size-kb', '64', '-l', 'warning', '--component-log-level', 'misc:error', '--skip-deprecated-logs', '--concurrency', '2', '--admin-address-path', path.join(p.dir, 'admin-address')]));
    expect(startEvent?.pid).toBe(p.pid);
    // -l warning hides Envoy's info lines, as real Envoy does
    expect(p.stderr).not.toContain('[info]');
  });

  it('reports command line options, state and node in /server_info', async () => {
    const p = await start({ args: istioEnvoyArgs('{config}', ['--file-flush-min-size-kb', '128', '--skip-deprecated-logs', '--concurrency', '2', '--enable-core-dump']) });
    const info = JSON.parse((await p.get('/server_info')).body) as Record<string, Record<string, unknown>> & { state: string; version: string };
    expect(info.state).toBe('LIVE');
    expect(info.version).toMatch(/^[0-9a-f]{40}\/1\.36\.\d+\/Clean\/RELEASE\/BoringSSL$/);
    expect(info.hot_restart_version).toBe('disabled');
    expect(info.command_line_options).toMatchObject({
      config_path: p.configPath,
      concurrency: 2,
      drain_time: '45s',
      drain_strategy: 'Immediate',
      local_address_ip_version: 'v4',
      file_flush_interval: '1s',
      file_flush_min_size: 128,
      disable_hot_restart: true,
      allow_unknown_static_fields: true,
      skip_deprecated_logs: true,
      enable_core_dump: true,
      log_level: 'info',
    });
    expect(info.node).toMatchObject({ id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', user_agent_name: 'envoy' });
  });

  it('can be held in PRE_INITIALIZING and driven to LIVE and DRAINING through stats', async () => {
    const p = await start({ env: { ENVOY_STANDIN_START_STATE: 'pre_init' } });
    expect(await p.get('/ready')).toMatchObject({ status: 503, body: 'PRE_INITIALIZING\n' });
    const readinessQuery = 'usedonly&filter=' + encodeURIComponent('^(cluster_manager\\.cds|listener_manager\\.lds)\\.(update_success|update_rejected)$');
    expect([...(await p.statsText(readinessQuery)).keys()]).toEqual([]);
    expect((await p.statsText('filter=^server\\.state$')).get('server.state')).toBe(2);

    await p.setStats({
      'cluster_manager.cds.update_success': { value: 1, type: 'counter' },
      'listener_manager.lds.update_success': { value: 1, type: 'counter' },
      'listener_manager.workers_started': 1,
      'server.state': 0,
    });
    expect(await p.get('/ready')).toMatchObject({ status: 200, body: 'LIVE\n' });
    expect(Object.fromEntries(await p.statsText(readinessQuery))).toEqual({
      'cluster_manager.cds.update_success': 1,
      'listener_manager.lds.update_success': 1,
    });

    await p.setStats({ 'server.state': 1 });
    expect(await p.get('/ready')).toMatchObject({ status: 503, body: 'DRAINING\n' });
    expect(JSON.parse((await p.get('/server_info')).body)).toMatchObject({ state: 'DRAINING' });
  });

  it('goes LIVE by itself after a short init with the stats Istio checks', async () => {
    const p = await start();
    const stats = await p.statsText('usedonly');
    expect(stats.get('server.state')).toBe(0);
    expect(stats.get('listener_manager.workers_started')).toBe(1);
    expect(stats.get('cluster_manager.cds.update_success')).toBe(1);
    expect(stats.get('listener_manager.lds.update_success')).toBe(1);
    expect(stats.has('cluster_manager.cds.update_rejected')).toBe(false); // never written: hidden by usedonly
    expect((await p.statsText()).get('cluster_manager.cds.update_rejected')).toBe(0);
    expect(p.record().map((e) => e.event)).toContain('live');
  });
});

describe('/stats', () => {
  it('filters by regex and usedonly, and renders json and prometheus', async () => {
    const p = await start();
    const all = await p.statsText('filter=downstream_cx_active$');
    expect([...all.keys()].sort()).toEqual([
      'listener.0.0.0.0_15001.downstream_cx_active',
      'listener.0.0.0.0_15006.downstream_cx_active',
      'listener.0.0.0.0_15090.downstream_cx_active',
      'listener.admin.downstream_cx_active',
    ]);
    // listeners that never had a connection are unused; the admin listener has ours
    expect([...(await p.statsText('usedonly&filter=downstream_cx_active$')).keys()]).toEqual(['listener.admin.downstream_cx_active']);

    await p.setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 3, 'listener.0.0.0.0_15001.downstream_cx_active': 2 });
    const used = await p.statsText('usedonly&filter=^listener\\.0\\.0\\.0\\.0_\\d+\\.downstream_cx_active$');
    expect(Object.fromEntries(used)).toEqual({ 'listener.0.0.0.0_15001.downstream_cx_active': 2, 'listener.0.0.0.0_15006.downstream_cx_active': 3 });
    expect((await p.statsText('filter=^server\\.total_connections$')).get('server.total_connections')).toBe(5);

    const text = (await p.get('/stats')).body;
    const names = text.split('\n').filter(Boolean).map((l) => l.split(': ')[0]!);
    expect(names).toEqual([...names].sort());
    for (const line of text.split('\n').filter(Boolean)) expect(line).toMatch(/^[\w.\-[\]]+: -?\d+$/);

    const json = JSON.parse((await p.get('/stats?format=json&filter=^server\\.state$')).body) as unknown;
    expect(json).toEqual({ stats: [{ name: 'server.state', value: 0 }] });

    const prom = (await p.get('/stats/prometheus')).body;
    expect(prom).toContain('# TYPE envoy_server_state gauge\nenvoy_server_state{} 0\n');
    expect(prom).toContain('envoy_listener_downstream_cx_active{envoy_listener_address="0.0.0.0_15006"} 3\n');
    expect(prom).toContain('# TYPE envoy_cluster_manager_cds_update_success counter\n');
    expect((await p.get('/stats/prometheus?usedonly')).body).not.toContain('envoy_cluster_manager_cds_update_rejected');

    expect((await p.get('/stats?filter=(')).status).toBe(400);
    expect((await p.get('/stats?type=Bogus')).status).toBe(400);
    expect((await p.get('/nope')).status).toBe(404);
  });

  it('applies the bootstrap stats_matcher like Envoy (Istio default golden)', async () => {
    const golden = JSON.parse(fs.readFileSync(path.join(istioTestdata, 'bootstrap', 'default_golden.json'), 'utf8')) as {
      admin: { address: { socket_address: { port_value: number } } };
    };
    golden.admin.address.socket_address.port_value = 0;
    const p = await start({ bootstrap: golden });
    const stats = await p.statsText();
    expect(stats.get('server.state')).toBe(0);
    expect(stats.has('cluster_manager.cds.update_success')).toBe(true);
    // Istio only includes downstream_cx_active when EXIT_ON_ZERO_ACTIVE_CONNECTIONS adds the suffix
    expect([...stats.keys()].filter((n) => n.endsWith('downstream_cx_active'))).toEqual([]);
    expect(await p.setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 1 })).toEqual({ set: [], rejected: ['listener.0.0.0.0_15006.downstream_cx_active'] });
    // cluster stats use alt_stat_name (`xds-grpc;`), which Istio's own tag regexes turn into labels
    expect(stats.has('cluster.xds-grpc;.upstream_cx_total')).toBe(true);
    expect((await p.get('/stats/prometheus')).body).toContain('envoy_cluster_upstream_cx_total{cluster_name="xds-grpc"} 0\n');
  });
});

describe('drain and shutdown', () => {
  it('records /drain_listeners, rejects non-POST with 405, and keeps /ready LIVE as Envoy does', async () => {
    const p = await start({ args: istioEnvoyArgs('{config}').map((a) => (a === '45' ? '1' : a)) });
    expect(await p.get('/drain_listeners?inboundonly&graceful')).toMatchObject({ status: 405, body: 'Method GET not allowed, POST required.\n' });
    expect(await p.post('/drain_listeners?inboundonly&graceful')).toMatchObject({ status: 200, body: 'OK\n' });
    expect(await p.get('/ready')).toMatchObject({ status: 200, body: 'LIVE\n' });

    const calls = JSON.parse((await p.get('/standin/calls')).body) as { method: string; path: string; query: Record<string, string> }[];
    expect(calls.filter((c) => c.path === '/drain_listeners')).toEqual([
      expect.objectContaining({ method: 'GET', query: { inboundonly: '', graceful: '' } }),
      expect.objectContaining({ method: 'POST', query: { inboundonly: '', graceful: '' } }),
    ]);
    expect(p.record().filter((e) => e.event === 'admin' && e.path === '/drain_listeners' && e.method === 'POST')).toHaveLength(1);

    // after --drain-time-s the inbound listener (and only it) is stopped
    await vi.waitFor(async () => expect((await p.statsText('filter=listener_stopped')).get('listener_manager.listener_stopped')).toBe(1), { timeout: 5000 });
    expect(p.record().find((e) => e.event === 'listeners_stopped')?.listeners).toEqual(['virtualInbound']);
    expect((await p.get('/listeners')).body).not.toContain('virtualInbound');
  });

  it('skip_exit keeps listeners, a non-graceful drain stops them at once, /healthcheck/fail flips /ready', async () => {
    const p = await start();
    expect((await p.post('/drain_listeners?skip_exit')).status).toBe(400);
    expect((await p.post('/drain_listeners?graceful&skip_exit')).status).toBe(200);
    expect((await p.post('/drain_listeners')).body).toBe('OK\n');
    expect((await p.statsText('filter=listener_stopped')).get('listener_manager.listener_stopped')).toBe(3);
    expect((await p.post('/healthcheck/fail')).status).toBe(200);
    expect(await p.get('/ready')).toMatchObject({ status: 503, body: 'DRAINING\n' });
    expect((await p.statsText('filter=^server\\.state$')).get('server.state')).toBe(1);
    await p.post('/healthcheck/ok');
    expect((await p.get('/ready')).status).toBe(200);
  });

  it('optionally marks the server DRAINING on a graceful drain (ENVOY_STANDIN_DRAIN_SETS_DRAINING)', async () => {
    const p = await start({ env: { ENVOY_STANDIN_DRAIN_SETS_DRAINING: '1' } });
    await p.post('/drain_listeners?inboundonly&graceful');
    expect((await p.statsText('filter=^server\\.state$')).get('server.state')).toBe(1);
    expect((await p.get('/ready')).status).toBe(503);
  });

  it('supports the EXIT_ON_ZERO_ACTIVE_CONNECTIONS poll: active connections down to 0', async () => {
    const p = await start();
    const query = 'usedonly&filter=downstream_cx_active$';
    await p.setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 4 });
    expect((await p.statsText(query)).get('listener.0.0.0.0_15006.downstream_cx_active')).toBe(4);
    await p.setStats({ 'listener.0.0.0.0_15006.downstream_cx_active': 0 });
    expect((await p.statsText(query)).get('listener.0.0.0.0_15006.downstream_cx_active')).toBe(0);
  });

  it('POST /quitquitquit answers OK and exits 0', async () => {
    const p = await start();
    expect(await p.get('/quitquitquit')).toMatchObject({ status: 405 });
    expect(await p.post('/quitquitquit')).toMatchObject({ status: 200, body: 'OK\n' });
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.record().at(-1)).toMatchObject({ event: 'exit', code: 0 });
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('%s exits 0 promptly without draining', async (sig) => {
    const p = await start();
    p.kill(sig);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    const events = p.record();
    expect(events.find((e) => e.event === 'signal')).toMatchObject({ signal: sig });
    expect(events.at(-1)).toMatchObject({ event: 'exit', code: 0 });
    expect(events.some((e) => e.event === 'drain')).toBe(false);
    expect(p.stderr).toContain(sig === 'SIGTERM' ? 'caught ENVOY_SIGTERM' : 'caught SIGINT');
  });
});

describe('failures', () => {
  it('exits 1 naming the field when the bootstrap has an unknown field', async () => {
    const b = minimalBootstrap() as { static_resources: { clusters: Record<string, unknown>[] } };
    b.static_resources.clusters[0]!.connect_timout = '1s';
    const p = await run({ bootstrap: b });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr).toContain('static_resources.clusters[0].connect_timout');
    expect(p.stderr).toContain('has unknown fields');
    expect(p.record().map((e) => e.event)).toEqual(['start', 'config_error', 'exit']);
  });

  it('rejects bad values and unresolvable @types', async () => {
    const b = minimalBootstrap() as { static_resources: { clusters: Record<string, unknown>[] } };
    b.static_resources.clusters[0]!.typed_extension_protocol_options = { x: { '@type': 'type.googleapis.com/istio.Nope' } };
    const p = await run({ bootstrap: b });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr).toContain('Unable to parse JSON as proto');
    expect(p.stderr).toContain('typed_extension_protocol_options["x"]["@type"]');
  });

  it('behaves like Envoy under --allow-unknown-static-fields when ENVOY_STANDIN_STRICT=0', async () => {
    const b = minimalBootstrap() as Record<string, unknown>;
    b.not_a_field = true;
    const p = await start({ bootstrap: b, env: { ENVOY_STANDIN_STRICT: '0' } });
    expect((await p.statsText('filter=static_unknown_fields')).get('server.static_unknown_fields')).toBe(1);
    expect(p.stderr).toContain('Unknown field: type envoy.config.bootstrap.v3.Bootstrap');
  });

  it.each([
    [['--bogus-flag'], 'PARSE ERROR: Argument: --bogus-flag\n             Couldn\'t find match for argument'],
    [['--base-id', 'abc'], "Couldn't read argument value from string 'abc'"],
    [['--drain-time-s', '5'], 'PARSE ERROR: Argument: --drain-time-s\n             Argument already set!'],
    [['--mode', 'serve', '--mode'], 'Missing a value for this argument!'],
    [['-l', 'loud'], "error: invalid log level specified 'loud'"],
    [['--component-log-level', 'nosuch:info'], "error: invalid component specified 'nosuch'"],
    [['--concurrency=2'], "Couldn't find match for argument"],
  ])('exits 1 on bad flags %j', async (extra, message) => {
    const p = await run({ args: istioEnvoyArgs('{config}', extra) });
    expect(await p.exited).toEqual({ code: 1, signal: null });
    expect(p.stderr).toContain(message);
  });

  it.each([
    [['--local-address-ip-version', 'v5'], "error: unknown IP address version 'v5'\n"],
    [['--mode', 'check'], "error: unknown mode 'check'\n"],
    [['--drain-strategy', 'slow'], "error: unknown drain-strategy 'serve'\n"], // sic: Envoy prints the --mode value
  ])('exits 1 on bad values %j', async (args, message) => {
    const p = await run({ args: ['-c', '{config}', ...args] });
    expect(await p.exited).toEqual({ code: 1, signal: null });
    expect(p.stderr).toBe(message);
  });

  it('prints --version and exits 0', async () => {
    const p = await run({ args: ['--version'] });
    expect((await p.exited).code).toBe(0);
    expect(p.stdout).toMatch(/version: [0-9a-f]{40}\/1\.36\.\d+\/Clean\/RELEASE\/BoringSSL/);
  });

  it('exits 1 when the admin port is taken', async () => {
    const first = await start();
    const port = Number(first.adminUrl.split(':').at(-1));
    const p = await run({ bootstrap: minimalBootstrap({ adminPort: port }) });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr).toContain(`cannot bind '127.0.0.1:${port}': Address already in use`);
  });

  it('simulates a crash with an exit code or a signal', async () => {
    const p = await run({ env: { ENVOY_STANDIN_EXIT_AFTER_MS: '300', ENVOY_STANDIN_EXIT_CODE: '3' } });
    expect(await p.exited).toEqual({ code: 3, signal: null });
    expect(p.record().at(-1)).toMatchObject({ event: 'exit', code: 3 });
    const q = await run({ env: { ENVOY_STANDIN_EXIT_AFTER_MS: '300', ENVOY_STANDIN_EXIT_CODE: 'SIGABRT' } });
    expect(await q.exited).toEqual({ code: null, signal: 'SIGABRT' });
    expect(q.record().at(-1)).toMatchObject({ event: 'exit', signal: 'SIGABRT' });
  });
});

describe('configuration sources', () => {
  it('merges --config-yaml over -c with proto merge semantics (repeated fields appended)', async () => {
    const overlay = JSON.stringify({
      node: { id: 'override~1.1.1.1~x.y~y.svc.cluster.local' },
      static_resources: { clusters: [{ name: 'extra', type: 'STATIC', connect_timeout: '2s' }] },
    });
    const p = await start({ args: istioEnvoyArgs('{config}', ['--config-yaml', overlay]) });
    const dump = JSON.parse((await p.get('/config_dump')).body) as { configs: { '@type': string; bootstrap?: Record<string, unknown> }[] };
    const bootstrap = dump.configs.find((c) => c['@type'].endsWith('BootstrapConfigDump'))!.bootstrap as {
      node: { id: string; cluster: string };
      static_resources: { clusters: { name: string }[] };
    };
    expect(bootstrap.node).toMatchObject({ id: 'override~1.1.1.1~x.y~y.svc.cluster.local', cluster: 'pod.ns' });
    expect(bootstrap.static_resources.clusters.map((c) => c.name)).toEqual(['xds-grpc', 'extra']);
    const info = JSON.parse((await p.get('/server_info')).body) as { command_line_options: { config_yaml: string } };
    expect(info.command_line_options.config_yaml).toBe(overlay);
  });

  it('rejects an unknown field in --config-yaml too', async () => {
    const p = await run({ args: istioEnvoyArgs('{config}', ['--config-yaml', 'node: {idd: x}']) });
    expect((await p.exited).code).toBe(1);
    expect(p.stderr).toContain('node.idd');
  });

  it('reads YAML bootstrap files and serves admin on a unix socket', async () => {
    const sock = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'standin-sock-')), 'admin.sock');
    try {
      const b = minimalBootstrap() as Record<string, unknown>;
      b.admin = { address: { pipe: { path: sock } } };
      const yaml = `# a YAML bootstrap\n${JSON.stringify(b, null, 2)}\n`; // JSON is YAML; the comment is not JSON
      const p = await start({ bootstrap: yaml, bootstrapName: 'envoy.yaml', waitForLive: false });
      expect(fs.readFileSync(path.join(p.dir, 'admin-address'), 'utf8')).toBe(sock);
      await vi.waitFor(async () => {
        const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = http.request({ socketPath: sock, path: '/ready', agent: false }, (r) => {
            let body = '';
            r.on('data', (c: Buffer) => (body += String(c)));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          });
          req.on('error', reject);
          req.end();
        });
        expect(res).toEqual({ status: 200, body: 'LIVE\n' });
      });
    } finally {
      fs.rmSync(path.dirname(sock), { recursive: true, force: true });
    }
  });

  it('validates Istio goldens in --mode validate', async () => {
    for (const golden of ['default_golden.json', 'stats_eviction_interval_golden.json', 'tracing_datadog_golden.json']) {
      const p = await run({ bootstrap: fs.readFileSync(path.join(istioTestdata, 'bootstrap', golden), 'utf8'), args: ['--mode', 'validate', '-c', '{config}'] });
      expect((await p.exited).code, `${golden}: ${p.stderr}`).toBe(0);
      expect(p.stderr).toContain('OK');
    }
  });

  it('changes log levels through POST /logging', async () => {
    const p = await start();
    expect((await p.get('/logging?level=debug')).status).toBe(405);
    const res = await p.post('/logging?upstream=debug');
    expect(res.status).toBe(200);
    expect(res.body).toContain('  upstream: debug\n');
    expect(res.body).toContain('  admin: info\n');
    expect((await p.post('/logging?nosuch=debug')).status).toBe(404);
    expect((await p.post('/logging?level=warning')).body).toContain('  admin: warning\n');
  });
});

describe('building blocks (no process)', () => {
  const golden = (name: string) =>
    toCanonicalJson(BOOTSTRAP_TYPE, fs.readFileSync(path.join(istioTestdata, 'bootstrap', name), 'utf8')) as Record<string, unknown>;

  it('finds the ADS and SDS unix sockets named by an Istio bootstrap', () => {
    expect(findXdsTargets(golden('default_golden.json'))).toEqual({
      ads: { cluster: 'xds-grpc', pipePath: '/tmp/XDS', apiType: 'DELTA_GRPC' },
      sds: { cluster: 'sds-grpc', pipePath: './var/run/secrets/workload-spiffe-uds/test.sock' },
    });
    expect(findXdsTargets({})).toEqual({});
  });

  it('extracts Prometheus tags with Istio\'s stats_tags and applies its inclusion list', () => {
    const b = golden('default_golden.json') as { stats_config: Record<string, unknown> };
    const tags = new TagExtractor(b.stats_config, []);
    expect(tags.extract('cluster.outbound|80||reviews.default.svc.cluster.local;.upstream_rq_200')).toEqual({
      name: 'cluster.upstream_rq',
      tags: [
        { name: 'cluster_name', value: 'outbound|80||reviews.default.svc.cluster.local' },
        { name: 'response_code', value: '200' },
      ],
    });
    expect(tags.extract('listener.0.0.0.0_15006.downstream_cx_active')).toEqual({
      name: 'listener.downstream_cx_active',
      tags: [{ name: 'listener_address', value: '0.0.0.0_15006' }],
    });
    const accept = statsMatcher(b.stats_config.stats_matcher as Record<string, unknown>);
    expect(['server.state', 'cluster_manager.cds.update_success', 'listener_manager.workers_started', 'cluster.xds-grpc;.upstream_cx_active'].every(accept)).toBe(true);
    expect(accept('listener.0.0.0.0_15006.downstream_cx_active')).toBe(false);
    expect(accept('vhost.foo.route.bar.upstream_rq_total')).toBe(true);

    const store = new StatsStore(accept, tags);
    expect(store.set('listener.0.0.0.0_15006.downstream_cx_active', 1)).toBe(false);
    expect(store.set('server.state', 0)).toBe(true);
    expect(store.renderText({ usedOnly: true, type: 'All' })).toBe('server.state: 0\n');
  });

  it('uses Envoy\'s default tag extractors when the bootstrap has no stats_tags', () => {
    const tags = new TagExtractor(undefined, ['mesh:m1']);
    expect(tags.extract('http.admin.downstream_rq_2xx')).toEqual({
      name: 'http.downstream_rq_xx',
      tags: [
        { name: 'envoy.http_conn_manager_prefix', value: 'admin' },
        { name: 'envoy.response_code_class', value: '2' },
        { name: 'mesh', value: 'm1' },
      ],
    });
  });

  it('parses Envoy flags with TCLAP rules', () => {
    const ctx = { programName: 'envoy', version: 'v' };
    const ok = parseEnvoyArgs(['-c', 'x.json', '--concurrency', '0', '-l', 'warn', '--component-log-level', 'misc:error,upstream:debug'], ctx);
    expect(ok.kind).toBe('run');
    if (ok.kind === 'run') {
      expect(ok.options.concurrency).toBe(1); // max(1, n)
      expect(ok.options.logLevel).toBe('warning');
      expect([...ok.options.componentLogLevels]).toEqual([['misc', 'error'], ['upstream', 'debug']]);
      expect(ok.options.drainStrategy).toBe('gradual');
      expect(ok.options.fileFlushIntervalMsec).toBe(10000);
    }
    expect(parseEnvoyArgs(['positional'], ctx)).toMatchObject({ kind: 'exit', code: 1 });
    expect(parseEnvoyArgs(['--help'], ctx)).toMatchObject({ kind: 'exit', code: 0 });
    expect(parseEnvoyArgs(['--component-log-level', 'misc'], ctx)).toMatchObject({ kind: 'exit', code: 1, stderr: "error: component log level not correctly specified 'misc'\n" });
  });
});
