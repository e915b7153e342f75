// Strict proto3-JSON reading of Envoy API messages, for tests and the Envoy stand-in.
//
// The Envoy API protos shipped in @grpc/grpc-js-xds/deps (envoy-api, xds, googleapis,
// protoc-gen-validate) are loaded with protobufjs, converted to a FileDescriptorSet
// (./proto-descriptor-set.ts) and handed to @bufbuild/protobuf, whose JSON reader rejects unknown
// fields and resolves `@type` in google.protobuf.Any through the registry - as Envoy's own
// (protobuf C++) JSON parser does. When parsing fails, the input is walked again to name the exact
// field path (`static_resources.clusters[0].typed_extension_protocol_options["x"].foo`).
//
// The registry is built once per process. The converted descriptor set is cached (binary) under
// node_modules/.cache/pilot-agent-ts/, keyed by the @grpc/grpc-js-xds version and this converter's
// version, so later processes skip parsing the .proto files (cold ~0.65 s, cached ~0.1 s).
//
// Schema additions: ENVOY_API_ADDITIONS adds the few upstream fields the shipped snapshot lacks.
//
// Not covered: protoc-gen-validate rules (Envoy also enforces those, e.g. required fields and
// ranges), deprecated-field policies, and Envoy's leniency for unknown fields under
// --allow-unknown-static-fields (see parseEnvoyJson's `ignoreUnknownFields`).

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import {
  createFileRegistry,
  fromBinary,
  fromJson,
  fromJsonString,
  toBinary,
  toJson,
  equals,
  merge,
  isMessage,
  type DescMessage,
  type FileRegistry,
  type JsonValue,
  type Message,
} from '@bufbuild/protobuf';
import {
  FileDescriptorSetSchema,
  file_google_protobuf_any,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  type FileDescriptorSet,
} from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { loadDescriptorSet } from './proto-descriptor-set.js';

/** Bump when the conversion changes, to invalidate caches written by older code. */
const CONVERTER_VERSION = 1;

/**
 * Fields that newer Envoy releases (and Istio's bootstrap template) use but that the envoy-api
 * snapshot shipped in @grpc/grpc-js-xds predates. Each is added to the loaded protos, with the
 * number and shape it has upstream, only when the snapshot lacks it. Keep this list short and
 * sourced: every entry is a real field of envoyproxy/envoy's api/ tree.
 */
export interface EnvoyApiAddition {
  readonly message: string;
  readonly field: string;
  readonly number: number;
  /** Fully-qualified message type, or a scalar type name. */
  readonly type: string;
  readonly repeated?: boolean;
  /** Oneof to create (or join) for the field. */
  readonly oneof?: string;
  readonly note: string;
}

export const ENVOY_API_ADDITIONS: readonly EnvoyApiAddition[] = [
  {
    message: 'envoy.config.bootstrap.v3.Bootstrap',
    field: 'stats_eviction_interval',
    number: 42,
    type: 'google.protobuf.Duration',
    oneof: 'stats_eviction',
    note: 'Envoy 1.35+; rendered by Istio for the sidecar.istio.io/statsEvictionInterval annotation (stats_eviction_interval golden)',
  },
  {
    message: 'envoy.admin.v3.CommandLineOptions',
    field: 'skip_deprecated_logs',
    number: 41,
    type: 'bool',
    note: '--skip-deprecated-logs, which pilot-agent passes; reported by /server_info',
  },
  {
    message: 'envoy.admin.v3.CommandLineOptions',
    field: 'file_flush_min_size',
    number: 42,
    type: 'uint32',
    note: '--file-flush-min-size-kb, which pilot-agent passes when configured; reported by /server_info',
  },
];

function applyAdditions(root: protobuf.Root): void {
  for (const a of ENVOY_API_ADDITIONS) {
    const type = root.lookupType(a.message);
    if (type.fields[a.field] || type.fieldsById[a.number]) continue; // the snapshot already has it
    const field = new protobuf.Field(a.field, a.number, a.type.includes('.') ? `.${a.type}` : a.type, a.repeated ? 'repeated' : undefined);
    type.add(field);
    if (a.oneof) {
      let oneof = type.oneofs?.[a.oneof];
      if (!oneof) {
        oneof = new protobuf.OneOf(a.oneof);
        type.add(oneof);
      }
      oneof.add(field);
    }
  }
}

const ADDITIONS_HASH = createHash('sha256').update(JSON.stringify(ENVOY_API_ADDITIONS)).digest('hex').slice(0, 8);

export const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';
export const CONFIG_DUMP_TYPE = 'envoy.admin.v3.ConfigDump';

const require = createRequire(import.meta.url);

function packageRoot(pkg: string, from: string): string {
  let dir = path.dirname(from);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      const name = (JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name;
      if (name === pkg) return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the package root of ${pkg}`);
    dir = up;
  }
}

export interface EnvoyProtoSources {
  readonly xdsPackageRoot: string;
  readonly xdsVersion: string;
  readonly includeDirs: readonly string[];
  readonly descriptorProtoPath: string;
  readonly cacheDir: string;
}

export function envoyProtoSources(): EnvoyProtoSources {
  const xdsPackageRoot = packageRoot('@grpc/grpc-js-xds', require.resolve('@grpc/grpc-js-xds'));
  const xdsVersion = (JSON.parse(fs.readFileSync(path.join(xdsPackageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const deps = path.join(xdsPackageRoot, 'deps');
  const nodeModules = path.resolve(xdsPackageRoot, '..', '..');
  return {
    xdsPackageRoot,
    xdsVersion,
    includeDirs: ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(deps, d)),
    descriptorProtoPath: require.resolve('protobufjs/google/protobuf/descriptor.proto'),
    cacheDir: path.join(nodeModules, '.cache', 'pilot-agent-ts'),
  };
}

function listProtos(root: string, sub: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.proto')) out.push(path.relative(root, p).split(path.sep).join('/'));
    }
  };
  walk(path.join(root, sub));
  return out.sort();
}

/** The files loaded: every Envoy API file plus the xds/udpa ones (imports are followed). */
function envoyProtoFiles(src: EnvoyProtoSources): string[] {
  const [envoyApi, xds] = src.includeDirs as [string, string];
  return [
    ...['envoy/config', 'envoy/extensions', 'envoy/service', 'envoy/type', 'envoy/admin', 'envoy/data'].flatMap((s) => listProtos(envoyApi, s)),
    ...['xds', 'udpa'].flatMap((s) => listProtos(xds, s)),
  ];
}

const WKT_FILES = [
  file_google_protobuf_descriptor,
  file_google_protobuf_any,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
];

export interface EnvoyProtoRegistry {
  readonly registry: FileRegistry;
  /** Milliseconds spent building the registry in this process. */
  readonly loadMs: number;
  /** Whether the descriptor set came from the on-disk cache or was converted from .proto files now. */
  readonly source: 'cache' | 'protos';
  /** Proto files skipped because an import is missing (Envoy's dead v2 API files). Empty when cached. */
  readonly skippedFiles: readonly string[];
  readonly cacheFile: string;
}

let loaded: EnvoyProtoRegistry | undefined;

function cacheFileFor(src: EnvoyProtoSources): string {
  return path.join(src.cacheDir, `envoy-descriptors-grpc-js-xds-${src.xdsVersion}-v${CONVERTER_VERSION}-${ADDITIONS_HASH}.binpb`);
}

function writeCache(file: string, set: FileDescriptorSet): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, toBinary(FileDescriptorSetSchema, set));
    fs.renameSync(tmp, file); // atomic: concurrent test workers may race here
    for (const old of fs.readdirSync(path.dirname(file))) {
      if (old.startsWith('envoy-descriptors-') && old.endsWith('.binpb') && old !== path.basename(file)) {
        fs.rmSync(path.join(path.dirname(file), old), { force: true });
      }
    }
  } catch {
    // a read-only node_modules only costs speed
  }
}

/**
 * Returns the process-wide Envoy type registry, building it on first use.
 * Set `useCache: false` to force conversion from the .proto files (tests of the converter itself).
 */
export function loadEnvoyProtos(opts: { useCache?: boolean } = {}): EnvoyProtoRegistry {
  const useCache = opts.useCache ?? true;
  if (loaded && useCache) return loaded;
  const started = performance.now();
  const src = envoyProtoSources();
  const cacheFile = cacheFileFor(src);
  let set: FileDescriptorSet | undefined;
  let source: EnvoyProtoRegistry['source'] = 'cache';
  let skippedFiles: readonly string[] = [];
  if (useCache && fs.existsSync(cacheFile)) {
    try {
      set = fromBinary(FileDescriptorSetSchema, fs.readFileSync(cacheFile));
    } catch {
      set = undefined;
    }
  }
  if (!set) {
    source = 'protos';
    const converted = loadDescriptorSet({ includeDirs: src.includeDirs, files: envoyProtoFiles(src), descriptorProtoPath: src.descriptorProtoPath, patch: applyAdditions });
    set = converted.set;
    skippedFiles = converted.skipped;
    if (useCache) writeCache(cacheFile, set);
  }
  const full = { ...set, file: [...WKT_FILES.map((f) => f.proto), ...set.file] } as FileDescriptorSet;
  const registry = createFileRegistry(full);
  const result: EnvoyProtoRegistry = { registry, loadMs: performance.now() - started, source, skippedFiles, cacheFile };
  if (useCache) loaded = result;
  return result;
}

export function envoyRegistry(): FileRegistry {
  return loadEnvoyProtos().registry;
}

/** The message descriptor for a fully-qualified type name (a `type.googleapis.com/` prefix is accepted). */
export function messageSchema(typeName: string): DescMessage {
  const name = typeName.slice(typeName.lastIndexOf('/') + 1);
  const desc = envoyRegistry().getMessage(name);
  if (!desc) throw new Error(`unknown message type ${typeName}: not in the Envoy API registry`);
  return desc;
}

/** Raised for JSON that Envoy would refuse. `path` locates the offending field from the root message. */
export class EnvoyJsonError extends Error {
  readonly code = 'ENVOY_JSON_INVALID';
  constructor(
    readonly typeName: string,
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`invalid ${typeName}${path ? ` at ${path}` : ''}: ${reason}`, options);
    this.name = 'EnvoyJsonError';
  }
}

export interface EnvoyJsonOptions {
  /**
   * Skip unknown fields instead of failing. Real Envoy run with --allow-unknown-static-fields
   * (which pilot-agent always passes) only warns about unknown fields in the static bootstrap; the
   * default here is strict so that tests catch them.
   */
  readonly ignoreUnknownFields?: boolean;
}

type AnyMessage = Message;

/**
 * Parses proto3 JSON (a JSON string or an already-parsed value) as the given Envoy type. Throws
 * EnvoyJsonError naming the field path on an unknown field, a bad value or an unresolvable @type.
 */
export function parseEnvoyJson(typeName: string, json: unknown, options: EnvoyJsonOptions = {}): AnyMessage {
  const schema = messageSchema(typeName);
  const registry = envoyRegistry();
  const readOpts = { registry, ignoreUnknownFields: options.ignoreUnknownFields ?? false };
  let value: unknown = json;
  try {
    if (typeof json === 'string') return fromJsonString(schema, json, readOpts);
    return fromJson(schema, json as JsonValue, readOpts);
  } catch (err) {
    if (typeof json === 'string') {
      try {
        value = JSON.parse(json);
      } catch (parseErr) {
        throw new EnvoyJsonError(schema.typeName, '', `not valid JSON: ${(parseErr as Error).message}`, { cause: err });
      }
    }
    const found = locateJsonError(schema, value, '', registry, readOpts.ignoreUnknownFields);
    const reason = found?.reason ?? (err as Error).message;
    throw new EnvoyJsonError(schema.typeName, found?.path ?? '', reason, { cause: err });
  }
}

export function parseBootstrap(json: unknown, options: EnvoyJsonOptions = {}): AnyMessage {
  return parseEnvoyJson(BOOTSTRAP_TYPE, json, options);
}

/** Proto merge (MergeFrom) of `overlay` into a copy of `base`: scalars replaced when set, messages merged, repeated appended. */
export function mergeEnvoyMessages(typeName: string, base: AnyMessage, overlay: AnyMessage): AnyMessage {
  const schema = messageSchema(typeName);
  const out = fromBinary(schema, toBinary(schema, base));
  merge(schema, out, overlay);
  return out;
}

function asMessage(schema: DescMessage, v: unknown): AnyMessage {
  return isMessage(v, schema) ? v : parseEnvoyJson(schema.typeName, v);
}

/**
 * Semantic equality: both sides are parsed when given as JSON; Any payloads are compared unpacked
 * (so map ordering inside packed bytes does not matter); key order and formatting never matter.
 */
export function messagesEqual(typeName: string, a: unknown, b: unknown): boolean {
  const schema = messageSchema(typeName);
  return equals(schema, asMessage(schema, a), asMessage(schema, b), { registry: envoyRegistry(), unpackAny: true });
}

function sortKeys(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: { [k: string]: JsonValue } = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]!);
    return out;
  }
  return v;
}

/**
 * Canonical proto3 JSON: proto field names (snake_case, as Envoy's config_dump prints), default
 * values omitted, object keys sorted at every level - stable for diffs and snapshots.
 * Accepts a message or JSON (which is parsed strictly first).
 */
export function toCanonicalJson(typeName: string, msg: unknown): JsonValue {
  const schema = messageSchema(typeName);
  return sortKeys(toJson(schema, asMessage(schema, msg), { registry: envoyRegistry(), useProtoFieldName: true }));
}

// ---------------------------------------------------------------------------------------------
// Error location: only runs after the fast parse failed, re-checking sub-trees to find the
// deepest failing field.

interface Located {
  path: string;
  reason: string;
}

const WKT_JSON = new Set([
  'google.protobuf.Any', 'google.protobuf.Duration', 'google.protobuf.Timestamp', 'google.protobuf.FieldMask',
  'google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue', 'google.protobuf.Empty',
  'google.protobuf.DoubleValue', 'google.protobuf.FloatValue', 'google.protobuf.Int64Value', 'google.protobuf.UInt64Value',
  'google.protobuf.Int32Value', 'google.protobuf.UInt32Value', 'google.protobuf.BoolValue', 'google.protobuf.StringValue',
  'google.protobuf.BytesValue',
]);

function join(base: string, key: string): string {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) return base ? `${base}.${key}` : key;
  return `${base}[${JSON.stringify(key)}]`;
}

function tryParse(schema: DescMessage, json: unknown, registry: FileRegistry, ignoreUnknownFields: boolean): Error | undefined {
  try {
    fromJson(schema, json as JsonValue, { registry, ignoreUnknownFields });
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function locateJsonError(schema: DescMessage, json: unknown, at: string, registry: FileRegistry, ignoreUnknown: boolean): Located | undefined {
  const err = tryParse(schema, json, registry, ignoreUnknown);
  if (!err) return undefined;
  const here = (reason: string): Located => ({ path: at, reason });

  if (schema.typeName === 'google.protobuf.Any') {
    if (!isPlainObject(json)) return here(`expected an object for google.protobuf.Any, got ${JSON.stringify(json)}`);
    const typeUrl = json['@type'];
    if (typeof typeUrl !== 'string' || typeUrl === '') return { path: join(at, '@type'), reason: 'google.protobuf.Any needs a non-empty "@type"' };
    const slash = typeUrl.lastIndexOf('/');
    const inner = registry.getMessage(typeUrl.slice(slash + 1));
    if (slash < 0 || !inner) return { path: join(at, '@type'), reason: `cannot resolve type URL "${typeUrl}": not a known Envoy API type` };
    if (WKT_JSON.has(inner.typeName)) {
      return locateJsonError(inner, json.value, join(at, 'value'), registry, ignoreUnknown) ?? here(err.message);
    }
    const rest: Record<string, unknown> = { ...json };
    delete rest['@type'];
    return locateJsonError(inner, rest, at, registry, ignoreUnknown) ?? here(err.message);
  }
  if (WKT_JSON.has(schema.typeName) || !isPlainObject(json)) return here(err.message);

  const byKey = new Map<string, (typeof schema.fields)[number]>();
  for (const f of schema.fields) {
    byKey.set(f.name, f);
    byKey.set(f.jsonName, f);
  }
  for (const [key, value] of Object.entries(json)) {
    const field = byKey.get(key);
    const p = join(at, key);
    if (!field) {
      if (ignoreUnknown) continue;
      return { path: p, reason: `unknown field "${key}" in ${schema.typeName}` };
    }
    if (value === null) continue;
    if (field.fieldKind === 'message') {
      const r = locateJsonError(field.message, value, p, registry, ignoreUnknown);
      if (r) return r;
    } else if (field.fieldKind === 'list' && Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const ip = `${p}[${i}]`;
        if (field.listKind === 'message') {
          const r = locateJsonError(field.message, value[i], ip, registry, ignoreUnknown);
          if (r) return r;
        } else {
          const e = tryParse(schema, { [key]: [value[i]] }, registry, ignoreUnknown);
          if (e) return { path: ip, reason: e.message };
        }
      }
    } else if (field.fieldKind === 'map' && isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) {
        const kp = `${p}[${JSON.stringify(k)}]`;
        if (field.mapKind === 'message') {
          const r = locateJsonError(field.message, v, kp, registry, ignoreUnknown);
          if (r) return r;
        } else {
          const e = tryParse(schema, { [key]: { [k]: v } }, registry, ignoreUnknown);
          if (e) return { path: kp, reason: e.message };
        }
      }
    }
    const e = tryParse(schema, { [key]: value }, registry, ignoreUnknown);
    if (e) return { path: p, reason: e.message };
  }
  return here(err.message);
}
