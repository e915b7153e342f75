// The agent's memory limit, as Istio's injector hands it over (GOMEMLIMIT, set from the container's
// memory limit) or as the kernel enforces it (the cgroup limit, which Node also uses to size V8's
// heap). Go treats GOMEMLIMIT as a soft limit: the collector works harder near it instead of the
// process being OOM-killed. The Node equivalent here: a periodic check of the agent's resident
// memory and heap against the limit; under pressure, caches registered with onPressure() are
// dropped and a full collection runs, and a warning says so (once per episode).

import { getHeapStatistics } from 'node:v8';
import { collectAll } from '../util/gc.js';
import { logger } from '../util/logger.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');

/** Pressure starts at this share of the limit (resident memory), or of the soft heap limit (heap used). */
const PRESSURE_RATIO = 0.9;
/** Of the memory limit, what the JavaScript heap may use before the governor steps in. */
const HEAP_SHARE = 0.75;
/** A cgroup "limit" at or above this is no limit (cgroup v1 reports ~2^63). */
const NO_LIMIT = 2 ** 60;

export type MemoryLimitSource = 'GOMEMLIMIT' | 'cgroup' | 'none';

export interface MemoryLimit {
  readonly bytes: number | undefined;
  readonly source: MemoryLimitSource;
}

/** GOMEMLIMIT (already parsed, bytes; 0 = unset or "off") wins; else the cgroup's limit, if any. */
export function memoryLimitFrom(gomemlimitBytes: number, constrained: number | undefined = process.constrainedMemory?.()): MemoryLimit {
  if (gomemlimitBytes > 0) return { bytes: gomemlimitBytes, source: 'GOMEMLIMIT' };
  if (constrained !== undefined && constrained > 0 && constrained < NO_LIMIT) return { bytes: constrained, source: 'cgroup' };
  return { bytes: undefined, source: 'none' };
}

const mib = (b: number): string => `${Math.round(b / 1048576)} MiB`;

export interface MemoryView {
  readonly limitBytes: number | null;
  readonly source: MemoryLimitSource;
  /** The heap size the governor keeps the agent under (a share of the limit, at most V8's own limit). */
  readonly heapLimitBytes: number;
  /** V8's hard heap limit (sized by Node from the cgroup limit, or --max-old-space-size). */
  readonly v8HeapSizeLimitBytes: number;
  readonly rssBytes: number | null;
  readonly heapUsedBytes: number;
  readonly pressureEpisodes: number;
}

export class MemoryGovernor {
  private timer: NodeJS.Timeout | undefined;
  private readonly droppers = new Set<() => void>();
  private underPressure = false;
  private episodes = 0;

  constructor(
    readonly limit: MemoryLimit,
    private readonly checkEveryMs = 5000,
  ) {}

  get heapLimitBytes(): number {
    const v8Limit = getHeapStatistics().heap_size_limit;
    return this.limit.bytes === undefined ? v8Limit : Math.min(v8Limit, Math.floor(this.limit.bytes * HEAP_SHARE));
  }

  /** Logs the limit and starts watching (nothing to watch without a limit). */
  start(): void {
    const v8Limit = getHeapStatistics().heap_size_limit;
    if (this.limit.bytes === undefined) {
      log.info(`Memory limit: none (no GOMEMLIMIT, no cgroup limit); V8 heap limit ${mib(v8Limit)}`);
      return;
    }
    log.info(`Memory limit: ${mib(this.limit.bytes)} (${this.limit.source}); heap kept under ${mib(this.heapLimitBytes)}, V8 heap limit ${mib(v8Limit)}`);
    this.timer = setInterval(() => this.check(), timerDelay(this.checkEveryMs));
    this.timer.unref();
  }

  /** `drop` runs under memory pressure: it should release what can be rebuilt (caches). */
  onPressure(drop: () => void): () => void {
    this.droppers.add(drop);
    return () => this.droppers.delete(drop);
  }

  /** One check; public so that tests and the status port can run it now. Returns whether there was pressure. */
  check(): boolean {
    const limit = this.limit.bytes;
    if (limit === undefined) return false;
    const { rss, heapUsed } = memoryNow();
    const pressure = (rss !== undefined && rss >= limit * PRESSURE_RATIO) || heapUsed >= this.heapLimitBytes * PRESSURE_RATIO;
    if (!pressure) {
      this.underPressure = false;
      return false;
    }
    if (!this.underPressure) {
      this.underPressure = true;
      this.episodes++;
      log.warn(`memory pressure: resident ${rss === undefined ? 'unknown' : mib(rss)}, heap ${mib(heapUsed)} against a limit of ${mib(limit)} (${this.limit.source}): dropping caches and collecting`);
    }
    for (const drop of this.droppers) {
      try {
        drop();
      } catch (err) {
        log.error(`dropping a cache under memory pressure failed: ${(err as Error).message}`);
      }
    }
    collectAll();
    return true;
  }

  view(): MemoryView {
    const { rss, heapUsed } = memoryNow();
    return {
      limitBytes: this.limit.bytes ?? null,
      source: this.limit.source,
      heapLimitBytes: this.heapLimitBytes,
      v8HeapSizeLimitBytes: getHeapStatistics().heap_size_limit,
      rssBytes: rss ?? null,
      heapUsedBytes: heapUsed,
      pressureEpisodes: this.episodes,
    };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * Resident and heap memory now. process.memoryUsage() opens /proc/self/stat for the resident size
 * and throws when no file descriptor is left (EMFILE): thrown from the periodic check, that ended
 * the agent and Envoy whenever a connection flood used up the fds. Then the heap alone is judged,
 * from V8, which needs no fd (as prom-client's safeMemoryUsage).
 */
function memoryNow(): { rss: number | undefined; heapUsed: number } {
  try {
    const { rss, heapUsed } = process.memoryUsage();
    return { rss, heapUsed };
  } catch {
    return { rss: undefined, heapUsed: getHeapStatistics().used_heap_size };
  }
}
