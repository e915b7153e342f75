// A minimal HTTP/1.1 GET client for the metrics sources of the merged scrape (Envoy's Prometheus
// endpoint and the app targets, all plain HTTP on loopback), built for passing bodies through:
// - socket reads land in pooled 1 MiB buffers (net.Socket `onread`), so a 20 MB Envoy body costs
//   a handful of buffers and ~20 reads, not thousands of short-lived chunks for the garbage
//   collector; the buffer a closed socket would have read into next goes back to the pool too;
// - body bytes are handed out as slices of those buffers; the caller releases each slice once
//   written, and reading pauses while more than a few buffers are unreleased (backpressure);
// - framing: Content-Length, chunked, or until the connection closes. `Connection: close` always.
// Every part of a response that the client has to hold while it is incomplete is capped (status
// line and headers, a chunk-size line, the trailers): a source is a peer we do not control, and
// one line that never ends must fail that source, not grow a string until V8 gives up and the
// agent dies. Body bytes are never held, only passed on; how long a body may last is the caller's
// deadline (the signal), the only bound on a close-delimited or never-ending body.
// Node's http client costs about twice the CPU per byte for the same job (HTTP parser callbacks
// and a fresh Buffer per 64 KiB chunk), which is most of what an extra hop costs here.

import dns from 'node:dns';
import net from 'node:net';

// 1 MiB reads: the hop's cost is mostly per read/write (syscalls, wake-ups of Envoy and the
// client, JS per chunk), so a 20 MB body in ~20 reads costs the agent about 30% less CPU than in
// ~80 reads of 256 KiB (bench `metrics`). One scrape holds at most ~8 (Envoy: MAX_IN_FLIGHT + 1,
// each app: 2 while it waits for its turn).
const BUFFER_SIZE = 1024 * 1024;
const POOL_MAX = 8;
/** Unreleased buffers per source before reading pauses. */
const MAX_IN_FLIGHT = 3;
/** Chunks of one read handed out as views; more are copied into one buffer. */
const MAX_VIEWS_PER_READ = 4;
/** The pool is emptied after this long without a buffer coming back (an idle agent keeps none). */
const POOL_IDLE_MS = 30_000;

const pool: Buffer[] = [];
let trimTimer: NodeJS.Timeout | undefined;
const takeBuffer = (): Buffer => pool.pop() ?? Buffer.allocUnsafeSlow(BUFFER_SIZE);
const returnBuffer = (b: Buffer): void => {
  if (pool.length >= POOL_MAX) return;
  pool.push(b);
  if (trimTimer) trimTimer.refresh();
  else {
    trimTimer = setTimeout(() => {
      pool.length = 0;
      trimTimer = undefined;
    }, POOL_IDLE_MS);
    trimTimer.unref();
  }
};

export class ScrapeError extends Error {
  readonly code = 'SCRAPE';
}

/** How much of a response's framing the client holds before it gives the source up. */
export interface ScrapeLimits {
  /** Status line and headers. */
  readonly maxHeaderBytes: number;
  /** All trailer lines after the last chunk. */
  readonly maxTrailerBytes: number;
  /** One chunk-size line, extensions included. */
  readonly maxChunkLineBytes: number;
}

/**
 * Envoy's and Prometheus clients' headers are a few hundred bytes; 64 KiB is Envoy's own default
 * for request headers (60 KiB) rounded up, far above any metrics endpoint, far below what could
 * hurt. Trailers are headers sent late, so they get the same cap. A chunk-size line is a hex
 * number plus rarely-used extensions: 4 KiB is Go's limit for it (net/http/internal maxLineLength).
 */
export const DEFAULT_SCRAPE_LIMITS: ScrapeLimits = {
  maxHeaderBytes: 64 * 1024,
  maxTrailerBytes: 64 * 1024,
  maxChunkLineBytes: 4 * 1024,
};

/** A slice of the body; valid until release(). */
export interface BodySlice {
  readonly data: Buffer;
  release(): void;
}

/** A pooled read buffer shared by the slices cut from it. */
class Lease {
  private refs = 1;
  constructor(private readonly buf: Buffer, private readonly onFree: () => void) {}
  retain(): void {
    this.refs++;
  }
  release(): void {
    if (--this.refs === 0) {
      returnBuffer(this.buf);
      this.onFree();
    }
  }
}

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' };

const enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailers,
}

export class ScrapeSource {
  status = 0;
  readonly headers = new Map<string, string>();
  private socket!: net.Socket;
  private headerBytes: Buffer[] = [];
  private headerSize = 0;
  private headersDone = false;
  private framing: Framing = { kind: 'close' };
  // chunked decoding
  private chunkState = Chunk.Size;
  private chunkRemaining = 0;
  /** The chunk-size or trailer line being read, when it spans reads. */
  private line = '';
  private trailerBytes = 0;
  /** A CR was seen after a chunk's data; only LF may follow. */
  private dataEndCr = false;
  private bodyDone = false;
  private readonly queue: BodySlice[] = [];
  private waiter: (() => void) | undefined;
  private error: Error | undefined;
  private ended = false;
  private inFlight = 0;
  private flowing = false;
  private onHeaders!: (err?: Error) => void;
  /** The buffer the socket reads into next (handed out by takeBuffer, not yet filled). */
  private readBuffer: Buffer | undefined;
  private unlisten: () => void = () => undefined;

  private constructor(
    private readonly url: URL,
    private readonly limits: ScrapeLimits,
  ) {}

  get contentType(): string {
    return this.headers.get('content-type') ?? '';
  }

  get contentLength(): number | undefined {
    return this.framing.kind === 'length' ? Number(this.headers.get('content-length')) : undefined;
  }

  /** Connects and sends the request; resolves once the response headers are in. */
  static open(url: string, headers: Readonly<Record<string, string>>, signal: AbortSignal, limits: Partial<ScrapeLimits> = {}): Promise<ScrapeSource> {
    const u = new URL(url);
    if (u.protocol !== 'http:') return Promise.reject(new ScrapeError(`${url}: only http:// is supported`));
    const src = new ScrapeSource(u, { ...DEFAULT_SCRAPE_LIMITS, ...limits });
    return new Promise<ScrapeSource>((resolve, reject) => {
      src.onHeaders = (err) => (err ? reject(err) : resolve(src));
      src.connect(headers, signal);
    });
  }

  private connect(headers: Readonly<Record<string, string>>, signal: AbortSignal): void {
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(this.url.port || 80);
    const clean = (v: string): string => v.replace(/[\r\n]/g, ' ');
    let request = `GET ${this.url.pathname}${this.url.search} HTTP/1.1\r\nHost: ${this.url.host}\r\n`;
    for (const [k, v] of Object.entries(headers)) request += `${clean(k)}: ${clean(v)}\r\n`;
    request += 'Connection: close\r\n\r\n';
    const socket = net.connect({
      host,
      port,
      // "localhost" (the app targets, as Istio's http://localhost:<port>) is tried on 127.0.0.1,
      // then ::1, as Go's dialer does from /etc/hosts: an exporter bound to ::1 only is scraped
      lookup: loopbackFirst,
      autoSelectFamily: true,
      onread: {
        buffer: () => (this.readBuffer = takeBuffer()),
        callback: (n: number, buf: Buffer) => {
          this.readBuffer = undefined;
          return this.onRead(n, buf);
        },
      },
    });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(request));
    socket.on('end', () => this.onEnd());
    socket.on('close', () => {
      // the handle is closed: the buffer it would have read into next goes back to the pool
      if (this.readBuffer) returnBuffer(this.readBuffer);
      this.readBuffer = undefined;
      this.onEnd();
    });
    socket.on('error', (err) => this.fail(new ScrapeError(err.message, { cause: err })));
    const onAbort = (): void => {
      this.fail(new ScrapeError(signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? 'timeout' : 'aborted'));
    };
    if (signal.aborted) onAbort();
    else {
      signal.addEventListener('abort', onAbort, { once: true });
      this.unlisten = () => signal.removeEventListener('abort', onAbort);
      socket.once('close', this.unlisten);
    }
  }

  /** Next slice of the body, or null at its end. Throws when the body cannot be read to its end. */
  async read(): Promise<BodySlice | null> {
    if (!this.flowing) {
      this.flowing = true;
      this.maybeResume();
    }
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        this.maybeResume();
        return next;
      }
      if (this.error) throw this.error;
      if (this.bodyDone) return null;
      if (this.ended) {
        if (this.framing.kind === 'close') return null;
        throw new ScrapeError('connection closed before the end of the body');
      }
      await new Promise<void>((r) => (this.waiter = r));
    }
  }

  /** Drops the connection (and whatever is queued). */
  destroy(): void {
    // no longer interested in the signal (the scrape aborts it when it ends)
    this.unlisten();
    this.ended = true;
    for (const s of this.queue.splice(0)) s.release();
    this.socket?.destroy();
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private fail(err: Error): void {
    if (!this.headersDone) {
      this.headersDone = true;
      this.onHeaders(err);
    }
    this.error ??= err;
    this.socket?.destroy();
    this.wake();
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    if (!this.headersDone) this.fail(new ScrapeError('connection closed before the response headers'));
    this.wake();
  }

  private maybeResume(): void {
    // net.Socket.resume() restarts reading of an `onread` socket stopped by a false return
    if (this.flowing && this.inFlight < MAX_IN_FLIGHT && !this.socket.destroyed) this.socket.resume();
  }

  /** Socket data: returns false to pause reading. */
  private onRead(n: number, buf: Buffer): boolean {
    const lease = new Lease(buf, () => {
      this.inFlight--;
      this.maybeResume();
    });
    this.inFlight++;
    let data = buf.subarray(0, n);
    if (!this.headersDone) {
      const rest = this.parseHeaders(data);
      if (rest === undefined) {
        lease.release();
        return true;
      }
      data = rest;
    }
    if (!this.bodyDone && data.length > 0) this.parseBody(data, lease);
    lease.release();
    if (this.bodyDone) this.socket.end();
    this.wake();
    // before read() is first called, stop after the headers: the body waits in the kernel
    return this.flowing && this.inFlight < MAX_IN_FLIGHT;
  }

  /** Accumulates the header block; returns the bytes after it once complete (a view of `data` when the block came in one read). */
  private parseHeaders(data: Buffer): Buffer | undefined {
    // only an incomplete header block is copied (the read buffer goes back to the pool)
    const all = this.headerSize === 0 ? data : Buffer.concat([...this.headerBytes, data]);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      this.headerSize += data.length;
      const max = this.limits.maxHeaderBytes;
      if (this.headerSize > max) this.fail(new ScrapeError(`response headers larger than ${max} bytes`));
      else this.headerBytes = [Buffer.from(all)];
      return undefined;
    }
    if (end + 4 > this.limits.maxHeaderBytes) {
      this.fail(new ScrapeError(`response headers larger than ${this.limits.maxHeaderBytes} bytes`));
      return undefined;
    }
    this.headerBytes = [];
    const lines = all.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) {
      this.fail(new ScrapeError(`malformed HTTP response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`));
      return undefined;
    }
    this.status = Number(m[1]);
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) continue;
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      this.headers.set(k, this.headers.has(k) ? `${this.headers.get(k)}, ${v}` : v);
    }
    const te = this.headers.get('transfer-encoding');
    const cl = this.headers.get('content-length');
    if (te !== undefined) this.framing = /(^|,)\s*chunked\s*$/i.test(te) ? { kind: 'chunked' } : { kind: 'close' };
    else if (cl !== undefined && /^\d+$/.test(cl)) this.framing = { kind: 'length', remaining: Number(cl) };
    else if (cl !== undefined) {
      this.fail(new ScrapeError(`bad Content-Length ${JSON.stringify(cl)}`));
      return undefined;
    }
    const ce = this.headers.get('content-encoding');
    if (ce !== undefined && ce.toLowerCase() !== 'identity') {
      this.fail(new ScrapeError(`unsupported Content-Encoding ${JSON.stringify(ce)}`));
      return undefined;
    }
    if (this.framing.kind === 'length' && this.framing.remaining === 0) this.bodyDone = true;
    this.headersDone = true;
    this.onHeaders();
    return all.subarray(end + 4);
  }

  private emit(data: Buffer, lease: Lease): void {
    if (data.length === 0) return;
    lease.retain();
    this.queue.push({ data, release: () => lease.release() });
  }

  private parseBody(data: Buffer, lease: Lease): void {
    const f = this.framing;
    if (f.kind === 'close') return this.emit(data, lease);
    if (f.kind === 'length') {
      const take = Math.min(f.remaining, data.length);
      this.emit(data.subarray(0, take), lease);
      f.remaining -= take;
      if (f.remaining === 0) this.bodyDone = true;
      return;
    }
    // chunk data of this read, emitted at the end: as views when they are few (Envoy's chunks are
    // large), copied into one buffer when many, so that a source sending tiny chunks costs one
    // slice per read and not an object per chunk (a 1 MiB read of 1-byte chunks would be ~170k)
    const pieces: Buffer[] = [];
    let i = 0;
    while (i < data.length && !this.bodyDone && !this.error) {
      switch (this.chunkState) {
        case Chunk.Size: {
          const max = this.limits.maxChunkLineBytes;
          const line = this.takeLine(data, i, max, () => `chunk-size line longer than ${max} bytes`);
          if (line === undefined) break; // failed: the loop ends
          i = line.next;
          if (line.text === undefined) break;
          const size = line.text.split(';')[0]!.trim();
          this.chunkRemaining = /^[0-9a-fA-F]+$/.test(size) ? parseInt(size, 16) : NaN;
          if (Number.isNaN(this.chunkRemaining)) this.fail(new ScrapeError(`malformed chunk size ${JSON.stringify(size.slice(0, 80))}`));
          else if (!Number.isSafeInteger(this.chunkRemaining)) this.fail(new ScrapeError(`chunk size ${size.slice(0, 80)} too large`));
          else this.chunkState = this.chunkRemaining === 0 ? Chunk.Trailers : Chunk.Data;
          break;
        }
        case Chunk.Data: {
          const take = Math.min(this.chunkRemaining, data.length - i);
          if (take > 0) pieces.push(data.subarray(i, i + take));
          i += take;
          this.chunkRemaining -= take;
          if (this.chunkRemaining === 0) this.chunkState = Chunk.DataEnd;
          break;
        }
        case Chunk.DataEnd: {
          // exactly CRLF (or a bare LF, as Go and Node accept) after the chunk data
          const b = data[i++]!;
          if (b === 0x0d && !this.dataEndCr) this.dataEndCr = true;
          else if (b === 0x0a) {
            this.dataEndCr = false;
            this.chunkState = Chunk.Size;
          } else this.fail(new ScrapeError('malformed chunked encoding: expected CRLF after the chunk data'));
          break;
        }
        case Chunk.Trailers: {
          const max = this.limits.maxTrailerBytes;
          const line = this.takeLine(data, i, max - this.trailerBytes, () => `response trailers larger than ${max} bytes`);
          if (line === undefined) break; // failed: the loop ends
          if (line.text !== undefined) this.trailerBytes += line.next - i + line.carried;
          i = line.next;
          if (line.text === '') this.bodyDone = true;
          break;
        }
      }
    }
    // (also when the source failed further on in this read: what came before is good)
    if (pieces.length <= MAX_VIEWS_PER_READ) for (const p of pieces) this.emit(p, lease);
    else this.emit(Buffer.concat(pieces), lease); // held with the lease: backpressure still counts it
  }

  /**
   * Reads a line (chunk size or trailer) that may span reads, never holding more than `max` bytes
   * of it (CRLF included). `text`: the line without its CRLF once complete, undefined while it goes
   * on; `carried`: how many of its bytes came in earlier reads. Undefined when the line broke the
   * cap: the source has failed.
   */
  private takeLine(data: Buffer, from: number, max: number, tooLong: () => string): { text: string | undefined; next: number; carried: number } | undefined {
    const nl = data.indexOf(0x0a, from);
    const end = nl < 0 ? data.length : nl + 1;
    if (this.line.length + (end - from) > max) {
      this.fail(new ScrapeError(tooLong()));
      return undefined;
    }
    const carried = this.line.length;
    this.line += data.toString('latin1', from, nl < 0 ? end : nl);
    if (nl < 0) return { text: undefined, next: end, carried };
    const text = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
    this.line = '';
    return { text, next: end, carried };
  }
}

const LOOPBACK: readonly dns.LookupAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '::1', family: 6 },
];

/** net's lookup, answering "localhost" with both loopback addresses without asking the resolver. */
function loopbackFirst(hostname: string, options: dns.LookupOptions, callback: (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void): void {
  if (hostname !== 'localhost') return void dns.lookup(hostname, options, callback as never);
  const usable = LOOPBACK.filter((a) => !options.family || a.family === options.family);
  if (options.all) callback(null, usable.map((a) => ({ ...a })));
  else callback(null, usable[0]!.address, usable[0]!.family);
}
