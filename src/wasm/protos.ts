// The Envoy messages the Wasm conversion decodes and re-encodes: TypedExtensionConfig, the HTTP and
// network Wasm filters, and the two TypedStruct wrappers. They are read with @bufbuild/protobuf,
// which keeps fields it does not know (a newer istiod's additions) and writes them back out; the
// schemas come from the Envoy API protos shipped in @grpc/grpc-js-xds (deps/), parsed with
// protobufjs on first use and turned into descriptors for bufbuild. Only the messages reachable
// from those five roots are converted (~20 messages, ~40 ms once per process); an agent that never
// sees a remote Wasm module never pays for it.
//
// The envoy-api snapshot predates PluginConfig.failure_policy (field 7), which Istio reads to pick
// the fail-open fallback; it is added here when missing, with its upstream number and enum.

import { sep } from 'node:path';
import { create, createFileRegistry, type DescMessage, type FileRegistry } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as FType,
  FileDescriptorSetSchema,
  file_google_protobuf_any,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
} from '@bufbuild/protobuf/wkt';
import protobuf from 'protobufjs';
import { envoyIncludeDirs, loadEnvoyProtoRoot } from '../util/envoy-proto-root.js';

export const TYPE = {
  TypedExtensionConfig: 'envoy.config.core.v3.TypedExtensionConfig',
  HttpWasm: 'envoy.extensions.filters.http.wasm.v3.Wasm',
  NetworkWasm: 'envoy.extensions.filters.network.wasm.v3.Wasm',
  UdpaTypedStruct: 'udpa.type.v1.TypedStruct',
  XdsTypedStruct: 'xds.type.v3.TypedStruct',
} as const;

const ROOT_FILES = [
  'envoy/config/core/v3/extension.proto',
  'envoy/extensions/filters/http/wasm/v3/wasm.proto',
  'envoy/extensions/filters/network/wasm/v3/wasm.proto',
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
];

const WKT_FILES = [file_google_protobuf_any, file_google_protobuf_duration, file_google_protobuf_empty, file_google_protobuf_struct, file_google_protobuf_timestamp, file_google_protobuf_wrappers];

export interface WasmProtos {
  readonly registry: FileRegistry;
  readonly typedExtensionConfig: DescMessage;
  readonly httpWasm: DescMessage;
  readonly networkWasm: DescMessage;
  readonly udpaTypedStruct: DescMessage;
  readonly xdsTypedStruct: DescMessage;
  readonly loadMs: number;
}

let loaded: WasmProtos | undefined;

/** The schemas, loaded on first call. */
export function wasmProtos(): WasmProtos {
  loaded ??= load();
  return loaded;
}

const SCALARS: Record<string, FType> = {
  double: FType.DOUBLE, float: FType.FLOAT, int64: FType.INT64, uint64: FType.UINT64, int32: FType.INT32,
  fixed64: FType.FIXED64, fixed32: FType.FIXED32, bool: FType.BOOL, string: FType.STRING, bytes: FType.BYTES,
  uint32: FType.UINT32, sfixed32: FType.SFIXED32, sfixed64: FType.SFIXED64, sint32: FType.SINT32, sint64: FType.SINT64,
};

const WKT_FILE_OF: Record<string, string> = {
  Any: 'any', Duration: 'duration', Empty: 'empty', Timestamp: 'timestamp', Struct: 'struct', Value: 'struct', ListValue: 'struct', NullValue: 'struct',
  DoubleValue: 'wrappers', FloatValue: 'wrappers', Int64Value: 'wrappers', UInt64Value: 'wrappers', Int32Value: 'wrappers',
  UInt32Value: 'wrappers', BoolValue: 'wrappers', StringValue: 'wrappers', BytesValue: 'wrappers',
};

/** protoc's json_name: `foo_bar` -> `fooBar`. */
function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()).replace(/_/g, '');
}

/** protoc's map entry name: `key_values` -> `KeyValuesEntry`. */
function mapEntryName(field: string): string {
  return field.split('_').map((p) => (p ? p[0]!.toUpperCase() + p.slice(1) : '')).join('') + 'Entry';
}

/** The outermost message or enum that declares `obj` (nested types travel with their parent). */
function topLevel(obj: protobuf.ReflectionObject): protobuf.Type | protobuf.Enum {
  let o = obj;
  while (o.parent && (o.parent instanceof protobuf.Type)) o = o.parent;
  return o as protobuf.Type | protobuf.Enum;
}

function addFailurePolicy(root: protobuf.Root): void {
  const plugin = root.lookupType('envoy.extensions.wasm.v3.PluginConfig');
  if (plugin.fields.failure_policy || plugin.fieldsById[7]) return;
  const ns = plugin.parent as protobuf.Namespace;
  let policy = ns.get('FailurePolicy') as protobuf.Enum | null;
  if (!policy) {
    policy = new protobuf.Enum('FailurePolicy', { UNSPECIFIED: 0, FAIL_RELOAD: 1, FAIL_CLOSED: 2, FAIL_OPEN: 3 });
    policy.filename = plugin.filename;
    ns.add(policy);
  }
  plugin.add(new protobuf.Field('failure_policy', 7, 'FailurePolicy'));
}

function load(): WasmProtos {
  const started = performance.now();
  const includeDirs = envoyIncludeDirs();
  const root = loadEnvoyProtoRoot(ROOT_FILES);
  addFailurePolicy(root);
  root.resolveAll();

  const relName = (obj: protobuf.ReflectionObject): string => {
    let o: protobuf.ReflectionObject | null = obj;
    while (o && !o.filename) o = o.parent;
    const file = o?.filename ?? '';
    for (const dir of includeDirs) if (file.startsWith(dir + sep)) return file.slice(dir.length + 1).split(sep).join('/');
    return file;
  };
  const fileOf = (t: protobuf.ReflectionObject): string => {
    const full = t.fullName.slice(1);
    if (full.startsWith('google.protobuf.')) {
      const wkt = WKT_FILE_OF[full.slice('google.protobuf.'.length).split('.')[0]!];
      if (!wkt) throw new Error(`${full}: not a supported well-known type`);
      return `google/protobuf/${wkt}.proto`;
    }
    return relName(t);
  };

  // every top-level message/enum reachable from the roots
  const wanted = new Set<protobuf.Type | protobuf.Enum>();
  const queue: (protobuf.Type | protobuf.Enum)[] = [];
  const reach = (obj: protobuf.ReflectionObject): void => {
    if (obj.fullName.startsWith('.google.protobuf.')) return;
    const top = topLevel(obj);
    if (wanted.has(top)) return;
    wanted.add(top);
    queue.push(top);
  };
  for (const name of [TYPE.TypedExtensionConfig, TYPE.HttpWasm, TYPE.NetworkWasm, TYPE.UdpaTypedStruct, TYPE.XdsTypedStruct]) reach(root.lookupType(name));
  const walk = (t: protobuf.Type): void => {
    for (const f of t.fieldsArray) if (f.resolve().resolvedType) reach(f.resolvedType!);
    for (const n of t.nestedArray) if (n instanceof protobuf.Type) walk(n);
  };
  while (queue.length) {
    const t = queue.shift()!;
    if (t instanceof protobuf.Type) walk(t);
  }

  interface FieldInit { name: string; number: number; label: Label; type: FType; typeName?: string; jsonName: string; oneofIndex?: number; proto3Optional?: boolean; options?: { packed: boolean } }
  interface EnumInit { name: string; value: { name: string; number: number }[] }
  interface MessageInit { name: string; field: FieldInit[]; nestedType: MessageInit[]; enumType: EnumInit[]; oneofDecl: { name: string }[]; options?: { mapEntry: boolean } }
  interface FileAcc { pkg: string; deps: Set<string>; messages: MessageInit[]; enums: EnumInit[] }
  const files = new Map<string, FileAcc>();
  const convertEnum = (e: protobuf.Enum): EnumInit => ({ name: e.name, value: Object.entries(e.values).map(([name, number]) => ({ name, number })) });
  const convertType = (t: protobuf.Type, acc: FileAcc, file: string): MessageInit => {
    const typeOf = (f: protobuf.Field, type: string, resolved: protobuf.ReflectionObject | null): { type: FType; typeName?: string } => {
      if (resolved) {
        const dep = fileOf(resolved);
        if (dep !== file) acc.deps.add(dep);
        return { type: resolved instanceof protobuf.Enum ? FType.ENUM : FType.MESSAGE, typeName: resolved.fullName };
      }
      const scalar = SCALARS[type];
      if (scalar === undefined) throw new Error(`unresolved type ${type} of ${f.fullName}`);
      return { type: scalar };
    };
    // real oneofs first, proto3 `optional` (synthetic) ones last, as protoc orders them
    const synthetic = (o: protobuf.OneOf): boolean => o.fieldsArray.length === 1 && o.fieldsArray[0]!.options?.proto3_optional === true;
    const oneofs = [...t.oneofsArray.filter((o) => !synthetic(o)), ...t.oneofsArray.filter(synthetic)];
    const msg: MessageInit = { name: t.name, field: [], nestedType: [], enumType: [], oneofDecl: oneofs.map((o) => ({ name: o.name })) };
    for (const f of t.fieldsArray) {
      if (f.declaringField) continue;
      f.resolve();
      const field: FieldInit = { name: f.name, number: f.id, jsonName: jsonName(f.name), label: Label.OPTIONAL, type: FType.MESSAGE };
      if (f instanceof protobuf.MapField) {
        const entry = mapEntryName(f.name);
        msg.nestedType.push({
          name: entry,
          field: [
            { name: 'key', number: 1, label: Label.OPTIONAL, jsonName: 'key', ...typeOf(f, f.keyType, null) },
            { name: 'value', number: 2, label: Label.OPTIONAL, jsonName: 'value', ...typeOf(f, f.type, f.resolvedType) },
          ],
          nestedType: [],
          enumType: [],
          oneofDecl: [],
          options: { mapEntry: true },
        });
        field.label = Label.REPEATED;
        field.typeName = `${t.fullName}.${entry}`;
      } else {
        Object.assign(field, typeOf(f, f.type, f.resolvedType));
        if (f.repeated) field.label = Label.REPEATED;
        if (f.partOf) field.oneofIndex = oneofs.indexOf(f.partOf);
        if (f.options?.proto3_optional === true) field.proto3Optional = true;
        if (f.options?.packed === false) field.options = { packed: false };
      }
      msg.field.push(field);
    }
    for (const n of t.nestedArray) {
      if (n instanceof protobuf.Type) msg.nestedType.push(convertType(n, acc, file));
      else if (n instanceof protobuf.Enum) msg.enumType.push(convertEnum(n));
    }
    return msg;
  };
  for (const top of wanted) {
    const file = fileOf(top);
    let acc = files.get(file);
    if (!acc) {
      acc = { pkg: (top.parent?.fullName ?? '.').slice(1), deps: new Set(), messages: [], enums: [] };
      files.set(file, acc);
    }
    if (top instanceof protobuf.Type) acc.messages.push(convertType(top, acc, file));
    else acc.enums.push(convertEnum(top));
  }

  // dependencies first
  const ordered: string[] = [];
  const seen = new Set<string>();
  const place = (name: string): void => {
    if (seen.has(name) || !files.has(name)) return;
    seen.add(name);
    for (const d of files.get(name)!.deps) place(d);
    ordered.push(name);
  };
  for (const name of [...files.keys()].sort()) place(name);

  const set = create(FileDescriptorSetSchema, {
    file: [
      ...WKT_FILES.map((f) => f.proto),
      ...ordered.map((name) => {
        const f = files.get(name)!;
        return { name, package: f.pkg, syntax: 'proto3', dependency: [...f.deps].sort(), messageType: f.messages, enumType: f.enums };
      }),
    ],
  });
  const registry = createFileRegistry(set);
  const msg = (name: string): DescMessage => {
    const d = registry.getMessage(name);
    if (!d) throw new Error(`wasm protos: ${name} missing from the registry`);
    return d;
  };
  return {
    registry,
    typedExtensionConfig: msg(TYPE.TypedExtensionConfig),
    httpWasm: msg(TYPE.HttpWasm),
    networkWasm: msg(TYPE.NetworkWasm),
    udpaTypedStruct: msg(TYPE.UdpaTypedStruct),
    xdsTypedStruct: msg(TYPE.XdsTypedStruct),
    loadMs: performance.now() - started,
  };
}
