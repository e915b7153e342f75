// The agent's own metric families, scraped from the real `pilot-agent proxy sidecar` on its status
// port, against the families Istio's pilot-agent exports, read from Istio's source (each entry
// names its file). Istio wraps its registry with the prefix `istio_agent_` (pilot/cmd/pilot-agent/
// status/server.go initializeMonitoring) and exports through OpenTelemetry WithoutCounterSuffixes
// and WithoutUnits (pkg/monitoring/monitoring.go): names are the declared ones, prefixed.
//
// Every labelled family is made to record (a CSR that fails five times then succeeds, a Wasm module
// fetched over ECDS, DNS queries, a failing application scrape, a dropped istiod stream, a
// cancelled Envoy stream, a NACK and a stale nonce on SDS), so label names and values are checked
// from samples, not from declarations.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { openSotw, startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { dig, encodeNameTableWire } from '../dns/support.js';
import { RawSdsClient } from '../sds/raw-client.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { envoyStandInPath } from '../support/paths.js';
import { freePort, killRecordedStandIns, runAgent, type RunningProcess, stopAgent, tempDir } from '../support/processes.js';
import { tecBytes, TEC_URL, wasmFilter } from '../wasm/ecds-fixtures.js';
import { sha256, startFileServer, wasmModule, type FileServer } from '../wasm/support.js';

type MetricType = 'counter' | 'gauge' | 'histogram';

interface Expected {
  readonly type: MetricType;
  readonly help: string;
  readonly labels?: readonly string[];
  /** Label values this test makes the agent record (Istio's values). */
  readonly values?: Readonly<Record<string, readonly string[]>>;
  /** Distribution bounds Istio declares. */
  readonly buckets?: readonly number[];
}

// Istio's families, name without the prefix -> what Istio declares.
const ISTIO: Record<string, Expected> = {
  // pkg/istio-agent/metrics/metrics.go
  istiod_connection_failures: { type: 'counter', help: 'The total number of connection failures to Istiod' },
  istiod_connection_terminations: { type: 'counter', help: 'The total number of connection errors to Istiod', labels: ['type'], values: { type: ['error'] } },
  envoy_connection_terminations: { type: 'counter', help: 'The total number of connection errors from envoy', labels: ['type'], values: { type: ['cancelled'] } },
  xds_proxy_requests: { type: 'counter', help: 'The total number of Xds Proxy Requests' },
  xds_proxy_responses: { type: 'counter', help: 'The total number of Xds Proxy Responses' },
  // security/pkg/nodeagent/cache/monitoring.go (request_type values: security/pkg/monitoring/monitoring.go)
  outgoing_latency: { type: 'counter', help: 'The latency of outgoing requests (e.g. to a token exchange server, CA, etc.) in milliseconds.', labels: ['request_type'], values: { request_type: ['csr'] } },
  num_outgoing_requests: { type: 'counter', help: 'Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)', labels: ['request_type'], values: { request_type: ['csr'] } },
  num_failed_outgoing_requests: { type: 'counter', help: 'Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)', labels: ['request_type'], values: { request_type: ['csr'] } },
  num_file_watcher_failures_total: { type: 'counter', help: 'Number of times file watcher failed to add watchers' },
  num_file_secret_failures_total: { type: 'counter', help: 'Number of times secret generation failed for files' },
  cert_expiry_seconds: {
    type: 'gauge',
    help: 'The time remaining, in seconds, before the certificate chain will expire. A negative value indicates the cert is expired.',
    labels: ['resource_name'],
    values: { resource_name: ['default'] },
  },
  // security/pkg/monitoring/monitoring.go, recorded by pkg/security/retry.go
  num_outgoing_retries: { type: 'counter', help: 'Number of outgoing retry requests (e.g. to a token exchange server, CA, etc.)', labels: ['request_type'], values: { request_type: ['csr'] } },
  // pkg/wasm/monitoring.go
  wasm_cache_entries: { type: 'gauge', help: 'number of Wasm remote fetch cache entries.' },
  wasm_cache_lookup_count: { type: 'counter', help: 'number of Wasm remote fetch cache lookups.', labels: ['hit'], values: { hit: ['false'] } },
  wasm_remote_fetch_count: {
    type: 'counter',
    help: 'number of Wasm remote fetches and results, including success, download failure, and checksum mismatch.',
    labels: ['result'],
    values: { result: ['success'] },
  },
  wasm_config_conversion_count: {
    type: 'counter',
    help: 'number of Wasm config conversions and results, including success, no remote load, marshal failure, remote fetch failure, miss remote fetch hint.',
    labels: ['result'],
    values: { result: ['success'] },
  },
  wasm_config_conversion_duration: {
    type: 'histogram',
    help: 'Total time in milliseconds istio-agent spends on converting remote load in Wasm config.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
  },
  // pkg/dns/client/monitoring.go
  dns_requests_total: { type: 'counter', help: 'Total number of DNS requests.' },
  dns_upstream_requests_total: { type: 'counter', help: 'Total number of DNS requests forwarded to upstream.' },
  dns_upstream_failures_total: { type: 'counter', help: 'Total number of DNS failures.' },
  dns_upstream_request_duration_seconds: { type: 'histogram', help: 'Total time in seconds Istio takes to get DNS response from upstream.', buckets: [0.001, 0.005, 0.01, 0.1, 1, 5] },
  // pilot/cmd/pilot-agent/metrics/metrics.go
  startup_duration_seconds: { type: 'gauge', help: 'The time from the process starting to being marked ready.' },
  scrape_failures_total: { type: 'counter', help: 'The total number of failed scrapes.', labels: ['type'], values: { type: ['application'] } },
  scrapes_total: { type: 'counter', help: 'The total number of scrapes.' },
  // pkg/xds/monitoring.go: recorded by the SDS server (xds.Send, ShouldRespond, Receive) and the xDS
  // socket's gRPC stats handler (RecordRecvSize, pilot/pkg/grpc/grpc.go)
  pilot_xds_send_time: { type: 'histogram', help: 'Total time in seconds Pilot takes to send generated configuration.', buckets: [0.01, 0.1, 1, 3, 5, 10, 20, 30] },
  pilot_xds_expired_nonce: { type: 'counter', help: 'Total number of XDS requests with an expired nonce.', labels: ['type'], values: { type: ['sds'] } },
  pilot_total_xds_rejects: { type: 'counter', help: 'Total number of XDS responses from pilot rejected by proxy.', labels: ['type'], values: { type: ['sds'] } },
  pilot_total_xds_internal_errors: { type: 'counter', help: 'Total number of internal XDS errors in pilot.' },
  pilot_xds_recv_max: { type: 'gauge', help: 'The maximum size request we have received so far.' },
  // prometheus/client_golang prometheus/process_collector.go (collectors.NewProcessCollector)
  process_cpu_seconds_total: { type: 'counter', help: 'Total user and system CPU time spent in seconds.' },
  process_open_fds: { type: 'gauge', help: 'Number of open file descriptors.' },
  process_max_fds: { type: 'gauge', help: 'Maximum number of open file descriptors.' },
  process_virtual_memory_bytes: { type: 'gauge', help: 'Virtual memory size in bytes.' },
  process_virtual_memory_max_bytes: { type: 'gauge', help: 'Maximum amount of virtual memory available in bytes.' },
  process_resident_memory_bytes: { type: 'gauge', help: 'Resident memory size in bytes.' },
  process_start_time_seconds: { type: 'gauge', help: 'Start time of the process since unix epoch in seconds.' },
  process_network_receive_bytes_total: { type: 'counter', help: 'Number of bytes received by the process over the network.' },
  process_network_transmit_bytes_total: { type: 'counter', help: 'Number of bytes sent by the process over the network.' },
};

// Ours, not Istio's (docs/architecture.md lists them): xDS push sizes, last-known-good serving, and prom-client's process
// extras. Node's runtime metrics (istio_agent_nodejs_*) stand where Istio has Go's (istio_agent_go_*).
const EXTRA: Record<string, MetricType> = {
  xds_proxy_message_bytes: 'histogram',
  xds_proxy_largest_message_bytes: 'gauge',
  xds_proxy_serving_last_known_good: 'gauge',
  process_cpu_user_seconds_total: 'counter',
  process_cpu_system_seconds_total: 'counter',
  process_heap_bytes: 'gauge',
};
const RUNTIME_PREFIX = 'nodejs_';
const PREFIX = 'istio_agent_';

interface Family {
  type?: string;
  help?: string;
  samples: { name: string; labels: Record<string, string> }[];
}

/** The `istio_agent_*` families of a text-format exposition. */
function parseFamilies(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    const meta = /^# (HELP|TYPE) (istio_agent_\w+) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'HELP') family(meta[2]!).help = meta[3];
      else family(meta[2]!).type = meta[3];
      continue;
    }
    const sample = /^(istio_agent_\w+)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) continue;
    const labels = Object.fromEntries([...(sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
    const name = sample[1]!;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    family(families.get(base)?.type === 'histogram' ? base : name).samples.push({ name, labels });
  }
  return families;
}

const NODE = { id: 'sidecar~10.244.1.17~hello-7d9f8c6b5-x2x4z.default~default.svc.cluster.local' };
const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
const NDS = 'type.googleapis.com/istio.networking.nds.v1.NameTable';
const TOKEN = 'metrics-token';
const WASM = wasmModule(2048, 'metrics');

let cp: ControlPlane;
let files: FileServer;
let work: ReturnType<typeof tempDir>;
let agent: RunningProcess;
let statusPort: number;
let dnsPort: number;

beforeAll(async () => {
  work = tempDir('pa-metrics-');
  files = await startFileServer();
  files.serve('/plugin.wasm', WASM);
  cp = await startControlPlane({ token: TOKEN, log: () => undefined });
  // the first CSR exhausts its five attempts (four retries, one failed request), the next succeeds
  cp.ca.setFailure('unavailable', { times: 5 });
  cp.setResources(LDS, [], { replace: true });
  cp.setResources(NDS, [{ name: 'table', binary: encodeNameTableWire({ 'reviews.default.svc.cluster.local': { ips: ['10.96.0.20'], registry: 'Kubernetes', shortname: 'reviews', namespace: 'default' } }) }], { replace: true });
  cp.setResources(TEC_URL, [{ name: 'default.metrics-wasm', binary: tecBytes(wasmFilter('default.metrics-wasm', `${files.origin}/plugin.wasm`, { sha256: sha256(WASM) })) }], { replace: true });
  writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);
  statusPort = await freePort();
  dnsPort = await freePort();
  const closedPort = await freePort();
  const pod = injectedProxy('hello.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      CA_ADDR: cp.address,
      ISTIOD_SAN: 'istiod.istio-system.svc',
      ISTIO_META_DNS_CAPTURE: 'true',
      DNS_PROXY_ADDR: `127.0.0.1:${dnsPort}`,
      DNS_FORWARD_TIMEOUT: '300ms',
      // an application target nothing listens on: a failed scrape of type "application"
      ISTIO_PROMETHEUS_ANNOTATIONS: JSON.stringify({ scrape: 'true', port: String(closedPort), path: '/metrics' }),
      // the stand-in is the SDS client; the xDS socket is left to this test's own client
      ENVOY_STANDIN_SDS: '1',
      ENVOY_STANDIN_RECORD: join(work.path, 'record.jsonl'),
      PROXY_CONFIG: JSON.stringify({ binaryPath: envoyStandInPath, proxyAdminPort: await freePort(), statusPort, discoveryAddress: cp.address, terminationDrainDuration: '0s' }),
    },
  });
});

afterAll(async () => {
  await stopAgent(agent);
  killRecordedStandIns(join(work.path, 'record.jsonl'));
  await cp?.close();
  await files?.close();
  work?.cleanup();
});

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`http://127.0.0.1:${statusPort}/stats/prometheus`);
  expect(res.status).toBe(200);
  return parseFamilies(await res.text());
}

const alive = (): void => {
  if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
};

it("exports Istio's families, names, types, help, labels and buckets, and only documented extras", { timeout: 120_000 }, async () => {
  const xdsSocket = join(work.path, 'etc/istio/proxy/XDS');
  await vi.waitFor(() => {
    alive();
    expect(existsSync(xdsSocket)).toBe(true);
  }, { timeout: 30_000, interval: 100 });

  // Envoy's part on the xDS socket: LDS (which makes the agent subscribe the name table) and the
  // ECDS filter whose Wasm module the agent fetches
  const client = openSotw({ address: `unix:${xdsSocket}`, tls: false });
  client.request({ type_url: LDS, node: NODE });
  client.request({ type_url: TEC_URL, resource_names: ['default.metrics-wasm'] });
  await vi.waitFor(() => expect(client.received.some((r) => r.typeUrl === TEC_URL)).toBe(true), { timeout: 60_000, interval: 100 });
  await cp.waitForAck(NDS, cp.version(NDS), { timeoutMs: 30_000 });

  // ready: Envoy LIVE, the name table in, the workload certificate issued after its failures
  await vi.waitFor(async () => {
    alive();
    expect((await fetch(`http://127.0.0.1:${statusPort}/healthz/ready`)).status).toBe(200);
  }, { timeout: 60_000, interval: 200 });

  // DNS: one name from the table, one forwarded upstream
  expect((await dig('127.0.0.1', dnsPort, ['reviews.default.svc.cluster.local', 'A'])).answers.map((a) => a.data)).toEqual(['10.96.0.20']);
  await dig('127.0.0.1', dnsPort, ['not-in-the-mesh.invalid', 'A']);

  // SDS: a NACK, then an ACK carrying a nonce the server never sent
  const sds = new RawSdsClient(join(work.path, 'var/run/secrets/workload-spiffe-uds/socket'));
  sds.send({ names: ['ROOTCA'], nodeId: NODE.id });
  const first = await sds.next(20_000);
  sds.send({ names: ['ROOTCA'], version: first.versionInfo, nonce: first.nonce, error: 'rejected by the test' });
  sds.send({ names: ['ROOTCA'], version: first.versionInfo, nonce: 'never-sent' });

  // istiod drops the stream: a termination of type "error"; then a stream Envoy cancels
  const upstreamId = cp.lastStream()!.id;
  cp.disconnectAll();
  await client.status;
  const second = openSotw({ address: `unix:${xdsSocket}`, tls: false });
  second.request({ type_url: LDS, node: NODE });
  await cp.waitForStream({ match: (s) => s.id !== upstreamId, timeoutMs: 20_000 });
  second.close();

  // the agent's view settles once every recorded event is in: wait for the last ones
  let families = new Map<string, Family>();
  await vi.waitFor(async () => {
    families = await scrape();
    for (const [name, e] of Object.entries(ISTIO)) {
      if (e.labels) expect(families.get(PREFIX + name)?.samples.length, `${name} has samples`).toBeGreaterThan(0);
    }
    expect(families.get(`${PREFIX}startup_duration_seconds`)?.samples.length).toBe(1);
  }, { timeout: 30_000, interval: 200 });
  sds.call.cancel();
  sds.client.close();

  // every Istio family, with Istio's type and help
  for (const [name, e] of Object.entries(ISTIO)) {
    const f = families.get(PREFIX + name);
    expect(f, `${PREFIX}${name} is exported`).toBeDefined();
    expect({ name, type: f!.type, help: f!.help }).toEqual({ name, type: e.type, help: e.help });
  }
  // nothing else but the documented extras and the Node runtime
  const unexpected = [...families.keys()].filter((n) => {
    const short = n.slice(PREFIX.length);
    return !(short in ISTIO) && !(short in EXTRA) && !short.startsWith(RUNTIME_PREFIX);
  });
  expect(unexpected).toEqual([]);
  for (const [name, type] of Object.entries(EXTRA)) expect(families.get(PREFIX + name)?.type, name).toBe(type);
  expect([...families.keys()].some((n) => n.startsWith(PREFIX + RUNTIME_PREFIX))).toBe(true);

  // label names from the samples (histograms add only `le`), and the values this test recorded
  for (const [name, e] of Object.entries(ISTIO)) {
    const f = families.get(PREFIX + name)!;
    for (const s of f.samples) {
      const names = Object.keys(s.labels).filter((l) => !(e.type === 'histogram' && s.name.endsWith('_bucket') && l === 'le'));
      expect({ sample: s.name, labels: names.sort() }).toEqual({ sample: s.name, labels: [...(e.labels ?? [])].sort() });
    }
    for (const [label, values] of Object.entries(e.values ?? {})) {
      const seen = new Set(f.samples.map((s) => s.labels[label]));
      for (const v of values) expect(seen.has(v), `${name}{${label}="${v}"}`).toBe(true);
    }
    if (e.buckets) {
      const le = f.samples.filter((s) => s.name.endsWith('_bucket')).map((s) => s.labels.le);
      expect({ name, le }).toEqual({ name, le: [...e.buckets.map(String), '+Inf'] });
      expect(f.samples.some((s) => s.name === `${PREFIX}${name}_sum`) && f.samples.some((s) => s.name === `${PREFIX}${name}_count`)).toBe(true);
    }
  }
});
