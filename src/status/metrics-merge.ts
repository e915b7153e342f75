// /stats/prometheus and /metrics: the agent's own metrics, then Envoy's Prometheus output, then
// each application target from ISTIO_PROMETHEUS_ANNOTATIONS, concatenated as Istio does.
//
// Streaming: every source is requested at once (so their latencies overlap), but only their
// response headers are awaited before answering (the answer's Content-Type depends on the apps'
// formats). Bodies are then piped through one after the other with backpressure (scrape-client.ts
// reads into a few pooled buffers and pauses until they are written): a source waits in its socket
// buffers until its turn, so memory does not grow with the size of any source. The only bytes held
// back are what merging needs: the last (partial) line of each body, so that a source failing
// mid-body never leaves half a line, and an application's OpenMetrics "# EOF" trailer.
//
// Formats (Istio's rules): Envoy is asked for text only; the answer takes the apps' format
// (OpenMetrics when they all answer OpenMetrics, else text), every app's "# EOF" is dropped and one
// is written at the very end. Agent metrics are written in text format, as Istio does.
//
// Failures never fail the scrape: a source that errors, answers non-200, exceeds the per-app cap,
// breaks a framing cap of the scrape client, or misses the deadline is counted in
// istio_agent_scrape_failures_total{type} and left out (or, when it breaks mid-body, cut at its
// last complete line). A source with no response headers by half the deadline is given up, so the
// others keep time to stream. A failure is logged when it first happens or changes, not on every
// scrape: a broken target is scraped every 15 s or so for as long as it stays broken, and the
// counter already says how often; the log says what and when it started, and when it recovered.

import type http from 'node:http';
import type { Writable } from 'node:stream';
import type { Registry } from 'prom-client';
import { logger } from '../util/logger.js';
import {
  allowedContentTypes,
  APP_ACCEPTED_TYPES,
  ENVOY_ACCEPTED_TYPES,
  FMT_TEXT,
  isOpenMetrics,
  negotiateMetricsFormat,
  type MetricsFormat,
} from './accept.js';
import { statusMetrics, type ScrapeType } from './metrics.js';
import { ScrapeSource } from './scrape-client.js';
import { lazyBuiltin } from '../util/builtin.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');

/** Istio's defaultMaxAppMetricsBodyBytes. */
export const DEFAULT_MAX_APP_BODY_BYTES = 10 * 1024 * 1024;

export interface MetricsMergerOptions {
  /** Envoy's Prometheus endpoint; undefined when Envoy stats are not merged (DISABLE_ENVOY, PILOT_AGENT_MERGE_ENVOY_STATS=false). */
  readonly envoyUrl: string | undefined;
  /** Application metrics endpoints, in order. */
  readonly appUrls: readonly string[];
  readonly registry: Registry;
  /** Per-application-target cap when there are several targets (one target and Envoy's output are streamed uncapped, as Istio does). */
  readonly maxAppBodyBytes?: number;
  /**
   * Deadline of one scrape when the client sends no usable X-Prometheus-Scrape-Timeout-Seconds
   * (default 60 s). Must be positive: a scrape always has a deadline.
   */
  readonly defaultTimeoutMs?: number;
  /** How long after the deadline the answer may take to reach the client before it is cut (default 5 s). */
  readonly graceMs?: number;
}

/**
 * Our deadline when the scraper sends none (Istio has none: a source that never ends holds the
 * scrape forever). Prometheus always sends its scrape_timeout (10 s by default); curl and other
 * collectors may not. 60 s is Prometheus' default scrape interval: a scrape longer than that is
 * overtaken by the next one anyway, and it leaves room for a 20 MB Envoy output to a slow client.
 */
export const DEFAULT_SCRAPE_TIMEOUT_MS = 60_000;
/**
 * A longer X-Prometheus-Scrape-Timeout-Seconds is clamped to this: Prometheus' scrape_timeout
 * cannot exceed its scrape_interval, and intervals beyond a few minutes break its 5-minute
 * staleness, so no working configuration asks for more. (Unclamped, a value past 24.8 days would
 * overflow setTimeout, which then fires at once.)
 */
export const MAX_SCRAPE_TIMEOUT_MS = 10 * 60_000;
/**
 * After the deadline the sources are cut and the answer only has its tail left to write (at most
 * MAX_UNFLUSHED plus socket buffers): a client that is reading takes well under a second for that.
 * One that has not drained it after 5 s is not reading, and its connection is closed.
 */
export const DEFAULT_SCRAPE_GRACE_MS = 5_000;

interface SourceSpec {
  readonly type: Exclude<ScrapeType, 'agent'>;
  /** The configured source, without the scrape's query: what its failures are remembered by. */
  readonly key: string;
  readonly url: string;
  readonly accept: string;
  readonly maxBytes: number;
}

interface OpenSource {
  readonly spec: SourceSpec;
  readonly src: ScrapeSource;
}

const EOF_MARKER = Buffer.from('# EOF');
const NL = 0x0a;
const isSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;

/**
 * Counts every source failure, logs it only when it is new for that source. Keyed by the configured
 * sources (a fixed handful), never by anything a client sends, so it cannot grow.
 */
class FailureLog {
  private readonly last = new Map<string, string>();

  failed(key: string, type: ScrapeType, message: string, level: 'error' | 'warn' = 'error'): void {
    statusMetrics.scrapeFailures.inc({ type });
    if (this.last.get(key) === message) return log.debug(message);
    this.last.set(key, message);
    log[level](`${message} (not logged again while it fails the same way)`);
  }

  succeeded(key: string): void {
    if (this.last.delete(key)) log.info(`scraping ${key} works again`);
  }
}

/** Go's strconv.ParseFloat decimal forms (Istio's getHeaderTimeout); hex, Inf and NaN are not durations. */
const DECIMAL_SECONDS = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/**
 * X-Prometheus-Scrape-Timeout-Seconds: float seconds, as Prometheus sends it ("9.5"). Zero or
 * negative is unusable rather than "already expired" (Istio's reading, which fails every source
 * at once), so that the caller can fall back to its default deadline.
 */
export function parseScrapeTimeout(value: string): { ms: number; clamped?: true } | { invalid: string } {
  const n = DECIMAL_SECONDS.test(value) ? Number(value) : NaN;
  if (!Number.isFinite(n)) return { invalid: 'not a number of seconds' };
  if (n <= 0) return { invalid: 'not a positive number of seconds' };
  const ms = n * 1000;
  return ms > MAX_SCRAPE_TIMEOUT_MS ? { ms: MAX_SCRAPE_TIMEOUT_MS, clamped: true } : { ms };
}

/** Whether the client takes gzip (a `gzip` or `*` coding with a non-zero q). */
export function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== '*') return false;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** A writable with awaited backpressure; remembers the last byte written (for newline separators). */
class Sink {
  lastByte = NL;
  written = 0;
  constructor(private readonly out: Writable) {}

  get closed(): boolean {
    return this.out.destroyed || this.out.writableEnded;
  }

  /** Writes `chunk`; `flushed` runs once the destination is done with it (the buffer may be reused then). */
  async write(chunk: Buffer | string, flushed?: () => void): Promise<void> {
    if (chunk.length === 0) return void flushed?.();
    if (this.closed) {
      flushed?.();
      throw new Error('client connection closed');
    }
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.lastByte = buf[buf.length - 1]!;
    this.written += buf.length;
    // every body chunk is larger than the socket's highWaterMark: waiting for 'drain' each time
    // would cost listeners and a wake-up per chunk; memory stays bounded by the caller (a source's
    // buffers come back through `flushed`, and reading pauses until they do)
    if (this.out.write(buf, flushed ? () => flushed() : undefined) || this.out.writableLength <= MAX_UNFLUSHED) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        this.out.off('drain', onDrain);
        this.out.off('close', onClose);
        this.out.off('error', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = (): void => done();
      const onClose = (): void => done(new Error('client connection closed'));
      this.out.on('drain', onDrain);
      this.out.on('close', onClose);
      this.out.on('error', onClose);
    });
  }

  /** Ends the current section with a newline if it does not end with one. */
  async newline(): Promise<void> {
    if (this.written > 0 && this.lastByte !== NL) await this.write('\n');
  }
}

const EMPTY = Buffer.alloc(0);
/** Abort reasons, made once (a fresh error per scrape costs a stack trace). */
const CANCELLED = new Error('metrics scrape ended');
/** Named as AbortSignal.timeout's reason, which the scrape client reports as a timeout. */
const TIMED_OUT = new DOMException('scrape deadline reached', 'TimeoutError');
/** Bytes the answer may have queued before a write waits for 'drain'. */
const MAX_UNFLUSHED = 2 * 1024 * 1024;
/** A line longer than this is passed through unaligned rather than held. */
const MAX_HELD_LINE = 1024 * 1024;

/**
 * Releases a source body in whole lines, so that a source failing mid-body never leaves half a
 * line in the merged answer; for application bodies it also drops a trailing OpenMetrics `# EOF`
 * (Istio's stripOpenMetricsEOF). It holds back at most the last line of what has arrived.
 */
export class LineAligner {
  private pending: Buffer = EMPTY;

  constructor(private readonly stripEof: boolean) {}

  /** Returns the buffers that can be written now, in order. */
  push(chunk: Buffer): Buffer[] {
    if (this.stripEof) {
      // what to hold depends on the last non-blank line; only when that line does not start in
      // `chunk` is the held part joined with it (a copy of at most one line)
      let t = chunk.length;
      while (t > 0 && isSpace(chunk[t - 1]!)) t--;
      const joined = this.pending.length > 0 && (t === 0 || chunk.lastIndexOf(NL, t - 1) < 0);
      const data = joined ? Buffer.concat([this.pending, chunk]) : chunk;
      const hold = LineAligner.holdFromForEof(data);
      const out = !joined && this.pending.length > 0 ? [this.pending, data.subarray(0, hold)] : [data.subarray(0, hold)];
      this.pending = hold < data.length ? Buffer.from(data.subarray(hold)) : EMPTY;
      return out;
    }
    const cut = chunk.lastIndexOf(NL) + 1;
    if (cut === 0) {
      this.pending = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
      if (this.pending.length > MAX_HELD_LINE) return [this.take()];
      return [];
    }
    const out = this.pending.length > 0 ? [this.pending, chunk.subarray(0, cut)] : [chunk.subarray(0, cut)];
    this.pending = cut < chunk.length ? Buffer.from(chunk.subarray(cut)) : EMPTY;
    return out;
  }

  /**
   * What is left at the end of the body: the last line when the body was complete (minus the
   * `# EOF` trailer when stripping), nothing when it was cut short (a partial line).
   */
  end(complete: boolean): Buffer {
    let tail = this.take();
    if (!complete) tail = tail.subarray(0, tail.lastIndexOf(NL) + 1);
    if (!this.stripEof) return tail;
    let t = tail.length;
    while (t > 0 && isSpace(tail[t - 1]!)) t--;
    const lineStart = tail.lastIndexOf(NL, t - 1) + 1;
    if (t > 0 && tail.subarray(lineStart, t).equals(EOF_MARKER)) return tail.subarray(0, lineStart);
    return tail;
  }

  private take(): Buffer {
    const p = this.pending;
    this.pending = EMPTY;
    return p;
  }

  /** Start of the tail that might still turn out to be `# EOF` plus trailing whitespace, or a partial line. */
  private static holdFromForEof(data: Buffer): number {
    let t = data.length;
    while (t > 0 && isSpace(data[t - 1]!)) t--;
    if (t === 0) return 0;
    const lineStart = data.lastIndexOf(NL, t - 1) + 1;
    const line = data.subarray(lineStart, t);
    if (line.length <= EOF_MARKER.length && EOF_MARKER.subarray(0, line.length).equals(line)) return lineStart;
    const cut = data.lastIndexOf(NL) + 1;
    return data.length - cut > MAX_HELD_LINE ? data.length : cut;
  }
}

/**
 * One scrape's clock, on timers cleared when the scrape ends (AbortSignal.timeout's would stay
 * armed for the whole deadline after every scrape). `headersBy`: half the deadline, for a source's
 * response headers; `deadline`: the sources are cut; `onOvertime` at deadline + grace: the answer
 * has not reached the client. `cancelled` (client gone, server closing, scrape over) aborts all.
 */
class ScrapeClock {
  readonly cancelled = new AbortController();
  readonly deadline = new AbortController();
  readonly headersBy = new AbortController();
  private readonly timers: NodeJS.Timeout[];

  constructor(timeoutMs: number, graceMs: number, onOvertime: () => void) {
    const expire = (c: AbortController, reason: unknown) => (): void => c.abort(reason);
    this.timers = [
      setTimeout(expire(this.headersBy, TIMED_OUT), timerDelay(timeoutMs / 2)),
      setTimeout(expire(this.deadline, TIMED_OUT), timerDelay(timeoutMs)),
      setTimeout(onOvertime, timerDelay(timeoutMs + graceMs)),
    ];
    for (const t of this.timers) t.unref();
    this.deadline.signal.addEventListener('abort', () => this.headersBy.abort(this.deadline.signal.reason), { once: true });
    this.cancelled.signal.addEventListener('abort', () => this.deadline.abort(CANCELLED), { once: true });
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.cancelled.abort(CANCELLED);
  }
}

export class MetricsMerger {
  private readonly maxAppBodyBytes: number;
  private readonly defaultTimeoutMs: number;
  private readonly graceMs: number;
  private readonly failures = new FailureLog();
  /** Unusable timeout headers already warned about (a few: Prometheus sends one value every scrape). */
  private readonly warnedTimeouts = new Set<string>();

  constructor(private readonly opts: MetricsMergerOptions) {
    this.maxAppBodyBytes = opts.maxAppBodyBytes ?? DEFAULT_MAX_APP_BODY_BYTES;
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? DEFAULT_SCRAPE_TIMEOUT_MS;
    this.graceMs = opts.graceMs ?? DEFAULT_SCRAPE_GRACE_MS;
    for (const [name, v] of [['defaultTimeoutMs', this.defaultTimeoutMs], ['graceMs', this.graceMs]] as const) {
      if (!(v > 0 && v <= MAX_SCRAPE_TIMEOUT_MS)) throw new RangeError(`metrics merger: ${name} must be in (0, ${MAX_SCRAPE_TIMEOUT_MS}] ms, got ${v}`);
    }
  }

  /** The deadline of a scrape request, as serve() will apply it. */
  deadlineMs(req: http.IncomingMessage): number {
    return this.timeoutMs(header(req, 'x-prometheus-scrape-timeout-seconds'));
  }

  /** The scrape's deadline: the client's header when usable, else the default (warned once per bad value). */
  private timeoutMs(value: string | undefined): number {
    if (value === undefined || value === '') return this.defaultTimeoutMs;
    const t = parseScrapeTimeout(value);
    if ('ms' in t && !t.clamped) return t.ms;
    if (!this.warnedTimeouts.has(value)) {
      // bounded: a client cycling through values gets a warning per value until 16, then again
      if (this.warnedTimeouts.size >= 16) this.warnedTimeouts.clear();
      this.warnedTimeouts.add(value);
      const using = 'ms' in t ? `using the maximum of ${t.ms / 1000}s` : `using the default deadline of ${this.defaultTimeoutMs / 1000}s`;
      log.warn(`X-Prometheus-Scrape-Timeout-Seconds ${JSON.stringify(value.slice(0, 64))}: ${'invalid' in t ? t.invalid : 'longer than the maximum'}; ${using} (warned once)`);
    }
    return 'ms' in t ? t.ms : this.defaultTimeoutMs;
  }

  close(): void {
    // in-flight scrapes end through the signal given to serve()
  }

  /** Serves one scrape. `signal` aborts it (server closing). Never rejects. */
  async serve(req: http.IncomingMessage, res: http.ServerResponse, signal: AbortSignal): Promise<void> {
    statusMetrics.scrapes.inc();
    const clock = new ScrapeClock(this.timeoutMs(header(req, 'x-prometheus-scrape-timeout-seconds')), this.graceMs, () => {
      // the answer is still not with the client at deadline + grace: it is not reading
      if (!res.writableFinished) res.destroy();
    });
    const onAbort = (): void => clock.cancelled.abort(CANCELLED);
    signal.addEventListener('abort', onAbort);
    res.on('close', onAbort); // client gone (or response done: nothing left to abort)
    const opened: (OpenSource | undefined)[] = [];
    try {
      const specs: SourceSpec[] = [];
      const query = req.url && req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
      if (this.opts.envoyUrl) {
        specs.push({ type: 'envoy', key: this.opts.envoyUrl, url: this.opts.envoyUrl + query, accept: allowedContentTypes(header(req, 'accept'), ENVOY_ACCEPTED_TYPES), maxBytes: Infinity });
      }
      const appAccept = allowedContentTypes(header(req, 'accept'), APP_ACCEPTED_TYPES);
      // Istio caps an app's body only when it merges several (it buffers them to drop their
      // # EOF); one target is streamed through uncapped, and so it is here
      const appMax = this.opts.appUrls.length > 1 ? this.maxAppBodyBytes : Infinity;
      for (const url of this.opts.appUrls) specs.push({ type: 'application', key: url, url, accept: appAccept, maxBytes: appMax });
      const forwarded: Record<string, string> = {};
      for (const h of ['user-agent', 'x-prometheus-scrape-timeout-seconds']) {
        const v = header(req, h);
        if (v) forwarded[h] = v;
      }
      // the agent's own metrics are rendered while the sources connect, off the critical path
      const agentMetrics = this.opts.registry.metrics().then(
        (text) => ({ text: withoutBlankLines(text) }),
        (err: unknown) => ({ err: err as Error }),
      );
      // a source that has not answered by half the deadline is given up, so that the others
      // still have time to stream their bodies (Prometheus drops the scrape at the deadline)
      opened.push(...(await Promise.all(specs.map((s) => this.open(s, forwarded, clock)))));

      const format = this.opts.appUrls.length > 0 ? mergedFormat(opened.filter((o) => o?.spec.type === 'application')) : FMT_TEXT;
      const gzip = acceptsGzip(header(req, 'accept-encoding'));
      res.statusCode = 200;
      res.setHeader('Content-Type', format);
      let out: Writable = res;
      if (gzip) {
        res.setHeader('Content-Encoding', 'gzip');
        res.setHeader('Vary', 'Accept-Encoding');
        const zlib = lazyBuiltin.zlib();
        const z = zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED });
        z.on('error', () => res.destroy());
        // a client that goes away must end the compressor too, or writes into it would wait forever
        res.on('close', () => {
          if (!res.writableFinished) z.destroy();
        });
        z.pipe(res);
        out = z;
      }
      const sink = new Sink(out);

      const agent = await agentMetrics;
      if ('err' in agent) this.failures.failed('agent metrics', 'agent', `failed scraping and writing agent metrics: ${agent.err.message}`);
      else {
        this.failures.succeeded('agent metrics');
        await sink.write(agent.text);
        await sink.newline();
      }
      for (let i = 0; i < opened.length; i++) {
        const src = opened[i];
        opened[i] = undefined;
        if (src) await this.pump(src, sink, () => res.destroyed && !res.writableFinished);
      }
      if (isOpenMetrics(format)) await sink.write('# EOF\n');
      // a ServerResponse calls end's callback on 'finish' only: a destroyed answer must end the wait too
      await new Promise<void>((resolve) => {
        res.once('close', resolve);
        out.end(resolve);
      });
    } catch (err) {
      // the client went away or the server is closing: nothing to answer
      log.debug(`metrics scrape ended early: ${(err as Error).message}`);
      if (!res.headersSent) {
        res.statusCode = 503;
        res.end();
      } else {
        res.destroy();
      }
    } finally {
      for (const o of opened) o?.src.destroy();
      signal.removeEventListener('abort', onAbort);
      clock.stop();
    }
  }

  /** Sends the request; resolves with the source once its response headers are in, or undefined on failure. */
  private async open(spec: SourceSpec, forwarded: Record<string, string>, clock: ScrapeClock): Promise<OpenSource | undefined> {
    const what = spec.type === 'envoy' ? 'envoy' : 'application';
    // half the deadline applies until the headers are in; the body then has the whole deadline
    const giveUp = new AbortController();
    const headersBy = clock.headersBy.signal;
    const onHeadersBy = (): void => giveUp.abort(headersBy.reason);
    headersBy.addEventListener('abort', onHeadersBy, { once: true });
    if (headersBy.aborted) onHeadersBy();
    let src: ScrapeSource;
    try {
      src = await ScrapeSource.open(spec.url, { ...forwarded, Accept: spec.accept }, AbortSignal.any([clock.deadline.signal, giveUp.signal]));
    } catch (err) {
      if (clock.cancelled.signal.aborted) return undefined; // client gone or server closing: not the source's failure
      const why = giveUp.signal.aborted ? 'no response before half the scrape deadline' : (err as Error).message;
      this.failures.failed(spec.key, spec.type, `failed scraping ${what} metrics: error scraping ${spec.key}: ${why}`);
      return undefined;
    } finally {
      headersBy.removeEventListener('abort', onHeadersBy);
    }
    if (src.status !== 200) {
      src.destroy();
      this.failures.failed(spec.key, spec.type, `failed scraping ${what} metrics: error scraping ${spec.key}, status code: ${src.status}`);
      return undefined;
    }
    const length = src.contentLength;
    if (length !== undefined && length > spec.maxBytes) {
      src.destroy();
      this.failures.failed(spec.key, spec.type, `scrape target ${spec.key}: response exceeds ${spec.maxBytes} bytes; dropping target`, 'warn');
      return undefined;
    }
    return { spec, src };
  }

  /** Copies one source into the answer. Source failures are counted; a closed client throws. */
  private async pump(open: OpenSource, sink: Sink, clientGone: () => boolean): Promise<void> {
    const { spec, src } = open;
    const lines = new LineAligner(spec.type === 'application');
    let received = 0;
    let failure: string | undefined;
    let level: 'error' | 'warn' = 'error';
    try {
      for (;;) {
        const slice = await src.read();
        if (!slice) break;
        let chunk = slice.data;
        received += chunk.length;
        const over = received > spec.maxBytes;
        // cannot unsend what is out already: a source over its cap ends at its last complete line
        if (over) chunk = chunk.subarray(0, chunk.length - (received - spec.maxBytes));
        const out = lines.push(chunk);
        let pending = out.length + 1;
        const done = (): void => {
          if (--pending === 0) slice.release();
        };
        try {
          for (const b of out) await sink.write(b, done);
        } finally {
          done();
        }
        if (over) {
          failure = `response exceeds ${spec.maxBytes} bytes; cut at the last complete line`;
          level = 'warn';
          break;
        }
      }
    } catch (err) {
      // the client leaving aborts the sources too: that is not the source's failure
      if (sink.closed || clientGone()) throw err;
      failure = (err as Error).message;
    } finally {
      src.destroy();
    }
    await sink.write(lines.end(failure === undefined));
    if (failure) this.failures.failed(spec.key, spec.type, `failed scraping ${spec.type} metrics from ${spec.key}: ${failure}`, level);
    else this.failures.succeeded(spec.key);
    await sink.newline();
  }
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/**
 * Istio's format choice for app targets: the first successful target's format, unless another
 * successful target disagrees, then text. No successful target: text.
 */
function mergedFormat(apps: (OpenSource | undefined)[]): MetricsFormat {
  let format: MetricsFormat | undefined;
  for (const a of apps) {
    if (!a) continue;
    const f = negotiateMetricsFormat(a.src.contentType);
    if (format === undefined) format = f;
    else if (f !== format) return FMT_TEXT;
  }
  return format ?? FMT_TEXT;
}

/**
 * prom-client separates metric families with an empty line. The text format tolerates it, but the
 * answer is OpenMetrics whenever the app's is, and Prometheus' OpenMetrics parser rejects an empty
 * line: the whole target would fail, Envoy's metrics included. Go's encoder, which Istio's agent
 * uses, writes none.
 */
export function withoutBlankLines(text: string): string {
  return text.replace(/\n{2,}/g, '\n').replace(/^\n/, '');
}
