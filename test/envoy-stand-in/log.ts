// Envoy's application log: spdlog lines on stderr in Envoy's default format
// `[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v`, filtered per component like Envoy's loggers.

import { LOG_LEVELS, LOGGER_COMPONENTS, type LogLevel } from './options.js';

const RANK: Record<LogLevel, number> = Object.fromEntries(LOG_LEVELS.map((l, i) => [l, i])) as Record<LogLevel, number>;

// Source locations as Envoy prints them, so log scrapers see familiar lines.
const SOURCES: Record<string, string> = {
  main: 'source/server/server.cc',
  admin: 'source/server/admin/admin.cc',
  config: 'source/common/config/utility.cc',
  upstream: 'source/common/upstream/cluster_manager_impl.cc',
  init: 'source/common/init/manager_impl.cc',
};

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

function stamp(d: Date): string {
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}`;
}

export class EnvoyLog {
  private readonly levels = new Map<string, LogLevel>();

  constructor(
    level: LogLevel,
    components: ReadonlyMap<string, LogLevel>,
    private readonly write: (line: string) => void = (line) => process.stderr.write(line),
  ) {
    this.setAll(level);
    for (const [c, l] of components) this.levels.set(c, l);
  }

  setAll(level: LogLevel): void {
    for (const c of LOGGER_COMPONENTS) this.levels.set(c, level);
  }

  /** Returns false for an unknown component (as /logging reports it). */
  set(component: string, level: LogLevel): boolean {
    if (!this.levels.has(component)) return false;
    this.levels.set(component, level);
    return true;
  }

  entries(): [string, LogLevel][] {
    return [...this.levels.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  log(level: LogLevel, component: string, msg: string): void {
    const min = this.levels.get(component) ?? this.levels.get('misc') ?? 'info';
    if (level === 'off' || RANK[level] < RANK[min]) return;
    const src = SOURCES[component] ?? 'source/common/common/logger.cc';
    this.write(`[${stamp(new Date())}][${process.pid}][${level}][${component}] [${src}:1] ${msg}\n`);
  }

  info(component: string, msg: string): void {
    this.log('info', component, msg);
  }
  warn(component: string, msg: string): void {
    this.log('warning', component, msg);
  }
  error(component: string, msg: string): void {
    this.log('error', component, msg);
  }
  critical(component: string, msg: string): void {
    this.log('critical', component, msg);
  }
}
