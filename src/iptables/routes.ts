// Routing the capture needs besides iptables (Istio's tools/common/tproxy): in TPROXY mode,
// packets marked for the proxy are routed to loopback by a policy rule and a local route; an
// IPv6 pod gets ::6 on loopback, the source address Envoy uses to reach the app. Done with
// iproute2's `ip`, and idempotent: an entry that is already there counts as done (Istio's
// netlink rule add fails on a second run instead, and `ip rule add` would add a duplicate).

import { spawnSync } from 'node:child_process';
import type { CaptureConfig } from './config.js';
import { logger } from '../util/logger.js';

const log = logger('default');

export class RouteError extends Error {
  readonly code = 'IPTABLES_ROUTE';
}

function ip(args: readonly string[], tolerate: RegExp): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) throw new RouteError(`ip ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0 && !tolerate.test(r.stderr)) throw new RouteError(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

function ipOutput(args: readonly string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new RouteError(`ip ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

const EXISTS = /File exists|already assigned/i;
// 'No such process' (ESRCH): a route deleted from a table that existed once; 'address not found': ::6 gone
const MISSING = /No such file|No such process|Cannot find|Cannot assign|does not exist|address not found/i;

function tproxyRoutes(cfg: CaptureConfig): string[][] {
  if (cfg.inboundPortsInclude === '' || cfg.inboundInterceptionMode !== 'TPROXY') return [];
  const families = cfg.enableIPv6 ? (['-4', '-6'] as const) : (['-4'] as const);
  return families.flatMap((f) => [
    [f, 'rule', 'fwmark', cfg.inboundTProxyMark, 'lookup', cfg.inboundTProxyRouteTable],
    [f, 'route', 'local', f === '-4' ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', cfg.inboundTProxyRouteTable],
  ]);
}

/** `ip -6 addr <op> ::6/128 dev lo` */
const passthroughV6 = (op: 'add' | 'del'): string[] => ['-6', 'addr', op, '::6/128', 'dev', 'lo'];

export function configureRoutes(cfg: CaptureConfig): void {
  if (cfg.enableIPv6) {
    ip(passthroughV6('add'), EXISTS);
    log.info('Added ::6 address on the loopback iface');
  }
  for (const [family, object, ...rest] of tproxyRoutes(cfg)) {
    // the kernel accepts a duplicate policy rule, so look before adding
    if (object === 'rule' && ipOutput([family!, 'rule', 'list', ...rest]).trim() !== '') continue;
    ip([family!, object!, 'add', ...rest], EXISTS);
  }
}

/** Undoes configureRoutes (--cleanup-only), so a cleanup leaves no routing behind either. */
export function removeRoutes(cfg: CaptureConfig): void {
  for (const [family, object, ...rest] of tproxyRoutes(cfg)) ip([family!, object!, 'del', ...rest], MISSING);
  if (cfg.enableIPv6) ip(passthroughV6('del'), MISSING);
}
