// Cluster and listener warming, as Envoy's init managers do it. A cluster of type EDS is not
// active until its ClusterLoadAssignment arrives; a listener is not active until the
// RouteConfigurations its HttpConnectionManagers take from RDS and the TypedExtensionConfigs its
// filters take from ECDS arrive. A dependency also ends when its first update is rejected (Envoy's
// onConfigUpdateFailed lets initialisation go on with a bad config) or when the initial_fetch_timeout
// of its ConfigSource expires (default 15 s; 0 waits for ever, which is what Istio configures).
//
// An added cluster or listener, or a changed one, warms; while a changed one warms, its previous
// version stays active. A dependency whose resource the client already has is met at once: Envoy
// shares RDS and ECDS subscriptions by name, and keeps the EDS resources it holds for clusters
// that are updated. Timers follow Envoy's subscriptions: one per EDS cluster, one per RDS / ECDS
// name (shared by the listeners that wait on it).

import type { Duration } from '@bufbuild/protobuf/wkt';

export type DependencyType = 'EDS' | 'RDS' | 'ECDS';
export type OwnerKind = 'cluster' | 'listener';

/** Envoy's default ConfigSource.initial_fetch_timeout. */
export const DEFAULT_INITIAL_FETCH_TIMEOUT_MS = 15_000;

export interface Dependency {
  readonly type: DependencyType;
  readonly name: string;
  /** initial_fetch_timeout of the dependency's ConfigSource; 0 waits for ever. */
  readonly timeoutMs: number;
  /** The subscription's stats scope (init_fetch_timeout is counted there), ending in '.'. */
  readonly statPrefix: string;
}

export interface WarmingOwner {
  readonly name: string;
  /** Identifies the owner's configuration: a different one warms again. */
  readonly fingerprint: string;
  readonly dependencies: readonly Dependency[];
}

export interface OwnerState {
  readonly name: string;
  /** A version of it has warmed: it serves. */
  readonly active: boolean;
  /** A version of it waits for these dependencies (`TYPE name`). */
  readonly waitingFor: readonly string[];
}

export interface WarmingEvents {
  /** A dependency's initial fetch timed out (Envoy counts `<statPrefix>init_fetch_timeout`). */
  onTimeout(dependency: Dependency, owners: readonly { kind: OwnerKind; name: string }[]): void;
  /** An owner became active, started or stopped warming, or went away. */
  onChange(): void;
}

interface Owner {
  readonly kind: OwnerKind;
  readonly name: string;
  fingerprint: string;
  active: boolean;
  /** Dependencies the warming version still waits for, by key. */
  waiting: Map<string, Dependency>;
}

/** The initial_fetch_timeout of a ConfigSource (decoded), in milliseconds. */
export function initialFetchTimeoutMs(configSource: { initialFetchTimeout?: Duration } | undefined): number {
  const d = configSource?.initialFetchTimeout;
  if (!d) return DEFAULT_INITIAL_FETCH_TIMEOUT_MS;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

const depKey = (type: DependencyType, name: string) => `${type} ${name}`;

export class Warming {
  private readonly owners: Record<OwnerKind, Map<string, Owner>> = { cluster: new Map(), listener: new Map() };
  /** Owners with a version waiting, per kind. */
  private readonly warming: Record<OwnerKind, Set<Owner>> = { cluster: new Set(), listener: new Set() };
  /** Who waits on each `TYPE name`. */
  private readonly waiters = new Map<string, Set<Owner>>();
  /** Names whose first fetch is over (arrived or rejected), per dependency type. */
  private readonly fetched: Record<DependencyType, Set<string>> = { EDS: new Set(), RDS: new Set(), ECDS: new Set() };
  /** Running initial-fetch timers: EDS per cluster (`EDS name@cluster`), RDS and ECDS per name. */
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly events: WarmingEvents) {}

  /** Replaces the owners of a kind with those of an accepted CDS / LDS update. */
  update(kind: OwnerKind, next: readonly WarmingOwner[]): void {
    const owners = this.owners[kind];
    const keep = new Set(next.map((o) => o.name));
    let changed = false;
    for (const [name, owner] of [...owners]) {
      if (keep.has(name)) continue;
      this.stopWaiting(owner);
      owners.delete(name);
      changed = true;
    }
    for (const o of next) {
      const existing = owners.get(o.name);
      if (existing && existing.fingerprint === o.fingerprint) continue;
      const owner: Owner = existing ?? { kind, name: o.name, fingerprint: o.fingerprint, active: false, waiting: new Map() };
      this.stopWaiting(owner);
      owner.fingerprint = o.fingerprint;
      for (const d of o.dependencies) {
        if (this.fetched[d.type].has(d.name)) continue;
        const key = depKey(d.type, d.name);
        owner.waiting.set(key, d);
        let set = this.waiters.get(key);
        if (!set) this.waiters.set(key, (set = new Set()));
        set.add(owner);
      }
      if (owner.waiting.size === 0) owner.active = true;
      else this.warming[kind].add(owner);
      owners.set(o.name, owner);
      changed = true;
    }
    this.syncTimers();
    if (changed) this.events.onChange();
  }

  /** The first fetch of these names is over (the resources arrived, or were rejected). */
  fetchedNames(type: DependencyType, names: readonly string[]): void {
    let changed = false;
    for (const n of names) {
      this.fetched[type].add(n);
      const waiting = this.waiters.get(depKey(type, n));
      if (waiting) changed = this.meet(type, n, [...waiting]) || changed;
    }
    if (!changed) return;
    this.syncTimers();
    this.events.onChange();
  }

  /** The subscription to these names was dropped: a later one fetches them anew. */
  forget(type: DependencyType, names: readonly string[]): void {
    for (const n of names) this.fetched[type].delete(n);
  }

  /** Owners of a kind that have a version waiting. */
  warmingCount(kind: OwnerKind): number {
    return this.warming[kind].size;
  }

  /** Every owner of a kind. */
  state(kind: OwnerKind): OwnerState[] {
    return [...this.owners[kind].values()].map((o) => ({ name: o.name, active: o.active, waitingFor: [...o.waiting.keys()] }));
  }

  /** Only the owners of a kind that wait, with how many are active (cheap with many owners). */
  summary(kind: OwnerKind): { active: number; warming: OwnerState[] } {
    let active = 0;
    for (const o of this.owners[kind].values()) if (o.active) active++;
    return { active, warming: [...this.warming[kind]].map((o) => ({ name: o.name, active: o.active, waitingFor: [...o.waiting.keys()] })) };
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private stopWaiting(owner: Owner): void {
    for (const key of owner.waiting.keys()) {
      const set = this.waiters.get(key);
      set?.delete(owner);
      if (set?.size === 0) this.waiters.delete(key);
    }
    owner.waiting.clear();
    this.warming[owner.kind].delete(owner);
  }

  /** Ends the wait of these owners on `type name`; true when one of them changed. */
  private meet(type: DependencyType, name: string, owners: readonly Owner[]): boolean {
    const key = depKey(type, name);
    const set = this.waiters.get(key);
    let changed = false;
    for (const o of owners) {
      if (!o.waiting.delete(key)) continue;
      set?.delete(o);
      if (o.waiting.size === 0) {
        o.active = true;
        this.warming[o.kind].delete(o);
      }
      changed = true;
    }
    if (set?.size === 0) this.waiters.delete(key);
    return changed;
  }

  /** Starts a timer for every wait that has a timeout and none yet; stops timers nobody waits on. */
  private syncTimers(): void {
    const wanted = new Map<string, { d: Dependency; owner: string }>();
    for (const [waitKey, set] of this.waiters) {
      for (const o of set) {
        const d = o.waiting.get(waitKey);
        if (!d || d.timeoutMs <= 0) continue;
        const key = d.type === 'EDS' ? `${waitKey}@${o.name}` : waitKey;
        if (!wanted.has(key)) wanted.set(key, { d, owner: o.name });
      }
    }
    for (const [key, t] of this.timers) {
      if (wanted.has(key)) continue;
      clearTimeout(t);
      this.timers.delete(key);
    }
    for (const [key, { d, owner }] of wanted) {
      if (this.timers.has(key)) continue;
      const t = setTimeout(() => this.expire(key, d, owner), d.timeoutMs);
      t.unref();
      this.timers.set(key, t);
    }
  }

  private expire(key: string, d: Dependency, owner: string): void {
    this.timers.delete(key);
    const waiting = [...(this.waiters.get(depKey(d.type, d.name)) ?? [])].filter((o) => d.type !== 'EDS' || (o.kind === 'cluster' && o.name === owner));
    this.meet(d.type, d.name, waiting);
    this.syncTimers();
    this.events.onTimeout(
      d,
      waiting.map((o) => ({ kind: o.kind, name: o.name })),
    );
    this.events.onChange();
  }
}
