// Envoy's stats store as the admin API shows it: counters and gauges with Envoy's "used" flag
// (`/stats?usedonly` omits stats never written), the bootstrap's stats_matcher deciding which stats
// exist at all, and tag extraction (default extractors plus stats_config.stats_tags) for the
// Prometheus rendering.

export type StatKind = 'counter' | 'gauge';

export interface Stat {
  readonly name: string;
  readonly kind: StatKind;
  value: number;
  used: boolean;
}

type Json = Record<string, unknown>;

/** RE2 / std::regex syntax to JS: POSIX bracket classes are the only construct Envoy configs use that JS lacks. */
export function toJsRegexSource(re: string): string {
  return re
    .replace(/\[:digit:\]/g, '0-9')
    .replace(/\[:alpha:\]/g, 'A-Za-z')
    .replace(/\[:alnum:\]/g, 'A-Za-z0-9')
    .replace(/\[:upper:\]/g, 'A-Z')
    .replace(/\[:lower:\]/g, 'a-z')
    .replace(/\[:space:\]/g, '\\s')
    .replace(/\[:xdigit:\]/g, '0-9A-Fa-f')
    .replace(/\[:punct:\]/g, '!-/:-@\\[-`{-~');
}

function asObj(v: unknown): Json | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

/** envoy.type.matcher.v3.StringMatcher (proto-name JSON). */
export function stringMatcher(m: Json): (s: string) => boolean {
  const ic = m.ignore_case === true;
  const norm = (s: string) => (ic ? s.toLowerCase() : s);
  if (typeof m.exact === 'string') {
    const v = norm(m.exact);
    return (s) => norm(s) === v;
  }
  if (typeof m.prefix === 'string') {
    const v = norm(m.prefix);
    return (s) => norm(s).startsWith(v);
  }
  if (typeof m.suffix === 'string') {
    const v = norm(m.suffix);
    return (s) => norm(s).endsWith(v);
  }
  if (typeof m.contains === 'string') {
    const v = norm(m.contains);
    return (s) => norm(s).includes(v);
  }
  const safe = asObj(m.safe_regex);
  if (safe && typeof safe.regex === 'string') {
    const re = new RegExp(`^(?:${toJsRegexSource(safe.regex)})$`); // RE2 full match, as Envoy's StringMatcher
    return (s) => re.test(s);
  }
  return () => false;
}

/** envoy.config.metrics.v3.StatsMatcher: true when a stat with this name may be created. */
export function statsMatcher(matcher: Json | undefined): (name: string) => boolean {
  if (!matcher) return () => true;
  if (typeof matcher.reject_all === 'boolean') return () => !matcher.reject_all;
  const list = (key: string) => {
    const patterns = asObj(matcher[key])?.patterns;
    return Array.isArray(patterns) ? patterns.map((p) => stringMatcher(asObj(p) ?? {})) : undefined;
  };
  const inclusion = list('inclusion_list');
  if (inclusion) return (name) => inclusion.some((m) => m(name));
  const exclusion = list('exclusion_list');
  if (exclusion) return (name) => !exclusion.some((m) => m(name));
  return () => true;
}

interface TagSpec {
  readonly name: string;
  readonly regex?: RegExp;
  readonly fixedValue?: string;
}

// A subset of Envoy's default tag extractors (source/common/config/well_known_names.cc).
const DEFAULT_TAGS: readonly { name: string; regex: string }[] = [
  { name: 'envoy.cluster_name', regex: '^cluster\\.((.+?)\\.)' },
  { name: 'envoy.listener_address', regex: '^listener\\.(((?:[_.[:digit:]]*|[_\\[\\]aAbBcCdDeEfF[:digit:]]*))\\.)' },
  { name: 'envoy.http_conn_manager_prefix', regex: '^http\\.((.*?)\\.)' },
  { name: 'envoy.tcp_prefix', regex: '^tcp\\.((.*?)\\.)\\w+?$' },
  { name: 'envoy.response_code', regex: '_rq_(\\d{3})$' },
  { name: 'envoy.response_code_class', regex: '_rq_(\\d)xx$' },
  { name: 'envoy.worker_id', regex: '^listener_manager\\.(worker_(\\d+)\\.)' },
];

export interface ExtractedName {
  readonly name: string;
  readonly tags: readonly { name: string; value: string }[];
}

/** Envoy's tag extraction: each extractor removes its first capture group and reports the second (or first) as the value. */
export class TagExtractor {
  private readonly specs: TagSpec[] = [];

  constructor(statsConfig: Json | undefined, cliTags: readonly string[]) {
    const custom = Array.isArray(statsConfig?.stats_tags) ? (statsConfig.stats_tags as Json[]) : [];
    for (const t of custom) {
      const name = String(t.tag_name ?? '');
      if (typeof t.fixed_value === 'string') this.specs.push({ name, fixedValue: t.fixed_value });
      else if (typeof t.regex === 'string') this.specs.push({ name, regex: new RegExp(toJsRegexSource(t.regex), 'd') });
      else {
        const def = DEFAULT_TAGS.find((d) => d.name === name);
        if (def) this.specs.push({ name, regex: new RegExp(toJsRegexSource(def.regex), 'd') });
      }
    }
    const useDefaults = statsConfig?.use_all_default_tags !== false;
    if (useDefaults) {
      for (const d of DEFAULT_TAGS) {
        if (!this.specs.some((s) => s.name === d.name)) this.specs.push({ name: d.name, regex: new RegExp(toJsRegexSource(d.regex), 'd') });
      }
    }
    for (const pair of cliTags) {
      const idx = pair.indexOf(':');
      this.specs.push({ name: pair.slice(0, idx), fixedValue: pair.slice(idx + 1) });
    }
  }

  extract(statName: string): ExtractedName {
    const tags: { name: string; value: string }[] = [];
    const remove = new Array<boolean>(statName.length).fill(false);
    for (const spec of this.specs) {
      if (spec.fixedValue !== undefined) {
        tags.push({ name: spec.name, value: spec.fixedValue });
        continue;
      }
      const m = spec.regex!.exec(statName);
      if (!m || m[1] === undefined) continue;
      const value = m.length > 2 ? (m[2] ?? '') : m[1];
      tags.push({ name: spec.name, value });
      const [start, end] = m.indices?.[1] ?? [m.index, m.index + m[1].length];
      for (let i = start; i < end; i++) remove[i] = true;
    }
    let name = '';
    for (let i = 0; i < statName.length; i++) if (!remove[i]) name += statName[i];
    return { name, tags };
  }
}

export interface RenderQuery {
  readonly usedOnly: boolean;
  readonly filter?: RegExp;
  readonly type: 'All' | 'Counters' | 'Gauges' | 'Histograms' | 'TextReadouts';
}

function sanitizeProm(s: string): string {
  return s.replace(/[^a-zA-Z0-9_]/g, '_');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export class StatsStore {
  private readonly stats = new Map<string, Stat>();
  private readonly rejected = new Set<string>();

  constructor(
    private readonly accept: (name: string) => boolean,
    private readonly tags: TagExtractor,
  ) {}

  /** Returns the stat, creating it (unused, 0) unless the stats matcher rejects the name. */
  get(name: string, kind: StatKind): Stat | undefined {
    const existing = this.stats.get(name);
    if (existing) return existing;
    if (this.rejected.has(name)) return undefined;
    if (!this.accept(name)) {
      this.rejected.add(name);
      return undefined;
    }
    const stat: Stat = { name, kind, value: 0, used: false };
    this.stats.set(name, stat);
    return stat;
  }

  /** Declares a stat without marking it used. */
  declare(name: string, kind: StatKind): void {
    this.get(name, kind);
  }

  set(name: string, value: number, kind: StatKind = 'gauge'): boolean {
    const stat = this.get(name, this.stats.get(name)?.kind ?? kind);
    if (!stat) return false;
    stat.value = value;
    stat.used = true;
    return true;
  }

  add(name: string, delta: number, kind: StatKind = 'counter'): boolean {
    const stat = this.get(name, kind);
    if (!stat) return false;
    stat.value += delta;
    stat.used = true;
    return true;
  }

  value(name: string): number | undefined {
    return this.stats.get(name)?.value;
  }

  has(name: string): boolean {
    return this.stats.has(name);
  }

  all(): Stat[] {
    return [...this.stats.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  private select(q: RenderQuery): Stat[] {
    if (q.type === 'Histograms' || q.type === 'TextReadouts') return [];
    return this.all().filter(
      (s) =>
        (!q.usedOnly || s.used) &&
        (!q.filter || q.filter.test(s.name)) &&
        (q.type === 'All' || (q.type === 'Counters') === (s.kind === 'counter')),
    );
  }

  renderText(q: RenderQuery): string {
    return this.select(q)
      .map((s) => `${s.name}: ${s.value}\n`)
      .join('');
  }

  renderJson(q: RenderQuery): string {
    return JSON.stringify({ stats: this.select(q).map((s) => ({ name: s.name, value: s.value })) });
  }

  renderPrometheus(q: Omit<RenderQuery, 'type'>): string {
    const groups = new Map<string, { kind: StatKind; lines: string[] }>();
    for (const s of this.select({ ...q, type: 'All' })) {
      const { name, tags } = this.tags.extract(s.name);
      const metric = sanitizeProm(`envoy_${name}`);
      let g = groups.get(metric);
      if (!g) {
        g = { kind: s.kind, lines: [] };
        groups.set(metric, g);
      }
      const labels = tags.map((t) => `${sanitizeProm(t.name)}="${escapeLabel(t.value)}"`).join(',');
      g.lines.push(`${metric}{${labels}} ${s.value}\n`);
    }
    let out = '';
    for (const kind of ['counter', 'gauge'] as const) {
      for (const metric of [...groups.keys()].sort()) {
        const g = groups.get(metric)!;
        if (g.kind !== kind) continue;
        out += `# TYPE ${metric} ${kind}\n${g.lines.join('')}`;
      }
    }
    return out;
  }
}
