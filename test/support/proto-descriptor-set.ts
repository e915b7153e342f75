// Loads .proto sources with protobufjs and converts the result into a google.protobuf.FileDescriptorSet
// as protoc would produce it (one FileDescriptorProto per source file, dependencies in topological
// order, json_name filled in, map entries named `<Field>Entry`, proto3 `optional` as synthetic oneofs).
//
// protobufjs' own `Root#toDescriptor` (protobufjs/ext/descriptor) is not used: it emits one file per
// *package* (Envoy packages span many files and would form import cycles), names map entries after
// the field (`Filter_metadata` instead of `FilterMetadataEntry`), leaves json_name empty (which
// @bufbuild/protobuf needs to accept lowerCamelCase keys), and stamps one syntax on every file.
//
// Options (validate rules, udpa annotations, ...) are dropped except the few that change how
// messages are read and written (map_entry, packed, deprecated, allow_alias); extensions of
// google.protobuf.*Options are therefore omitted too. google/protobuf/* files are not converted:
// the caller supplies @bufbuild/protobuf's own well-known-type descriptors for them.

import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { create } from '@bufbuild/protobuf';
import {
  FileDescriptorSetSchema,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  type FileDescriptorSet,
} from '@bufbuild/protobuf/wkt';

export interface ProtoSourceOptions {
  /** Include directories, searched in order (like protoc -I). */
  readonly includeDirs: readonly string[];
  /** Files to load, relative to an include dir. Imports are followed. */
  readonly files: readonly string[];
  /** Where `google/protobuf/descriptor.proto` lives (protobufjs does not bundle it as a common type). */
  readonly descriptorProtoPath: string;
  /** Called with the loaded protobufjs Root before conversion, e.g. to add fields missing from old sources. */
  readonly patch?: (root: protobuf.Root) => void;
}

export interface ConvertedDescriptorSet {
  readonly set: FileDescriptorSet;
  /** Requested files skipped because an import (transitively) cannot be found, e.g. Envoy v2 API files. */
  readonly skipped: readonly string[];
}

// Files protobufjs bundles (or we point it at); they are replaced by @bufbuild/protobuf's descriptors.
const WELL_KNOWN_PREFIX = 'google/protobuf/';

const IMPORT_RE = /^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm;

const SCALAR_TYPES: Record<string, FieldDescriptorProto_Type> = {
  double: FieldDescriptorProto_Type.DOUBLE,
  float: FieldDescriptorProto_Type.FLOAT,
  int64: FieldDescriptorProto_Type.INT64,
  uint64: FieldDescriptorProto_Type.UINT64,
  int32: FieldDescriptorProto_Type.INT32,
  fixed64: FieldDescriptorProto_Type.FIXED64,
  fixed32: FieldDescriptorProto_Type.FIXED32,
  bool: FieldDescriptorProto_Type.BOOL,
  string: FieldDescriptorProto_Type.STRING,
  bytes: FieldDescriptorProto_Type.BYTES,
  uint32: FieldDescriptorProto_Type.UINT32,
  sfixed32: FieldDescriptorProto_Type.SFIXED32,
  sfixed64: FieldDescriptorProto_Type.SFIXED64,
  sint32: FieldDescriptorProto_Type.SINT32,
  sint64: FieldDescriptorProto_Type.SINT64,
};

/** protoc's ToJsonName: drop underscores, upper-case the letter after each. */
export function protoJsonName(name: string): string {
  let out = '';
  let upper = false;
  for (const ch of name) {
    if (ch === '_') upper = true;
    else if (upper) {
      out += ch.toUpperCase();
      upper = false;
    } else out += ch;
  }
  return out;
}

/** protoc's MapEntryName: `filter_metadata` -> `FilterMetadataEntry`. */
export function mapEntryName(fieldName: string): string {
  let out = '';
  let upper = true;
  for (const ch of fieldName) {
    if (ch === '_') upper = true;
    else if (upper) {
      out += ch >= 'a' && ch <= 'z' ? ch.toUpperCase() : ch;
      upper = false;
    } else out += ch;
  }
  return out + 'Entry';
}

class SourceTree {
  private readonly located = new Map<string, string | null>();
  private readonly usable = new Map<string, boolean>();
  readonly byAbsolute = new Map<string, string>();

  constructor(private readonly opts: ProtoSourceOptions) {}

  locate(rel: string): string | null {
    const cached = this.located.get(rel);
    if (cached !== undefined) return cached;
    let found: string | null = null;
    if (rel === 'google/protobuf/descriptor.proto') found = this.opts.descriptorProtoPath;
    else {
      for (const dir of this.opts.includeDirs) {
        const candidate = path.join(dir, rel);
        if (fs.existsSync(candidate)) {
          found = candidate;
          break;
        }
      }
    }
    this.located.set(rel, found);
    if (found) this.byAbsolute.set(found, rel);
    return found;
  }

  /** True when the file and everything it imports can be found. */
  loadable(rel: string, visiting = new Set<string>()): boolean {
    const known = this.usable.get(rel);
    if (known !== undefined) return known;
    if (visiting.has(rel)) return true; // cycle: decided by the outer frame
    visiting.add(rel);
    let ok = true;
    if (!rel.startsWith(WELL_KNOWN_PREFIX) || rel === 'google/protobuf/descriptor.proto') {
      const abs = this.locate(rel);
      if (!abs) ok = false;
      else if (!rel.startsWith(WELL_KNOWN_PREFIX)) {
        const src = fs.readFileSync(abs, 'utf8');
        for (const m of src.matchAll(IMPORT_RE)) {
          if (!this.loadable(m[1]!, visiting)) {
            ok = false;
            break;
          }
        }
      }
    }
    visiting.delete(rel);
    this.usable.set(rel, ok);
    return ok;
  }
}

type ReflectionWithEdition = protobuf.ReflectionObject & { _edition?: string };

interface FileAcc {
  name: string;
  pkg: string;
  syntax: string;
  messageType: MessageInit[];
  enumType: EnumInit[];
  service: ServiceInit[];
  deps: Set<string>;
}

// Plain init shapes for create(FileDescriptorSetSchema, ...): the subset of descriptor.proto we fill.
interface FieldInit {
  name: string;
  number: number;
  label: FieldDescriptorProto_Label;
  type: FieldDescriptorProto_Type;
  typeName?: string;
  jsonName: string;
  oneofIndex?: number;
  proto3Optional?: boolean;
  defaultValue?: string;
  options?: { packed?: boolean; deprecated?: boolean };
}
interface MessageInit {
  name: string;
  field: FieldInit[];
  nestedType: MessageInit[];
  enumType: EnumInit[];
  oneofDecl: { name: string }[];
  reservedRange: { start: number; end: number }[];
  reservedName: string[];
  extensionRange: { start: number; end: number }[];
  options?: { mapEntry?: boolean; deprecated?: boolean };
}
interface EnumInit {
  name: string;
  value: { name: string; number: number; options?: { deprecated?: boolean } }[];
  reservedRange: { start: number; end: number }[];
  reservedName: string[];
  options?: { allowAlias?: boolean; deprecated?: boolean };
}
interface ServiceInit {
  name: string;
  method: { name: string; inputType: string; outputType: string; clientStreaming: boolean; serverStreaming: boolean }[];
}

const MAX_FIELD = 536870911;

function relFile(obj: protobuf.ReflectionObject, tree: SourceTree): string | undefined {
  let o: protobuf.ReflectionObject | null = obj;
  while (o && !o.filename) o = o.parent;
  if (!o?.filename) return undefined;
  return tree.byAbsolute.get(o.filename) ?? o.filename;
}

function fileOfType(t: protobuf.ReflectionObject, tree: SourceTree): string {
  const full = t.fullName.slice(1);
  if (full.startsWith('google.protobuf.')) {
    // protobufjs' bundled common types have no filename; map them to their canonical files.
    const rel = relFile(t, tree);
    if (rel && rel.startsWith(WELL_KNOWN_PREFIX)) return rel;
    return wellKnownFile(full);
  }
  const rel = relFile(t, tree);
  if (!rel) throw new Error(`cannot tell which file defines ${full}`);
  return rel;
}

const WELL_KNOWN_FILES: Record<string, string> = {
  Any: 'any', Duration: 'duration', Timestamp: 'timestamp', Empty: 'empty', FieldMask: 'field_mask',
  Struct: 'struct', Value: 'struct', ListValue: 'struct', NullValue: 'struct',
  DoubleValue: 'wrappers', FloatValue: 'wrappers', Int64Value: 'wrappers', UInt64Value: 'wrappers',
  Int32Value: 'wrappers', UInt32Value: 'wrappers', BoolValue: 'wrappers', StringValue: 'wrappers', BytesValue: 'wrappers',
};

function wellKnownFile(fullName: string): string {
  const top = fullName.slice('google.protobuf.'.length).split('.')[0]!;
  return `${WELL_KNOWN_PREFIX}${WELL_KNOWN_FILES[top] ?? 'descriptor'}.proto`;
}

function reservedInit(reserved: (number[] | string)[] | undefined | null, endExclusive: boolean) {
  const ranges: { start: number; end: number }[] = [];
  const names: string[] = [];
  for (const r of reserved ?? []) {
    if (typeof r === 'string') names.push(r);
    else {
      const end = r[1]! >= MAX_FIELD && endExclusive ? MAX_FIELD + 1 : endExclusive ? r[1]! + 1 : r[1]!;
      ranges.push({ start: r[0]!, end });
    }
  }
  return { ranges, names };
}

function convertEnum(e: protobuf.Enum): EnumInit {
  const seen = new Set<number>();
  let alias = false;
  const value = Object.entries(e.values).map(([name, number]) => {
    if (seen.has(number)) alias = true;
    seen.add(number);
    const deprecated = e.valuesOptions?.[name]?.deprecated === true;
    return deprecated ? { name, number, options: { deprecated: true } } : { name, number };
  });
  const { ranges, names } = reservedInit(e.reserved, false);
  const out: EnumInit = { name: e.name, value, reservedRange: ranges, reservedName: names };
  const options: EnumInit['options'] = {};
  if (alias || e.options?.allow_alias === true) options.allowAlias = true;
  if (e.options?.deprecated === true) options.deprecated = true;
  if (Object.keys(options).length) out.options = options;
  return out;
}

function fieldTypeOf(f: protobuf.Field, typeName: string, resolved: protobuf.ReflectionObject | null):
  { type: FieldDescriptorProto_Type; typeName?: string } {
  const scalar = SCALAR_TYPES[typeName];
  if (scalar !== undefined && !resolved) return { type: scalar };
  if (resolved instanceof protobuf.Enum) return { type: FieldDescriptorProto_Type.ENUM, typeName: resolved.fullName };
  if (resolved instanceof protobuf.Type) {
    return { type: f.delimited ? FieldDescriptorProto_Type.GROUP : FieldDescriptorProto_Type.MESSAGE, typeName: resolved.fullName };
  }
  throw new Error(`unresolved type ${typeName} for field ${f.fullName}`);
}

function convertType(t: protobuf.Type, acc: FileAcc, tree: SourceTree, edition: string): MessageInit {
  const msg: MessageInit = {
    name: t.name, field: [], nestedType: [], enumType: [], oneofDecl: [], reservedRange: [], reservedName: [], extensionRange: [],
  };
  const addDep = (o: protobuf.ReflectionObject) => {
    const file = fileOfType(o, tree);
    if (file !== acc.name) acc.deps.add(file);
  };

  // Real oneofs first, synthetic proto3-optional oneofs last, as protoc orders them.
  const isSynthetic = (o: protobuf.OneOf) => o.fieldsArray.length === 1 && o.fieldsArray[0]!.options?.proto3_optional === true;
  const oneofs = [...t.oneofsArray.filter((o) => !isSynthetic(o)), ...t.oneofsArray.filter(isSynthetic)];
  msg.oneofDecl = oneofs.map((o) => ({ name: o.name }));

  for (const f of t.fieldsArray) {
    if (f.declaringField) continue; // sister field added by an `extend` elsewhere
    f.resolve();
    const field: FieldInit = {
      name: f.name,
      number: f.id,
      label: FieldDescriptorProto_Label.OPTIONAL,
      type: FieldDescriptorProto_Type.MESSAGE,
      jsonName: typeof f.options?.json_name === 'string' ? f.options.json_name : protoJsonName(f.name),
    };
    if (f instanceof protobuf.MapField) {
      const entryName = mapEntryName(f.name);
      field.label = FieldDescriptorProto_Label.REPEATED;
      field.typeName = `${t.fullName}.${entryName}`;
      const keyType = SCALAR_TYPES[f.keyType];
      if (keyType === undefined) throw new Error(`bad map key type ${f.keyType} on ${f.fullName}`);
      const value = fieldTypeOf(f, f.type, f.resolvedType);
      if (f.resolvedType) addDep(f.resolvedType);
      msg.nestedType.push({
        name: entryName,
        field: [
          { name: 'key', number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: keyType, jsonName: 'key' },
          { name: 'value', number: 2, label: FieldDescriptorProto_Label.OPTIONAL, ...value, jsonName: 'value' },
        ],
        nestedType: [], enumType: [], oneofDecl: [], reservedRange: [], reservedName: [], extensionRange: [],
        options: { mapEntry: true },
      });
    } else {
      Object.assign(field, fieldTypeOf(f, f.type, f.resolvedType));
      if (f.resolvedType) addDep(f.resolvedType);
      if (f.repeated) field.label = FieldDescriptorProto_Label.REPEATED;
      else if (f.required && edition === 'proto2') field.label = FieldDescriptorProto_Label.REQUIRED;
      if (f.partOf) {
        const idx = oneofs.indexOf(f.partOf);
        if (idx < 0) throw new Error(`oneof of ${f.fullName} not found`);
        field.oneofIndex = idx;
      }
      if (f.options?.proto3_optional === true) field.proto3Optional = true;
      const def: unknown = f.options?.default;
      if (def !== undefined && edition === 'proto2') {
        if (f.resolvedType instanceof protobuf.Enum && typeof def === 'number') field.defaultValue = f.resolvedType.valuesById[def] ?? String(def);
        else field.defaultValue = String(def);
      }
    }
    const opts: NonNullable<FieldInit['options']> = {};
    if (f.options?.packed !== undefined) opts.packed = f.options.packed === true;
    if (f.options?.deprecated === true) opts.deprecated = true;
    if (Object.keys(opts).length) field.options = opts;
    msg.field.push(field);
  }

  for (const nested of t.nestedArray) {
    if (nested instanceof protobuf.Type) msg.nestedType.push(convertType(nested, acc, tree, edition));
    else if (nested instanceof protobuf.Enum) msg.enumType.push(convertEnum(nested));
    // nested `extend` blocks (Field) and services are not carried over
  }
  const { ranges, names } = reservedInit(t.reserved, true);
  msg.reservedRange = ranges;
  msg.reservedName = names;
  for (const r of t.extensions ?? []) {
    msg.extensionRange.push({ start: r[0]!, end: r[1]! >= MAX_FIELD ? MAX_FIELD + 1 : r[1]! + 1 });
  }
  if (t.options?.deprecated === true) msg.options = { deprecated: true };
  return msg;
}

function convertService(s: protobuf.Service, acc: FileAcc, tree: SourceTree): ServiceInit {
  const method = s.methodsArray.map((m) => {
    m.resolve();
    const req = m.resolvedRequestType;
    const res = m.resolvedResponseType;
    if (!req || !res) throw new Error(`unresolved method types on ${m.fullName}`);
    for (const t of [req, res]) {
      const f = fileOfType(t, tree);
      if (f !== acc.name) acc.deps.add(f);
    }
    return { name: m.name, inputType: req.fullName, outputType: res.fullName, clientStreaming: !!m.requestStream, serverStreaming: !!m.responseStream };
  });
  return { name: s.name, method };
}

/**
 * Loads `opts.files` (and their imports) and returns them as a FileDescriptorSet, dependencies first.
 * Files under google/protobuf/ are referenced as dependencies but not included.
 */
export function loadDescriptorSet(opts: ProtoSourceOptions): ConvertedDescriptorSet {
  const tree = new SourceTree(opts);
  const wanted = opts.files.filter((f) => tree.loadable(f));
  const skipped = opts.files.filter((f) => !tree.loadable(f));

  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : tree.locate(target) ?? target);
  root.loadSync(wanted.map((f) => tree.locate(f)!), { keepCase: true });
  opts.patch?.(root);
  root.resolveAll();

  const files = new Map<string, FileAcc>();
  const fileFor = (obj: protobuf.ReflectionObject): FileAcc | undefined => {
    const name = relFile(obj, tree);
    if (!name || name.startsWith(WELL_KNOWN_PREFIX)) return undefined;
    let acc = files.get(name);
    if (!acc) {
      const edition = (obj as ReflectionWithEdition)._edition ?? 'proto2';
      if (edition !== 'proto2' && edition !== 'proto3') throw new Error(`${name}: editions are not supported by this converter (${edition})`);
      acc = { name, pkg: obj.parent ? obj.parent.fullName.slice(1) : '', syntax: edition, messageType: [], enumType: [], service: [], deps: new Set() };
      files.set(name, acc);
    }
    return acc;
  };

  const visit = (ns: protobuf.NamespaceBase) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) {
        const acc = fileFor(obj);
        if (acc) acc.messageType.push(convertType(obj, acc, tree, acc.syntax));
      } else if (obj instanceof protobuf.Enum) {
        const acc = fileFor(obj);
        if (acc) acc.enumType.push(convertEnum(obj));
      } else if (obj instanceof protobuf.Service) {
        const acc = fileFor(obj);
        if (acc) acc.service.push(convertService(obj, acc, tree));
      } else if (obj instanceof protobuf.Namespace) {
        visit(obj);
      }
      // top-level `extend` fields (custom options) are dropped
    }
  };
  visit(root);

  // Topological order: every file after the files it depends on.
  const ordered: FileAcc[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const place = (name: string, from: string) => {
    const st = state.get(name);
    if (st === 'done') return;
    if (st === 'visiting') throw new Error(`import cycle through ${name} (from ${from})`);
    const acc = files.get(name);
    if (!acc) return; // a well-known type file, supplied by the caller
    state.set(name, 'visiting');
    for (const d of [...acc.deps].sort()) place(d, name);
    state.set(name, 'done');
    ordered.push(acc);
  };
  for (const name of [...files.keys()].sort()) place(name, name);

  const set = create(FileDescriptorSetSchema, {
    file: ordered.map((f) => ({
      name: f.name,
      package: f.pkg,
      syntax: f.syntax,
      dependency: [...f.deps].sort(),
      messageType: f.messageType,
      enumType: f.enumType,
      service: f.service,
    })),
  });
  return { set, skipped };
}
