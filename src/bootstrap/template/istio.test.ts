import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { istioBootstrapFuncs, istioToJSON, parseTemplate } from './index.js';

/** Template parameters shaped like pkg/bootstrap's toTemplateParams() output. */
function minimalParams(): Record<string, unknown> {
  return {
    nodeID: 'sidecar~10.1.2.3~pod.ns~ns.svc.cluster.local',
    cluster: 'pod.ns',
    meta_json_str: '{}',
    runtime_flags: '{}',
    config: { ProxyAdminPort: 15000, StatusPort: 15020, ConfigPath: './etc/istio/proxy' },
    localhost: '127.0.0.1',
    wildcard: '0.0.0.0',
    dns_lookup_family: 'V4_ONLY',
    xds_type: 'GRPC',
    log_json: false,
    workload_identity_socket_file: 'socket',
    envoy_prometheus_port: 15090,
    envoy_status_port: 15021,
    global_downstream_max_connections: 2147483647,
    metrics_localhost_access_only: false,
  };
}

function fullParams(): Record<string, unknown> {
  return {
    ...minimalParams(),
    region: 'us-east1',
    zone: 'us-east1-b',
    sub_zone: 'rack-1',
    meta_json_str: JSON.stringify({ CLUSTER_ID: 'Kubernetes', ISTIO_VERSION: '1.24.0', NAMESPACE: 'default' }),
    runtime_flags: JSON.stringify({ 're2.max_program_size.error_level': '32768' }),
    additional_localhost: '::1',
    additional_wildcard: '::',
    dual_stack: true,
    dns_lookup_family: 'ALL',
    xds_type: 'DELTA_GRPC',
    log_json: true,
    metadata_discovery: true,
    secure_metrics_port: 15091,
    secure_merged_metrics_port: 15092,
    stats_flush_interval: '5s',
    stats_eviction_interval: '60s',
    extraStatTags: ['app', 'version'],
    inclusionPrefix: ['cluster_manager', 'listener_manager'],
    inclusionSuffix: ['upstream_cx_active'],
    inclusionRegexps: ['http\\.[0-9]+\\.rq_total', 'a"b<c>'],
    histogram_buckets: [{ match: { prefix: 'istiocustom' }, buckets: [1, 5, 10.5] }],
    zipkin: '{"address": "zipkin.istio-system", "port_value": 9411}',
    tracing_tls: '{"name":"envoy.transport_sockets.tls"}',
    envoy_metrics_service_address: '{"address": "metrics", "port_value": 15000}',
    envoy_metrics_service_tls: '{"name":"envoy.transport_sockets.tls"}',
    envoy_metrics_service_tcp_keepalive: '{"tcp_keepalive":{"keepalive_time":300}}',
    envoy_metrics_stats_compression: true,
    envoy_accesslog_service_address: '{"address": "als", "port_value": 9000}',
    envoy_accesslog_service_tls: '{"name":"envoy.transport_sockets.tls"}',
    envoy_accesslog_service_tcp_keepalive: '{"tcp_keepalive":{"keepalive_time":300}}',
    statsd: '{"address": "statsd", "port_value": 8125}',
    outlier_log_path: '/dev/stdout',
    load_stats_config_json_str: '{"api_type":"GRPC"}',
    enable_self_discovery: true,
    custom_file_path: '/etc/certs/custom',
  };
}

// A bootstrap-style template written for these tests; it uses the constructs Istio's
// tools/packaging/common/envoy_bootstrap.json relies on (trim markers inside JSON,
// if/else-if chains, or/and, range with two variables, js, toJson, nested fields).
const bootstrapLike = `{
  "node": {
    "id": "{{ .nodeID }}",
    "cluster": "{{ .cluster }}",
    "locality": {
      {{- if .region }}
      "region": "{{ .region }}"
      {{- end }}
      {{- if .zone }}
      {{- if .region }}
      ,
      {{- end }}
      "zone": "{{ .zone }}"
      {{- end }}
      {{- if .sub_zone }}
      {{- if or .region .zone }}
      ,
      {{- end }}
      "sub_zone": "{{ .sub_zone }}"
      {{- end }}
    },
    "metadata": {{ .meta_json_str }}
  },
  "stats_config": {
    "stats_tags": [
      {{- range $a, $tag := .extraStatTags }}
      {
        "regex": "({{ $tag }}=\\\\.=(.*?);\\\\.;)",
        "tag_name": "{{ $tag }}"
      },
      {{- end }}
      { "tag_name": "cache", "regex": "(cache\\\\.(.+?)\\\\.)" }
    ],
    {{- if .histogram_buckets }}
    "histogram_bucket_settings": {{ toJson .histogram_buckets }},
    {{- end }}
    "patterns": [
      {{- range $a, $s := .inclusionRegexps }}
      { "safe_regex": {"regex":"{{js $s}}"} },
      {{- end }}
      { "prefix": "istio" }
    ]
  },
  "admin": { "port_value": {{ .config.ProxyAdminPort }} },
  {{- if .zipkin }}
  "tracing": { "zipkin": {{ .zipkin }} },
  {{- else if .lightstep }}
  "tracing": { "lightstep": {{ .lightstep }} },
  {{- end }}
  {{ if and .envoy_metrics_service_address .statsd }}"both_sinks": true,{{ end }}
  "max_connections": {{ .global_downstream_max_connections }}
}
`;

describe('Istio bootstrap function map', () => {
  it('is toJSON plus sprig.GenericFuncMap (sprig overrides the builtin slice)', () => {
    const funcs = istioBootstrapFuncs();
    expect(Object.keys(funcs)).toContain('toJSON');
    expect(Object.keys(funcs)).toEqual(expect.arrayContaining(['toJson', 'toPrettyJson', 'default', 'hasKey', 'dict']));
    const t = parseTemplate('bootstrap', '{{ slice .l 1 }}|{{ toJSON .m }}|{{ toJSON .missing }}', funcs);
    expect(t.execute({ l: [1, 2, 3], m: { b: 1, a: '<' } })).toBe('[2 3]|{"a":"\\u003c","b":1}|{}');
    expect(() => parseTemplate('bootstrap', '{{ slice "abc" 1 }}', funcs).execute()).toThrow(
      'error calling slice: list should be type of slice or array but string',
    );
    // without Istio's map, the Go builtin slice applies
    expect(parseTemplate('t', '{{ slice "abc" 1 }}').execute()).toBe('bc');
  });

  it('toJSON returns {} for nil and on marshalling errors', () => {
    expect(istioToJSON(null)).toBe('{}');
    expect(istioToJSON(undefined)).toBe('{}');
    expect(istioToJSON(() => 1)).toBe('{}');
    expect(istioToJSON(NaN)).toBe('{}');
    expect(istioToJSON([1, 'a'])).toBe('[1,"a"]');
  });
});

describe('bootstrap-style template', () => {
  const t = parseTemplate('envoy_bootstrap.json', bootstrapLike, istioBootstrapFuncs());

  it('renders valid JSON with all options', () => {
    const out = JSON.parse(t.execute(fullParams())) as Record<string, unknown>;
    expect(out).toMatchObject({
      node: { locality: { region: 'us-east1', zone: 'us-east1-b', sub_zone: 'rack-1' }, metadata: { NAMESPACE: 'default' } },
      admin: { port_value: 15000 },
      tracing: { zipkin: { address: 'zipkin.istio-system', port_value: 9411 } },
      both_sinks: true,
      max_connections: 2147483647,
    });
    const stats = out['stats_config'] as Record<string, unknown>;
    expect(stats['histogram_bucket_settings']).toEqual([{ match: { prefix: 'istiocustom' }, buckets: [1, 5, 10.5] }]);
    expect(stats['stats_tags']).toHaveLength(3);
    expect((stats['patterns'] as { safe_regex?: { regex: string } }[])[1]).toEqual({ safe_regex: { regex: 'a"b<c>' } });
    // js escaping is what keeps the regex a valid JSON string
    expect(t.execute(fullParams())).toContain('"regex":"a\\"b\\u003Cc\\u003E"');
  });

  it('renders valid JSON with the minimal options', () => {
    const out = JSON.parse(t.execute(minimalParams())) as Record<string, unknown>;
    expect(out['node']).toMatchObject({ locality: {} });
    expect(out['tracing']).toBeUndefined();
  });

  it('renders region-less localities without stray commas', () => {
    const out = JSON.parse(t.execute({ ...minimalParams(), zone: 'z', sub_zone: 's' })) as { node: { locality: unknown } };
    expect(out.node.locality).toEqual({ zone: 'z', sub_zone: 's' });
  });
});

// Istio's real template, kept as a test fixture (test/fixtures/istio, same commit as the golden data).
const realTemplatePath = fileURLToPath(new URL('../../../test/fixtures/istio/envoy_bootstrap.json', import.meta.url));

describe("Istio's envoy_bootstrap.json", () => {
  it('parses and renders valid JSON for minimal and full parameters', () => {
    const text = readFileSync(realTemplatePath, 'utf8');
    const t = parseTemplate('envoy_bootstrap.json', text, istioBootstrapFuncs());
    for (const params of [minimalParams(), fullParams()]) {
      const out = JSON.parse(t.execute(params)) as Record<string, unknown>;
      expect(out).toHaveProperty('static_resources');
      expect(out).toHaveProperty('dynamic_resources');
    }
  });
});
