// The xDS debug port (PROXY_XDS_DEBUG_VIA_AGENT, Istio's localhost:15004) through the real agent:
// with the Envoy stand-in connected over ADS (Delta, Istio's default, and SotW), HTTP GET
// /debug/syncz and /debug/config_dump?resourceName=<proxy> are asked of the development control
// plane over the agent's own upstream and answered as Istio's agent answered them (Go's JSON of the
// DiscoveryResponse, each resource's Any as base64, since those types cannot be rendered as proto3
// JSON there; proto3 JSON when there are no resources); the same over gRPC (h2c on the same port);
// Istio's 400/404/503/504 answers; a late answer is dropped, and no debug answer reaches Envoy.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { decodeResource, openSotw, type SotwClient } from '../control-plane/index.js';
import { freePort, runAgent, stopAgent, tempDir } from '../support/processes.js';
import { useSdsPods, type SdsPod } from '../support/sds-pod.js';

const TOKEN = 'xds-debug-token';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';

const cluster = { name: 'hello', type: 'STATIC', connect_timeout: '1s', load_assignment: { cluster_name: 'hello', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '10.0.0.9', port_value: 8080 } } } }] }] } };
const listener = {
  name: 'hello_8080',
  address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
  filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'hello', cluster: 'hello' } }] }],
};

/** Go's encoding/json of a DiscoveryResponse, as Istio's agent writes it for these resources. */
interface GoDiscoveryResponse {
  version_info?: string;
  resources?: { type_url?: string; value?: string }[];
  type_url?: string;
  nonce?: string;
  control_plane?: { identifier?: string };
}

interface ClientConfigJson {
  node: { id: string; metadata?: Record<string, unknown> };
  generic_xds_configs?: { type_url: string; config_status: string; last_updated?: string }[];
}

const pods = useSdsPods(TOKEN);
const others: SotwClient[] = [];
afterEach(() => {
  for (const c of others.splice(0)) c.close();
});

async function get(port: number, path: string): Promise<{ status: number; type: string | null; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

const anyOf = (a: { type_url?: string; value?: string }) => ({ typeUrl: a.type_url ?? '', value: Buffer.from(a.value ?? '', 'base64') });

/** A proxy of another pod, connected straight to the control plane (its syncz entry is someone else's). */
function otherProxy(id: string, namespace: string): SotwClient {
  const cp = pods.cp();
  const c = openSotw({ address: cp.address, tls: true, rootCertPem: cp.rootCertPem }, { token: TOKEN });
  c.request({ type_url: CDS, node: { id, metadata: { NAMESPACE: namespace, CLUSTER_ID: 'Kubernetes', PROXY_CONFIG: {} } } });
  others.push(c);
  return c;
}

describe.each([
  { api: 'DELTA_GRPC', env: {} as Record<string, string> },
  { api: 'GRPC', env: { ISTIO_DELTA_XDS: 'false' } as Record<string, string> },
])('the xDS debug port with Envoy connected ($api)', ({ env }) => {
  it('answers syncz and config_dump from istiod over the agent, as Istio did, over HTTP and gRPC', { timeout: 120_000 }, async () => {
    const cp = pods.cp();
    cp.setResources(CDS, [{ json: cluster }], { replace: true });
    cp.setResources(LDS, [{ json: listener }], { replace: true });
    const port = await freePort();
    const pod: SdsPod = await pods.start('pa-xds-debug-', { ...env, ENVOY_STANDIN_ADS: '1', PROXY_XDS_DEBUG_VIA_AGENT_PORT: String(port) });
    await vi.waitFor(() => expect(pod.agent.output()).toContain(`starting Http service at 127.0.0.1:${port}`), { timeout: 30_000, interval: 100 });
    const bootstrap = join(pods.dir(), 'etc/istio/proxy/envoy-rev.json');
    await vi.waitFor(() => expect(existsSync(bootstrap)).toBe(true), { timeout: 30_000, interval: 100 });
    const nodeId = (JSON.parse(readFileSync(bootstrap, 'utf8')) as { node: { id: string } }).node.id;
    // Envoy's stream (through the agent) has ACKed its listeners
    await vi.waitFor(() => expect(cp.connectedStreams().find((st) => (st.node as { id?: string } | undefined)?.id === nodeId)?.subscriptions[LDS]?.ackedVersion).toBeDefined(), { timeout: 30_000, interval: 100 });
    const neighbour = otherProxy('neighbour-1.default', 'default');
    const stranger = otherProxy('stranger-1.other', 'other');
    await neighbour.next(10_000);
    await stranger.next(10_000);

    // syncz: every proxy of the caller's namespace, with its sync state per type
    const syncz = await get(port, '/debug/syncz');
    expect(syncz.status).toBe(200);
    expect(syncz.type).toBe('application/json');
    const res = JSON.parse(syncz.body) as GoDiscoveryResponse;
    expect(Object.keys(res)).toEqual(['version_info', 'resources', 'type_url', 'nonce', 'control_plane']);
    expect(res.type_url).toBe('istio.io/debug/syncz');
    expect(res.control_plane?.identifier).toBe('pilot-agent-ts development control plane');
    const configs = res.resources!.map((a) => {
      expect(a.type_url).toBe('type.googleapis.com/envoy.service.status.v3.ClientConfig');
      return decodeResource(anyOf(a)).json as unknown as ClientConfigJson;
    });
    expect(configs.map((c) => c.node.id).sort()).toEqual([nodeId, 'neighbour-1.default'].sort());
    const ours = configs.find((c) => c.node.id === nodeId)!;
    expect(ours.node.metadata).toMatchObject({ NAMESPACE: 'default' });
    const status = Object.fromEntries((ours.generic_xds_configs ?? []).map((g) => [g.type_url, g.config_status]));
    expect(status[CDS]).toBe('SYNCED');
    expect(status[LDS]).toBe('SYNCED');
    expect(pod.agent.output()).toContain('could not marshal istiod response as pb: unable to resolve "type.googleapis.com/envoy.service.status.v3.ClientConfig": proto: not found');

    // config_dump of our proxy: the admin dumps of what istiod gives it
    const dump = JSON.parse((await get(port, `/debug/config_dump?resourceName=${encodeURIComponent(nodeId)}`)).body) as GoDiscoveryResponse;
    expect(dump.type_url).toBe('istio.io/debug/config_dump');
    expect(dump.control_plane).toBeUndefined();
    const dumps = Object.fromEntries(dump.resources!.map((a) => [a.type_url!.split('.').pop()!, decodeResource(anyOf(a)).json as Record<string, unknown>]));
    expect(Object.keys(dumps)).toEqual(['BootstrapConfigDump', 'ClustersConfigDump', 'ListenersConfigDump', 'ScopedRoutesConfigDump', 'RoutesConfigDump', 'SecretsConfigDump', 'EcdsConfigDump']);
    expect(JSON.stringify(dumps.ClustersConfigDump)).toContain('"name":"hello"');
    expect((dumps.ListenersConfigDump as { dynamic_listeners: { name: string }[] }).dynamic_listeners.map((l) => l.name)).toEqual(['hello_8080']);

    // another namespace's proxy is not the caller's to dump: no resources, proto3 JSON
    const foreign = await get(port, '/debug/config_dump?resourceName=stranger-1.other');
    expect(foreign.status).toBe(200);
    expect(foreign.body).toMatch(/^\{\n {2}"versionInfo": "[^"]+",\n {2}"typeUrl": "istio.io\/debug\/config_dump",\n {2}"nonce": "[^"]+"\n\}$/);

    // the same over gRPC on the same port (Istio's tap for istioctl)
    const tap = openSotw({ address: `127.0.0.1:${port}`, tls: false });
    tap.request({ type_url: 'istio.io/debug/syncz' });
    const viaGrpc = await tap.next(15_000);
    expect(viaGrpc.typeUrl).toBe('istio.io/debug/syncz');
    expect(viaGrpc.resources.map((a) => (decodeResource(a).json as unknown as ClientConfigJson).node.id).sort()).toEqual([nodeId, 'neighbour-1.default'].sort());
    expect((await tap.status).code).toBe(grpc.status.OK);
    tap.close();

    // Istio's mux and query errors
    expect(await get(port, '/stats')).toMatchObject({ status: 404, body: '404 page not found\n' });
    expect(await get(port, '/debug/syncz?resourceName=%zz')).toMatchObject({ status: 400, body: 'invalid URL escape "%zz"\n' });

    // a slow istiod: 504 after 5 s, and its answer, arriving after, is dropped (never Envoy's)
    cp.setDebugDelay(6000);
    expect(await get(port, '/debug/syncz')).toMatchObject({ status: 504, body: '' });
    expect(pod.agent.output()).toContain('timed out waiting for Istiod to respond to "istio.io/debug/syncz"');
    await vi.waitFor(() => expect(pod.agent.output()).toContain('tap response "istio.io/debug/syncz" arrived too late; discarding'), { timeout: 10_000, interval: 100 });
    cp.setDebugDelay(0);
    expect(pod.agent.output()).not.toContain('Skipping forwarding type url istio.io/debug');
    expect(cp.nacks()).toEqual([]);
  });
});

describe('the xDS debug port without a client', () => {
  it('answers 503 "proxy not connected to Istiod", from loopback only', { timeout: 60_000 }, async () => {
    const work = tempDir('pa-xds-debug-proxyless-');
    const port = await freePort();
    const agent = runAgent(['proxy', 'sidecar'], {
      cwd: work.path,
      env: {
        POD_NAME: 'lonely',
        POD_NAMESPACE: 'default',
        INSTANCE_IP: '10.0.0.7',
        DISABLE_ENVOY: 'true',
        PROXY_XDS_DEBUG_VIA_AGENT_PORT: String(port),
        PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', statusPort: 0 }),
      },
    });
    try {
      await vi.waitFor(() => expect(agent.output()).toContain(`starting Http service at 127.0.0.1:${port}`), { timeout: 30_000, interval: 100 });
      expect(await get(port, '/debug/syncz')).toMatchObject({ status: 503, body: 'proxy not connected to Istiod\n' });
      // bound to loopback: the port is not open on the pod's other addresses
      const others = Object.values((await import('node:os')).networkInterfaces()).flat().filter((a) => a && !a.internal && a.family === 'IPv4');
      for (const a of others) await expect(fetch(`http://${a!.address}:${port}/debug/syncz`)).rejects.toThrow();
    } finally {
      await stopAgent(agent);
      work.cleanup();
    }
  });

  it('is off with PROXY_XDS_DEBUG_VIA_AGENT=false, and a taken port stops start-up with Istio\'s error', { timeout: 60_000 }, async () => {
    const work = tempDir('pa-xds-debug-off-');
    const port = await freePort();
    const base = { POD_NAME: 'lonely', POD_NAMESPACE: 'default', INSTANCE_IP: '10.0.0.7', DISABLE_ENVOY: 'true', PROXY_XDS_DEBUG_VIA_AGENT_PORT: String(port), PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1', statusPort: 0 }) };
    const off = runAgent(['proxy', 'sidecar'], { cwd: work.path, env: { ...base, PROXY_XDS_DEBUG_VIA_AGENT: 'false' } });
    try {
      await vi.waitFor(() => expect(off.output()).toContain('xDS proxy listening on'), { timeout: 30_000, interval: 100 });
      await expect(fetch(`http://127.0.0.1:${port}/debug/syncz`)).rejects.toThrow();
      // the port taken (by the test): the agent stops, naming the tap server
      const blocker = (await import('node:net')).createServer();
      await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
      const takenDir = tempDir('pa-xds-debug-taken-');
      try {
        const taken = runAgent(['proxy', 'sidecar'], { cwd: takenDir.path, env: base });
        const { code } = await taken.exited;
        expect(code).not.toBe(0);
        expect(taken.output()).toContain('failed to start istio tap server: listen EADDRINUSE');
      } finally {
        blocker.close();
        takenDir.cleanup();
      }
    } finally {
      await stopAgent(off);
      work.cleanup();
    }
  });
});
