// End to end over ADS: the real `pilot-agent proxy sidecar` (the hello pod's argv and env) spawns the
// Envoy stand-in as a real ADS client (ENVOY_STANDIN_ADS=1, and SDS=1), which talks to the
// development control plane through the agent's xDS proxy. Resources are the realistic ones of
// Istio's sidecar config dump (buildResourceSet). Checked: readiness follows the first CDS/LDS
// exchange (503 with a reason before, 200 after), a push that does not parse is NACKed back to the
// control plane with the reason while readiness stays, and a killed stream is re-established
// through the agent, which by then presents the workload certificate it was issued.
//
// The control plane starts only after the agent: like a pod whose istiod is not reachable yet (a
// reachable istiod always answers the first CDS/LDS requests, even with nothing, and an empty
// CDS/LDS is a successful update for Envoy). Its CA root is made with openssl beforehand so the
// agent can trust it from the start.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildResourceSet, startControlPlane, TypeUrl, type ControlPlane } from '../control-plane/index.js';
import { readRecord, type RecordEvent } from '../envoy-stand-in/recorder.js';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { outboundHttpListener } from '../support/sidecar-resources.js';
import { freePort, isAlive, killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

const TOKEN = 'sidecar-ads-token';
const CDS = TypeUrl.Cluster;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;

/** Bytes that start like a Listener named `name`, then break (a length running past the end). */
function brokenListener(name: string): Uint8Array {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([0x0a, n.length]), n, Buffer.from([0x12, 0x7f, 0x01])]);
}

/** An outbound HTTP listener taking its routes from RDS (the dump's listeners have none). */
const rdsListener = outboundHttpListener({ port: 8080, route: '8080' });
const route8080 = { json: { name: '8080', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'agent-0000' } }] }] } };

describe.each([
  { api: 'DELTA_GRPC', env: {} as Record<string, string> }, // Istio's default (ISTIO_DELTA_XDS=true)
  { api: 'GRPC', env: { ISTIO_DELTA_XDS: 'false' } as Record<string, string> },
])('sidecar with a real ADS client through the agent ($api)', ({ api, env }) => {
  let work: ReturnType<typeof tempDir>;
  let cp: ControlPlane | undefined;
  let agent: RunningProcess;
  let record: string;
  let cpPort: number;
  let rootCertPem: string;
  let rootKeyPem: string;
  let statusPort: number;
  let adminPort: number;

  const events = (name: string): RecordEvent[] => readRecord(record).filter((e) => e.event === name);
  const ready = () => httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`);
  const standIn = async (p: string) => JSON.parse((await httpRequest(`http://127.0.0.1:${adminPort}${p}`)).body) as Record<string, unknown>;
  const envoyStats = async (filter: string) => {
    const body = (await httpRequest(`http://127.0.0.1:${adminPort}/stats?filter=${encodeURIComponent(filter)}`)).body;
    return Object.fromEntries(body.split('\n').filter(Boolean).map((l) => [l.slice(0, l.lastIndexOf(': ')), Number(l.slice(l.lastIndexOf(': ') + 2))]));
  };
  const alive = () => {
    if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
  };
  const bootstrap = () => JSON.parse(readFileSync(join(work.path, 'etc/istio/proxy/envoy-rev.json'), 'utf8')) as { node: { id: string }; static_resources: { clusters: unknown[] } };
  const staticClusters = () => bootstrap().static_resources.clusters.length;
  const nodeId = () => bootstrap().node.id;

  beforeAll(async () => {
    work = tempDir('pa-sidecar-ads-');
    record = join(work.path, 'record.jsonl');
    const key = join(work.path, 'ca-key.pem');
    const cert = join(work.path, 'ca-cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/O=cluster.local', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'pipe' });
    rootCertPem = readFileSync(cert, 'utf8');
    rootKeyPem = readFileSync(key, 'utf8');
    writeIstiodMounts(work.path, rootCertPem, TOKEN);
    cpPort = await freePort();
    statusPort = await freePort();
    adminPort = await freePort();
    const pod = injectedProxy('hello.yaml.injected');
    const address = `127.0.0.1:${cpPort}`;
    agent = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        ...env,
        CA_ADDR: address,
        ISTIOD_SAN: 'istiod.istio-system.svc',
        ENVOY_STANDIN_ADS: '1',
        ENVOY_STANDIN_SDS: '1',
        ENVOY_STANDIN_RECORD: record,
        PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort, discoveryAddress: address, terminationDrainDuration: '0s' }),
      },
    });
  });

  afterAll(async () => {
    if (agent && agent.child.exitCode === null) {
      agent.child.kill('SIGTERM');
      await Promise.race([agent.exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
    killStarted();
    for (const ev of readRecord(record)) if (ev.event === 'start' && typeof ev.pid === 'number' && isAlive(ev.pid)) process.kill(ev.pid, 'SIGKILL');
    await cp?.close();
    work.cleanup();
  });

  it('is not ready (503, with the reason) until CDS and LDS are pushed and ACKed through the agent, then 200', { timeout: 90_000 }, async () => {
    // no istiod yet: Envoy keeps trying through the agent and stays PRE_INITIALIZING
    await vi.waitFor(
      async () => {
        alive();
        expect(events('ads_stream').filter((e) => e.state === 'closed').length).toBeGreaterThanOrEqual(1);
        const res = await ready();
        expect(res.status).toBe(503);
        expect(res.body).toContain('config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected');
      },
      { timeout: 40_000, interval: 200 },
    );
    expect(events('start')[0]!.argv).toContain('-c');
    expect((await standIn('/standin/state')).state).toBe('PRE_INITIALIZING');
    expect(await standIn('/standin/xds')).toMatchObject({ enabled: true, apiType: api, connected: false, initialized: false });
    expect(events('ads')).toEqual([]);

    cp = await startControlPlane({ listen: `127.0.0.1:${cpPort}`, token: TOKEN, ca: { rootCertPem, rootKeyPem }, requestClientCertificates: true });
    const set = buildResourceSet();
    set.applyTo(cp);
    cp.setResources(LDS, [rdsListener]);
    cp.setResources(RDS, [route8080]);
    const cdsAck = await cp.waitForAck(CDS, cp.version(CDS), { timeoutMs: 40_000 });
    const ldsAck = await cp.waitForAck(LDS, cp.version(LDS), { timeoutMs: 20_000 });
    await cp.waitForAck(RDS, cp.version(RDS), { timeoutMs: 20_000 });
    expect(ldsAck.streamId).toBe(cdsAck.streamId);
    const stream = cp.stream(cdsAck.streamId)!;
    expect(stream.kind).toBe(api === 'GRPC' ? 'sotw' : 'delta');
    expect((stream.node as { id: string }).id).toBe(nodeId());
    expect(nodeId()).toBe('sidecar~10.244.1.17~hello-7d9f8c6b5-x2x4z.default~default.svc.cluster.local');
    expect(stream.metadata.authorization).toEqual([`Bearer ${TOKEN}`]); // the agent's upstream credentials
    expect(Object.keys(stream.subscriptions)).toEqual(expect.arrayContaining([CDS, TypeUrl.ClusterLoadAssignment, LDS, RDS]));
    expect(stream.subscriptions[TypeUrl.ClusterLoadAssignment]!.names).toEqual(['inbound-vip|8000|http|httpbin-0000.default.svc.cluster.local']);
    expect(stream.subscriptions[RDS]!.names).toEqual(['8080']);

    await vi.waitFor(
      async () => {
        alive();
        const res = await ready();
        expect(res.status, res.body).toBe(200);
      },
      { timeout: 20_000, interval: 200 },
    );
    const stats = await envoyStats('^(cluster_manager\\.(cds\\.update_|active_clusters)|listener_manager\\.(lds\\.update_|workers_started)|server\\.state)');
    expect(stats).toMatchObject({
      'cluster_manager.cds.update_success': 1,
      'cluster_manager.cds.update_rejected': 0,
      'listener_manager.lds.update_success': 1,
      'listener_manager.workers_started': 1,
      'server.state': 0,
      'cluster_manager.active_clusters': set.count(CDS) + staticClusters(), // + the bootstrap's static clusters
    });
    const xds = (await standIn('/standin/xds')) as { types: Record<string, { version: string; resources: string[] }> };
    expect(xds.types.CDS!.resources).toEqual(cp.resources(CDS).map((r) => r.name).sort());
    expect(xds.types.LDS!).toMatchObject({ version: cp.version(LDS), resources: cp.resources(LDS).map((r) => r.name).sort() });
    expect(xds.types.RDS!.resources).toEqual(['8080']);
    const acks = events('ads').filter((e) => e.ack === true);
    expect(acks.map((e) => e.type)).toEqual(expect.arrayContaining(['CDS', 'LDS', 'RDS']));
    expect(acks.find((e) => e.type === 'CDS')).toMatchObject({ version: cp.version(CDS), resources: expect.arrayContaining(['agent-0000']) });
    expect(events('live')).toHaveLength(1);
    const listeners = (await httpRequest(`http://127.0.0.1:${adminPort}/listeners`)).body;
    expect(listeners).toContain('0.0.0.0_8080::0.0.0.0:8080');
  });

  it('NACKs a Listener that does not parse; the NACK and its reason reach the control plane; readiness stays 200', { timeout: 60_000 }, async () => {
    const c = cp!;
    const good = c.version(LDS);
    const bad = c.setResources(LDS, [{ name: 'bad-listener', binary: brokenListener('bad-listener') }]);
    const nack = await c.waitForNack(LDS, { version: bad, timeoutMs: 20_000 });
    expect(nack.errorDetail.code).toBe(13); // INTERNAL, as Envoy
    expect(nack.errorDetail.message).toMatch(/^Error adding\/updating listener\(s\) bad-listener: Unable to unpack as envoy\.config\.listener\.v3\.Listener/);
    if (api === 'GRPC') expect(nack.clientVersion).toBe(good); // SotW NACKs carry the last accepted version
    const nacked = events('ads').filter((e) => e.ack === false);
    expect(nacked).toHaveLength(1);
    expect(nacked[0]).toMatchObject({ type: 'LDS', version: bad, reason: nack.errorDetail.message });
    const xds = (await standIn('/standin/xds')) as { types: Record<string, { version: string; lastNack?: { reason: string } }> };
    expect(xds.types.LDS).toMatchObject({ version: good, lastNack: { reason: nack.errorDetail.message } });
    expect(await envoyStats('^listener_manager\\.lds\\.update_(success|rejected)$')).toEqual({ 'listener_manager.lds.update_rejected': 1, 'listener_manager.lds.update_success': 1 });
    // Envoy keeps the last good config and stays LIVE; readiness is not taken back
    const res = await ready();
    expect(res.status, res.body).toBe(200);
    expect((await standIn('/standin/state')).state).toBe('LIVE');

    // a fixed push is accepted again
    const fixed = c.removeResources(LDS, ['bad-listener']);
    await c.waitForAck(LDS, fixed, { timeoutMs: 20_000 });
    expect((await ready()).status).toBe(200);
  });

  it('re-establishes the stream through the agent when the control plane kills it, and re-subscribes', { timeout: 60_000 }, async () => {
    const c = cp!;
    // the workload certificate has reached Envoy over SDS: the agent holds it
    await vi.waitFor(() => expect(events('sds').map((e) => e.name)).toContain('default'), { timeout: 30_000, interval: 200 });
    const before = c.connectedStreams();
    expect(before).toHaveLength(1);
    const opened = events('ads_stream').filter((e) => e.state === 'open').length;
    expect(c.disconnect(before[0]!.id)).toBe(true);
    const next = await c.waitForStream({ match: (s) => s.id !== before[0]!.id, timeoutMs: 20_000 });
    await c.waitForAck(CDS, c.version(CDS), { streamId: next.id, timeoutMs: 20_000 });
    await c.waitForAck(LDS, c.version(LDS), { streamId: next.id, timeoutMs: 20_000 });
    const again = c.stream(next.id)!;
    expect((again.node as { id: string }).id).toBe(nodeId());
    // by now the agent holds the workload certificate this control plane's CA issued, and presents
    // it on the new connection (istiod is the CA here); the control plane verified it against its root
    expect(again.peerIdentity).toBe('spiffe://cluster.local/ns/default/sa/default');
    await vi.waitFor(() => expect(Object.keys(c.stream(next.id)!.subscriptions)).toEqual(expect.arrayContaining([CDS, TypeUrl.ClusterLoadAssignment, LDS, RDS])), { timeout: 10_000 });
    const firstCds = again.requests.find((r) => r.typeUrl === CDS)!;
    expect(firstCds.responseNonce).toBe('');
    if (api === 'GRPC') expect(firstCds.versionInfo).toBe(c.version(CDS)); // the version it holds
    else expect(Object.keys(firstCds.initialResourceVersions ?? {}).sort()).toEqual(c.resources(CDS).map((r) => r.name).sort());
    expect(events('ads_stream').filter((e) => e.state === 'closed').at(-1)!.reason).toMatch(/UNAVAILABLE/);
    expect(events('ads_stream').filter((e) => e.state === 'open').length).toBe(opened + 1);
    // a push on the new stream still arrives
    const v = c.setResources(CDS, [{ json: { name: 'late-cluster', type: 'STATIC', connect_timeout: '1s' } }]);
    await c.waitForAck(CDS, v, { streamId: next.id, timeoutMs: 20_000 });
    expect((await ready()).status).toBe(200);
    // Envoy counts every failed stream that carried the CDS subscription (the ones before istiod was up too)
    expect(await envoyStats('^cluster_manager\\.cds\\.update_failure$')).toEqual({ 'cluster_manager.cds.update_failure': events('ads_stream').filter((e) => e.state === 'closed').length });
  });
});
