// The process families of Istio's agent (client_golang's process collector, registered under the
// `istio_agent_` prefix), and Node's runtime metrics where Istio has Go's (`istio_agent_go_*`):
// prom-client's default metrics with the same prefix give cpu, memory, fds and start time, plus
// a few of their own (process_cpu_user/system_seconds_total, process_heap_bytes, nodejs_*); the
// three Go families prom-client lacks are read from /proc here as client_golang reads them.

import { readFileSync } from 'node:fs';
import { counter, gauge, METRIC_PREFIX, promClient, registry } from './registry.js';

let enabled = false;

/** Registers the process and runtime metrics in the agent registry, once (Istio: the status server does). */
export function enableProcessMetrics(): void {
  if (enabled) return;
  enabled = true;
  // prom-client samples event-loop delay every 10 ms by default, which wakes an idle agent 100
  // times a second (~0.8 % of a core); once a second still catches any loop blocked for long
  promClient().collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX, eventLoopMonitoringPrecision: 1000 });
  const limit = addressSpaceLimit();
  if (limit !== undefined) gauge('process_virtual_memory_max_bytes', 'Maximum amount of virtual memory available in bytes.', [], (g) => g.set(limit));
  counter('process_network_receive_bytes_total', 'Number of bytes received by the process over the network.', [], (c) => setCounter(c, netOctets()?.in));
  counter('process_network_transmit_bytes_total', 'Number of bytes sent by the process over the network.', [], (c) => setCounter(c, netOctets()?.out));
}

function setCounter(c: { reset(): void; inc(v: number): void }, value: number | undefined): void {
  c.reset();
  if (value !== undefined) c.inc(value);
}

/** `Max address space` of /proc/self/limits; procfs reads "unlimited" as the largest uint64. */
function addressSpaceLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max address space'));
    const soft = line?.slice('Max address space'.length).trim().split(/\s+/)[0];
    if (soft === undefined) return undefined;
    return soft === 'unlimited' ? 2 ** 64 - 1 : Number(soft);
  } catch {
    return undefined;
  }
}

/** IpExt InOctets/OutOctets of /proc/self/net/netstat: the pod network namespace's traffic. */
function netOctets(): { in: number; out: number } | undefined {
  try {
    const lines = readFileSync('/proc/self/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('IpExt:'));
    if (lines.length < 2) return undefined;
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    const get = (n: string): number => Number(values[names.indexOf(n)] ?? 0);
    return { in: get('InOctets'), out: get('OutOctets') };
  } catch {
    return undefined;
  }
}
