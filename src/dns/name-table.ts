// The NDS name table (istio.networking.nds.v1.NameTable) and its decoding. The proto
// (proto/istio/networking/nds/v1/nds.proto) is loaded with protobufjs on the first table, so an
// agent without the DNS proxy never parses it.

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

export interface NameInfo {
  readonly ips: readonly string[];
  readonly registry: string;
  readonly shortname: string;
  readonly namespace: string;
  readonly altHosts: readonly string[];
}

/** Hostname -> NameInfo, in the order the table listed them. */
export type NameTable = ReadonlyMap<string, NameInfo>;

const PROTO = join('proto', 'istio', 'networking', 'nds', 'v1', 'nds.proto');
let nameTableType: protobuf.Type | undefined;

/** nds.proto, found upwards from this module (src/, dist/ or dist-test/ layouts). */
function protoPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, PROTO);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new Error(`${PROTO} not found above the agent module`);
}

function type(): protobuf.Type {
  nameTableType ??= new protobuf.Root().loadSync(protoPath(), { keepCase: true }).lookupType('istio.networking.nds.v1.NameTable');
  return nameTableType;
}

interface RawNameInfo {
  ips?: string[];
  registry?: string;
  shortname?: string;
  namespace?: string;
  alt_hosts?: string[];
}

/** Decodes a serialized NameTable; throws on bytes that are not one. */
export function decodeNameTable(bytes: Uint8Array): NameTable {
  const t = type();
  const obj = t.toObject(t.decode(bytes), { arrays: true, objects: true, defaults: true }) as { table?: Record<string, RawNameInfo> };
  const out = new Map<string, NameInfo>();
  for (const [host, info] of Object.entries(obj.table ?? {})) {
    out.set(host, {
      ips: info.ips ?? [],
      registry: info.registry ?? '',
      shortname: info.shortname ?? '',
      namespace: info.namespace ?? '',
      altHosts: info.alt_hosts ?? [],
    });
  }
  return out;
}

/** Encodes a NameTable (tests, benchmarks and the dev control plane). */
export function encodeNameTable(table: NameTable | Readonly<Record<string, Partial<NameInfo>>>): Uint8Array {
  const t = type();
  const entries = table instanceof Map ? [...table.entries()] : Object.entries(table);
  const raw: Record<string, RawNameInfo> = {};
  for (const [host, info] of entries as [string, Partial<NameInfo>][]) {
    raw[host] = {
      ips: [...(info.ips ?? [])],
      registry: info.registry ?? '',
      shortname: info.shortname ?? '',
      namespace: info.namespace ?? '',
      alt_hosts: [...(info.altHosts ?? [])],
    };
  }
  return t.encode(t.fromObject({ table: raw })).finish();
}

/** Proto3 JSON of a NameTable (lowerCamelCase, empty fields omitted), as /debug/ndsz shows it. */
export function nameTableJson(table: NameTable): { table: Record<string, Record<string, unknown>> } {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [host, info] of table) {
    const j: Record<string, unknown> = {};
    if (info.ips.length) j.ips = [...info.ips];
    if (info.registry) j.registry = info.registry;
    if (info.shortname) j.shortname = info.shortname;
    if (info.namespace) j.namespace = info.namespace;
    if (info.altHosts.length) j.altHosts = [...info.altHosts];
    out[host] = j;
  }
  return { table: out };
}
