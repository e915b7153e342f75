// ECDS test data: TypedExtensionConfigs holding Wasm filters (from the real ECDS config dump or
// built here), encoded with the strict Envoy registry of test/support, and raw discovery responses.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromBinary, toBinary, type JsonValue } from '@bufbuild/protobuf';
import protobuf from 'protobufjs/minimal.js';
import { envoyRegistry, messageSchema, parseEnvoyJson, toCanonicalJson } from '../support/envoy-protos.js';
import { istioTestdata } from '../support/paths.js';

export const TEC = 'envoy.config.core.v3.TypedExtensionConfig';
export const TEC_URL = `type.googleapis.com/${TEC}`;
export const HTTP_WASM_URL = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';
export const NETWORK_WASM_URL = 'type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm';

type Json = Record<string, unknown>;

export function encode(typeName: string, json: unknown): Uint8Array {
  const schema = messageSchema(typeName);
  return toBinary(schema, parseEnvoyJson(schema.typeName, json));
}

/** Canonical proto3 JSON (proto field names, sorted keys) of binary `bytes`. */
export function decode(typeName: string, bytes: Uint8Array): JsonValue {
  const schema = messageSchema(typeName);
  return toCanonicalJson(typeName, fromBinary(schema, bytes, { readUnknownFields: true }));
}

export function canonical(typeName: string, json: unknown): JsonValue {
  return toCanonicalJson(typeName, json);
}

/** The ECDS filters of Istio's ecds_config_dump.json (TypedExtensionConfig JSON, `@type` included). */
export function dumpFilters(): Json[] {
  const dump = JSON.parse(readFileSync(join(istioTestdata, 'configdump', 'ecds_config_dump.json'), 'utf8')) as { configs: { ecds_filters: { ecds_filter: Json }[] }[] };
  return dump.configs.flatMap((c) => c.ecds_filters.map((f) => f.ecds_filter));
}

export function withoutType(j: Json): Json {
  const { ['@type']: _t, ...rest } = j;
  return rest;
}

export function remoteCode(uri: string, sha256 = '', timeout: string | undefined = '30s'): Json {
  return { remote: { http_uri: { uri, cluster: 'remote_wasm', ...(timeout ? { timeout } : {}) }, sha256 } };
}

/** An HTTP (or network) Wasm filter config JSON with remote code and istiod's env vars. */
export function wasmFilter(name: string, uri: string, opts: { sha256?: string; env?: Record<string, string>; hostEnvKeys?: string[]; failOpen?: boolean; network?: boolean } = {}): Json {
  return {
    '@type': TEC_URL,
    name,
    typed_config: {
      '@type': opts.network ? NETWORK_WASM_URL : HTTP_WASM_URL,
      config: {
        name,
        root_id: 'root',
        ...(opts.failOpen ? { fail_open: true } : {}),
        vm_config: {
          runtime: 'envoy.wasm.runtime.v8',
          code: remoteCode(uri, opts.sha256 ?? ''),
          ...(opts.env || opts.hostEnvKeys ? { environment_variables: { ...(opts.hostEnvKeys ? { host_env_keys: opts.hostEnvKeys } : {}), ...(opts.env ? { key_values: opts.env } : {}) } } : {}),
        },
        configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: '{"header":"x"}' },
      },
    },
  };
}

export function tecBytes(json: Json): Uint8Array {
  return encode(TEC, withoutType(json));
}

/** Appends a length-delimited field (an unknown one, typically). */
export function withField(bytes: Uint8Array, field: number, payload: Uint8Array | string): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((field << 3) | 2);
  if (typeof payload === 'string') w.string(payload);
  else w.bytes(payload);
  return Buffer.concat([bytes, w.finish()]);
}

export interface RawResponseOptions {
  readonly version?: string;
  readonly nonce?: string;
  readonly controlPlane?: string;
  /** An unknown top-level field (number 99) with this string. */
  readonly unknown?: string;
}

function anyBytes(typeUrl: string, value: Uint8Array): Uint8Array {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(typeUrl);
  w.uint32((2 << 3) | 2).bytes(value);
  return w.finish();
}

/** A SotW DiscoveryResponse, written by hand so that field order and extras are ours. */
export function sotwResponse(resources: readonly { typeUrl?: string; value: Uint8Array }[], o: RawResponseOptions = {}): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(o.version ?? 'v1');
  for (const r of resources) w.uint32((2 << 3) | 2).bytes(anyBytes(r.typeUrl ?? TEC_URL, r.value));
  w.uint32((4 << 3) | 2).string(TEC_URL);
  w.uint32((5 << 3) | 2).string(o.nonce ?? 'n1');
  if (o.controlPlane) w.uint32((6 << 3) | 2).fork().uint32((1 << 3) | 2).string(o.controlPlane).ldelim();
  if (o.unknown) w.uint32((99 << 3) | 2).string(o.unknown);
  return Buffer.from(w.finish());
}

/** A DeltaDiscoveryResponse; each resource gets name, version, an alias and an unknown field. */
export function deltaResponse(resources: readonly { name: string; value: Uint8Array }[], o: RawResponseOptions & { removed?: string[] } = {}): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(o.version ?? 'v1');
  for (const r of resources) {
    w.uint32((2 << 3) | 2).fork();
    w.uint32((1 << 3) | 2).string(`rv-${r.name}`); // version
    w.uint32((2 << 3) | 2).bytes(anyBytes(TEC_URL, r.value)); // resource
    w.uint32((3 << 3) | 2).string(r.name); // name
    w.uint32((4 << 3) | 2).string(`alias-${r.name}`); // aliases
    w.uint32((77 << 3) | 2).string('resource-extra'); // unknown
    w.ldelim();
  }
  w.uint32((4 << 3) | 2).string(TEC_URL);
  w.uint32((5 << 3) | 2).string(o.nonce ?? 'n1');
  for (const r of o.removed ?? []) w.uint32((6 << 3) | 2).string(r);
  if (o.unknown) w.uint32((99 << 3) | 2).string(o.unknown);
  return Buffer.from(w.finish());
}

/** Top-level fields of a message as raw byte strings (tag included), in order. */
export function rawFields(buf: Uint8Array): { field: number; bytes: Buffer }[] {
  const r = protobuf.Reader.create(buf);
  const out: { field: number; bytes: Buffer }[] = [];
  while (r.pos < r.len) {
    const start = r.pos;
    const tag = r.uint32();
    r.skipType(tag & 7);
    out.push({ field: tag >>> 3, bytes: Buffer.from(buf.subarray(start, r.pos)) });
  }
  return out;
}

/** The `value` of each resource Any of a SotW response. */
export function sotwValues(buf: Uint8Array): Uint8Array[] {
  return rawFields(buf)
    .filter((f) => f.field === 2)
    .map((f) => {
      const r = protobuf.Reader.create(f.bytes);
      r.uint32();
      return anyValue(r.bytes());
    });
}

function anyValue(any: Uint8Array): Uint8Array {
  const r = protobuf.Reader.create(any);
  let value: Uint8Array = new Uint8Array(0);
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 2 && (tag & 7) === 2) value = r.bytes();
    else r.skipType(tag & 7);
  }
  return value;
}

export { envoyRegistry };
