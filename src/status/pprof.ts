// /debug/pprof/* on the status port: Istio serves Go's net/http/pprof there when `--profiling` is on
// (its default). This agent runs on Node.js, so the same paths give V8's equivalents:
//   /debug/pprof/                 index of what is served (HTML, as Go's)
//   /debug/pprof/profile?seconds=N  CPU profile for N seconds (default 30, as Go; at most 300), taken
//                                 with the inspector's Profiler, answered as a .cpuprofile (JSON; Chrome
//                                 DevTools and VS Code open it)
//   /debug/pprof/heap?seconds=N   sampling heap profile for N seconds (default 30, at most 300): the
//                                 live objects allocated meanwhile, as V8's sampling heap profiler sees
//                                 them (.heapprofile, JSON; DevTools opens it), cheap as Go's heap profile
//   /debug/pprof/heapsnapshot     full V8 heap snapshot (.heapsnapshot, JSON), streamed. Costly: V8
//                                 keeps its profiler state and the allocator does not give the memory
//                                 back, so resident memory stays 70-95 MiB higher for the process's life
//                                 (soak audit), which is why `heap` is the sampling profile
//   /debug/pprof/cmdline          the command line, NUL-separated (as Go)
// Go's other profiles (goroutine, allocs, block, mutex, threadcreate, symbol, trace) have no Node
// equivalent: 404 naming what is served instead. One profile or snapshot at a time (409 otherwise):
// both cost CPU and memory the agent needs for its real work, and a snapshot holds the heap twice.
// The status server lets only loopback callers reach /debug/*, as Istio does for pprof.

import type http from 'node:http';
import { logger } from '../util/logger.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');

export const PPROF_DEFAULT_SECONDS = 30;
export const PPROF_MAX_SECONDS = 300;

/** Go's pprof names with no Node counterpart, and what each is in Go (for the 404's message). */
const GO_ONLY: Readonly<Record<string, string>> = {
  allocs: 'a sampling of past memory allocations',
  block: 'stack traces that led to blocking on synchronization primitives',
  goroutine: 'stack traces of all current goroutines',
  mutex: 'stack traces of holders of contended mutexes',
  threadcreate: 'stack traces that led to the creation of new OS threads',
  symbol: 'program-counter to function-name lookup',
  trace: 'a Go execution trace',
};

const SERVED: readonly { name: string; what: string }[] = [
  { name: 'profile', what: `CPU profile (V8 .cpuprofile JSON); ?seconds=N, default ${PPROF_DEFAULT_SECONDS}, at most ${PPROF_MAX_SECONDS}` },
  { name: 'heap', what: `sampling heap profile (V8 .heapprofile JSON): live objects allocated during ?seconds=N, default ${PPROF_DEFAULT_SECONDS}, at most ${PPROF_MAX_SECONDS}` },
  { name: 'heapsnapshot', what: 'full V8 heap snapshot (.heapsnapshot JSON, streamed); resident memory stays 70-95 MiB higher for the rest of the process, use sparingly' },
  { name: 'cmdline', what: 'the command line, arguments separated by NUL bytes' },
];

function text(res: http.ServerResponse, status: number, body: string): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}

/** `seconds` of a profile request: Go's default when absent; a clear error for anything but 1..max. */
export function profileSeconds(raw: string | null): number | string {
  if (raw === null || raw === '') return PPROF_DEFAULT_SECONDS;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > PPROF_MAX_SECONDS) {
    return `seconds: expected a whole number of seconds from 1 to ${PPROF_MAX_SECONDS}, got ${JSON.stringify(raw)}`;
  }
  return Number(raw);
}

export class Pprof {
  /** What is being taken now, for the 409 answer. */
  private busy: { what: string; since: number } | undefined;

  /** Serves one /debug/pprof request; `closing` aborts a profile when the server shuts down. */
  async handle(path: string, req: http.IncomingMessage, res: http.ServerResponse, closing: AbortSignal): Promise<void> {
    const name = path.replace(/^\/debug\/pprof\/?/, '');
    if (name === '') return this.index(res);
    if (name === 'cmdline') return text(res, 200, process.argv.join('\0'));
    if (name === 'profile' || name === 'heap' || name === 'heapsnapshot') {
      const query = new URL(req.url ?? '/', 'http://status').searchParams;
      const seconds = name === 'heapsnapshot' ? 0 : profileSeconds(query.get('seconds'));
      if (typeof seconds === 'string') return text(res, 400, `${seconds}\n`);
      if (this.busy) {
        const age = Math.round((performance.now() - this.busy.since) / 1000);
        return text(res, 409, `${this.busy.what} is being taken (started ${age}s ago); one profile at a time, try again when it is done\n`);
      }
      this.busy = { what: name === 'profile' ? `a ${seconds}s CPU profile` : name === 'heap' ? `a ${seconds}s heap profile` : 'a heap snapshot', since: performance.now() };
      try {
        if (name === 'heapsnapshot') await this.heapSnapshot(res);
        else await this.sample(name === 'profile' ? CPU_PROFILER : HEAP_PROFILER, seconds, req, res, closing);
      } finally {
        this.busy = undefined;
      }
      return;
    }
    const served = SERVED.map((s) => `/debug/pprof/${s.name}`).join(', ');
    const go = GO_ONLY[name];
    if (go) return text(res, 404, `/debug/pprof/${name} is a Go runtime profile (${go}); this agent runs on Node.js and has no such thing. Served here: ${served}\n`);
    return text(res, 404, `unknown profile ${JSON.stringify(name)}. Served here: ${served}\n`);
  }

  private index(res: http.ServerResponse): void {
    const rows = SERVED.map((s) => `<tr><td><a href="${s.name}">${s.name}</a></td><td>${s.what}</td></tr>`).join('\n');
    const absent = Object.keys(GO_ONLY).join(', ');
    const html = `<html><head><title>/debug/pprof/</title></head><body>
<p>/debug/pprof/ (pilot-agent on Node.js: V8 profiles at Go's paths)</p>
<table>
${rows}
</table>
<p>Not served (Go runtime profiles with no Node.js equivalent): ${absent}.</p>
</body></html>
`;
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
    res.end(html);
  }

  /** Samples for `seconds` with `profiler` (cut short when the caller leaves or the server closes, then nothing is sent). */
  private async sample(profiler: Profiler, seconds: number, req: http.IncomingMessage, res: http.ServerResponse, closing: AbortSignal): Promise<void> {
    log.info(`pprof: ${profiler.label} for ${seconds}s requested by ${req.socket.remoteAddress ?? '?'}`);
    const profile = await sampled(seconds, res, closing, profiler.start);
    if (!profile) return log.info(`pprof: ${profiler.label} abandoned (the caller left or the server is closing)`);
    const size = sendJson(res, profile, profiler.file);
    log.info(`pprof: ${profiler.label} of ${seconds}s sent (${size} bytes, ${(profile as { samples?: unknown[] }).samples?.length ?? 0} samples)`);
  }

  /** Streams a full heap snapshot; resolves when it was sent or the caller left. */
  private async heapSnapshot(res: http.ServerResponse): Promise<void> {
    const { getHeapSnapshot } = await import('node:v8');
    log.info('pprof: heap snapshot requested');
    const snapshot = getHeapSnapshot();
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Disposition': 'attachment; filename="heap.heapsnapshot"',
      'X-Content-Type-Options': 'nosniff',
    });
    const { pipeline } = await import('node:stream/promises');
    try {
      await pipeline(snapshot, res);
    } catch (err) {
      log.info(`pprof: heap snapshot not sent whole: ${(err as Error).message}`);
    }
  }
}

type InspectorSession = import('node:inspector/promises').Session;

/** A V8 profiler reached through the inspector: `start` begins sampling and gives the function that stops it. */
interface Profiler {
  readonly label: string;
  readonly file: string;
  readonly start: (session: InspectorSession) => Promise<() => Promise<object>>;
}

const CPU_PROFILER: Profiler = {
  label: 'CPU profile',
  file: 'profile.cpuprofile',
  start: async (session) => {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    return async () => {
      const { profile } = await session.post('Profiler.stop');
      await session.post('Profiler.disable').catch(() => undefined);
      return profile;
    };
  },
};

/** V8's sampling heap profile (Go's heap profile is a sampling one too). */
const HEAP_PROFILER: Profiler = {
  label: 'heap profile',
  file: 'heap.heapprofile',
  start: async (session) => {
    await session.post('HeapProfiler.enable');
    // V8's default interval, a sample per 32 KiB allocated on average (Go samples every 512 KiB, but
    // over the process's whole life: a window of seconds needs denser samples to show anything)
    await session.post('HeapProfiler.startSampling', { samplingInterval: 32 * 1024 });
    return async () => {
      const { profile } = await session.post('HeapProfiler.stopSampling');
      await session.post('HeapProfiler.disable').catch(() => undefined);
      return profile;
    };
  },
};

/**
 * Starts a profiler on an inspector session, waits `seconds` (cut short when the caller leaves or
 * the server closes) and returns what `start`'s stop function returns; undefined when cut short.
 */
async function sampled<T>(seconds: number, res: http.ServerResponse, closing: AbortSignal, start: (session: InspectorSession) => Promise<() => Promise<T>>): Promise<T | undefined> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  try {
    const stop = await start(session);
    let left = false;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        res.off('close', gone);
        closing.removeEventListener('abort', gone);
        resolve();
      };
      const gone = (): void => {
        left = true;
        done();
      };
      const timer = setTimeout(done, timerDelay(seconds * 1000));
      res.once('close', gone);
      closing.addEventListener('abort', gone, { once: true });
    });
    const result = await stop();
    return left || res.destroyed ? undefined : result;
  } finally {
    session.disconnect();
  }
}

/** Sends `value` as a JSON attachment; returns its size in bytes. */
function sendJson(res: http.ServerResponse, value: unknown, filename: string): number {
  const body = JSON.stringify(value);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': `attachment; filename="${filename}"`, 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
  return body.length;
}
