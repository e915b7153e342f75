// Bootstrap features beyond the golden cases (LRS, FIPS, secure metrics, Lightstep, address
// families, stats annotations...) and template selection, checked on the rendered document.

import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_TEMPLATE_PATH,
  effectiveTemplatePath,
  renderEnvoyBootstrap,
  writeEnvoyBootstrap,
  type RenderOptions,
} from '../../src/bootstrap/envoy-bootstrap.js';
import { BootstrapError, BootstrapTemplateError } from '../../src/bootstrap/errors.js';
import { buildTemplateData } from '../../src/bootstrap/template-data.js';
import { parseBootstrap } from '../support/envoy-protos.js';
import { cleanupPods, pod, type PodSpec } from './support.js';

afterAll(cleanupPods);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function bootstrapOf(spec: PodSpec, options: RenderOptions = {}): Json {
  const { text } = renderEnvoyBootstrap(pod(spec).config, options);
  parseBootstrap(text);
  return JSON.parse(text) as Json;
}

const clusters = (b: Json): Json[] => b.static_resources.clusters as Json[];
const cluster = (b: Json, name: string): Json | undefined => clusters(b).find((c) => c.name === name);
const listeners = (b: Json): Json[] => b.static_resources.listeners as Json[];
const runtime = (b: Json): Json => b.layered_runtime.layers[0].static_layer as Json;

describe('bootstrap features', () => {
  it('connects ADS to the agent over the XDS socket, Delta unless ISTIO_DELTA_XDS=false', () => {
    const b = bootstrapOf({});
    expect(b.dynamic_resources.ads_config.api_type).toBe('DELTA_GRPC');
    const xds = cluster(b, 'xds-grpc')!;
    expect(xds.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path).toBe('./etc/istio/proxy/XDS');
    expect(cluster(b, 'sds-grpc')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path).toBe('./var/run/secrets/workload-spiffe-uds/socket');
    expect(bootstrapOf({ env: { ISTIO_DELTA_XDS: 'false' } }).dynamic_resources.ads_config.api_type).toBe('GRPC');
  });

  it('serves Prometheus on 15090 and readiness on 15021, with the admin port from ProxyConfig', () => {
    const b = bootstrapOf({ env: { PROXY_CONFIG: '{"proxyAdminPort": 15500, "statusPort": 15555}' } });
    expect(listeners(b).map((l) => l.name)).toEqual(['0.0.0.0_15090', '0.0.0.0_15021']);
    expect(b.admin.address.socket_address).toEqual({ address: '127.0.0.1', port_value: 15500 });
    expect(cluster(b, 'agent')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(15555);
    expect(cluster(b, 'prometheus_stats')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(15500);
  });

  it('adds the mTLS metrics listeners for ENVOY_SECURE_METRICS_PORT and ENVOY_SECURE_MERGED_METRICS_PORT', () => {
    const b = bootstrapOf({ env: { ENVOY_SECURE_METRICS_PORT: '15091', ENVOY_SECURE_MERGED_METRICS_PORT: '15092' } });
    expect(listeners(b).map((l) => l.name)).toEqual(['0.0.0.0_15090', '0.0.0.0_15091', '0.0.0.0_15092', '0.0.0.0_15021']);
    const secure = listeners(b)[1]!;
    const tls = secure.filter_chains[0].transport_socket.typed_config;
    expect(tls['@type']).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
    expect(tls.require_client_certificate).toBe(true);
    expect(tls.common_tls_context.tls_certificate_sds_secret_configs[0].name).toBe('default');
    expect(tls.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name).toBe('ROOTCA');
    const routes = (l: Json): Json[] => l.filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes as Json[];
    expect(routes(secure).map((r) => [r.match.prefix, r.route.cluster])).toEqual([['/stats/prometheus', 'prometheus_stats']]);
    expect(routes(listeners(b)[2]!).map((r) => [r.match.prefix, r.route.cluster])).toEqual([
      ['/stats/prometheus', 'agent'],
      ['/metrics', 'agent'],
    ]);
    expect(b.node.metadata.ENVOY_SECURE_METRICS_PORT).toBe(15091);
  });

  it('configures Load Reporting from ISTIO_META_LOAD_STATS_CONFIG_JSON', () => {
    const b = bootstrapOf({ env: { ISTIO_META_LOAD_STATS_CONFIG_JSON: '{"api_type": "GRPC", "transport_api_version": "V3"}' } });
    expect(b.cluster_manager).toEqual({ load_stats_config: { api_type: 'GRPC', transport_api_version: 'V3' }, enable_deferred_cluster_creation: true });
    expect(bootstrapOf({}).cluster_manager).toBeUndefined();
    expect(bootstrapOf({ flags: { outlierLogPath: '/dev/stderr' } }).cluster_manager.outlier_detection).toEqual({ event_log_path: '/dev/stderr' });
  });

  it('refuses an ISTIO_META_LOAD_STATS_CONFIG_JSON that is not a JSON object, naming the variable and the value', () => {
    for (const [value, why] of [
      ['{"api_type": ', 'not valid JSON'],
      ['GRPC', 'not valid JSON'],
      ['42', 'not a JSON object'],
      ['["GRPC"]', 'not a JSON object'],
    ] as const) {
      const render = () => renderEnvoyBootstrap(pod({ env: { ISTIO_META_LOAD_STATS_CONFIG_JSON: value } }).config);
      expect(render, value).toThrow(BootstrapError);
      expect(render, value).toThrow(`invalid ISTIO_META_LOAD_STATS_CONFIG_JSON ${JSON.stringify(value)}: ${why}`);
    }
    // set through ProxyConfig's proxyMetadata: the same check
    const viaProxyConfig = () => renderEnvoyBootstrap(pod({ env: { PROXY_CONFIG: JSON.stringify({ proxyMetadata: { ISTIO_META_LOAD_STATS_CONFIG_JSON: '{' } }) } }).config);
    expect(viaProxyConfig).toThrow('invalid ISTIO_META_LOAD_STATS_CONFIG_JSON "{": not valid JSON');
    // empty is unset, as in Istio (the template's `if` skips an empty string)
    expect(bootstrapOf({ env: { ISTIO_META_LOAD_STATS_CONFIG_JSON: '' } }).cluster_manager).toBeUndefined();
  });

  it('limits google_grpc to TLS 1.2 under COMPLIANCE_POLICY=fips-140-2 only', () => {
    expect(runtime(bootstrapOf({ env: { COMPLIANCE_POLICY: 'fips-140-2' } }))['envoy.reloadable_features.google_grpc_disable_tls_13']).toBe(true);
    expect(runtime(bootstrapOf({ env: { COMPLIANCE_POLICY: 'fips-140-3' } }))).not.toHaveProperty(['envoy.reloadable_features.google_grpc_disable_tls_13']);
  });

  it('applies ProxyConfig runtimeValues: "" removes a default, "true"/"false" become booleans', () => {
    const rt = runtime(bootstrapOf({ env: { PROXY_CONFIG: JSON.stringify({ runtimeValues: { 're2.max_program_size.error_level': '', a: 'true', b: 'false', c: '42' } }) } }));
    expect(rt).not.toHaveProperty(['re2.max_program_size.error_level']);
    expect([rt.a, rt.b, rt.c]).toEqual([true, false, '42']);
    expect(runtime(bootstrapOf({}, { stripFragmentFromPath: false }))['envoy.reloadable_features.http_strip_fragment_from_path_unsafe_if_disabled']).toBe('false');
  });

  it('writes the Lightstep access token next to the bootstrap', () => {
    const p = pod({ env: { PROXY_CONFIG: JSON.stringify({ tracing: { lightstep: { address: 'satellite:8080', accessToken: 's3cr3t' } } }) } });
    const { path: out } = writeEnvoyBootstrap(p.config);
    const b = JSON.parse(fs.readFileSync(out, 'utf8')) as Json;
    parseBootstrap(b);
    expect(b.tracing.http.typed_config.access_token_file).toBe('etc/istio/proxy/lightstep_access_token.txt');
    expect(fs.readFileSync(path.join(p.dir, 'etc/istio/proxy/lightstep_access_token.txt'), 'utf8')).toBe('s3cr3t');
    expect(cluster(b, 'lightstep')!.typed_extension_protocol_options).toBeDefined();
  });

  it('sends tracer TLS with the SNI, ISTIO_MUTUAL defaulting it to "tracer", ALPN only for HTTP/2 tracers', () => {
    const b = bootstrapOf({ env: { PROXY_CONFIG: JSON.stringify({ tracing: { datadog: { address: 'dd:8126' }, tlsSettings: { mode: 'ISTIO_MUTUAL', subjectAltNames: ['spiffe://x'] } } }) } });
    const tls = cluster(b, 'datadog_agent')!.transport_socket.typed_config;
    expect(tls.sni).toBe('tracer');
    expect(tls.common_tls_context.alpn_protocols).toBeUndefined();
    expect(tls.common_tls_context.combined_validation_context.default_validation_context).toEqual({ match_subject_alt_names: [{ exact: 'spiffe://x' }] });
    expect(b.tracing.http.typed_config.service_name).toBe('istio-proxy.shop');
  });

  it('substitutes HOST_IP for a $(HOST_IP) tracer host', () => {
    // (built directly: src/config's validation does not yet accept $(HOST_IP), which Istio's does)
    const base = pod({ env: { HOST_IP: '172.18.0.2' } }).config;
    const config = { ...base, proxyConfig: { ...base.proxyConfig, tracing: { zipkin: { address: '$(HOST_IP):9411' } } } };
    const b = JSON.parse(renderEnvoyBootstrap(config).text) as Json;
    expect(cluster(b, 'zipkin')!.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: '172.18.0.2', port_value: 9411 });
  });

  it('adds the statsd sink and metrics/access-log services with TLS and keepalive', () => {
    const b = bootstrapOf({
      env: {
        PROXY_CONFIG: JSON.stringify({
          statsdUdpAddress: '10.0.0.9:9125',
          envoyMetricsService: { address: 'ms:15000', tcpKeepalive: { probes: 3, time: '10s', interval: '5s' } },
          envoyAccessLogService: { address: '[fd00::7]:15000', tlsSettings: { mode: 'SIMPLE', caCertificates: '/etc/als/ca.pem', sni: 'als' } },
        }),
      },
    });
    expect(b.stats_sinks.map((s: Json) => s.name)).toEqual(['envoy.stat_sinks.metrics_service', 'envoy.stat_sinks.statsd']);
    expect(cluster(b, 'envoy_metrics_service')!.upstream_connection_options).toEqual({ tcp_keepalive: { keepalive_probes: 3, keepalive_time: 10, keepalive_interval: 5 } });
    const als = cluster(b, 'envoy_accesslog_service')!;
    expect(als.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: 'fd00::7', port_value: 15000 });
    expect(als.transport_socket.typed_config.sni).toBe('als');
    expect(als.transport_socket.typed_config.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name).toBe('file-root:/etc/als/ca.pem');
    expect(als.transport_socket.typed_config.common_tls_context.alpn_protocols).toEqual(['h2']);
  });

  it('binds IPv6 addresses for an IPv6 pod, and both families with ISTIO_DUAL_STACK', () => {
    const v6 = bootstrapOf({ env: { INSTANCE_IP: 'fd00::5', PROXY_CONFIG: '{"tracing":{"zipkin":{"address":"zipkin:9411"}}}' }, hostAddresses: ['fd00::5'] });
    expect(v6.admin.address.socket_address.address).toBe('::1');
    expect(listeners(v6).map((l) => l.name)).toEqual(['::_15090', '::_15021']);
    expect(cluster(v6, 'zipkin')!.dns_lookup_family).toBe('V6_ONLY');

    const mixed: PodSpec = { env: { INSTANCE_IP: 'fd00::5' }, hostAddresses: ['fd00::5', '10.1.2.3'] };
    expect(listeners(bootstrapOf(mixed)).map((l) => l.name)).toEqual(['0.0.0.0_15090', '0.0.0.0_15021']);
    const dual = bootstrapOf(mixed, { dualStack: true });
    expect(dual.admin.address.socket_address.address).toBe('::1');
    const status = listeners(dual)[1]!;
    expect(status.address.socket_address.address).toBe('::');
    expect(status.additional_addresses[0].address.socket_address.address).toBe('0.0.0.0');
  });

  it('keeps the Prometheus port on localhost when proxyMetadata METRICS_LOCALHOST_ACCESS_ONLY=true', () => {
    const b = bootstrapOf({ env: { PROXY_CONFIG: '{"proxyMetadata":{"METRICS_LOCALHOST_ACCESS_ONLY":"true"}}' } });
    expect(listeners(b)[0]!.name).toBe('127.0.0.1_15090');
    expect(listeners(b)[0]!.address.socket_address.address).toBe('127.0.0.1');
  });

  it('adds local_cluster for ISTIO_META_ENABLE_SELF_DISCOVERY and the PROXY protocol filter when asked', () => {
    const b = bootstrapOf({ env: { ISTIO_META_ENABLE_SELF_DISCOVERY: 'true' } }, { envoyStatusPortProxyProtocol: true });
    expect(cluster(b, 'local_cluster')!.type).toBe('EDS');
    expect(b.cluster_manager.local_cluster_name).toBe('local_cluster');
    expect(listeners(b)[1]!.listener_filters[0].name).toBe('envoy.listener.proxy_protocol');
  });

  it('formats Envoy logs as JSON with --log_as_json', () => {
    expect(bootstrapOf({}, { logAsJson: true }).application_log_config.log_format.json_format.scope).toBe('envoy %n');
  });

  it('takes stats settings from annotations, the ProxyConfig matcher, and the drain mode', () => {
    const patterns = (b: Json): Json[] => b.stats_config.stats_matcher.inclusion_list.patterns as Json[];
    const fromConfig = bootstrapOf({ env: { PROXY_CONFIG: '{"proxyStatsMatcher":{"inclusionPrefixes":["upstream_cx"],"inclusionRegexps":[".*osconfig.*"]}}', EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'true' } });
    expect(patterns(fromConfig)[1]).toEqual({ prefix: 'upstream_cx' });
    expect(patterns(fromConfig)).toContainEqual({ safe_regex: { regex: '.*osconfig.*' } });
    expect(patterns(fromConfig)).toContainEqual({ suffix: 'downstream_cx_active' });
    const annotated = bootstrapOf({
      env: { PROXY_CONFIG: '{"proxyStatsMatcher":{"inclusionPrefixes":["from_config"]}}' },
      annotations: {
        'sidecar.istio.io/statsInclusionPrefixes': 'from_annotation',
        'sidecar.istio.io/statsFlushInterval': '1m30s',
        'sidecar.istio.io/statsEvictionInterval': '3m',
        'sidecar.istio.io/statsHistogramBuckets': '{"cluster.x":[0.5,1,10]}',
      },
    });
    expect(patterns(annotated).map((p) => p.prefix).filter(Boolean)).not.toContain('from_config');
    expect(patterns(annotated)[1]).toEqual({ prefix: 'from_annotation' });
    expect(annotated.stats_flush_interval).toBe('90s');
    expect(annotated.stats_eviction_interval).toBe('180s');
    expect(annotated.stats_config.histogram_bucket_settings).toEqual([{ match: { prefix: 'cluster.x' }, buckets: [0.5, 1, 10] }]);

    const warnings: string[] = [];
    const bad = bootstrapOf(
      { annotations: { 'sidecar.istio.io/statsFlushInterval': 'soon', 'sidecar.istio.io/statsEvictionInterval': '7s', 'sidecar.istio.io/statsHistogramBuckets': '[1]' } },
      { warn: (m) => warnings.push(m) },
    );
    expect(bad.stats_flush_interval).toBeUndefined();
    expect(bad.stats_eviction_interval).toBeUndefined();
    expect(bad.stats_config.histogram_bucket_settings).toBeUndefined();
    expect(warnings).toHaveLength(3);
  });

  it('refuses an address without a usable port, naming the option', () => {
    const base = pod({}).config;
    const withPc = (pc: Record<string, unknown>): typeof base => ({ ...base, proxyConfig: { ...base.proxyConfig, ...pc } as typeof base.proxyConfig });
    expect(() => renderEnvoyBootstrap(withPc({ discoveryAddress: 'istiod.istio-system.svc' }))).toThrow(BootstrapError);
    expect(() => renderEnvoyBootstrap(withPc({ statsdUdpAddress: 'statsd:' }))).toThrow(/statsd address "statsd:"/);
    expect(() => renderEnvoyBootstrap(withPc({ tracing: { zipkin: { address: 'fd00::1:9411' } } }))).toThrow(/too many colons/);
  });

  it('gives templates the data Istio gives its own', () => {
    const { data } = buildTemplateData(pod({ labels: { app: 'web' } }).config);
    for (const key of ['nodeID', 'nodeType', 'cluster', 'meta_json_str', 'runtime_flags', 'pilot_SAN', 'config', 'metadata', 'localhost', 'wildcard', 'dns_lookup_family', 'xds_type', 'discovery_host', 'discovery_address', 'pilot_grpc_address', 'envoy_status_port', 'envoy_prometheus_port', 'global_downstream_max_connections', 'inclusionPrefix', 'inclusionSuffix', 'inclusionRegexps', 'workload_identity_socket_file', 'envoy_metrics_stats_compression', 'metadata_discovery', 'log_json']) {
      expect(data, key).toHaveProperty([key]);
    }
    expect(data.pilot_SAN).toBe('[{"exact":"istiod.istio-system.svc"}]');
    expect(data.pilot_grpc_address).toBe('{"address": "istiod.istio-system.svc", "port_value": 15012}');
    expect(data.nodeType).toBe('sidecar');
  });
});

describe('template selection and errors', () => {
  const istioStyle = [
    '{{- /* written against Istio\'s data model */ -}}',
    '{"admin": {"address": {"socket_address": {"address": "{{ .localhost }}", "port_value": {{ .config.ProxyAdminPort }}}}},',
    ' "node": {"id": "{{ .nodeID }}", "cluster": "{{ .cluster }}", "metadata": {"ns": "{{ .metadata.Namespace }}", "app": "{{ index .metadata.Labels "app" }}",',
    '   "xds": "{{ .config.ConfigPath }}/XDS", "zipkin": "{{ .config.Tracing.Tracer.Zipkin.Address }}", "drain": {{ .config.DrainDuration.Seconds }},',
    '   "type": "{{ .nodeType }}", "regex": "{{ js "a\\\\.b" }}", "pilot": {{ .pilot_SAN }} }}}',
  ].join('\n');

  it('renders a template written for Istio (--templateFile) with the same data model', () => {
    const p = pod({
      labels: { app: 'web' },
      flags: { templateFile: './custom.json' },
      files: { 'custom.json': istioStyle },
      env: { PROXY_CONFIG: '{"drainDuration":"7s","tracing":{"zipkin":{"address":"z:9411"}}}' },
    });
    expect(effectiveTemplatePath(p.config)).toBe(path.join(p.dir, 'custom.json'));
    const b = JSON.parse(renderEnvoyBootstrap(p.config).text) as Json;
    parseBootstrap(b);
    expect(b.node.metadata).toEqual({ ns: 'shop', app: 'web', xds: './etc/istio/proxy/XDS', zipkin: 'z:9411', drain: 7, type: 'sidecar', regex: 'a\\.b', pilot: [{ exact: 'istiod.istio-system.svc' }] });
    expect(b.admin.address.socket_address.port_value).toBe(15000);
  });

  it('lets ISTIO_BOOTSTRAP override the template, and writes envoy-rev.yaml for a YAML template', () => {
    const yaml = 'node:\n  id: "{{ .nodeID }}"\n  cluster: "{{ .cluster }}"\n';
    const p = pod({ env: { ISTIO_BOOTSTRAP: './t/bootstrap.yaml', PROXY_CONFIG: '{"proxyBootstrapTemplatePath":"./nope.json"}' }, files: { 't/bootstrap.yaml': yaml } });
    expect(effectiveTemplatePath(p.config)).toBe(path.join(p.dir, 't/bootstrap.yaml'));
    const written = writeEnvoyBootstrap(p.config);
    expect(written).toEqual({ path: path.join(p.dir, 'etc/istio/proxy/envoy-rev.yaml'), generated: true });
    expect(fs.readFileSync(written.path, 'utf8')).toBe('node:\n  id: "sidecar~10.1.2.3~app-6d8f9c-abcde.shop~shop.svc.cluster.local"\n  cluster: "istio-proxy.shop"\n');
    expect(effectiveTemplatePath(pod().config)).toBe(DEFAULT_TEMPLATE_PATH);
  });

  it('hands a customConfigFile to Envoy unchanged, generating nothing', () => {
    const p = pod({ env: { PROXY_CONFIG: '{"customConfigFile":"./my-envoy.json"}' }, files: { 'my-envoy.json': '{}' } });
    expect(writeEnvoyBootstrap(p.config)).toEqual({ path: path.join(p.dir, 'my-envoy.json'), generated: false });
    expect(fs.existsSync(path.join(p.dir, 'etc/istio/proxy'))).toBe(false);
  });

  it('names the file, line and column of a template parse error', () => {
    const p = pod({ files: { 'bad.json': '{\n  "a": 1,\n  "b": {{ if .nodeID }\n}' }, flags: { templateFile: './bad.json' } });
    const err = (() => {
      try {
        renderEnvoyBootstrap(p.config);
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a failure');
    })();
    expect(err).toBeInstanceOf(BootstrapTemplateError);
    expect(err.message).toMatch(new RegExp(`${path.join(p.dir, 'bad.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:\\d+: parse error`));
  });

  it('names the position of an execution error, and keeps the previous bootstrap', () => {
    const good = pod({});
    const { path: out } = writeEnvoyBootstrap(good.config);
    const before = fs.readFileSync(out, 'utf8');
    const p = { ...good.config, env: { ...good.config.env, ISTIO_BOOTSTRAP: path.join(good.dir, 'exec.json') } };
    fs.writeFileSync(path.join(good.dir, 'exec.json'), '{\n "x": {{ .config.NoSuchField }}\n}');
    expect(() => writeEnvoyBootstrap(p)).toThrow(/exec\.json:2:\d+: execution error/);
    expect(fs.readFileSync(out, 'utf8')).toBe(before);
    expect(fs.readdirSync(path.dirname(out)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('reports an unreadable template by path', () => {
    const p = pod({ flags: { templateFile: './missing.json' } });
    expect(() => renderEnvoyBootstrap(p.config)).toThrow(/cannot read bootstrap template .*missing\.json/);
  });
});
