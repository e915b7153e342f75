// The NDS name table (istio.networking.nds.v1.NameTable) and its decoding, with the generated code
// of Istio's nds.proto (src/gen/pkg/dns/proto/), loaded with the first table.

import { lazy } from '../util/lazy.js';

export interface NameInfo {
  readonly ips: readonly string[];
  readonly registry: string;
  readonly shortname: string;
  readonly namespace: string;
  readonly altHosts: readonly string[];
}

/** Hostname -> NameInfo, in the order the table listed them. */
export type NameTable = ReadonlyMap<string, NameInfo>;

const loadCodec = lazy(async () => {
  const [{ create, fromBinary, toBinary }, { NameTableSchema, NameTable_NameInfoSchema }] = await Promise.all([
    import('@bufbuild/protobuf'),
    import('../gen/pkg/dns/proto/nds_pb.js'),
  ]);
  return {
    decode(bytes: Uint8Array): NameTable {
      const msg = fromBinary(NameTableSchema, bytes);
      const out = new Map<string, NameInfo>();
      for (const [host, info] of Object.entries(msg.table)) {
        out.set(host, { ips: info.ips, registry: info.registry, shortname: info.shortname, namespace: info.namespace, altHosts: info.altHosts });
      }
      return out;
    },
    encode(entries: [string, Partial<NameInfo>][]): Uint8Array {
      const table = Object.fromEntries(
        entries.map(([host, info]) => [
          host,
          create(NameTable_NameInfoSchema, {
            ips: [...(info.ips ?? [])],
            registry: info.registry ?? '',
            shortname: info.shortname ?? '',
            namespace: info.namespace ?? '',
            altHosts: [...(info.altHosts ?? [])],
          }),
        ]),
      );
      return toBinary(NameTableSchema, create(NameTableSchema, { table }));
    },
  };
});

/** Decodes a serialized NameTable; rejects bytes that are not one. */
export async function decodeNameTable(bytes: Uint8Array): Promise<NameTable> {
  return (await loadCodec()).decode(bytes);
}

/** Encodes a NameTable (tests, benchmarks and the dev control plane). */
export async function encodeNameTable(table: NameTable | Readonly<Record<string, Partial<NameInfo>>>): Promise<Uint8Array> {
  return (await loadCodec()).encode((table instanceof Map ? [...table.entries()] : Object.entries(table)) as [string, Partial<NameInfo>][]);
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
