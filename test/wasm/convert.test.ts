// ECDS conversion against a stub module source: what gets rewritten, kept, stripped, replaced by
// RBAC or NACKed; unknown fields surviving; the response bytes around the rewritten resources
// staying byte-exact (SotW and Delta); resources converted concurrently.

import { fromBinary, fromJson, toBinary, type DescMessage } from '@bufbuild/protobuf';
import { TypedExtensionConfigSchema } from '../../src/gen/envoy/config/core/v3/extension_pb.js';
import { WasmSchema as HttpWasmSchema } from '../../src/gen/envoy/extensions/filters/http/wasm/v3/wasm_pb.js';
import { PluginConfigSchema, VmConfigSchema } from '../../src/gen/envoy/extensions/wasm/v3/wasm_pb.js';
import { describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics/registry.js';
import { WasmEcdsInterceptor, convertResource, convertResources, defaultFilterConfig, type ModuleSource } from '../../src/wasm/convert.js';
import type { GetOptions } from '../../src/wasm/cache.js';
import { DELTA, SOTW } from '../../src/xds/protocol.js';
import { summarizeSotwResponse } from '../../src/xds/wire.js';
import { messageSchema } from '../support/envoy-protos.js';
import {
  HTTP_WASM_URL,
  TEC,
  TEC_URL,
  canonical,
  decode,
  deltaResponse,
  dumpFilters,
  encode,
  rawFields,
  sotwResponse,
  sotwValues,
  tecBytes,
  wasmFilter,
  withField,
  withoutType,
} from './ecds-fixtures.js';

const LOCAL = '/var/lib/istio/data/0123/abcd.wasm';

function stub(behaviour: (url: string, opts: GetOptions) => Promise<string> | string = () => LOCAL): ModuleSource & { calls: { url: string; opts: GetOptions }[] } {
  const calls: { url: string; opts: GetOptions }[] = [];
  return {
    calls,
    get: async (url, opts) => {
      calls.push({ url, opts });
      return behaviour(url, opts);
    },
  };
}

const failing = (): ModuleSource & { calls: { url: string; opts: GetOptions }[] } =>
  stub(() => {
    throw new Error('registry said no');
  });

type Json = Record<string, unknown>;
const signal = new AbortController().signal;

async function intercept(source: ModuleSource, message: Buffer, delta = false) {
  const summary = summarizeSotwResponse(message);
  return new WasmEcdsInterceptor(source).intercept(message, { protocol: delta ? DELTA : SOTW, summary, signal });
}

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  return m.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

/** The dump's filter with its local code turned into a remote one (as istiod sends it). */
function dumpAsRemote(f: Json, uri: string, extraEnv: Record<string, string>): Json {
  const j = structuredClone(f) as { typed_config: { config: { vm_config: { code: unknown; environment_variables?: { key_values?: Record<string, string> } } } } };
  const vm = j.typed_config.config.vm_config;
  vm.code = { remote: { http_uri: { uri, cluster: 'x', timeout: '30s' }, sha256: 'nil' } };
  vm.environment_variables = { ...vm.environment_variables, key_values: { ...vm.environment_variables?.key_values, ...extraEnv } };
  return j as unknown as Json;
}

describe('ECDS conversion: Istio config dump resources', () => {
  const filters = dumpFilters();
  const wasmOnes = filters.filter((f) => f.typed_config);

  it('leaves Wasm filters with local code alone: the response goes on byte for byte', async () => {
    expect(wasmOnes).toHaveLength(2);
    const msg = sotwResponse(wasmOnes.map((f) => ({ value: tecBytes(f) })), { controlPlane: 'istiod-1', unknown: 'future' });
    const action = await intercept(stub(), msg);
    expect(action.kind).toBe('forward');
    expect(Buffer.from((action as { message: Uint8Array }).message).equals(msg)).toBe(true);
  });

  it('rewrites remote code to the cached file, strips ISTIO_META_* env and keeps every other field (round trip)', async () => {
    const source = stub();
    const secret = JSON.stringify({ auths: { 'gcr.io': { auth: Buffer.from('u:p4ss').toString('base64') } } });
    for (const f of wasmOnes) {
      const remote = dumpAsRemote(f, 'oci://gcr.io/istio/plugin:1.0', { ISTIO_META_WASM_IMAGE_PULL_SECRET: secret, ISTIO_META_WASM_IMAGE_PULL_POLICY: 'Always' });
      const out = await convertResource({ typeUrl: TEC_URL, value: tecBytes(remote) }, source);
      expect(out.kind).toBe('rewritten');
      const got = decode(TEC, (out as { value: Uint8Array }).value);
      // expected: the dump's resource, local filename swapped in, istiod's env vars gone
      const want = structuredClone(f) as { typed_config: { config: { vm_config: { code: unknown; environment_variables?: { host_env_keys?: string[]; key_values?: unknown } } } } };
      const vm = want.typed_config.config.vm_config;
      vm.code = { local: { filename: LOCAL } };
      if (vm.environment_variables?.host_env_keys?.length) delete vm.environment_variables.key_values;
      else delete vm.environment_variables;
      expect(got).toEqual(canonical(TEC, withoutType(want as unknown as Json)));
    }
    expect(source.calls.map((c) => c.opts)).toEqual([
      expect.objectContaining({ checksum: '', resourceName: 'default.httpbin-rate-limiting', resourceVersion: '1605', pullPolicy: 'Always', requestTimeoutMs: 30_000 }),
      expect.objectContaining({ checksum: '', resourceName: 'default.display-metadata', resourceVersion: '1606', pullPolicy: 'Always' }),
    ]);
    expect(Buffer.from(source.calls[0]!.opts.pullSecret!).toString()).toBe(secret);
  });

  it('NACKs ECDS resources without a typed_config, as Istio does (Envoy would reject them too)', async () => {
    const empty = filters.filter((f) => !f.typed_config);
    expect(empty.length).toBeGreaterThan(0);
    const action = await intercept(stub(), sotwResponse(empty.map((f) => ({ value: tecBytes(f) }))));
    expect(action.kind).toBe('nack');
    expect((action as { reason: string }).reason).toMatch(/^4 errors occurred:\n\t\* typed extension config "istio.io\/telemetry\/stats\/prometheus\/sidecar\/.*" does not contain any typed config/);
  });
});

describe('ECDS conversion: shapes', () => {
  it('converts the network Wasm filter', async () => {
    const out = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('tcp-plugin', 'https://example.com/p.wasm', { network: true, sha256: 'ab'.repeat(32) })) }, stub());
    const got = decode(TEC, (out as { value: Uint8Array }).value) as Json;
    expect(got).toMatchObject({ name: 'tcp-plugin', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm', config: { vm_config: { code: { local: { filename: LOCAL } } } } } });
  });

  for (const tsType of ['udpa.type.v1.TypedStruct', 'xds.type.v3.TypedStruct']) {
    it(`unwraps a Wasm filter inside a ${tsType} into the typed Wasm message`, async () => {
      const plain = wasmFilter('ts-plugin', 'https://example.com/p.wasm', { env: { ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: '7', KEEP: 'me' } }) as { typed_config: Json };
      const { ['@type']: _t, ...wasmJson } = plain.typed_config;
      const wrapped = { name: 'ts-plugin', typed_config: { '@type': `type.googleapis.com/${tsType}`, type_url: HTTP_WASM_URL, value: wasmJson } };
      const source = stub();
      const out = await convertResource({ typeUrl: TEC_URL, value: encode(TEC, wrapped) }, source);
      const got = decode(TEC, (out as { value: Uint8Array }).value) as { typed_config: { '@type': string; config: { vm_config: Json } } };
      expect(got.typed_config['@type']).toBe(HTTP_WASM_URL);
      expect(got.typed_config.config.vm_config).toEqual({ runtime: 'envoy.wasm.runtime.v8', code: { local: { filename: LOCAL } }, environment_variables: { key_values: { KEEP: 'me' } } });
      expect(source.calls[0]!.opts.resourceVersion).toBe('7');
    });
  }

  it('passes a TypedStruct of another type and non-Wasm configs through untouched', async () => {
    const other = { name: 'lua', typed_config: { '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct', type_url: 'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua', value: { inline_code: 'x' } } };
    const str = { name: 'str', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'x' } };
    for (const json of [other, str]) {
      expect(await convertResource({ typeUrl: TEC_URL, value: encode(TEC, json) }, stub())).toEqual({ kind: 'unchanged' });
    }
  });

  it('keeps unknown fields at every level it re-encodes (a newer istiod\'s additions)', async () => {
    // VmConfig, PluginConfig, Wasm and TypedExtensionConfig each get a field the agent's schema lacks
    const unknown: [DescMessage, number][] = [[VmConfigSchema, 88], [PluginConfigSchema, 99], [HttpWasmSchema, 1000], [TypedExtensionConfigSchema, 1001]];
    for (const [schema, no] of unknown) expect(schema.fields.map((f) => f.number), `${schema.typeName} ${no}`).not.toContain(no);
    const vm = withField(encode('envoy.extensions.wasm.v3.VmConfig', { runtime: 'envoy.wasm.runtime.v8', code: { remote: { http_uri: { uri: 'https://e.com/a.wasm', cluster: 'c', timeout: '5s' }, sha256: '' } } }), 88, 'vm-extra');
    let plugin = withField(encode('envoy.extensions.wasm.v3.PluginConfig', { name: 'p', root_id: 'r' }), 3, vm);
    plugin = withField(plugin, 99, new Uint8Array([0x08, 0x01]));
    let wasm = withField(new Uint8Array(0), 1, plugin);
    wasm = withField(wasm, 1000, 'wasm-extra');
    const any = withField(withField(new Uint8Array(0), 1, HTTP_WASM_URL), 2, wasm);
    let tec = withField(withField(new Uint8Array(0), 1, 'p'), 2, any);
    tec = withField(tec, 1001, 'tec-extra');

    const out = await convertResource({ typeUrl: TEC_URL, value: tec }, stub());
    const value = (out as { value: Uint8Array }).value;
    const ec = fromBinary(TypedExtensionConfigSchema, value);
    expect(ec.$unknown?.map((u) => u.no)).toEqual([1001]);
    const w = fromBinary(HttpWasmSchema, ec.typedConfig!.value);
    expect(w.$unknown?.map((u) => u.no)).toEqual([1000]);
    expect(w.config!.$unknown?.map((u) => u.no)).toEqual([99]);
    expect(w.config!.vm.case === 'vmConfig' && w.config!.vm.value.$unknown?.map((u) => u.no)).toEqual([88]);
    expect(Buffer.from(value).includes(Buffer.from('vm-extra'))).toBe(true);
    // and the filename is in
    expect(decode(TEC, value)).toMatchObject({ typed_config: { config: { vm_config: { code: { local: { filename: LOCAL } } } } } });
  });

  it("passes istiod's hints to the cache: sha256 ('nil' = none), timeout (default 5s), pull policy, resource version", async () => {
    const source = stub();
    const j = wasmFilter('hints', 'oci://r.example/p:v1', { sha256: 'nil', env: { ISTIO_META_WASM_IMAGE_PULL_POLICY: 'IfNotPresent', ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: '42' } }) as { typed_config: { config: { vm_config: { code: { remote: { http_uri: Json } } } } } };
    delete j.typed_config.config.vm_config.code.remote.http_uri.timeout;
    await convertResource({ typeUrl: TEC_URL, value: tecBytes(j as unknown as Json) }, source);
    expect(source.calls[0]).toEqual({ url: 'oci://r.example/p:v1', opts: { checksum: '', resourceName: 'hints', resourceVersion: '42', requestTimeoutMs: 5000, pullPolicy: 'IfNotPresent' } });
  });
});

describe('ECDS conversion: fallbacks and NACKs', () => {
  const rbac = (value: Uint8Array): Json => decode(TEC, value) as Json;

  it('replaces a filter whose module cannot be fetched with deny-all RBAC (fail closed, the default)', async () => {
    const before = await counter('istio_agent_wasm_config_conversion_count', { result: 'fetch_failure' });
    const out = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('closed', 'https://e.com/a.wasm')) }, failing());
    expect(out).toMatchObject({ kind: 'rewritten', fallback: 'deny' });
    expect(rbac((out as { value: Uint8Array }).value)).toEqual({
      name: 'closed',
      typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules: {}, rules_stat_prefix: 'wasm-default-deny' },
    });
    expect(await counter('istio_agent_wasm_config_conversion_count', { result: 'fetch_failure' })).toBe(before + 1);
  });

  it('uses allow-all RBAC for fail_open, and failure_policy over fail_open', async () => {
    const open = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('open', 'https://e.com/a.wasm', { failOpen: true })) }, failing());
    expect(rbac((open as { value: Uint8Array }).value)).toEqual({ name: 'open', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC', rules_stat_prefix: 'wasm-default-allow' } });

    // failure_policy (field 7, newer than the test registry's snapshot): built with the agent's schema
    const build = (policy: string, failOpen: boolean): Uint8Array => {
      const json = { config: { name: 'fp', fail_open: failOpen, failure_policy: policy, vm_config: { runtime: 'v8', code: { remote: { http_uri: { uri: 'https://e.com/a.wasm', timeout: '1s' } } } } } };
      const wasm = toBinary(HttpWasmSchema, fromJson(HttpWasmSchema, json));
      return withField(withField(new Uint8Array(0), 1, 'fp'), 2, withField(withField(new Uint8Array(0), 1, HTTP_WASM_URL), 2, wasm));
    };
    const fo = await convertResource({ typeUrl: TEC_URL, value: build('FAIL_OPEN', false) }, failing());
    expect(fo).toMatchObject({ fallback: 'allow' });
    const fc = await convertResource({ typeUrl: TEC_URL, value: build('FAIL_CLOSED', true) }, failing());
    expect(fc).toMatchObject({ fallback: 'deny' });
  });

  it('uses the network RBAC filter (stat_prefix) for network Wasm filters', async () => {
    const deny = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('tcp', 'https://e.com/a.wasm', { network: true })) }, failing());
    expect(rbac((deny as { value: Uint8Array }).value)).toEqual({ name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', rules: {}, stat_prefix: 'wasm-default-deny' } });
    const allow = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('tcp', 'https://e.com/a.wasm', { network: true, failOpen: true })) }, failing());
    expect(rbac((allow as { value: Uint8Array }).value)).toEqual({ name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', stat_prefix: 'wasm-default-allow' } });
    // exactly Istio's encoding (go-control-plane marshals in field order)
    expect(Buffer.from(defaultFilterConfig('tcp', true, true)).equals(Buffer.from(encode(TEC, { name: 'tcp', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC', stat_prefix: 'wasm-default-allow' } })))).toBe(true);
  });

  it('falls back (without fetching) on an empty pull secret or a remote without http_uri', async () => {
    const source = stub();
    const noSecret = await convertResource({ typeUrl: TEC_URL, value: tecBytes(wasmFilter('s', 'oci://r/p:1', { env: { ISTIO_META_WASM_IMAGE_PULL_SECRET: '' } })) }, source);
    expect(noSecret).toMatchObject({ kind: 'rewritten', fallback: 'deny' });
    const noUri = wasmFilter('u', 'x') as { typed_config: { config: { vm_config: { code: unknown } } } };
    noUri.typed_config.config.vm_config.code = { remote: { sha256: 'x' } };
    const before = await counter('istio_agent_wasm_config_conversion_count', { result: 'miss_remote_fetch_hint' });
    expect(await convertResource({ typeUrl: TEC_URL, value: tecBytes(noUri as unknown as Json) }, source)).toMatchObject({ fallback: 'deny' });
    expect(await counter('istio_agent_wasm_config_conversion_count', { result: 'miss_remote_fetch_hint' })).toBe(before + 1);
    expect(source.calls).toHaveLength(0);
  });

  it('NACKs malformed configs with a reason, without repeating the config (it may hold the pull secret)', async () => {
    const secret = '{"auths":{"r":{"auth":"c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M="}}}';
    const noVm = { name: 'novm', typed_config: { '@type': HTTP_WASM_URL, config: { name: 'novm' } } };
    const badStruct = {
      name: 'bad-struct',
      typed_config: { '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct', type_url: HTTP_WASM_URL, value: { config: { vm_config: { not_a_field: 1, environment_variables: { key_values: { ISTIO_META_WASM_IMAGE_PULL_SECRET: secret } } } } } },
    };
    const cases: [Uint8Array, string, RegExp][] = [
      [new Uint8Array([0x0a, 0xff]), TEC_URL, /failed to unmarshal extension config resource/],
      [tecBytes(wasmFilter('x', 'y')), 'type.googleapis.com/envoy.config.cluster.v3.Cluster', /mismatched message type/],
      [encode(TEC, noVm), TEC_URL, /no remote and local load found in Wasm HTTP filter "novm"/],
      [encode(TEC, badStruct), TEC_URL, /failed to convert extension config struct of "bad-struct" to Wasm HTTP filter/],
      [withField(withField(new Uint8Array(0), 1, 'garbage-wasm'), 2, withField(withField(new Uint8Array(0), 1, HTTP_WASM_URL), 2, new Uint8Array([0x0a, 0x05, 0x01]))), TEC_URL, /failed to unmarshal extension config resource into Wasm HTTP filter/],
    ];
    for (const [value, typeUrl, reason] of cases) {
      const action = await intercept(stub(), sotwResponse([{ typeUrl, value }]));
      expect(action.kind).toBe('nack');
      expect((action as { reason: string }).reason).toMatch(reason);
      expect((action as { reason: string }).reason).not.toContain('c2VjcmV0');
    }
  });
});

describe('ECDS conversion: responses', () => {
  it('SotW: rewrites only the remote Wasm resources; every other byte of the response is kept', async () => {
    const [local] = dumpFilters().filter((f) => f.typed_config);
    const other = encode(TEC, { name: 'str', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'x' } });
    const remote = tecBytes(wasmFilter('remote', 'https://e.com/a.wasm'));
    const msg = sotwResponse([{ value: other }, { value: remote }, { value: tecBytes(local!) }], { version: 'v9', nonce: 'abc', controlPlane: 'istiod-7', unknown: 'from-the-future' });
    const action = await intercept(stub(), msg);
    const out = (action as { message: Uint8Array }).message;
    const a = rawFields(msg);
    const b = rawFields(out);
    expect(b.map((f) => f.field)).toEqual(a.map((f) => f.field));
    const changed = a.flatMap((f, i) => (f.bytes.equals(b[i]!.bytes) ? [] : [i]));
    expect(changed).toEqual([2]); // [version, other, remote, local, type_url, nonce, control_plane, unknown]
    const values = sotwValues(out);
    expect(decode(TEC, values[1]!)).toMatchObject({ name: 'remote', typed_config: { config: { vm_config: { code: { local: { filename: LOCAL } } } } } });
  });

  it('Delta: replaces the Any of rewritten resources only, keeping name, version, aliases, unknown fields and removals', async () => {
    const remote = tecBytes(wasmFilter('remote', 'https://e.com/a.wasm'));
    const other = encode(TEC, { name: 'str', typed_config: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'x' } });
    const msg = deltaResponse([{ name: 'str', value: other }, { name: 'remote', value: remote }], { removed: ['gone'], unknown: 'later' });
    const out = (await intercept(stub(), msg, true)) as { kind: string; message: Uint8Array };
    expect(out.kind).toBe('forward');
    const a = rawFields(msg);
    const b = rawFields(out.message);
    expect(a.map((f, i) => f.bytes.equals(b[i]!.bytes))).toEqual([true, true, false, true, true, true, true]);
    // inside the rewritten Resource: version, name, alias and the unknown field are unchanged
    const inner = (f: Buffer): { field: number; bytes: Buffer }[] => rawFields(f.subarray(f.length - lengthOfPayload(f)));
    const ia = inner(a[2]!.bytes);
    const ib = inner(b[2]!.bytes);
    expect(ib.map((f) => f.field)).toEqual([1, 2, 3, 4, 77]);
    expect(ia.map((f, i) => f.bytes.equals(ib[i]!.bytes))).toEqual([true, false, true, true, true]);
    const decoded = fromBinary(messageSchema('envoy.service.discovery.v3.DeltaDiscoveryResponse'), out.message) as unknown as { resources: { name: string; resource: { value: Uint8Array } }[]; removedResources: string[] };
    expect(decoded.removedResources).toEqual(['gone']);
    expect(decode(TEC, decoded.resources[1]!.resource.value)).toMatchObject({ name: 'remote', typed_config: { config: { vm_config: { code: { local: { filename: LOCAL } } } } } });
  });

  it('converts the resources of one response concurrently, and answers once all are done', async () => {
    let inFlight = 0;
    let peak = 0;
    const slow = stub(async () => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 50));
      inFlight--;
      return LOCAL;
    });
    const resources = Array.from({ length: 8 }, (_, i) => ({ typeUrl: TEC_URL, value: tecBytes(wasmFilter(`p${i}`, `https://e.com/${i}.wasm`)) }));
    const { outcomes, error } = await convertResources(resources, slow);
    expect(error).toBeUndefined();
    expect(outcomes.every((o) => o.kind === 'rewritten')).toBe(true);
    // all eight fetches were in flight at once (one at a time would peak at 1)
    expect(peak).toBe(8);
  });
});

/** The payload length of a length-delimited field given its raw bytes (tag + len + payload). */
function lengthOfPayload(raw: Buffer): number {
  let i = 0;
  while (raw[i]! & 0x80) i++; // tag
  i++;
  let len = 0;
  let shift = 0;
  for (;;) {
    const b = raw[i++]!;
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) break;
  }
  return len;
}
