// Forwarding to the resolv.conf nameservers, as Istio's queryUpstream does: over the protocol
// the question came in on, one server after another in a shuffled order (or all at once with
// DNS_FORWARD_PARALLEL, first answer wins), each with the DNS_FORWARD_TIMEOUT. A server "fails"
// on a timeout, a network error or an answer that does not decode; an answer with any RCODE
// (SERVFAIL included) is passed on. Only when every server failed does the caller SERVFAIL.
//
// UDP goes through a small pool of sockets per server (Istio's miekg client opens one per
// query, which costs more than the exchange itself): each socket is connected to its server, so
// nothing else is accepted on it, has a random source port, and is replaced after 1,000 queries or
// a minute, so that ports stay unpredictable. A reply must carry the query's random ID and echo
// its question. UDP queries always carry an EDNS size: a large answer comes back whole (or with
// TC) instead of overflowing a 512-byte read, which Istio turns into SERVFAIL. TCP opens a
// connection per query, as Istio.

import { randomInt } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { setMaxListeners } from 'node:events';
import { connect, type Socket } from 'node:net';
import { logger } from '../util/logger.js';
import { formatUpstream, type Upstream } from './resolv-conf.js';
import { adaptUpstreamResponse, answerSizeLimit, matchesQuery, RCODE, rcodeOf, upstreamQuery, type Query } from './wire.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('dns');

export type Protocol = 'udp' | 'tcp';

export interface ForwarderOptions {
  readonly upstreams: readonly Upstream[];
  readonly parallel: boolean;
  readonly timeoutMs: number;
  /** Upstream exchanges in flight at once; beyond it a query fails at once (floods stay bounded). */
  readonly maxInflight: number;
}

class UpstreamError extends Error {
  readonly code: string = 'DNS_UPSTREAM';
}
/** The in-flight limit was hit: reported once per 10 s, not per query. */
class OverloadError extends UpstreamError {
  override readonly code = 'DNS_OVERLOAD';
}

function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export class Forwarder {
  private inflight = 0;
  private lastLimitWarning = -Infinity;
  private readonly closing = new AbortController();
  private readonly udpPools = new Map<string, UdpPool>();

  constructor(readonly options: ForwarderOptions) {
    // every exchange in flight listens for close()
    setMaxListeners(0, this.closing.signal);
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** The upstream answer made ready for the client, or undefined when every upstream failed. */
  async forward(q: Query, protocol: Protocol): Promise<Buffer | undefined> {
    const { upstreams, parallel } = this.options;
    if (upstreams.length === 0) return undefined;
    if (parallel && upstreams.length > 1) return this.forwardParallel(q, protocol);
    for (const u of shuffled(upstreams)) {
      try {
        return await this.exchange(u, q, protocol, this.closing.signal);
      } catch (err) {
        if (!(err instanceof OverloadError)) log.info(`upstream failure: ${(err as Error).message}`);
        if (this.closing.signal.aborted) return undefined;
      }
    }
    return undefined;
  }

  private forwardParallel(q: Query, protocol: Protocol): Promise<Buffer | undefined> {
    const abort = new AbortController();
    setMaxListeners(0, abort.signal);
    const onClose = (): void => abort.abort();
    this.closing.signal.addEventListener('abort', onClose, { once: true });
    return new Promise<Buffer | undefined>((resolve) => {
      let failures = 0;
      const total = this.options.upstreams.length;
      for (const u of this.options.upstreams) {
        this.exchange(u, q, protocol, abort.signal).then(
          (answer) => {
            if (abort.signal.aborted) return;
            abort.abort(); // the others are no longer needed
            resolve(answer);
          },
          (err: Error) => {
            if (!abort.signal.aborted && !(err instanceof OverloadError)) log.info(`parallel querying upstream failure: ${err.message}`);
            if (++failures === total) {
              log.info('all upstream failed');
              resolve(undefined);
            }
          },
        );
      }
    }).finally(() => this.closing.signal.removeEventListener('abort', onClose));
  }

  private async exchange(u: Upstream, q: Query, protocol: Protocol, signal: AbortSignal): Promise<Buffer> {
    if (this.inflight >= this.options.maxInflight) {
      const now = performance.now();
      if (now - this.lastLimitWarning > 10_000) {
        this.lastLimitWarning = now;
        log.warn(`${this.inflight} upstream DNS queries in flight (limit ${this.options.maxInflight}): failing new ones until some finish`);
      }
      throw new OverloadError('too many upstream queries in flight');
    }
    this.inflight++;
    try {
      let raw: Buffer;
      let addedOpt: boolean;
      if (protocol === 'udp') {
        const key = formatUpstream(u);
        let pool = this.udpPools.get(key);
        if (!pool) {
          pool = new UdpPool(u);
          this.udpPools.set(key, pool);
        }
        // one DNS_FORWARD_TIMEOUT for everything asked of this server, the retry below included
        const deadline = performance.now() + this.options.timeoutMs;
        ({ raw, addedOpt } = await pool.exchange(q, this.options.timeoutMs, signal));
        // a server without EDNS rejects the OPT record the agent added: ask again without (RFC 6891 6.2.2)
        if (addedOpt && rcodeOf(raw) === RCODE.FORMERR) {
          const left = Math.ceil(deadline - performance.now());
          if (left <= 0) throw new UpstreamError(`read udp ${formatUpstream(u)}: i/o timeout`);
          ({ raw, addedOpt } = await pool.exchange(q, left, signal, true));
        }
      } else {
        const id = randomInt(65536);
        const query = upstreamQuery(q, id, protocol);
        addedOpt = query.addedOpt;
        raw = await tcpExchange(u, query.bytes, id, q, this.options.timeoutMs, signal);
      }
      try {
        return adaptUpstreamResponse(raw, q.id, addedOpt, answerSizeLimit(q, protocol));
      } catch (err) {
        throw new UpstreamError(`${protocol} ${formatUpstream(u)}: bad response: ${(err as Error).message}`);
      }
    } finally {
      this.inflight--;
    }
  }

  /** Aborts every exchange in flight and closes the sockets. */
  close(): void {
    this.closing.abort();
    for (const pool of this.udpPools.values()) pool.close();
    this.udpPools.clear();
  }
}

/** Runs one exchange with a socket of its own; `settle` is called once with the outcome. */
function exchangeScaffold<S extends Socket>(
  open: () => S,
  shut: (s: S) => void,
  what: string,
  timeoutMs: number,
  signal: AbortSignal,
  run: (s: S, settle: (err: Error | undefined, msg?: Buffer) => void) => void,
): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    if (signal.aborted) return reject(new UpstreamError(`${what}: cancelled`));
    let done = false;
    let sock: S | undefined;
    const settle = (err: Error | undefined, msg?: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (sock) shut(sock);
      if (err) reject(err);
      else resolve(msg!);
    };
    const onAbort = (): void => settle(new UpstreamError(`${what}: cancelled`));
    const timer = setTimeout(() => settle(new UpstreamError(`${what}: i/o timeout`)), timerDelay(timeoutMs));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      sock = open();
      run(sock, settle);
    } catch (err) {
      settle(new UpstreamError(`${what}: ${(err as Error).message}`));
    }
  });
}

/** Sockets of one pool at most, and when one is replaced. */
const POOL_SOCKETS = 8;
const SOCKET_MAX_QUERIES = 1000;
const SOCKET_MAX_AGE_MS = 60_000;

interface PendingQuery {
  readonly q: Query;
  readonly settle: (err: Error | undefined, msg?: Buffer) => void;
}

class PooledSocket {
  readonly pending = new Map<number, PendingQuery>();
  readonly born = performance.now();
  served = 0;
  retired = false;
  private closed = false;
  private connected = false;
  private readonly queue: Buffer[] = [];
  private readonly what: string;

  constructor(
    u: Upstream,
    private readonly onGone: (s: PooledSocket) => void,
    readonly sock: UdpSocket = createSocket(u.family === 6 ? 'udp6' : 'udp4'),
  ) {
    const what = (this.what = `read udp ${formatUpstream(u)}`);
    sock.on('message', (msg) => {
      if (msg.length < 12) return;
      const id = msg.readUInt16BE(0);
      const p = this.pending.get(id);
      // anything that is not the answer to a query in flight (late, spoofed) is ignored
      if (p && matchesQuery(msg, id, p.q)) p.settle(undefined, msg);
    });
    // e.g. ECONNREFUSED (ICMP port unreachable): the server is not there for any of them
    sock.on('error', (err) => this.fail(new UpstreamError(`${what}: ${err.message}`)));
    // a connect error (e.g. ENETUNREACH, EACCES) comes to this callback, not as an 'error' event
    sock.connect(u.port, u.host, (err?: Error) => {
      if (err) return this.fail(new UpstreamError(`${what}: ${err.message}`));
      this.connected = true;
      for (const b of this.queue.splice(0)) this.send(b);
    });
  }

  get expired(): boolean {
    return this.served >= SOCKET_MAX_QUERIES || performance.now() - this.born > SOCKET_MAX_AGE_MS;
  }

  /** A random ID not in flight on this socket (throws when all 65,536 are). */
  freeId(): number {
    if (this.pending.size >= 65536) throw new UpstreamError('no free DNS ID on the socket');
    for (;;) {
      const id = randomInt(65536);
      if (!this.pending.has(id)) return id;
    }
  }

  /** Sends now, or once connected; a failure fails every query of the socket at once. */
  send(bytes: Buffer): void {
    if (this.closed) return;
    if (!this.connected) {
      this.queue.push(bytes);
      return;
    }
    try {
      this.sock.send(bytes);
    } catch (err) {
      this.fail(new UpstreamError(`${this.what}: ${(err as Error).message}`));
    }
  }

  /** Called when a query leaves `pending`: a retired socket closes once empty. */
  released(): void {
    if (this.retired && this.pending.size === 0) this.close();
  }

  fail(err: Error): void {
    this.retired = true;
    for (const p of [...this.pending.values()]) p.settle(err);
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.retired = true;
    try {
      this.sock.close();
    } catch {
      /* already closed */
    }
    this.onGone(this);
  }
}

/** The UDP sockets toward one upstream server. */
class UdpPool {
  private readonly sockets: PooledSocket[] = [];

  constructor(private readonly u: Upstream) {}

  private pick(): PooledSocket {
    const live = this.sockets.filter((s) => !s.retired);
    for (const s of live) {
      if (s.expired) {
        s.retired = true;
        s.released();
      }
    }
    const usable = live.filter((s) => !s.retired);
    if (usable.length < POOL_SOCKETS) {
      const s = new PooledSocket(this.u, (gone) => {
        const i = this.sockets.indexOf(gone);
        if (i >= 0) this.sockets.splice(i, 1);
      });
      this.sockets.push(s);
      return s;
    }
    return usable[randomInt(usable.length)]!;
  }

  exchange(q: Query, timeoutMs: number, signal: AbortSignal, withoutOpt = false): Promise<{ raw: Buffer; addedOpt: boolean }> {
    const what = `read udp ${formatUpstream(this.u)}`;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new UpstreamError(`${what}: cancelled`));
      const s = this.pick();
      let id: number;
      try {
        id = s.freeId();
      } catch (err) {
        return reject(new UpstreamError(`${what}: ${(err as Error).message}`));
      }
      const { bytes, addedOpt } = upstreamQuery(q, id, 'udp', withoutOpt);
      let done = false;
      const settle = (err: Error | undefined, msg?: Buffer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        s.pending.delete(id);
        s.released();
        if (err) reject(err);
        else resolve({ raw: msg!, addedOpt });
      };
      const onAbort = (): void => settle(new UpstreamError(`${what}: cancelled`));
      const timer = setTimeout(() => settle(new UpstreamError(`${what}: i/o timeout`)), timerDelay(timeoutMs));
      signal.addEventListener('abort', onAbort, { once: true });
      s.pending.set(id, { q, settle });
      s.served++;
      s.send(bytes);
    });
  }

  close(): void {
    for (const s of [...this.sockets]) s.fail(new UpstreamError(`read udp ${formatUpstream(this.u)}: closed`));
  }
}

function tcpExchange(u: Upstream, query: Buffer, id: number, q: Query, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  const what = `read tcp ${formatUpstream(u)}`;
  return exchangeScaffold(
    () => connect({ host: u.host, port: u.port, noDelay: true }),
    (s) => s.destroy(),
    what,
    timeoutMs,
    signal,
    (s, settle) => {
      let pending: Buffer = Buffer.alloc(0);
      s.on('error', (err) => settle(new UpstreamError(`${what}: ${err.message}`)));
      s.on('close', () => settle(new UpstreamError(`${what}: connection closed before the answer`)));
      s.on('connect', () => {
        const len = Buffer.allocUnsafe(2);
        len.writeUInt16BE(query.length, 0);
        s.write(Buffer.concat([len, query]));
      });
      s.on('data', (chunk: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        while (pending.length >= 2) {
          const len = pending.readUInt16BE(0);
          if (pending.length < 2 + len) return;
          const msg = pending.subarray(2, 2 + len);
          pending = pending.subarray(2 + len);
          if (matchesQuery(msg, id, q)) return settle(undefined, Buffer.from(msg));
        }
      });
    },
  );
}
