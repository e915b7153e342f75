// Test knobs of the stand-in, read from ENVOY_STANDIN_* environment variables (Envoy itself reads none
// of these). Kept apart from Envoy behaviour so tests and readers can tell the two apart.

import type { DependencyType } from './warming.js';

export type StartState = 'live' | 'pre_init' | 'initializing';

export interface SimulatedListener {
  /** Stat prefix, e.g. 0.0.0.0_15006 (listener.<prefix>.downstream_cx_active). */
  readonly prefix: string;
  readonly direction: 'INBOUND' | 'OUTBOUND' | 'UNSPECIFIED';
}

export interface StandInConfig {
  /** ENVOY_STANDIN_RECORD: append one JSON line per event to this file. */
  readonly recordFile?: string;
  /** ENVOY_STANDIN_START_STATE: live (default) goes live after initDelayMs; pre_init / initializing stay there until driven. */
  readonly startState: StartState;
  /** ENVOY_STANDIN_INIT_DELAY_MS (default 50): time from start to LIVE. */
  readonly initDelayMs: number;
  /** ENVOY_STANDIN_EXIT_AFTER_MS: simulate a crash this long after start. */
  readonly exitAfterMs?: number;
  /** ENVOY_STANDIN_EXIT_CODE (default 1): the crash's exit code, or a signal name (SIGABRT, SIGSEGV, SIGKILL) to die by. */
  readonly exitCode: number | NodeJS.Signals;
  /**
   * ENVOY_STANDIN_STRICT (default 1): reject unknown bootstrap fields even with
   * --allow-unknown-static-fields. 0 = behave like Envoy (warn, count server.static_unknown_fields).
   */
  readonly strictUnknownFields: boolean;
  /**
   * ENVOY_STANDIN_DRAIN_SETS_DRAINING (default 0): when 1, a graceful /drain_listeners also moves
   * server.state to DRAINING (1) and /ready to 503. Real Envoy does not do this (only
   * /healthcheck/fail does); the option exists for tests written against that assumption.
   */
  readonly drainSetsDraining: boolean;
  /** ENVOY_STANDIN_STATS_MATCHER (default 1): apply the bootstrap's stats_matcher as Envoy does; 0 = expose every stat. */
  readonly applyStatsMatcher: boolean;
  /**
   * ENVOY_STANDIN_LDS_LISTENERS: listeners the stand-in pretends LDS delivered, as
   * `prefix:direction,...` (e.g. `0.0.0.0_15001:outbound,0.0.0.0_15006:inbound`, the default when the
   * bootstrap has dynamic_resources.lds_config), or `none`.
   */
  readonly ldsListeners: readonly SimulatedListener[];
  /** ENVOY_STANDIN_VERSION: the version string for --version and /server_info. */
  readonly version: string;
  /** ENVOY_STANDIN_WITHHOLD: EDS/RDS/ECDS resources the ADS client keeps aside until released (`EDS:name,RDS:*`). */
  readonly withhold: Partial<Record<DependencyType, string[]>>;
}

export const DEFAULT_VERSION = '0000000000000000000000000000000000000000/1.36.2/Clean/RELEASE/BoringSSL';

export const DEFAULT_LDS_LISTENERS: readonly SimulatedListener[] = [
  { prefix: '0.0.0.0_15001', direction: 'OUTBOUND' },
  { prefix: '0.0.0.0_15006', direction: 'INBOUND' },
];

export class StandInConfigError extends Error {}

function int(env: Record<string, string | undefined>, name: string, def: number | undefined): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw)) throw new StandInConfigError(`${name} must be a non-negative integer, got "${raw}"`);
  return Number(raw);
}

function bool(env: Record<string, string | undefined>, name: string, def: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (['1', 'true', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'no'].includes(raw)) return false;
  throw new StandInConfigError(`${name} must be 0 or 1, got "${raw}"`);
}

function listeners(raw: string | undefined): readonly SimulatedListener[] {
  if (raw === undefined || raw === '') return DEFAULT_LDS_LISTENERS;
  if (raw === 'none') return [];
  return raw.split(',').map((item) => {
    const idx = item.lastIndexOf(':');
    const prefix = idx < 0 ? item : item.slice(0, idx);
    const dir = (idx < 0 ? 'unspecified' : item.slice(idx + 1)).toUpperCase();
    if (dir !== 'INBOUND' && dir !== 'OUTBOUND' && dir !== 'UNSPECIFIED') {
      throw new StandInConfigError(`ENVOY_STANDIN_LDS_LISTENERS: bad direction in "${item}" (inbound|outbound|unspecified)`);
    }
    return { prefix, direction: dir };
  });
}

/**
 * ENVOY_STANDIN_WITHHOLD: `TYPE:name,...` with TYPE one of EDS, RDS, ECDS and name `*` for all of the
 * type (a name is everything after the first `:`). Empty: nothing withheld.
 */
export function parseWithhold(raw: string | undefined): Partial<Record<DependencyType, string[]>> {
  const out: Partial<Record<DependencyType, string[]>> = {};
  if (raw === undefined || raw.trim() === '') return out;
  for (const item of raw.split(',')) {
    const idx = item.indexOf(':');
    const type = item.slice(0, idx < 0 ? item.length : idx).trim().toUpperCase();
    const name = idx < 0 ? '' : item.slice(idx + 1);
    if (type !== 'EDS' && type !== 'RDS' && type !== 'ECDS') throw new StandInConfigError(`ENVOY_STANDIN_WITHHOLD: "${item}": the type must be EDS, RDS or ECDS`);
    if (!name) throw new StandInConfigError(`ENVOY_STANDIN_WITHHOLD: "${item}": no name after "${type}:" (use * for every name)`);
    (out[type] ??= []).push(name);
  }
  return out;
}

export function readStandInConfig(env: Record<string, string | undefined>): StandInConfig {
  const start = env.ENVOY_STANDIN_START_STATE || 'live';
  if (start !== 'live' && start !== 'pre_init' && start !== 'initializing') {
    throw new StandInConfigError(`ENVOY_STANDIN_START_STATE must be live, pre_init or initializing, got "${start}"`);
  }
  const codeRaw = env.ENVOY_STANDIN_EXIT_CODE || '1';
  let exitCode: number | NodeJS.Signals;
  if (/^\d+$/.test(codeRaw)) exitCode = Number(codeRaw);
  else if (/^SIG[A-Z0-9]+$/.test(codeRaw)) exitCode = codeRaw as NodeJS.Signals;
  else throw new StandInConfigError(`ENVOY_STANDIN_EXIT_CODE must be a number or a signal name, got "${codeRaw}"`);
  const exitAfterMs = int(env, 'ENVOY_STANDIN_EXIT_AFTER_MS', undefined);
  return {
    ...(env.ENVOY_STANDIN_RECORD ? { recordFile: env.ENVOY_STANDIN_RECORD } : {}),
    startState: start,
    initDelayMs: int(env, 'ENVOY_STANDIN_INIT_DELAY_MS', 50)!,
    ...(exitAfterMs !== undefined ? { exitAfterMs } : {}),
    exitCode,
    strictUnknownFields: bool(env, 'ENVOY_STANDIN_STRICT', true),
    drainSetsDraining: bool(env, 'ENVOY_STANDIN_DRAIN_SETS_DRAINING', false),
    applyStatsMatcher: bool(env, 'ENVOY_STANDIN_STATS_MATCHER', true),
    ldsListeners: listeners(env.ENVOY_STANDIN_LDS_LISTENERS),
    version: env.ENVOY_STANDIN_VERSION || DEFAULT_VERSION,
    withhold: parseWithhold(env.ENVOY_STANDIN_WITHHOLD),
  };
}
