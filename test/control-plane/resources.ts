// The control plane's resource store and the directory loader that feeds it.
//
// A resource is stored as its packed binary (the bytes of google.protobuf.Any.value), a name and a
// content version (a hash of the bytes, so identical content always has the same version - also
// across control-plane restarts, which is what Delta reconnection with initial_resource_versions
// relies on). Each type has a version_info that moves forward whenever a resource of the type
// changes; versions come from one counter shared by all types, so they never repeat.

import { createHash, hash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fromBinary, toBinary, type DescMessage, type Message } from '@bufbuild/protobuf';
import YAML from 'yaml';
import { envoyRegistry, messageSchema, parseEnvoyJson } from '../support/envoy-protos.js';
import { TypeUrl, normalizeTypeUrl, typeNameOf } from './xds-protos.js';

export interface ResourceInput {
  /** Resource name; taken from the resource (`name`, ClusterLoadAssignment `cluster_name`) when omitted. */
  readonly name?: string;
  /** Proto3 JSON of the resource (an `@type`, if present, must match the type URL). Parsed strictly. */
  readonly json?: unknown;
  /** The serialized resource (Any.value). Not validated; any type URL is accepted. */
  readonly binary?: Uint8Array;
}

export interface StoredResource {
  readonly typeUrl: string;
  readonly name: string;
  readonly binary: Uint8Array;
  /** Content version: a hash of `binary`. */
  readonly version: string;
}

export interface ChangeEvent {
  readonly typeUrl: string;
  /** The type's version_info after the change. */
  readonly version: string;
  readonly changed: readonly string[];
  readonly removed: readonly string[];
}

export interface StoreChange {
  readonly typeUrl: string;
  readonly upsert?: readonly StoredResource[];
  readonly remove?: readonly string[];
  /** Drop every resource of the type not in `upsert`. */
  readonly replace?: boolean;
}

export function contentVersion(binary: Uint8Array): string {
  return hash('sha256', binary, 'base64url').slice(0, 16);
}

function nameField(schema: DescMessage) {
  return schema.fields.find((f) => f.name === 'name') ?? schema.fields.find((f) => f.name === 'cluster_name');
}

/** The resource name of a message (`name`, or `cluster_name` for ClusterLoadAssignment). */
export function resourceNameOf(schema: DescMessage, msg: Message): string | undefined {
  const field = schema.typeName === 'envoy.config.endpoint.v3.ClusterLoadAssignment'
    ? schema.fields.find((f) => f.name === 'cluster_name')
    : nameField(schema);
  if (!field || field.fieldKind !== 'scalar') return undefined;
  const v = (msg as unknown as Record<string, unknown>)[field.localName];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Raised for a resource that cannot be served: bad JSON, unknown field, missing name, ... */
export class ResourceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ResourceError';
  }
}

function schemaOrUndefined(typeUrl: string): DescMessage | undefined {
  return envoyRegistry().getMessage(typeNameOf(typeUrl));
}

/** Validates and encodes one resource. */
export function toStoredResource(typeUrlIn: string, input: ResourceInput): StoredResource {
  const typeUrl = normalizeTypeUrl(typeUrlIn);
  if (input.binary && input.json !== undefined) throw new ResourceError('give either json or binary, not both');
  if (input.binary) {
    let name = input.name;
    if (!name) {
      const schema = schemaOrUndefined(typeUrl);
      if (schema) name = resourceNameOf(schema, fromBinary(schema, input.binary));
    }
    if (!name) throw new ResourceError(`a ${typeNameOf(typeUrl)} resource given as binary needs a name`);
    return { typeUrl, name, binary: input.binary, version: contentVersion(input.binary) };
  }
  if (input.json === undefined) throw new ResourceError('a resource needs json or binary');
  let json = input.json;
  if (json && typeof json === 'object' && !Array.isArray(json) && '@type' in json) {
    const { ['@type']: declared, ...rest } = json as Record<string, unknown>;
    if (typeof declared !== 'string' || normalizeTypeUrl(declared) !== typeUrl) {
      throw new ResourceError(`"@type" ${JSON.stringify(declared)} does not match ${typeUrl}`);
    }
    json = rest;
  }
  let schema: DescMessage;
  try {
    schema = messageSchema(typeUrl);
  } catch (err) {
    throw new ResourceError(`cannot serve ${typeUrl}: not a type of the Envoy API`, { cause: err });
  }
  let msg: Message;
  try {
    msg = parseEnvoyJson(schema.typeName, json);
  } catch (err) {
    throw new ResourceError((err as Error).message, { cause: err });
  }
  const name = input.name ?? resourceNameOf(schema, msg);
  if (!name) throw new ResourceError(`${schema.typeName} has no name (field ${schema.typeName === 'envoy.config.endpoint.v3.ClusterLoadAssignment' ? 'cluster_name' : 'name'})`);
  const binary = toBinary(schema, msg);
  return { typeUrl, name, binary, version: contentVersion(binary) };
}

/**
 * What istiod answers for an EDS or RDS name it has nothing for (ANSWER_EVERY_NAME_TYPES): a
 * ClusterLoadAssignment without endpoints, a RouteConfiguration without virtual hosts.
 */
export function emptyAnswer(typeUrl: string, name: string): StoredResource {
  const json = normalizeTypeUrl(typeUrl) === TypeUrl.ClusterLoadAssignment ? { cluster_name: name } : { name, virtual_hosts: [], validate_clusters: false };
  return toStoredResource(typeUrl, { name, json });
}

/** istiod's name table when it knows no names: the NDS generator sends one, unnamed, whatever the mesh. */
export const EMPTY_NAME_TABLE: StoredResource = {
  typeUrl: 'type.googleapis.com/istio.networking.nds.v1.NameTable',
  name: '',
  binary: new Uint8Array(0),
  version: contentVersion(new Uint8Array(0)),
};

interface TypeState {
  version: string;
  readonly resources: Map<string, StoredResource>;
}

/** In-memory resources by type. `apply` is atomic and notifies listeners with what changed. */
export class ResourceStore {
  private readonly types = new Map<string, TypeState>();
  private counter = 0;
  private readonly listeners = new Set<(events: readonly ChangeEvent[]) => void>();

  onChange(fn: (events: readonly ChangeEvent[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  typeUrls(): string[] {
    return [...this.types.keys()];
  }

  /** version_info of a type; "0" until it first has resources. */
  version(typeUrl: string): string {
    return this.types.get(normalizeTypeUrl(typeUrl))?.version ?? '0';
  }

  get(typeUrl: string, name: string): StoredResource | undefined {
    return this.types.get(normalizeTypeUrl(typeUrl))?.resources.get(name);
  }

  /** All resources of a type, in insertion order. */
  all(typeUrl: string): StoredResource[] {
    return [...(this.types.get(normalizeTypeUrl(typeUrl))?.resources.values() ?? [])];
  }

  size(typeUrl: string): number {
    return this.types.get(normalizeTypeUrl(typeUrl))?.resources.size ?? 0;
  }

  apply(changes: readonly StoreChange[]): ChangeEvent[] {
    const byType = new Map<string, { changed: Set<string>; removed: Set<string> }>();
    const touch = (t: string) => {
      let e = byType.get(t);
      if (!e) byType.set(t, (e = { changed: new Set(), removed: new Set() }));
      return e;
    };
    for (const c of changes) {
      const typeUrl = normalizeTypeUrl(c.typeUrl);
      let st = this.types.get(typeUrl);
      if (!st) this.types.set(typeUrl, (st = { version: '0', resources: new Map() }));
      const upsertNames = c.replace ? new Set<string>() : undefined;
      let e: { changed: Set<string>; removed: Set<string> } | undefined;
      for (const r of c.upsert ?? []) {
        if (r.typeUrl !== typeUrl && normalizeTypeUrl(r.typeUrl) !== typeUrl) throw new ResourceError(`resource ${r.name} is a ${r.typeUrl}, not a ${typeUrl}`);
        upsertNames?.add(r.name);
        const prev = st.resources.get(r.name);
        if (prev && prev.version === r.version) continue;
        st.resources.set(r.name, r);
        e ??= touch(typeUrl);
        e.changed.add(r.name);
        e.removed.delete(r.name);
      }
      const removals = upsertNames ? [...st.resources.keys()].filter((n) => !upsertNames.has(n)) : (c.remove ?? []);
      for (const name of removals) {
        if (!st.resources.delete(name)) continue;
        const e = touch(typeUrl);
        e.removed.add(name);
        e.changed.delete(name);
      }
    }
    const events: ChangeEvent[] = [];
    for (const [typeUrl, e] of byType) {
      if (e.changed.size === 0 && e.removed.size === 0) continue;
      const st = this.types.get(typeUrl)!;
      st.version = String(++this.counter);
      events.push({ typeUrl, version: st.version, changed: [...e.changed], removed: [...e.removed] });
    }
    if (events.length > 0) for (const fn of this.listeners) fn(events);
    return events;
  }
}

// ---------------------------------------------------------------------------------------------
// Resource files

const RESOURCE_FILE = /\.(json|ya?ml)$/i;

/**
 * Parses a resource file: proto3 JSON (or YAML) holding one resource or a list, each with `@type`.
 * Throws ResourceError naming the file, the entry and the field path of the first problem.
 */
export function parseResourceFile(file: string, text: string): StoredResource[] {
  let doc: unknown;
  try {
    doc = /\.ya?ml$/i.test(file) ? YAML.parse(text, { uniqueKeys: true }) : JSON.parse(text);
  } catch (err) {
    throw new ResourceError(`${file}: not valid ${/\.ya?ml$/i.test(file) ? 'YAML' : 'JSON'}: ${(err as Error).message}`, { cause: err });
  }
  const items = Array.isArray(doc) ? doc : [doc];
  const out: StoredResource[] = [];
  const seen = new Set<string>();
  items.forEach((item, i) => {
    const where = Array.isArray(doc) ? `${file}[${i}]` : file;
    if (!item || typeof item !== 'object' || Array.isArray(item)) throw new ResourceError(`${where}: expected a resource object with "@type"`);
    const declared = (item as Record<string, unknown>)['@type'];
    if (typeof declared !== 'string' || declared === '') throw new ResourceError(`${where}: missing "@type" (e.g. "type.googleapis.com/envoy.config.cluster.v3.Cluster")`);
    let r: StoredResource;
    try {
      r = toStoredResource(declared, { json: item });
    } catch (err) {
      throw new ResourceError(`${where}: ${(err as Error).message}`, { cause: err });
    }
    const key = `${r.typeUrl} ${r.name}`;
    if (seen.has(key)) throw new ResourceError(`${where}: duplicate ${typeNameOf(r.typeUrl)} "${r.name}" in the same file`);
    seen.add(key);
    out.push(r);
  });
  return out;
}

export interface FileError {
  /** Path relative to the resource directory. */
  readonly file: string;
  readonly message: string;
}

export interface ReloadResult {
  readonly events: readonly ChangeEvent[];
  /** Files that failed to parse in this reload (their previous good resources were kept). */
  readonly errors: readonly FileError[];
  /** Files whose content changed and parsed. */
  readonly loaded: readonly string[];
}

interface FileState {
  sig: string;
  hash: string;
  resources: StoredResource[];
  error?: string;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue; // hidden files, editor swap files, Kubernetes ..data dirs
      const p = path.join(d, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const st = fs.statSync(p);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue;
        }
      }
      if (isDir) walk(p);
      else if (isFile && RESOURCE_FILE.test(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Loads every `*.json`/`*.yaml` under a directory into the store and keeps watching it. A file that
 * fails to parse is reported and its previous good resources stay served; a deleted file's
 * resources are removed. When two files define the same resource, the later file (path order) wins.
 */
export class ResourceDirectory extends EventEmitter<{ reload: [ReloadResult] }> {
  private readonly files = new Map<string, FileState>();
  /** What the directory currently contributes to the store, per type and name. */
  private contributed = new Map<string, Map<string, StoredResource>>();
  private watchers: fs.FSWatcher[] = [];
  private watchedDirs = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private poll: NodeJS.Timeout | undefined;
  private closed = false;
  reloads = 0;

  constructor(
    readonly dir: string,
    private readonly store: ResourceStore,
    private readonly opts: { log?: (msg: string) => void; debounceMs?: number; pollIntervalMs?: number } = {},
  ) {
    super();
  }

  /** Initial load (synchronous) and start watching. */
  start(): ReloadResult {
    if (!fs.existsSync(this.dir) || !fs.statSync(this.dir).isDirectory()) throw new ResourceError(`resource directory ${this.dir} does not exist`);
    const result = this.reload();
    this.watch();
    const pollMs = this.opts.pollIntervalMs ?? 2000;
    if (pollMs > 0) {
      this.poll = setInterval(() => this.reload(), pollMs);
      this.poll.unref();
    }
    return result;
  }

  /** Errors of files that currently fail to parse. */
  errors(): FileError[] {
    return [...this.files.entries()].filter(([, s]) => s.error).map(([f, s]) => ({ file: f, message: s.error! }));
  }

  private rel(p: string): string {
    return path.relative(this.dir, p) || path.basename(p);
  }

  private watch(): void {
    if (this.closed) return;
    const dirs = new Set<string>([this.dir]);
    for (const f of this.files.keys()) dirs.add(path.dirname(path.join(this.dir, f)));
    for (const d of dirs) {
      if (this.watchedDirs.has(d)) continue;
      try {
        const w = fs.watch(d, { persistent: false }, () => this.schedule());
        w.on('error', () => undefined);
        this.watchers.push(w);
        this.watchedDirs.add(d);
      } catch {
        // the poll interval still picks changes up
      }
    }
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.reload();
    }, this.opts.debounceMs ?? 50);
    this.timer.unref();
  }

  /** Rescans the directory now; only changed files are re-read and re-parsed. */
  reload(): ReloadResult {
    if (this.closed) return { events: [], errors: [], loaded: [] };
    const errors: FileError[] = [];
    const loaded: string[] = [];
    const present = new Set<string>();
    let anyChange = false;
    for (const abs of listFiles(this.dir)) {
      const file = this.rel(abs);
      present.add(file);
      let st: fs.Stats;
      let text: string;
      try {
        st = fs.statSync(abs);
        const sig = `${st.ino}:${st.size}:${st.mtimeMs}`;
        const prev = this.files.get(file);
        if (prev && prev.sig === sig) continue;
        text = fs.readFileSync(abs, 'utf8');
        const hash = createHash('sha256').update(text).digest('hex');
        if (prev && prev.hash === hash) {
          prev.sig = sig;
          continue;
        }
        try {
          const resources = parseResourceFile(file, text);
          this.files.set(file, { sig, hash, resources });
          loaded.push(file);
          anyChange = true;
        } catch (err) {
          const message = (err as Error).message;
          this.files.set(file, { sig, hash, resources: prev?.resources ?? [], error: message });
          errors.push({ file, message });
          this.opts.log?.(`rejected resource file ${message}${prev && prev.resources.length > 0 ? ` (keeping its ${prev.resources.length} previous resources)` : ''}`);
        }
      } catch {
        continue; // vanished between listing and reading
      }
    }
    for (const file of [...this.files.keys()]) {
      if (!present.has(file)) {
        this.files.delete(file);
        anyChange = true;
      }
    }
    let events: ChangeEvent[] = [];
    if (anyChange) {
      const next = new Map<string, Map<string, StoredResource>>();
      const origin = new Map<string, string>();
      for (const [file, s] of [...this.files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        for (const r of s.resources) {
          let m = next.get(r.typeUrl);
          if (!m) next.set(r.typeUrl, (m = new Map()));
          const key = `${r.typeUrl} ${r.name}`;
          if (m.has(r.name)) this.opts.log?.(`${typeNameOf(r.typeUrl)} "${r.name}" is defined in ${origin.get(key)} and ${file}; using ${file}`);
          m.set(r.name, r);
          origin.set(key, file);
        }
      }
      const changes: StoreChange[] = [];
      for (const typeUrl of new Set([...next.keys(), ...this.contributed.keys()])) {
        const now = next.get(typeUrl) ?? new Map<string, StoredResource>();
        const before = this.contributed.get(typeUrl) ?? new Map<string, StoredResource>();
        const upsert = [...now.values()].filter((r) => before.get(r.name)?.version !== r.version);
        const remove = [...before.keys()].filter((n) => !now.has(n));
        if (upsert.length > 0 || remove.length > 0) changes.push({ typeUrl, upsert, remove });
      }
      this.contributed = next;
      events = this.store.apply(changes);
      this.watch();
    }
    if (anyChange || errors.length > 0) {
      this.reloads++;
      const result: ReloadResult = { events, errors, loaded };
      for (const e of events) this.opts.log?.(`resources: ${typeNameOf(e.typeUrl)} version ${e.version} (${e.changed.length} changed, ${e.removed.length} removed)`);
      this.emit('reload', result);
      return result;
    }
    return { events, errors, loaded };
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.watchedDirs.clear();
  }
}
