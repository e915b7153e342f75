import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileRegistry, fromBinary, fromJson, toBinary, toJson, type JsonValue } from '@bufbuild/protobuf';
import { file_google_protobuf_descriptor, type FileDescriptorSet } from '@bufbuild/protobuf/wkt';
import {
  BOOTSTRAP_TYPE,
  CONFIG_DUMP_TYPE,
  ENVOY_API_ADDITIONS,
  EnvoyJsonError,
  envoyProtoSources,
  envoyRegistry,
  loadEnvoyProtos,
  mergeEnvoyMessages,
  messageSchema,
  messagesEqual,
  parseBootstrap,
  parseEnvoyJson,
  toCanonicalJson,
} from './envoy-protos.js';
import { loadDescriptorSet, mapEntryName, protoJsonName } from './proto-descriptor-set.js';
import { istioTestdata } from './paths.js';

const bootstrapDir = path.join(istioTestdata, 'bootstrap');
const configDumpDir = path.join(istioTestdata, 'configdump');
const goldens = fs.readdirSync(bootstrapDir).filter((f) => f.endsWith('_golden.json')).sort();

function errorOf(fn: () => unknown): EnvoyJsonError {
  try {
    fn();
  } catch (err) {
    if (err instanceof EnvoyJsonError) return err;
    throw err;
  }
  throw new Error('expected an EnvoyJsonError, nothing was thrown');
}

describe('Envoy proto registry', () => {
  it('loads the Envoy, xds and udpa APIs into one registry', () => {
    const { registry, loadMs, source } = loadEnvoyProtos();
    for (const name of [
      BOOTSTRAP_TYPE,
      CONFIG_DUMP_TYPE,
      'envoy.config.listener.v3.Listener',
      'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
      'envoy.extensions.transport_sockets.tls.v3.Secret',
      'envoy.service.discovery.v3.DiscoveryRequest',
      'envoy.type.matcher.v3.StringMatcher',
      'udpa.type.v1.TypedStruct',
      'xds.type.v3.TypedStruct',
      'xds.type.matcher.v3.IPMatcher',
      'google.rpc.Status',
    ]) {
      expect(registry.getMessage(name), name).toBeDefined();
    }
    expect(registry.getService('envoy.service.discovery.v3.AggregatedDiscoveryService')?.methods.map((m) => m.name)).toEqual([
      'StreamAggregatedResources',
      'DeltaAggregatedResources',
    ]);
    expect(registry.getService('envoy.service.secret.v3.SecretDiscoveryService')).toBeDefined();
    // informative: cold conversion vs. cached descriptor set
    console.log(`Envoy proto registry: ${loadMs.toFixed(0)} ms (${source})`);
  });

  it('converts the protos the same way with and without the on-disk cache', () => {
    const fresh = loadEnvoyProtos({ useCache: false });
    expect(fresh.source).toBe('protos');
    // Skipped: Envoy's dead v2 API files (their envoy/api/v2 imports are not shipped), and the few v3
    // files that import third-party protos grpc-js-xds does not ship (opencensus, opentelemetry,
    // prometheus client_model).
    const v2 = /\/v2(alpha\d*)?\/|^envoy\/config\/cluster\/redis\/|^envoy\/config\/retry\/previous_priorities\//;
    expect(fresh.skippedFiles.filter((f) => !v2.test(f))).toEqual([
      'envoy/config/trace/v3/opencensus.proto',
      'envoy/config/trace/v3/trace.proto',
      'envoy/extensions/access_loggers/open_telemetry/v3/logs_service.proto',
      'envoy/service/metrics/v3/metrics_service.proto',
      'envoy/service/trace/v3/trace_service.proto',
    ]);
    const cached = loadEnvoyProtos();
    const names = (r: typeof fresh) => [...r.registry].filter((d) => d.kind === 'message').map((d) => d.typeName).sort();
    expect(names(cached)).toEqual(names(fresh));
    expect(fs.existsSync(cached.cacheFile) || cached.source === 'protos').toBe(true);
  });

  it('adds upstream fields the shipped envoy-api snapshot lacks, only where missing', () => {
    for (const a of ENVOY_API_ADDITIONS) {
      const field = messageSchema(a.message).fields.find((f) => f.name === a.field);
      expect(field?.number).toBe(a.number);
      if (a.oneof) expect(field?.oneof?.name).toBe(a.oneof);
    }
  });

  it('keeps proto field names, lowerCamelCase json names and map entries as protoc does', () => {
    const cluster = messageSchema('envoy.config.cluster.v3.Cluster');
    expect(cluster.field.connectTimeout?.jsonName).toBe('connectTimeout');
    const meta = messageSchema('envoy.config.core.v3.Metadata').fields.find((f) => f.name === 'filter_metadata');
    expect(meta?.fieldKind).toBe('map');
    const proto = envoyRegistry().getFile('envoy/config/core/v3/base.proto')?.proto;
    expect(proto?.syntax).toBe('proto3');
    const metadataProto = proto?.messageType.find((m) => m.name === 'Metadata');
    expect(metadataProto?.nestedType.map((n) => n.name)).toContain('FilterMetadataEntry');
  });
});

describe('converter quirks (synthetic protos)', () => {
  let dir: string;
  let set: FileDescriptorSet;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proto-conv-'));
    fs.mkdirSync(path.join(dir, 'demo'));
    fs.writeFileSync(
      path.join(dir, 'demo', 'common.proto'),
      `syntax = "proto3";
package demo.common;
enum Color { option allow_alias = true; COLOR_UNSPECIFIED = 0; RED = 1; CRIMSON = 1; }
message Leaf { string leaf_name = 1; }
`,
    );
    fs.writeFileSync(
      path.join(dir, 'demo', 'main.proto'),
      `syntax = "proto3";
package demo.v1;
import "demo/common.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/any.proto";
import "google/protobuf/wrappers.proto";
message Thing {
  reserved 7, 100 to max;
  reserved "gone";
  optional int32 maybe_count = 1;
  map<string, demo.common.Leaf> leaves_by_name = 2;
  map<int32, demo.common.Color> color_by_id = 3;
  string renamed_field = 4 [json_name = "customName"];
  oneof choice { string a_text = 5; demo.common.Leaf a_leaf = 6; }
  google.protobuf.Duration wait = 8;
  google.protobuf.Struct extra = 9;
  google.protobuf.Any payload = 11;
  google.protobuf.UInt32Value limit = 12;
  repeated Inner inners = 13;
  message Inner { enum Kind { KIND_UNSPECIFIED = 0; BIG = 1; } Kind kind = 1; }
}
`,
    );
    fs.writeFileSync(
      path.join(dir, 'demo', 'old.proto'),
      `syntax = "proto2";
package demo.old;
message Legacy { optional int32 n = 1 [default = 7]; required string id = 2; }
`,
    );
    fs.writeFileSync(path.join(dir, 'demo', 'broken.proto'), `syntax = "proto3";\npackage demo.broken;\nimport "demo/missing.proto";\nmessage B { int32 x = 1; }\n`);
    set = loadDescriptorSet({
      includeDirs: [dir],
      files: ['demo/main.proto', 'demo/old.proto', 'demo/broken.proto'],
      descriptorProtoPath: envoyProtoSources().descriptorProtoPath,
    }).set;
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function registry() {
    const wkt = loadEnvoyProtos().registry;
    const files = ['google/protobuf/any.proto', 'google/protobuf/duration.proto', 'google/protobuf/struct.proto', 'google/protobuf/wrappers.proto'].map(
      (n) => wkt.getFile(n)!.proto,
    );
    return createFileRegistry({ ...set, file: [file_google_protobuf_descriptor.proto, ...files, ...set.file] });
  }

  it('skips files whose imports are missing and orders files after their dependencies', () => {
    const converted = loadDescriptorSet({ includeDirs: [dir], files: ['demo/main.proto', 'demo/broken.proto'], descriptorProtoPath: envoyProtoSources().descriptorProtoPath });
    expect(converted.skipped).toEqual(['demo/broken.proto']);
    const names = converted.set.file.map((f) => f.name);
    expect(names.indexOf('demo/common.proto')).toBeLessThan(names.indexOf('demo/main.proto'));
    expect(converted.set.file.find((f) => f.name === 'demo/main.proto')?.dependency).toEqual([
      'demo/common.proto',
      'google/protobuf/any.proto',
      'google/protobuf/duration.proto',
      'google/protobuf/struct.proto',
      'google/protobuf/wrappers.proto',
    ]);
  });

  it('handles proto3 optional, maps, json_name, oneofs, aliases and proto2 defaults', () => {
    const reg = registry();
    const thing = reg.getMessage('demo.v1.Thing')!;
    expect(thing.field.maybeCount?.presence).toBe(1 /* EXPLICIT */);
    expect(thing.oneofs.map((o) => o.name)).toEqual(['choice']); // synthetic `_maybe_count` is not a real oneof
    expect(thing.field.leavesByName?.fieldKind).toBe('map');
    expect(thing.field.colorById?.fieldKind).toBe('map');
    expect(thing.field.renamedField?.jsonName).toBe('customName');

    const json = {
      maybeCount: 0,
      leavesByName: { x: { leafName: 'l' } },
      color_by_id: { '5': 'CRIMSON' },
      customName: 'r',
      aLeaf: { leaf_name: 'z' },
      wait: '3.5s',
      extra: { k: [1, 'two', { three: null }] },
      payload: { '@type': 'type.googleapis.com/demo.common.Leaf', leafName: 'in-any' },
      limit: 0,
      inners: [{ kind: 'BIG' }],
    };
    const msg = fromJson(thing, json, { registry: reg });
    const out = toJson(thing, msg, { registry: reg });
    const { color_by_id: _colors, ...rest } = json;
    // aliases print as the first name; durations print with 3, 6 or 9 fractional digits
    expect(out).toEqual({ ...rest, colorById: { '5': 'RED' }, aLeaf: { leafName: 'z' }, wait: '3.500s' });
    // explicit presence survives the binary round trip (0 is kept for `optional`)
    const again = fromBinary(thing, toBinary(thing, msg));
    expect(toJson(thing, again, { registry: reg })).toEqual(out);
    expect(() => fromJson(thing, { renamed_field: 'x', customName: 'y' }, { registry: reg })).toThrow(/set multiple times/);
    expect(() => fromJson(thing, { gone: 1 }, { registry: reg })).toThrow(/unknown/);

    const legacy = reg.getMessage('demo.old.Legacy')!;
    const n = legacy.field.n;
    expect(n?.fieldKind === 'scalar' ? n.getDefaultValue() : undefined).toBe(7);
    expect(reg.getFile('demo/old.proto')?.proto.syntax).toBe('proto2');
  });

  it('names map entries and json fields like protoc', () => {
    expect(mapEntryName('filter_metadata')).toBe('FilterMetadataEntry');
    expect(mapEntryName('typed_extension_protocol_options')).toBe('TypedExtensionProtocolOptionsEntry');
    expect(protoJsonName('stats_flush_interval')).toBe('statsFlushInterval');
    expect(protoJsonName('ipv4_compat')).toBe('ipv4Compat');
  });
});

describe('Istio bootstrap goldens', () => {
  it.each(goldens)('%s parses as envoy.config.bootstrap.v3.Bootstrap', (file) => {
    const text = fs.readFileSync(path.join(bootstrapDir, file), 'utf8');
    const msg = parseBootstrap(text);
    expect(msg.$typeName).toBe(BOOTSTRAP_TYPE);
    // canonical JSON re-parses to an equal message
    expect(messagesEqual(BOOTSTRAP_TYPE, msg, toCanonicalJson(BOOTSTRAP_TYPE, msg))).toBe(true);
  });

  it('the stats_eviction_interval golden needs the upstream Bootstrap field added to the old snapshot', () => {
    const json = JSON.parse(fs.readFileSync(path.join(bootstrapDir, 'stats_eviction_interval_golden.json'), 'utf8')) as Record<string, unknown>;
    expect(json.stats_eviction_interval).toBe('10s');
    expect(toCanonicalJson(BOOTSTRAP_TYPE, json)).toMatchObject({ stats_eviction_interval: '10s' });
  });

  it('compares semantically: key order and camelCase spelling do not matter, values do', () => {
    const text = fs.readFileSync(path.join(bootstrapDir, 'default_golden.json'), 'utf8');
    const json = JSON.parse(text) as { admin: { address: { socket_address: { port_value: number } } } };
    const reordered = Object.fromEntries(Object.entries(json).reverse());
    expect(messagesEqual(BOOTSTRAP_TYPE, json, reordered)).toBe(true);
    const camel = toJson(messageSchema(BOOTSTRAP_TYPE), parseBootstrap(json), { registry: envoyRegistry() });
    expect(messagesEqual(BOOTSTRAP_TYPE, json, camel)).toBe(true);
    const changed = structuredClone(json);
    changed.admin.address.socket_address.port_value += 1;
    expect(messagesEqual(BOOTSTRAP_TYPE, json, changed)).toBe(false);
  });
});

describe('strict parsing', () => {
  it('rejects an unknown field deep inside the bootstrap, naming its path', () => {
    const err = errorOf(() =>
      parseBootstrap({
        static_resources: {
          clusters: [
            { name: 'ok' },
            { name: 'c', load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 80, prot: 'TCP' } } } }] }] } },
          ],
        },
      }),
    );
    expect(err.path).toBe('static_resources.clusters[1].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.prot');
    expect(err.message).toContain('unknown field "prot" in envoy.config.core.v3.SocketAddress');
    expect(err.message).toContain(err.path);
    expect(err.typeName).toBe(BOOTSTRAP_TYPE);
  });

  it('rejects an unknown field inside an Any payload, naming the path through it', () => {
    const err = errorOf(() =>
      parseBootstrap({
        static_resources: {
          listeners: [{
            name: 'l',
            filter_chains: [{
              filters: [{
                name: 'hcm',
                typed_config: {
                  '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                  stat_prefix: 's',
                  http_filters: [{ name: 'r', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', dynamicStatz: true } }],
                },
              }],
            }],
          }],
        },
      }),
    );
    expect(err.path).toBe('static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.dynamicStatz');
    expect(err.message).toContain('envoy.extensions.filters.http.router.v3.Router');
  });

  it('rejects an @type it cannot resolve', () => {
    const err = errorOf(() =>
      parseBootstrap({ bootstrap_extensions: [{ name: 'x', typed_config: { '@type': 'type.googleapis.com/istio.nope.v1.Missing', a: 1 } }] }),
    );
    expect(err.path).toBe('bootstrap_extensions[0].typed_config["@type"]');
    expect(err.message).toContain('type.googleapis.com/istio.nope.v1.Missing');
  });

  it('rejects bad values with the field path', () => {
    expect(errorOf(() => parseBootstrap({ admin: { address: { socket_address: { address: '::1', port_value: 'x' } } } })).path).toBe(
      'admin.address.socket_address.port_value',
    );
    expect(errorOf(() => parseBootstrap({ stats_flush_interval: '5 seconds' })).path).toBe('stats_flush_interval');
    expect(errorOf(() => parseBootstrap({ static_resources: { clusters: [{ name: 'c', type: 'NOT_A_TYPE' }] } })).path).toBe('static_resources.clusters[0].type');
    expect(errorOf(() => parseBootstrap({ stats_config: { stats_tags: [{ tag_name: 't', regex: 'r', fixed_value: 'f' }] } })).message).toMatch(
      /stats_config\.stats_tags\[0\].*oneof set multiple times/,
    );
    expect(errorOf(() => parseBootstrap('{"node": {"id": "a", "id": "b"}}')).message).toContain('duplicate object key "id"');
    expect(errorOf(() => parseBootstrap('{"node": ')).message).toContain('not valid JSON');
    expect(errorOf(() => parseEnvoyJson('envoy.config.core.v3.Node', { metadata: { filter: 1 }, locality: { zone: 5 } })).path).toBe('locality.zone');
  });

  it('can skip unknown fields the way Envoy does under --allow-unknown-static-fields', () => {
    const msg = parseBootstrap({ node: { id: 'n', not_a_field: 1 } }, { ignoreUnknownFields: true });
    expect(toCanonicalJson(BOOTSTRAP_TYPE, msg)).toEqual({ node: { id: 'n' } });
    expect(() => parseBootstrap({ node: { id: 'n', not_a_field: 1 } })).toThrow(EnvoyJsonError);
  });

  it('names unknown message types', () => {
    expect(() => parseEnvoyJson('envoy.config.nope.v3.Nope', {})).toThrow(/unknown message type/);
  });
});

describe('well-known types', () => {
  const cases: [string, JsonValue][] = [
    ['google.protobuf.Duration', '1.500s'],
    ['google.protobuf.Duration', '-0.000000001s'],
    ['google.protobuf.Duration', '315576000000s'],
    ['google.protobuf.Struct', { a: 1, b: [true, null, 'x', { c: 2.5 }], d: {} }],
    ['google.protobuf.Value', [1, 'a']],
    ['google.protobuf.UInt32Value', 15000],
    ['google.protobuf.BoolValue', false],
    ['google.protobuf.StringValue', ''],
    ['google.protobuf.UInt64Value', '18446744073709551615'],
    ['google.protobuf.Timestamp', '2026-08-22T10:00:00.123Z'],
    ['google.protobuf.Any', { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'x' }],
    ['google.protobuf.Any', { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '2s' }],
    ['google.protobuf.Any', { '@type': 'type.googleapis.com/envoy.config.core.v3.Node', id: 'n', metadata: { k: 'v' } }],
  ];
  it.each(cases)('%s round-trips %j through JSON and binary', (typeName, json) => {
    const schema = messageSchema(typeName);
    const registry = envoyRegistry();
    const msg = fromJson(schema, json, { registry });
    expect(toJson(schema, msg, { registry })).toEqual(json);
    const bin = fromBinary(schema, toBinary(schema, msg));
    expect(toJson(schema, bin, { registry })).toEqual(json);
  });

  it('round-trips wrappers, Duration, Struct and Any inside Envoy messages', () => {
    const json = {
      name: 'c',
      connect_timeout: '0.250s',
      per_connection_buffer_limit_bytes: 32768,
      metadata: { filter_metadata: { istio: { services: [{ host: 'a.b', name: 'a' }], default_original_port: 8080 } } },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: { max_concurrent_streams: 1073741824 } },
        },
      },
    };
    const t = 'envoy.config.cluster.v3.Cluster';
    expect(toCanonicalJson(t, parseEnvoyJson(t, json))).toEqual(json);
    expect(toCanonicalJson(t, { ...json, per_connection_buffer_limit_bytes: 0 })).toMatchObject({ per_connection_buffer_limit_bytes: 0 });
  });

  it('compares Any payloads unpacked, so map order inside them does not matter', () => {
    const any = (order: string[]) => ({
      name: 'x',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.config.core.v3.Metadata',
        filter_metadata: Object.fromEntries(order.map((k) => [k, { v: k }])),
      },
    });
    const t = 'envoy.config.core.v3.TypedExtensionConfig';
    expect(messagesEqual(t, any(['a', 'b', 'c']), any(['c', 'a', 'b']))).toBe(true);
    expect(messagesEqual(t, any(['a', 'b']), any(['a', 'b', 'c']))).toBe(false);
  });
});

describe('merge (as Envoy applies --config-yaml)', () => {
  it('replaces set scalars, merges messages and appends repeated fields', () => {
    const base = parseBootstrap({ node: { id: 'a', cluster: 'c' }, stats_config: { stats_tags: [{ tag_name: 'one', regex: 'x' }] } });
    const overlay = parseBootstrap({ node: { id: 'b' }, stats_config: { stats_tags: [{ tag_name: 'two', fixed_value: 'y' }] } });
    const merged = mergeEnvoyMessages(BOOTSTRAP_TYPE, base, overlay);
    expect(toCanonicalJson(BOOTSTRAP_TYPE, merged)).toEqual({
      node: { cluster: 'c', id: 'b' },
      stats_config: { stats_tags: [{ regex: 'x', tag_name: 'one' }, { fixed_value: 'y', tag_name: 'two' }] },
    });
    expect(toCanonicalJson(BOOTSTRAP_TYPE, base)).toMatchObject({ node: { id: 'a' } }); // inputs untouched
  });
});

describe('Envoy config dumps', () => {
  it.each(fs.readdirSync(configDumpDir).filter((f) => f.endsWith('.json')).sort())('%s parses as envoy.admin.v3.ConfigDump', (file) => {
    const msg = parseEnvoyJson(CONFIG_DUMP_TYPE, fs.readFileSync(path.join(configDumpDir, file), 'utf8'));
    const json = toCanonicalJson(CONFIG_DUMP_TYPE, msg) as { configs: unknown[] };
    expect(json.configs.length).toBeGreaterThan(0);
  });
});
