// Two views of the effective ProxyConfig (kept by src/config as normalised proto3 JSON):
//
// - `proxyConfigProtoJson`: what Go's protojson writes for it, which is what Istio puts into the node
//   metadata as PROXY_CONFIG: fields at their proto3 default (empty string, 0, false, first enum
//   value, empty list or map) are left out, except members of a oneof and wrapper types
//   (google.protobuf.BoolValue/Int32Value), which are written whenever set.
// - `proxyConfigGoView`: the Go struct (`*model.NodeMetaProxyConfig`) that Istio hands to bootstrap
//   templates as `.config`, so that `{{ .config.ProxyAdminPort }}` or `{{ .config.Tracing.Tracer }}`
//   in a template written for Istio work here too. Every field is present, unset ones at their Go
//   zero value (nil pointers are `null`). Enums are given as their names.

import { PROXY_CONFIG_SCHEMA, type Json, type ProxyConfigJson } from '../config/proxy-config.js';

type Spec =
  | { kind: 'string' | 'bool' | 'double' | 'duration' | 'strings' | 'stringMap' | 'object' }
  | { kind: 'int'; min: number; max: number }
  | { kind: 'enum' | 'enums'; values: readonly string[] }
  | { kind: 'message'; fields: Schema; oneofs?: readonly (readonly string[])[] }
  | { kind: 'messageMap'; value: Spec };
type Schema = { readonly [name: string]: Spec };

const ROOT: Schema = PROXY_CONFIG_SCHEMA as unknown as Schema;

/** ProxyConfig's own oneof (the schema of src/config records the nested ones). */
const ROOT_ONEOFS: readonly (readonly string[])[] = [['serviceCluster', 'tracingServiceName']];

/** Fields typed google.protobuf.*Value: written even at 0/false, and `{Value: x}` structs in Go. */
const WRAPPER_FIELDS = new Set(['concurrency', 'holdApplicationUntilProxyStarts', 'statsCompression', 'enableIstioTags', 'insecureSkipVerify']);

/** Go name of a oneof, keyed by its first member. */
const ONEOF_GO_NAMES: Record<string, string> = { serviceCluster: 'ClusterName', zipkin: 'Tracer', literal: 'Type' };

function isObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function oneofMembers(oneofs: readonly (readonly string[])[]): Set<string> {
  return new Set(oneofs.flat());
}

function isDefault(spec: Spec, name: string, v: Json): boolean {
  if (WRAPPER_FIELDS.has(name)) return false;
  switch (spec.kind) {
    case 'string':
      return v === '';
    case 'int':
    case 'double':
      return v === 0;
    case 'bool':
      return v === false;
    case 'enum':
      return v === spec.values[0];
    case 'strings':
    case 'enums':
      return Array.isArray(v) && v.length === 0;
    case 'stringMap':
    case 'messageMap':
      return isObject(v) && Object.keys(v).length === 0;
    default:
      return false;
  }
}

function canonical(schema: Schema, oneofs: readonly (readonly string[])[], obj: { readonly [k: string]: Json }): { [k: string]: Json } {
  const members = oneofMembers(oneofs);
  const out: { [k: string]: Json } = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || v === undefined) continue;
    const spec = schema[k];
    if (!spec) {
      out[k] = v; // a field this agent does not know: passed on as the user wrote it
      continue;
    }
    if (!members.has(k) && isDefault(spec, k, v)) continue;
    if (spec.kind === 'message' && isObject(v)) out[k] = canonical(spec.fields, spec.oneofs ?? [], v);
    else if (spec.kind === 'messageMap' && isObject(v) && spec.value.kind === 'message') {
      const inner = spec.value;
      out[k] = Object.fromEntries(Object.entries(v).map(([mk, mv]) => [mk, isObject(mv) ? canonical(inner.fields, inner.oneofs ?? [], mv) : mv]));
    } else out[k] = v;
  }
  return out;
}

/** PROXY_CONFIG as Go's protojson writes it (key order is left to the JSON writer). */
export function proxyConfigProtoJson(pc: ProxyConfigJson): { [k: string]: Json } {
  return canonical(ROOT, ROOT_ONEOFS, pc);
}

// ---------------------------------------------------------------------------------------------
// Go struct view

/** Go field name protoc-gen-go derives from a proto field (`k8sSaJwtPath` -> `K8SSaJwtPath`). */
export function goFieldName(jsonName: string): string {
  return jsonName.replace(/^[a-z]/, (c) => c.toUpperCase()).replace(/(\d)([a-z])/g, (_, d: string, c: string) => d + c.toUpperCase());
}

const structClasses = new Map<string, new () => object>();

/** An instance of a named class, which the template engine treats as a Go struct (missing field = error). */
export function goStruct(typeName: string, fields: Record<string, unknown>): object {
  let cls = structClasses.get(typeName);
  if (!cls) {
    cls = { [typeName]: class {} }[typeName]!;
    structClasses.set(typeName, cls);
  }
  return Object.assign(new cls(), fields);
}

/** google.protobuf.Duration: Seconds and Nanos fields; prints like Go's %v of it. */
export class Duration {
  constructor(
    readonly Seconds: number,
    readonly Nanos: number,
  ) {}

  String(): string {
    return this.Nanos ? `seconds:${this.Seconds} nanos:${this.Nanos}` : `seconds:${this.Seconds}`;
  }

  static fromProtoJson(text: string): Duration | null {
    const m = /^(-?)(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
    if (!m) return null;
    const sign = m[1] ? -1 : 1;
    return new Duration(sign * Number(m[2]), sign * Number((m[3] ?? '').padEnd(9, '0')));
  }
}

function zeroValue(spec: Spec, name: string): unknown {
  if (WRAPPER_FIELDS.has(name)) return null;
  switch (spec.kind) {
    case 'string':
      return '';
    case 'int':
    case 'double':
      return 0;
    case 'bool':
      return false;
    case 'enum':
      return spec.values[0];
    case 'strings':
    case 'enums':
      return [];
    case 'stringMap':
    case 'messageMap':
      return {};
    default:
      return null; // messages, durations, pass-through objects: nil pointers
  }
}

function genericGoValue(v: Json): unknown {
  if (Array.isArray(v)) return v.map(genericGoValue);
  if (isObject(v)) return goStruct('Message', Object.fromEntries(Object.entries(v).map(([k, x]) => [goFieldName(k), genericGoValue(x)])));
  return v;
}

function goValue(spec: Spec, name: string, v: Json, typeName: string): unknown {
  if (WRAPPER_FIELDS.has(name)) return goStruct(typeof v === 'boolean' ? 'BoolValue' : 'Int32Value', { Value: v });
  switch (spec.kind) {
    case 'duration':
      return typeof v === 'string' ? Duration.fromProtoJson(v) : null;
    case 'message':
      return isObject(v) ? messageView(spec.fields, spec.oneofs ?? [], v, typeName) : null;
    case 'messageMap': {
      if (!isObject(v)) return {};
      const inner = spec.value;
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, inner.kind === 'message' && isObject(x) ? messageView(inner.fields, inner.oneofs ?? [], x, `${typeName}Value`) : x]));
    }
    case 'object':
      return genericGoValue(v);
    default:
      return Array.isArray(v) ? [...v] : isObject(v) ? { ...v } : v;
  }
}

function messageView(schema: Schema, oneofs: readonly (readonly string[])[], obj: { readonly [k: string]: Json }, typeName: string): object {
  const fields: Record<string, unknown> = {};
  const members = oneofMembers(oneofs);
  for (const [name, spec] of Object.entries(schema)) {
    if (members.has(name)) continue;
    const v = obj[name];
    fields[goFieldName(name)] = v === undefined || v === null ? zeroValue(spec, name) : goValue(spec, name, v, goFieldName(name));
  }
  for (const group of oneofs) {
    const goName = ONEOF_GO_NAMES[group[0]!] ?? goFieldName(group[0]!);
    const set = group.find((m) => obj[m] !== undefined && obj[m] !== null);
    fields[goName] = set === undefined ? null : goStruct(`${typeName}_${goFieldName(set)}`, { [goFieldName(set)]: goValue(schema[set]!, set, obj[set]!, goFieldName(set)) });
  }
  // fields this agent does not know are still reachable under their Go-style name
  for (const [name, v] of Object.entries(obj)) if (!(name in schema) && v !== null && v !== undefined) fields[goFieldName(name)] = genericGoValue(v);
  return goStruct(typeName, fields);
}

/** `.config` of the template data: the ProxyConfig as the Go struct Istio passes. */
export function proxyConfigGoView(pc: ProxyConfigJson): object {
  return messageView(ROOT, ROOT_ONEOFS, pc, 'NodeMetaProxyConfig');
}
