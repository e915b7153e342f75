// ECDS rewriting for Wasm (Istio's pkg/wasm/convert.go). A TypedExtensionConfig whose typed_config
// is the HTTP or network Wasm filter - directly, or inside a udpa.type.v1 / xds.type.v3
// TypedStruct - and loads its code from `vm_config.code.remote` gets the module downloaded into the
// local cache and `code.local.filename` pointing at it. The ISTIO_META_* VM env vars istiod adds
// (pull secret, pull policy, resource version) are read, then stripped so they never reach Envoy
// or the module.
//
// Outcomes, per resource:
//   - not a Wasm filter, or code already local: unchanged (the original bytes are forwarded);
//   - malformed (undecodable, no typed_config, no code at all, a TypedStruct that is not a valid
//     Wasm config): an error - the whole response is NACKed upstream;
//   - the fetch failed (or the config lacks what a fetch needs): replaced by an RBAC filter of the
//     same name: allow-all (`wasm-default-allow`) when the plugin fails open, deny-all
//     (`wasm-default-deny`) otherwise - Istio's exact configs for HTTP and network filters;
//   - fetched: the rewritten resource. Every field is kept, unknown ones included (bufbuild keeps
//     them); a TypedStruct becomes the typed Wasm message, as in Istio.
// Resources of one response are converted concurrently; the response goes on when all are done.
// Messages never carry the config's content (it may hold the pull secret).

import { create, createRegistry, fromBinary, fromJson, toBinary, type DescFile, type JsonObject } from '@bufbuild/protobuf';
import {
  AnySchema,
  file_google_protobuf_any,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
} from '@bufbuild/protobuf/wkt';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { AsyncDataSourceSchema, DataSourceSchema, type RemoteDataSource } from '../gen/envoy/config/core/v3/base_pb.js';
import { TypedExtensionConfigSchema, type TypedExtensionConfig } from '../gen/envoy/config/core/v3/extension_pb.js';
import { file_envoy_extensions_filters_http_wasm_v3_wasm, WasmSchema as HttpWasmSchema, type Wasm as HttpWasm } from '../gen/envoy/extensions/filters/http/wasm/v3/wasm_pb.js';
import { file_envoy_extensions_filters_network_wasm_v3_wasm, WasmSchema as NetworkWasmSchema, type Wasm as NetworkWasm } from '../gen/envoy/extensions/filters/network/wasm/v3/wasm_pb.js';
import { FailurePolicy, type VmConfig } from '../gen/envoy/extensions/wasm/v3/wasm_pb.js';
import { TypedStructSchema as UdpaTypedStructSchema, type TypedStruct } from '../gen/udpa/type/v1/typed_struct_pb.js';
import { TypedStructSchema as XdsTypedStructSchema } from '../gen/xds/type/v3/typed_struct_pb.js';
import { logger } from '../util/logger.js';
import type { ResponseAction, ResponseInterceptor } from '../xds/xds-proxy.js';
import { deltaResources, sotwResources } from '../xds/wire.js';
import { PULL_POLICY_VALUES, type GetOptions, type PullPolicy } from './cache.js';
import { replaceDeltaResourceValues, replaceSotwResourceValues } from './ecds-wire.js';
import { describeError, displayUrl } from './http-client.js';

export { displayUrl };
import { ConversionResult, wasmMetrics } from './metrics.js';
import { DEFAULTS } from './options.js';

const log = logger('wasm');

const PREFIX = 'type.googleapis.com/';
export const TypeUrls = {
  TypedExtensionConfig: PREFIX + TypedExtensionConfigSchema.typeName,
  HttpWasm: PREFIX + HttpWasmSchema.typeName,
  NetworkWasm: PREFIX + NetworkWasmSchema.typeName,
  UdpaTypedStruct: PREFIX + UdpaTypedStructSchema.typeName,
  XdsTypedStruct: PREFIX + XdsTypedStructSchema.typeName,
  HttpRbac: PREFIX + 'envoy.extensions.filters.http.rbac.v3.RBAC',
  NetworkRbac: PREFIX + 'envoy.extensions.filters.network.rbac.v3.RBAC',
} as const;

export const WasmEnv = {
  PullSecret: 'ISTIO_META_WASM_IMAGE_PULL_SECRET',
  PullPolicy: 'ISTIO_META_WASM_IMAGE_PULL_POLICY',
  ResourceVersion: 'ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION',
} as const;
const ISTIO_META_PREFIX = 'ISTIO_META_';

export const DEFAULT_ALLOW_STAT_PREFIX = 'wasm-default-allow';
export const DEFAULT_DENY_STAT_PREFIX = 'wasm-default-deny';

/** What the conversion needs from the module cache. */
export interface ModuleSource {
  get(url: string, opts: GetOptions): Promise<string>;
}

/**
 * What a TypedStruct's JSON may name in a google.protobuf.Any (PluginConfig.configuration is one):
 * the well-known types and the Wasm filters' own files, as Istio's resolver knows them.
 */
const jsonRegistry = (() => {
  const files = new Set<DescFile>();
  const add = (f: DescFile): void => {
    if (files.has(f)) return;
    files.add(f);
    f.dependencies.forEach(add);
  };
  for (const f of [
    file_envoy_extensions_filters_http_wasm_v3_wasm,
    file_envoy_extensions_filters_network_wasm_v3_wasm,
    file_google_protobuf_any,
    file_google_protobuf_duration,
    file_google_protobuf_empty,
    file_google_protobuf_struct,
    file_google_protobuf_timestamp,
    file_google_protobuf_wrappers,
  ])
    add(f);
  return createRegistry(...files);
})();

type WasmFilter = HttpWasm | NetworkWasm;

const decodeWasm = (network: boolean, bytes: Uint8Array): WasmFilter => (network ? fromBinary(NetworkWasmSchema, bytes) : fromBinary(HttpWasmSchema, bytes));
const wasmFromJson = (network: boolean, json: JsonObject): WasmFilter =>
  network ? fromJson(NetworkWasmSchema, json, { registry: jsonRegistry }) : fromJson(HttpWasmSchema, json, { registry: jsonRegistry });
const encodeWasm = (w: WasmFilter): Uint8Array => (w.$typeName === NetworkWasmSchema.typeName ? toBinary(NetworkWasmSchema, w) : toBinary(HttpWasmSchema, w));

export type ResourceOutcome =
  | { readonly kind: 'unchanged' }
  /** New TypedExtensionConfig bytes (the Any's value). */
  | { readonly kind: 'rewritten'; readonly value: Uint8Array; readonly fallback?: 'allow' | 'deny' }
  | { readonly kind: 'error'; readonly message: string };

class Malformed extends Error {
  readonly code = 'WASM_CONFIG_MALFORMED';
}

// ---------------------------------------------------------------------------------------------
// RBAC fallbacks, encoded as Istio's go-control-plane marshals them (fields in number order).

// RBAC's schema would bring Envoy's route matchers and CEL into the agent for two fields, so these
// are written on the wire; the tests read them back with the full Envoy API.

function rbacBytes(network: boolean, allow: boolean): Uint8Array {
  const w = new BinaryWriter();
  if (!allow) w.tag(1, WireType.LengthDelimited).bytes(new Uint8Array(0)); // rules: {} - an empty ALLOW policy set denies everything
  const statPrefixField = network ? 3 : 6; // network RBAC.stat_prefix = 3; HTTP RBAC.rules_stat_prefix = 6
  w.tag(statPrefixField, WireType.LengthDelimited).string(allow ? DEFAULT_ALLOW_STAT_PREFIX : DEFAULT_DENY_STAT_PREFIX);
  return w.finish();
}

/** The TypedExtensionConfig replacing a Wasm filter whose module could not be fetched. */
export function defaultFilterConfig(name: string, network: boolean, failOpen: boolean): Uint8Array {
  const any = create(AnySchema, { typeUrl: network ? TypeUrls.NetworkRbac : TypeUrls.HttpRbac, value: rbacBytes(network, failOpen) });
  return toBinary(TypedExtensionConfigSchema, create(TypedExtensionConfigSchema, { name, typedConfig: any }));
}

// ---------------------------------------------------------------------------------------------

/** name and typed_config type URL, straight off the wire (no schema needed for non-Wasm configs). */
function peekTypedExtensionConfig(value: Uint8Array): { name: string; typedConfigType: string | undefined } {
  const r = new BinaryReader(value);
  let name = '';
  let typedConfigType: string | undefined;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (wire === WireType.LengthDelimited && field === 1) name = r.string();
    else if (wire === WireType.LengthDelimited && field === 2) {
      const any = new BinaryReader(r.bytes());
      typedConfigType = '';
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (w === WireType.LengthDelimited && f === 1) typedConfigType = any.string();
        else any.skip(w, f);
      }
    } else r.skip(wire, field);
  }
  return { name, typedConfigType };
}

const WASM_TYPES = new Set<string>([TypeUrls.HttpWasm, TypeUrls.NetworkWasm, TypeUrls.UdpaTypedStruct, TypeUrls.XdsTypedStruct]);

function countConversion(result: string): void {
  wasmMetrics.conversions.inc({ result });
}

/** Converts one ECDS resource (an Any). Never throws. */
export async function convertResource(resource: { typeUrl: string; value: Uint8Array }, modules: ModuleSource): Promise<ResourceOutcome> {
  const fail = (message: string): ResourceOutcome => {
    countConversion(ConversionResult.unmarshalFailure);
    return { kind: 'error', message };
  };
  if (resource.typeUrl !== TypeUrls.TypedExtensionConfig) {
    return fail(`failed to unmarshal extension config resource: mismatched message type: got "${resource.typeUrl}", want "${TypedExtensionConfigSchema.typeName}"`);
  }
  let peek: ReturnType<typeof peekTypedExtensionConfig>;
  try {
    peek = peekTypedExtensionConfig(resource.value);
  } catch (err) {
    return fail(`failed to unmarshal extension config resource: ${describeError(err)}`);
  }
  if (peek.typedConfigType === undefined) return fail(`typed extension config "${peek.name}" does not contain any typed config`);
  if (!WASM_TYPES.has(peek.typedConfigType)) {
    countConversion(ConversionResult.noRemoteLoad);
    return { kind: 'unchanged' };
  }

  let ec: TypedExtensionConfig;
  let wasm: WasmFilter;
  let network = false;
  try {
    ec = fromBinary(TypedExtensionConfigSchema, resource.value);
    const tc = ec.typedConfig!;
    if (tc.typeUrl === TypeUrls.HttpWasm || tc.typeUrl === TypeUrls.NetworkWasm) {
      network = tc.typeUrl === TypeUrls.NetworkWasm;
      try {
        wasm = decodeWasm(network, tc.value);
      } catch (err) {
        throw new Malformed(`failed to unmarshal extension config resource into Wasm ${network ? 'Network' : 'HTTP'} filter: ${describeError(err)}`);
      }
    } else {
      // udpa.type.v1 and xds.type.v3 TypedStruct are the same message (type_url = 1, value = 2)
      let ts: Pick<TypedStruct, 'typeUrl' | 'value'>;
      try {
        ts = tc.typeUrl === TypeUrls.UdpaTypedStruct ? fromBinary(UdpaTypedStructSchema, tc.value) : fromBinary(XdsTypedStructSchema, tc.value);
      } catch (err) {
        throw new Malformed(`failed to unmarshal typed config for wasm filter: ${describeError(err)}`);
      }
      if (ts.typeUrl !== TypeUrls.HttpWasm && ts.typeUrl !== TypeUrls.NetworkWasm) {
        countConversion(ConversionResult.noRemoteLoad);
        return { kind: 'unchanged' };
      }
      network = ts.typeUrl === TypeUrls.NetworkWasm;
      const kind = network ? 'Network' : 'HTTP';
      if (!ts.value) throw new Malformed(`failed to convert extension config struct of "${ec.name}" to Wasm ${kind} filter: nil struct`);
      try {
        wasm = wasmFromJson(network, ts.value);
      } catch (err) {
        // the struct's content is not repeated: it may hold the pull secret
        throw new Malformed(`failed to convert extension config struct of "${ec.name}" to Wasm ${kind} filter: ${describeError(err).replace(/:.*$/s, '')}`);
      }
    }
  } catch (err) {
    return fail(err instanceof Malformed ? err.message : `failed to unmarshal extension config resource: ${describeError(err)}`);
  }

  const kind = network ? 'Network' : 'HTTP';
  const plugin = wasm.config;
  const vm = plugin?.vm.case === 'vmConfig' ? plugin.vm.value : undefined;
  const code = vm?.code?.specifier;
  if (code?.case !== 'remote') {
    if (code?.case === 'local') {
      countConversion(ConversionResult.noRemoteLoad);
      return { kind: 'unchanged' };
    }
    return fail(`no remote and local load found in Wasm ${kind} filter "${ec.name}"`);
  }

  const failOpen = plugin!.failurePolicy ? plugin!.failurePolicy === FailurePolicy.FAIL_OPEN : plugin!.failOpen;
  let status: string = ConversionResult.success;
  try {
    const path = await rewriteVmConfig(ec.name, vm!, code.value, plugin!.name, modules, (s) => (status = s));
    vm!.code = create(AsyncDataSourceSchema, { specifier: { case: 'local', value: create(DataSourceSchema, { specifier: { case: 'filename', value: path } }) } });
    let value: Uint8Array;
    try {
      ec.typedConfig = create(AnySchema, { typeUrl: network ? TypeUrls.NetworkWasm : TypeUrls.HttpWasm, value: encodeWasm(wasm) });
      value = toBinary(TypedExtensionConfigSchema, ec);
    } catch (err) {
      status = ConversionResult.marshalFailure;
      throw new Error(`failed to marshal new wasm ${kind} filter: ${describeError(err)}`);
    }
    countConversion(status);
    return { kind: 'rewritten', value };
  } catch (err) {
    countConversion(status === ConversionResult.success ? ConversionResult.fetchFailure : status);
    const rbac = failOpen ? 'allow' : 'deny';
    log.error(`error in converting the wasm config to local: ${describeError(err)}. applying ${rbac} RBAC filter`, { resource: ec.name });
    return { kind: 'rewritten', value: defaultFilterConfig(ec.name, network, failOpen), fallback: rbac };
  }
}

async function rewriteVmConfig(
  resourceName: string,
  vm: VmConfig,
  remote: RemoteDataSource,
  configName: string,
  modules: ModuleSource,
  setStatus: (s: string) => void,
): Promise<string> {
  let pullSecret: Uint8Array | undefined;
  let pullPolicy: PullPolicy = 'Unspecified';
  let resourceVersion = '';
  const envs = vm.environmentVariables;
  if (envs) {
    const kv = envs.keyValues;
    if (Object.hasOwn(kv, WasmEnv.PullSecret)) {
      if (kv[WasmEnv.PullSecret] === '') {
        setStatus(ConversionResult.fetchFailure);
        throw new Error(`cannot fetch Wasm module ${configName}: missing image pulling secret`);
      }
      pullSecret = Buffer.from(kv[WasmEnv.PullSecret]!, 'utf8');
    }
    if (Object.hasOwn(kv, WasmEnv.PullPolicy)) pullPolicy = PULL_POLICY_VALUES[kv[WasmEnv.PullPolicy]!] ?? 'Unspecified';
    resourceVersion = kv[WasmEnv.ResourceVersion] ?? '';
    // istiod's own variables are for the agent: neither Envoy nor the module sees them
    for (const k of Object.keys(kv)) if (k.startsWith(ISTIO_META_PREFIX)) delete kv[k];
    if (Object.keys(kv).length === 0) {
      if (envs.hostEnvKeys.length === 0) vm.environmentVariables = undefined;
      else envs.keyValues = {};
    }
  }
  const httpUri = remote.httpUri;
  if (!httpUri) {
    setStatus(ConversionResult.missRemoteFetchHint);
    throw new Error(`wasm remote fetch does not have httpUri specified for config ${configName}`);
  }
  // istiod sends "nil" when the WasmPlugin has no sha256
  const checksum = remote.sha256 === 'nil' ? '' : remote.sha256;
  const timeoutMs = httpUri.timeout ? Number(httpUri.timeout.seconds) * 1000 + Math.floor(httpUri.timeout.nanos / 1e6) : DEFAULTS.fetchTimeoutMs;
  try {
    return await modules.get(httpUri.uri, {
      checksum,
      resourceName,
      resourceVersion,
      requestTimeoutMs: timeoutMs > 0 ? timeoutMs : DEFAULTS.fetchTimeoutMs,
      ...(pullSecret ? { pullSecret } : {}),
      pullPolicy,
    });
  } catch (err) {
    setStatus(ConversionResult.fetchFailure);
    throw new Error(`cannot fetch Wasm module ${displayUrl(httpUri.uri)}: ${describeError(err)}`);
  }
}

export interface ConversionResultSet {
  readonly outcomes: readonly ResourceOutcome[];
  /** Istio's multierror text when any resource is malformed (the NACK reason), else undefined. */
  readonly error: string | undefined;
}

/** Converts all resources concurrently (Istio's MaybeConvertWasmExtensionConfig). */
export async function convertResources(resources: readonly ({ typeUrl: string; value: Uint8Array } | undefined)[], modules: ModuleSource): Promise<ConversionResultSet> {
  const started = performance.now();
  try {
    const outcomes = await Promise.all(resources.map((r) => (r ? convertResource(r, modules) : Promise.resolve<ResourceOutcome>({ kind: 'unchanged' }))));
    const errors = outcomes.flatMap((o) => (o.kind === 'error' ? [o.message] : []));
    const error = errors.length ? `${errors.length} error${errors.length > 1 ? 's' : ''} occurred:\n${errors.map((e) => `\t* ${e}`).join('\n')}\n\n` : undefined;
    if (error) log.error(`error in applying failopen rbac config: ${error.trim()}`);
    return { outcomes, error };
  } finally {
    wasmMetrics.conversionDuration.observe(performance.now() - started);
  }
}

/** Rewrites ECDS responses for the xDS proxy: register for TypeUrl.ExtensionConfig. */
export class WasmEcdsInterceptor implements ResponseInterceptor {
  constructor(private readonly modules: ModuleSource) {}

  async intercept(message: Buffer, ctx: Parameters<ResponseInterceptor['intercept']>[1]): Promise<ResponseAction> {
    const delta = ctx.protocol.kind === 'delta';
    const resources = delta ? deltaResources(message).map((r) => r.resource) : sotwResources(message);
    const work = convertResources(resources, this.modules);
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<undefined>((resolve) => {
      onAbort = () => resolve(undefined);
      if (ctx.signal.aborted) resolve(undefined);
      else ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
    const result = await Promise.race([work, aborted]);
    ctx.signal.removeEventListener('abort', onAbort!);
    if (!result) return { kind: 'nack', reason: 'connection closed during Wasm conversion' };
    if (result.error) return { kind: 'nack', reason: result.error };
    const values = new Map<number, Uint8Array>();
    result.outcomes.forEach((o, i) => {
      if (o.kind === 'rewritten') values.set(i, o.value);
    });
    if (values.size === 0) return { kind: 'forward', message };
    return { kind: 'forward', message: delta ? replaceDeltaResourceValues(message, values) : replaceSotwResourceValues(message, values) };
  }
}
