// Istio-compatible logging: `<time>\t<level>\t<scope>\t<message>` (scope omitted for `default`),
// or one JSON object per line with --log_as_json. Levels and scopes follow istio/pkg/log so that
// `--log_output_level=ads:debug,default:info` means the same thing here as in Istio.

import { isoUtc } from './time.js';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'none';

const LEVEL_RANK: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3, fatal: 4, none: 5 };

export const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error', 'fatal', 'none'];

export interface LogOptions {
  /** scope -> minimum level; a scope not listed is at `*` (set by `all`), else info, as Istio's scopes. */
  readonly outputLevels: ReadonlyMap<string, Level>;
  readonly asJson: boolean;
  readonly write: (line: string) => void;
}

let options: LogOptions = {
  outputLevels: new Map([['default', 'info']]),
  asJson: false,
  write: (line) => process.stdout.write(line),
};

const scopes = new Map<string, Logger>();

export function configureLogging(next: Partial<LogOptions>): void {
  options = { ...options, ...next };
}

/** The key under which `all:<level>` keeps the level of every scope not named after it. */
const ALL_SCOPES = '*';

/**
 * Parses Istio's `scope:level,scope:level` syntax; a bare level applies to `default`. Items apply in
 * order, and `all` (Istio's override scope, what `sidecar.istio.io/agentLogLevel: all:debug` gives)
 * sets every scope, `default` included: what was set before it, and every scope not named after
 * it (`all:debug,default:info`: default at info, every other scope at debug). `default` is a scope
 * like the others: `default:warn` quiets the default scope only, and a scope not named stays at
 * info, as each of Istio's scopes keeps its own level.
 */
export function parseOutputLevels(spec: string): Map<string, Level> {
  const out = new Map<string, Level>();
  for (const item of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const idx = item.lastIndexOf(':');
    const scope = idx < 0 ? 'default' : item.slice(0, idx);
    const level = (idx < 0 ? item : item.slice(idx + 1)).toLowerCase();
    const normalized = level === 'warning' ? 'warn' : level;
    if (!(LEVELS as readonly string[]).includes(normalized)) {
      throw new Error(`--log_output_level: invalid level "${level}" for scope "${scope}" (want one of ${LEVELS.join(', ')})`);
    }
    if (scope === 'all') {
      out.clear();
      out.set(ALL_SCOPES, normalized as Level);
      out.set('default', normalized as Level);
    } else {
      out.set(scope, normalized as Level);
    }
  }
  if (!out.has('default')) out.set('default', 'info');
  return out;
}

function timestamp(): string {
  // Go's time.RFC3339Nano trimmed to microseconds, as Istio prints: 2026-11-22T00:00:00.123456Z
  const micros = String(Math.floor((performance.timeOrigin * 1000 + performance.now() * 1000) % 1000)).padStart(3, '0');
  return `${isoUtc(Date.now()).slice(0, 23)}${micros}Z`;
}

export type Fields = Record<string, unknown>;

export class Logger {
  constructor(readonly scope: string) {}

  enabled(level: Level): boolean {
    const levels = options.outputLevels;
    const min = levels.get(this.scope) ?? levels.get(ALL_SCOPES) ?? 'info';
    return LEVEL_RANK[level] >= LEVEL_RANK[min] && level !== 'none';
  }

  debug(msg: string, fields?: Fields): void { this.log('debug', msg, fields); }
  info(msg: string, fields?: Fields): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: Fields): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: Fields): void { this.log('error', msg, fields); }

  log(level: Level, msg: string, fields?: Fields): void {
    if (!this.enabled(level)) return;
    const time = timestamp();
    if (options.asJson) {
      const rec: Record<string, unknown> = { level, time };
      if (this.scope !== 'default') rec.scope = this.scope;
      rec.msg = msg;
      if (fields) for (const [k, v] of Object.entries(fields)) rec[k] = v instanceof Error ? v.message : v;
      options.write(JSON.stringify(rec) + '\n');
      return;
    }
    let line = `${time}\t${level}\t${this.scope === 'default' ? '' : this.scope + '\t'}${msg}`;
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        line += `\t${k}=${v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v)}`;
      }
    }
    options.write(line + '\n');
  }
}

/** Returns the logger for a scope (default, ads, ca, cache, sds, security, wasm, xdsproxy, dns, probes, ...). */
export function logger(scope = 'default'): Logger {
  let l = scopes.get(scope);
  if (!l) {
    l = new Logger(scope);
    scopes.set(scope, l);
  }
  return l;
}
