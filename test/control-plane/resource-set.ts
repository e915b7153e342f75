// Realistic xDS resources for big-push tests and benchmarks, built from a real Istio sidecar's
// Envoy config dump (../shared/istio-testdata/configdump/sidecar_config_dump.json) and scaled up by
// cloning every resource under new names.
//
// Cloning is consistent: copy i renames every cluster, endpoint, listener and route name (and every
// string field equal to one of those names, so EDS service names, route targets and RDS names keep
// pointing at copy i's resources). Istio-style names get the index in the host's first label
// (`outbound|8000||httpbin-0042.default.svc.cluster.local`), others a suffix (`agent-0042`).
//
// Copies are made at the byte level: each template is encoded once with a placeholder index of fixed
// width, the placeholder positions are found by encoding it a second time with another placeholder,
// and every copy is the template's bytes with the index digits written in. This builds 64 MiB of
// clusters in well under a second; the result is byte-identical to encoding each renamed copy.

import fs from 'node:fs';
import path from 'node:path';
import { toBinary } from '@bufbuild/protobuf';
import { messageSchema, parseEnvoyJson } from '../support/envoy-protos.js';
import { istioTestdata } from '../support/paths.js';
import type { ControlPlane } from './control-plane.js';
import { decodeMessage, messageToJson, TypeUrl } from './xds-protos.js';

export type ResourceKind = 'clusters' | 'endpoints' | 'listeners' | 'routes' | 'secrets' | 'extensions';

export const KIND_TYPE_URL: Readonly<Record<ResourceKind, string>> = {
  clusters: TypeUrl.Cluster,
  endpoints: TypeUrl.ClusterLoadAssignment,
  listeners: TypeUrl.Listener,
  routes: TypeUrl.RouteConfiguration,
  secrets: TypeUrl.Secret,
  extensions: TypeUrl.TypedExtensionConfig,
};

export const DEFAULT_KINDS: readonly ResourceKind[] = ['clusters', 'endpoints', 'listeners', 'routes', 'secrets'];

export const SIDECAR_CONFIG_DUMP = path.join(istioTestdata, 'configdump', 'sidecar_config_dump.json');
export const ECDS_CONFIG_DUMP = path.join(istioTestdata, 'configdump', 'ecds_config_dump.json');

export interface BuildResourceSetOptions {
  /** Copies of every template resource (default 1: the config dump's resources, renamed with index 0). */
  readonly scale?: number;
  /**
   * Clone until a kind's total serialized size reaches this many bytes (overrides `scale` for that
   * kind). A number means clusters: `{ targetBytes: 10 * 1024 * 1024 }` is 10 MiB of clusters.
   */
  readonly targetBytes?: number | Partial<Record<ResourceKind, number>>;
  /** Kinds to build (default clusters, endpoints, listeners, routes, secrets; `extensions` = ECDS Wasm filters). */
  readonly kinds?: readonly ResourceKind[];
  /** Kinds built only to the extent given by targetBytes (others left out). Default false. */
  readonly onlyTargeted?: boolean;
  readonly configDumpPath?: string;
  readonly ecdsConfigDumpPath?: string;
}

export interface BuiltResource {
  readonly name: string;
  readonly binary: Uint8Array;
}

export interface ResourceSet {
  /** Resources by type URL. */
  readonly byType: ReadonlyMap<string, readonly BuiltResource[]>;
  count(typeUrl: string): number;
  /** Sum of the serialized sizes of a type's resources. */
  bytes(typeUrl: string): number;
  readonly totalBytes: number;
  /** Replaces the control plane's resources of every type in the set; returns the versions. */
  applyTo(cp: ControlPlane, opts?: { readonly push?: boolean }): Record<string, string>;
  /** Writes one proto3-JSON file per type (`clusters.json`, ...) for `--resources`; returns the paths. */
  writeTo(dir: string): string[];
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

interface Templates {
  readonly byKind: Map<ResourceKind, Json[]>;
}

function addressName(listener: Json): string | undefined {
  const sa = obj(obj(listener.address)?.socket_address);
  return sa ? `${String(sa.address)}_${String(sa.port_value)}` : undefined;
}

/** Extracts the resources of an Envoy admin config dump, grouped by kind. */
export function templatesFromConfigDump(dump: unknown, ecdsDump?: unknown): Templates {
  const byKind = new Map<ResourceKind, Json[]>();
  const add = (kind: ResourceKind, r: unknown) => {
    const o = obj(r);
    if (!o) return;
    let list = byKind.get(kind);
    if (!list) byKind.set(kind, (list = []));
    list.push(o);
  };
  const configs = [...arr(obj(dump)?.configs), ...arr(obj(ecdsDump)?.configs)];
  for (const c of configs) {
    const cfg = obj(c);
    if (!cfg) continue;
    switch (cfg['@type']) {
      case 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump':
        for (const e of [...arr(cfg.static_clusters), ...arr(cfg.dynamic_active_clusters), ...arr(cfg.dynamic_warming_clusters)]) add('clusters', obj(e)?.cluster);
        break;
      case 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump':
        for (const e of [...arr(cfg.static_endpoint_configs), ...arr(cfg.dynamic_endpoint_configs)]) add('endpoints', obj(e)?.endpoint_config);
        break;
      case 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump':
        for (const e of arr(cfg.static_listeners)) {
          const l = obj(obj(e)?.listener);
          if (l) add('listeners', l.name ? l : { ...l, name: addressName(l) ?? 'static_listener' });
        }
        for (const e of arr(cfg.dynamic_listeners)) {
          const d = obj(e);
          add('listeners', obj(d?.active_state)?.listener ?? obj(d?.warming_state)?.listener);
        }
        break;
      case 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump':
        for (const e of [...arr(cfg.static_route_configs), ...arr(cfg.dynamic_route_configs)]) add('routes', obj(e)?.route_config);
        break;
      case 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump':
        for (const e of [...arr(cfg.static_secrets), ...arr(cfg.dynamic_active_secrets)]) add('secrets', obj(e)?.secret);
        break;
      case 'type.googleapis.com/envoy.admin.v3.EcdsConfigDump':
        for (const e of arr(cfg.ecds_filters)) add('extensions', obj(e)?.ecds_filter);
        break;
      default:
        break;
    }
  }
  return { byKind };
}

/** The clone name for index text `idx`. */
export function cloneName(name: string, idx: string): string {
  const m = /^(.*\|)([^|.]+)(\.[^|]*)$/.exec(name);
  if (m) return `${m[1]}${m[2]}-${idx}${m[3]}`;
  return `${name}-${idx}`;
}

function nameOf(kind: ResourceKind, r: Json): string {
  const n = kind === 'endpoints' ? r.cluster_name : r.name;
  if (typeof n !== 'string' || n === '') throw new Error(`a ${kind} template has no name`);
  return n;
}

function renameDeep(v: unknown, renames: ReadonlyMap<string, string>): unknown {
  if (typeof v === 'string') return renames.get(v) ?? v;
  if (Array.isArray(v)) return v.map((x) => renameDeep(x, renames));
  if (v && typeof v === 'object') {
    const out: Json = {};
    for (const [k, x] of Object.entries(v)) out[k] = k === '@type' ? x : renameDeep(x, renames);
    return out;
  }
  return v;
}

interface CompiledTemplate {
  readonly kind: ResourceKind;
  readonly originalName: string;
  readonly bytes: Uint8Array;
  /** Start offsets of the index placeholders in `bytes`. */
  readonly slots: readonly number[];
}

function encode(kind: ResourceKind, json: Json): Uint8Array {
  const typeUrl = KIND_TYPE_URL[kind];
  const { ['@type']: _t, ...body } = json;
  const schema = messageSchema(typeUrl);
  return toBinary(schema, parseEnvoyJson(schema.typeName, body));
}

function compile(kind: ResourceKind, template: Json, renameable: readonly string[], width: number): CompiledTemplate {
  const originalName = nameOf(kind, template);
  const build = (placeholder: string) => {
    const renames = new Map(renameable.map((n) => [n, cloneName(n, placeholder)]));
    let json: Json;
    if (kind === 'secrets' || kind === 'extensions') {
      json = { ...template, name: cloneName(originalName, placeholder) }; // only the resource's own name
    } else {
      json = renameDeep(template, renames) as Json;
    }
    return encode(kind, json);
  };
  const a = build('a'.repeat(width));
  const b = build('b'.repeat(width));
  if (a.length !== b.length) throw new Error(`cannot clone ${originalName}: placeholder changed the encoding size`);
  const slots: number[] = [];
  for (let i = 0; i < a.length; ) {
    if (a[i] !== b[i]) {
      let j = i;
      while (j < a.length && a[j] !== b[j]) j++;
      if ((j - i) % width !== 0) throw new Error(`cannot clone ${originalName}: unexpected placeholder run`);
      for (let k = i; k < j; k += width) slots.push(k);
      i = j;
    } else {
      i++;
    }
  }
  return { kind, originalName, bytes: a, slots };
}

function loadJson(file: string): unknown {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Builds a scaled, realistic resource set from the sidecar config dump. */
export function buildResourceSet(options: BuildResourceSetOptions = {}): ResourceSet {
  const kinds = options.kinds ?? DEFAULT_KINDS;
  const targets: Partial<Record<ResourceKind, number>> =
    typeof options.targetBytes === 'number' ? { clusters: options.targetBytes } : (options.targetBytes ?? {});
  const scale = options.scale ?? 1;
  if (!Number.isInteger(scale) || scale < 0) throw new Error(`scale must be a non-negative integer, got ${scale}`);
  const dump = loadJson(options.configDumpPath ?? SIDECAR_CONFIG_DUMP);
  const ecds = kinds.includes('extensions') ? loadJson(options.ecdsConfigDumpPath ?? ECDS_CONFIG_DUMP) : undefined;
  const { byKind } = templatesFromConfigDump(dump, ecds);

  // names other resources may refer to (secrets are referenced by SDS names such as "default" that
  // also occur as unrelated strings, so only their own name field is renamed)
  const renameable = (['clusters', 'endpoints', 'listeners', 'routes'] as const).flatMap((k) => (byKind.get(k) ?? []).map((r) => nameOf(k, r)));

  const byType = new Map<string, BuiltResource[]>();
  const bytesByType = new Map<string, number>();
  for (const kind of kinds) {
    const templates = byKind.get(kind) ?? [];
    if (templates.length === 0) continue;
    const target = targets[kind];
    if (options.onlyTargeted && target === undefined) continue;
    // the copy count depends on the encoded size, which depends on the index width: settle both
    let width = 4;
    let compiled = templates.map((t) => compile(kind, t, renameable, width));
    let copyBytes = compiled.reduce((n, c) => n + c.bytes.length, 0);
    let copies = target !== undefined ? Math.max(1, Math.ceil(target / copyBytes)) : scale;
    while (String(Math.max(0, copies - 1)).length > width) {
      width = String(copies - 1).length;
      compiled = templates.map((t) => compile(kind, t, renameable, width));
      copyBytes = compiled.reduce((n, c) => n + c.bytes.length, 0);
      copies = target !== undefined ? Math.max(1, Math.ceil(target / copyBytes)) : scale;
    }
    const buffer = new Uint8Array(copyBytes * copies);
    const out: BuiltResource[] = [];
    let offset = 0;
    for (let i = 0; i < copies; i++) {
      const idx = String(i).padStart(width, '0');
      const digits = Buffer.from(idx, 'ascii');
      for (const c of compiled) {
        buffer.set(c.bytes, offset);
        for (const s of c.slots) buffer.set(digits, offset + s);
        out.push({ name: cloneName(c.originalName, idx), binary: buffer.subarray(offset, offset + c.bytes.length) });
        offset += c.bytes.length;
      }
    }
    const typeUrl = KIND_TYPE_URL[kind];
    byType.set(typeUrl, out);
    bytesByType.set(typeUrl, buffer.length);
  }

  const totalBytes = [...bytesByType.values()].reduce((a, b) => a + b, 0);
  return {
    byType,
    count: (typeUrl) => byType.get(typeUrl)?.length ?? 0,
    bytes: (typeUrl) => bytesByType.get(typeUrl) ?? 0,
    totalBytes,
    applyTo(cp, opts = {}) {
      const versions: Record<string, string> = {};
      for (const [typeUrl, list] of byType) {
        versions[typeUrl] = cp.setResources(typeUrl, list.map((r) => ({ name: r.name, binary: r.binary })), { replace: true, push: opts.push });
      }
      return versions;
    },
    writeTo(dir) {
      fs.mkdirSync(dir, { recursive: true });
      const files: string[] = [];
      for (const [kind, typeUrl] of Object.entries(KIND_TYPE_URL)) {
        const list = byType.get(typeUrl);
        if (!list) continue;
        const schema = messageSchema(typeUrl);
        const json = list.map((r) => ({ '@type': typeUrl, ...(messageToJson(schema, decodeMessage<object>(schema, r.binary)) as Json) }));
        const file = path.join(dir, `${kind}.json`);
        fs.writeFileSync(file, `${JSON.stringify(json, null, 1)}\n`);
        files.push(file);
      }
      return files;
    },
  };
}
