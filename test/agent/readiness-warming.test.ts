// Readiness follows Envoy's warming, through the real `pilot-agent proxy sidecar` (the hello pod's
// argv and env) with the Envoy stand-in as a real ADS client (ENVOY_STANDIN_ADS=1) behind the agent's
// xDS proxy and the development control plane (TLS, token, its CA). Envoy is LIVE only once its
// first CDS response's EDS clusters have their endpoints and its first LDS response's listeners have
// their routes; the agent's /healthz/ready must not say ready before. The stand-in withholds the
// endpoints or routes (ENVOY_STANDIN_WITHHOLD: they arrive and are ACKed, but are kept aside as if
// they had not) until the test releases them, or until the ConfigSource's initial_fetch_timeout.

import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startControlPlane, TypeUrl, type ControlPlane } from '../control-plane/index.js';
import { readRecord, type RecordEvent } from '../envoy-stand-in/recorder.js';
import { httpRequest } from '../support/envoy-stand-in-harness.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { outboundHttpListener } from '../support/sidecar-resources.js';
import { freePort, killRecordedStandIns, runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const TOKEN = 'readiness-warming-token';
const CDS = TypeUrl.Cluster;
const EDS = TypeUrl.ClusterLoadAssignment;
const LDS = TypeUrl.Listener;
const RDS = TypeUrl.RouteConfiguration;
const SERVICE = 'outbound|8080||hello.default.svc.cluster.local';

/** An EDS cluster as istiod builds it; `initialFetchTimeout` of its eds_config (istiod: 0s, wait for ever). */
function edsCluster(initialFetchTimeout: string) {
  return { json: { name: SERVICE, type: 'EDS', connect_timeout: '10s', eds_cluster_config: { service_name: SERVICE, eds_config: { ads: {}, initial_fetch_timeout: initialFetchTimeout, resource_api_version: 'V3' } } } };
}

/** An outbound HTTP listener taking route `8080` from RDS, as istiod builds it (initial_fetch_timeout 0s). */
const rdsListener = outboundHttpListener({ port: 8080, route: '8080' });

let cp: ControlPlane | undefined;
let agent: RunningProcess | undefined;
let work: ReturnType<typeof tempDir> | undefined;
let record = '';

afterEach(async () => {
  await stopAgent(agent);
  agent = undefined;
  killRecordedStandIns(record);
  await cp?.close();
  cp = undefined;
  work?.cleanup();
  work = undefined;
});

/** The control plane with `resources`, and the agent (with the stand-in withholding `withhold`) pointed at it. */
async function start(withhold: string, resources: (c: ControlPlane) => void): Promise<{ ready: () => Promise<{ status: number; body: string }>; admin: (path: string, method?: string) => Promise<string>; events: (name: string) => RecordEvent[] }> {
  cp = await startControlPlane({ token: TOKEN, ca: { keyAlgorithm: 'ecdsa' } });
  resources(cp);
  work = tempDir('pa-readiness-warming-');
  record = join(work.path, 'record.jsonl');
  writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
  const statusPort = await freePort();
  const adminPort = await freePort();
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      CA_ADDR: cp.address,
      ISTIOD_SAN: 'istiod.istio-system.svc',
      ENVOY_STANDIN_ADS: '1',
      ENVOY_STANDIN_WITHHOLD: withhold,
      ENVOY_STANDIN_RECORD: record,
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: adminPort, statusPort, discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
    },
  });
  const running = agent;
  return {
    ready: async () => {
      if (running.child.exitCode !== null) throw new Error(`agent exited:\n${running.output()}`);
      return httpRequest(`http://127.0.0.1:${statusPort}/healthz/ready`);
    },
    admin: async (path, method = 'GET') => (await httpRequest(`http://127.0.0.1:${adminPort}${path}`, { method })).body,
    events: (name) => readRecord(record).filter((e) => e.event === name),
  };
}

describe('readiness waits for Envoy to warm (real agent, stand-in over ADS, development control plane)', () => {
  it('stays 503 while the endpoints of an EDS cluster, then the routes of an RDS listener, are withheld; 200 once both are released', { timeout: 90_000 }, async () => {
    const { ready, admin, events } = await start(`EDS:${SERVICE},RDS:8080`, (c) => {
      c.setResources(CDS, [edsCluster('0s')]);
      c.setResources(LDS, [rdsListener]);
      // no ClusterLoadAssignment or RouteConfiguration set: the control plane answers them as istiod
      // does (empty), so the only thing holding Envoy back is the withholding
    });
    const c = cp!;
    // CDS accepted, the endpoints arrived (ACKed) and are withheld: the cluster warms, LDS is not asked for
    await c.waitForAck(CDS, c.version(CDS), { timeoutMs: 40_000 });
    await c.waitForAck(EDS, undefined, { timeoutMs: 20_000 });
    await vi.waitFor(() => expect(events('ads_withheld')).toEqual([expect.objectContaining({ type: 'EDS', resources: [SERVICE] })]), { timeout: 20_000 });
    for (let i = 0; i < 3; i++) {
      const res = await ready();
      expect(res.status).toBe(503);
      expect(res.body).toContain('config not fully received from XDS server: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 0 rejected');
    }
    expect(JSON.parse(await admin('/standin/state')).state).toBe('PRE_INITIALIZING');
    expect(c.connectedStreams()[0]!.subscriptions[LDS]).toBeUndefined();

    // endpoints released: the cluster manager is initialised, LDS comes, the listener warms on its withheld routes
    expect(JSON.parse(await admin(`/standin/xds/release?type=EDS&name=${encodeURIComponent(SERVICE)}`, 'POST'))).toEqual({ released: { EDS: [SERVICE] } });
    await c.waitForAck(LDS, c.version(LDS), { timeoutMs: 20_000 });
    await vi.waitFor(() => expect(events('ads_withheld').map((e) => e.type)).toEqual(['EDS', 'RDS']), { timeout: 20_000 });
    await vi.waitFor(
      async () => {
        const res = await ready();
        expect(res.status).toBe(503);
        // as with Envoy: workers_started is unset (hidden by usedonly) until the workers start; state 3 = INITIALIZING
        expect(res.body).toContain('listener_manager.workers_started is not yet updated: server.state: 3');
      },
      { timeout: 20_000, interval: 200 },
    );
    const xds = JSON.parse(await admin('/standin/xds')) as { warming: { listeners: unknown } };
    expect(xds.warming.listeners).toEqual({ active: 0, warming: [{ name: '0.0.0.0_8080', active: false, waitingFor: ['RDS 8080'] }] });
    expect(events('live')).toEqual([]);

    // routes released: workers start, Envoy is LIVE, the pod is ready
    expect(JSON.parse(await admin('/standin/xds/release', 'POST'))).toEqual({ released: { RDS: ['8080'] } });
    await vi.waitFor(
      async () => {
        const res = await ready();
        expect(res.status, res.body).toBe(200);
      },
      { timeout: 20_000, interval: 200 },
    );
    expect(events('live')).toHaveLength(1);
    expect(await admin('/listeners')).toContain('0.0.0.0_8080::0.0.0.0:8080');
    expect(c.nacks()).toEqual([]);
    expect(c.acks(RDS).length).toBeGreaterThanOrEqual(1);
  });

  it("an EDS cluster whose endpoints never arrive warms until its eds_config's initial_fetch_timeout, then the pod becomes ready", { timeout: 90_000 }, async () => {
    const { ready, admin, events } = await start(`EDS:${SERVICE}`, (c) => {
      c.setResources(CDS, [edsCluster('2s')]);
      c.setResources(LDS, [{ json: { name: 'virtualOutbound', address: { socket_address: { address: '0.0.0.0', port_value: 15001 } }, traffic_direction: 'OUTBOUND' } }]);
    });
    await vi.waitFor(
      async () => {
        const res = await ready();
        expect(res.status, res.body).toBe(200);
      },
      { timeout: 40_000, interval: 200 },
    );
    // LIVE came after the timeout, and the endpoints were never delivered
    const order = readRecord(record).map((e) => e.event).filter((e) => e === 'init_fetch_timeout' || e === 'live');
    expect(order).toEqual(['init_fetch_timeout', 'live']);
    expect(events('init_fetch_timeout')).toEqual([expect.objectContaining({ type: 'EDS', name: SERVICE, timeoutMs: 2000 })]);
    const xds = JSON.parse(await admin('/standin/xds')) as { withheld: unknown; warming: { clusters: unknown } };
    expect(xds.withheld).toEqual({ EDS: { names: [SERVICE], pending: [SERVICE] } });
    expect(xds.warming.clusters).toEqual({ active: 1, warming: [] });
    expect(await admin('/clusters')).toContain(`${SERVICE}::added_via_api::true`);
  });
});
