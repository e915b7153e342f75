// The agent's local DNS server (Istio's LocalDNSServer, pkg/dns/client): listens on
// DNS_PROXY_ADDR over UDP and TCP, answers the names of the NDS name table that istiod pushes
// (received through the xDS proxy, ACKed/NACKed by the agent, never forwarded to Envoy), and
// forwards everything else to the resolv.conf nameservers.
//
// Robustness: a message that does not decode is answered FORMERR (or dropped when not even a
// header), never thrown; upstream queries in flight are capped (beyond: SERVFAIL at once); TCP
// connections are capped, closed unless each whole query arrives in time (2 s after the accept, 8 s
// after the previous query or answer: miekg's deadlines, per message, not per byte), and stop
// being read while too many of their queries are pending. A table hit is answered synchronously, so a flood of forwarded names never
// delays it; repeated plain UDP questions are answered from a small answer cache.

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { logger } from '../util/logger.js';
import { TypeUrl } from '../xds/type-urls.js';
import type { AgentTypeHandler } from '../xds/xds-proxy.js';
import { Forwarder, type Protocol } from './forwarder.js';
import { forEachHost, LookupTable, proxyScope, type ProxyScope } from './lookup-table.js';
import { dnsMetrics } from './metrics.js';
import { decodeNameTable, nameTableJson, type NameInfo, type NameTable } from './name-table.js';
import { formatUpstream, parseUpstream, readResolvConf, type Upstream } from './resolv-conf.js';
import { answerCacheKey, answerSizeLimit, cacheable, emptyReply, parseQuery, RCODE, tableReply, withId, type Query } from './wire.js';
import { ipFamily, joinHostPort, splitHostPort } from '../util/ip.js';
import { timerDelay } from '../util/timer-delay.js';
import { rateLimited } from '../util/rate-limited.js';

const log = logger('dns');

export const DEFAULT_DNS_PROXY_ADDR = 'localhost:15053';
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 5000;
const ALT_RESOLV_CONF = '/var/lib/istio/resolv.conf';

export interface LocalDnsServerOptions {
  /** DNS_PROXY_ADDR: host:port. `localhost` binds 127.0.0.1 and/or ::1 per the nameservers' families. Port 0 picks one free port for all listeners. */
  readonly addr: string;
  /** The proxy's namespace (POD_NAMESPACE). */
  readonly proxyNamespace: string;
  /** The proxy's DNS domain, e.g. `ns.svc.cluster.local`. */
  readonly proxyDomain: string;
  /** DNS_FORWARD_PARALLEL */
  readonly forwardParallel?: boolean;
  /** DNS_FORWARD_TIMEOUT, per upstream exchange. */
  readonly upstreamTimeoutMs?: number;
  /** Default /etc/resolv.conf (/var/lib/istio/resolv.conf, if present, when serving :53 as root). */
  readonly resolvConfPath?: string;
  /** Replaces the resolv.conf nameservers: `ip`, `ip:port`, `[ip6]:port` (tests, benchmarks). */
  readonly upstreams?: readonly string[];
  /** Replaces the resolv.conf search domains. */
  readonly searchDomains?: readonly string[];
  /** Forward queries before the first table arrives instead of SERVFAIL. Default: Istio's rule (serving :53 as root). */
  readonly respondBeforeSync?: boolean;
  /** Upstream queries in flight at once; beyond it a forward fails at once (default 1024). */
  readonly maxUpstreamInflight?: number;
  /** Concurrent TCP client connections (default 1024). */
  readonly maxTcpConnections?: number;
  /**
   * A TCP client connection is closed unless its next whole query arrives within this long of its
   * previous query or answer (default 8 s, miekg's idle timeout). A byte now and then does not
   * count: the deadline is for the whole message, as miekg's read deadline is.
   */
  readonly tcpIdleTimeoutMs?: number;
  /** ... and unless its first whole query arrives within this long of the accept (default 2 s, miekg's read timeout). */
  readonly tcpReadTimeoutMs?: number;
  /** Entries of the answer cache for repeated UDP questions (default 10,000; 0 turns it off). */
  readonly answerCacheEntries?: number;
}

/** Answers kept for repeated UDP questions (cleared with each new table, and when full). */
const ANSWER_CACHE_ENTRIES = 10_000;

const UDP_RECEIVE_BUFFER = 1 << 20;

/** Queries of one TCP connection awaiting an answer before it stops being read. */
const TCP_MAX_PENDING = 64;

interface Listener {
  readonly host: string;
  udp?: UdpSocket;
  tcp?: Server;
}

function listenAddress(addr: string): { host: string; port: number } {
  const hp = splitHostPort(addr);
  if ('error' in hp || !/^\d+$/.test(hp.port) || Number(hp.port) > 65535) throw new Error(`dns address must be a valid host:port: ${addr}`);
  return { host: hp.host, port: Number(hp.port) };
}

function shuffledCopy<T>(items: readonly T[]): readonly T[] {
  if (items.length < 2) return items;
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}

export class LocalDnsServer {
  private lookupTable: LookupTable | undefined;
  private nameTable: NameTable | undefined;
  private readonly listeners: Listener[] = [];
  private readonly tcpConnections = new Set<Socket>();
  private closed = false;
  /** Socket and query failures can come at a flood's rate: logged at most every 10 s. */
  private readonly warnRateLimited = rateLimited((m) => log.warn(m));
  /**
   * Table answers of plain UDP questions with at most one address (nothing to rotate), by
   * question bytes: a repeated question is answered without decoding it again.
   */
  private readonly answerCache = new Map<string, Buffer>();
  private readonly cacheEntries: number;
  private readonly scope: ProxyScope;
  private readonly forwarder: Forwarder;
  readonly respondBeforeSync: boolean;
  readonly upstreams: readonly Upstream[];
  readonly searchDomains: readonly string[];

  private constructor(
    private readonly options: LocalDnsServerOptions,
    resolved: { upstreams: Upstream[]; search: string[]; respondBeforeSync: boolean },
  ) {
    this.scope = proxyScope(options.proxyNamespace, options.proxyDomain);
    this.cacheEntries = options.answerCacheEntries ?? ANSWER_CACHE_ENTRIES;
    this.upstreams = resolved.upstreams;
    this.searchDomains = resolved.search;
    this.respondBeforeSync = resolved.respondBeforeSync;
    this.forwarder = new Forwarder({
      upstreams: resolved.upstreams,
      parallel: options.forwardParallel ?? false,
      // 0 means miekg's default of 2 s, as in Istio
      timeoutMs: options.upstreamTimeoutMs === undefined ? DEFAULT_UPSTREAM_TIMEOUT_MS : options.upstreamTimeoutMs > 0 ? options.upstreamTimeoutMs : 2000,
      maxInflight: options.maxUpstreamInflight ?? 1024,
    });
  }

  /** Reads resolv.conf and binds every listener (Istio's NewLocalDNSServer + StartDNS). */
  static async start(options: LocalDnsServerOptions): Promise<LocalDnsServer> {
    let addr = options.addr || DEFAULT_DNS_PROXY_ADDR;
    let respondBeforeSync = false;
    let resolvConfPath = options.resolvConfPath ?? '/etc/resolv.conf';
    if (addr.endsWith(':53')) {
      if (process.getuid?.() === 0) {
        // Docker/VMs without iptables capture: the agent is the pod's resolver from the start
        respondBeforeSync = true;
        if (options.resolvConfPath === undefined && existsSync(ALT_RESOLV_CONF)) resolvConfPath = ALT_RESOLV_CONF;
      } else {
        log.error('DNS address :53 and not running as root, use default');
        addr = DEFAULT_DNS_PROXY_ADDR;
      }
    }
    const needResolvConf = options.upstreams === undefined || options.searchDomains === undefined;
    const conf = needResolvConf ? readResolvConf(resolvConfPath) : { nameservers: [], search: [] };
    const specs = options.upstreams ?? conf.nameservers;
    const upstreams: Upstream[] = [];
    for (const spec of specs) {
      const u = parseUpstream(spec);
      if (u) upstreams.push(u);
      else log.warn(`ignoring DNS upstream "${spec}": not an IP address`);
    }
    const search = [...(options.searchDomains ?? conf.search)];
    const server = new LocalDnsServer(options, { upstreams, search, respondBeforeSync: options.respondBeforeSync ?? respondBeforeSync });
    log.debug('initialized DNS', { search: search.join(','), servers: upstreams.map(formatUpstream).join(',') });
    try {
      await server.listen(addr);
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  private async listen(addr: string): Promise<void> {
    const { host, port } = listenAddress(addr);
    let hosts = [host];
    if (host === 'localhost') {
      // "localhost" would bind one family; a dual-stack pod needs both (Istio does the same)
      const v4 = this.upstreams.some((u) => u.family === 4);
      const v6 = this.upstreams.some((u) => u.family === 6);
      hosts = v4 || v6 ? [...(v4 ? ['127.0.0.1'] : []), ...(v6 ? ['::1'] : [])] : ['127.0.0.1'];
    }
    // every listener on the same port: with port 0, the first one picks it (retried on a clash)
    for (let attempt = 0; ; attempt++) {
      try {
        let chosen = port;
        for (const h of hosts) {
          const l: Listener = { host: h };
          this.listeners.push(l);
          l.udp = await this.bindUdp(h, chosen);
          chosen = l.udp.address().port;
          l.tcp = await this.bindTcp(h, chosen);
        }
        return;
      } catch (err) {
        await this.closeListeners();
        if (port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
          log.error(`Failed to listen on ${addr}: ${(err as Error).message}`);
          throw err;
        }
      }
    }
  }

  private bindUdp(host: string, port: number): Promise<UdpSocket> {
    const family = ipFamily(host) === 6 ? 'udp6' : 'udp4';
    // a deep receive queue rides out bursts (the kernel caps it at net.core.rmem_max)
    const sock = createSocket({ type: family, ipv6Only: family === 'udp6', recvBufferSize: UDP_RECEIVE_BUFFER });
    return new Promise((resolve, reject) => {
      const fail = (err: Error): void => {
        sock.close();
        reject(err);
      };
      sock.once('error', fail);
      sock.bind(port, host, () => {
        sock.off('error', fail);
        sock.on('error', (err) => this.warnRateLimited(`udp DNS socket error: ${err.message}`));
        // no send callback: the send then completes without another trip through the event loop
        sock.on('message', (msg, rinfo) =>
          this.serve(msg, 'udp', (answer) => {
            if (this.closed) return;
            try {
              sock.send(answer, rinfo.port, rinfo.address);
            } catch (err) {
              this.warnRateLimited(`udp DNS send failed: ${(err as Error).message}`);
            }
          }),
        );
        log.info(`Starting local udp DNS server on ${joinHostPort(host, sock.address().port)}`);
        resolve(sock);
      });
    });
  }

  private bindTcp(host: string, port: number): Promise<Server> {
    const server = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.acceptTcp(sock));
    server.maxConnections = this.options.maxTcpConnections ?? 1024;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: ipFamily(host) === 6 }, () => {
        server.off('error', reject);
        server.on('error', (err) => log.warn(`tcp DNS server error: ${err.message}`));
        log.info(`Starting local tcp DNS server on ${joinHostPort(host, port)}`);
        resolve(server);
      });
    });
  }

  private acceptTcp(sock: Socket): void {
    if (this.closed) return void sock.destroy();
    this.tcpConnections.add(sock);
    let pending: Buffer = Buffer.alloc(0);
    let waiting = 0;
    let ended = false;
    // a deadline per message, not per byte: a client dripping a byte now and then must not hold
    // a connection (and its slot under the cap) for ever
    const idleMs = this.options.tcpIdleTimeoutMs ?? 8000;
    let deadline: NodeJS.Timeout | undefined;
    const expectQueryWithin = (ms: number): void => {
      clearTimeout(deadline);
      deadline = setTimeout(() => {
        // an answer still being worked on (a forward, bounded by its own timeout) keeps it open
        if (waiting > 0) expectQueryWithin(idleMs);
        else sock.destroy();
      }, timerDelay(ms));
    };
    expectQueryWithin(this.options.tcpReadTimeoutMs ?? 2000);
    sock.on('error', noop);
    sock.on('close', () => {
      clearTimeout(deadline);
      this.tcpConnections.delete(sock);
    });
    sock.on('end', () => {
      ended = true;
      if (waiting === 0) sock.end();
    });
    const answer = (msg: Buffer): void => {
      waiting--;
      if (!sock.destroyed) expectQueryWithin(idleMs);
      if (!sock.destroyed && sock.writable) {
        const len = Buffer.allocUnsafe(2);
        len.writeUInt16BE(msg.length, 0);
        sock.write(Buffer.concat([len, msg]));
      }
      if (waiting < TCP_MAX_PENDING && sock.isPaused() && !sock.destroyed) sock.resume();
      if (ended && waiting === 0) sock.end();
    };
    sock.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let rearmed = false;
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < 2 + len) break;
        const msg = Buffer.from(pending.subarray(2, 2 + len));
        pending = pending.subarray(2 + len);
        if (!rearmed) {
          rearmed = true;
          expectQueryWithin(idleMs);
        }
        waiting++;
        let answered = false;
        this.serve(msg, 'tcp', (out) => {
          answered = true;
          answer(out);
        }, () => {
          // no answer for this one (ignored message)
          if (!answered) {
            answered = true;
            waiting--;
            if (ended && waiting === 0) sock.end();
          }
        });
      }
      if (waiting >= TCP_MAX_PENDING) sock.pause();
    });
  }

  /**
   * One query (Istio's ServeDNS). `reply` is called at most once, maybe synchronously;
   * `noReply` when nothing will be sent.
   */
  private serve(msg: Buffer, protocol: Protocol, reply: (answer: Buffer) => void, noReply: () => void = noop): void {
    try {
      this.serveUnsafe(msg, protocol, reply, noReply);
    } catch (err) {
      // a bug must cost one answer, never the agent
      this.warnRateLimited(`dns: failed to serve a query: ${(err as Error).stack ?? String(err)}`);
      noReply();
    }
  }

  private serveUnsafe(msg: Buffer, protocol: Protocol, reply: (answer: Buffer) => void, noReply: () => void): void {
    const key = protocol === 'udp' && this.cacheEntries > 0 ? answerCacheKey(msg) : undefined;
    if (key !== undefined) {
      const cached = this.answerCache.get(key);
      if (cached) {
        dnsMetrics.requests.inc();
        return reply(withId(cached, msg));
      }
    }
    const parsed = parseQuery(msg);
    if (parsed.kind === 'ignore') return noReply();
    if (parsed.kind === 'reject') return reply(parsed.response);
    dnsMetrics.requests.inc();
    const q = parsed.query;
    const table = this.lookupTable;
    if (!table) {
      if (this.respondBeforeSync) return this.forward(q, protocol, reply);
      log.debug(`dns request for host "${q.fqdn}" before lookup table is loaded`);
      return reply(emptyReply(q, RCODE.SERVFAIL));
    }
    const found = q.escaped ? undefined : table.lookup(q.qtype, q.fqdn);
    if (!found) return this.forward(q, protocol, reply);
    // random order of the addresses: DNS load balancing for headless services (as kube-dns)
    const answer = found.addresses.length > 1 ? { ...found, addresses: shuffledCopy(found.addresses) } : found;
    const out = tableReply(q, answer, answerSizeLimit(q, protocol));
    if (key !== undefined && found.addresses.length <= 1 && cacheable(q)) {
      if (this.answerCache.size >= this.cacheEntries) this.answerCache.clear();
      this.answerCache.set(key, out);
    }
    reply(out);
  }

  private forward(q: Query, protocol: Protocol, reply: (answer: Buffer) => void): void {
    dnsMetrics.upstreamRequests.inc();
    const stopTimer = dnsMetrics.upstreamDuration.startTimer();
    log.debug(`response for hostname "${q.fqdn}" not found in dns proxy, querying upstream`);
    this.forwarder.forward(q, protocol).then(
      (answer) => {
        stopTimer();
        if (answer) return reply(answer);
        dnsMetrics.upstreamFailures.inc();
        reply(emptyReply(q, RCODE.SERVFAIL));
      },
      (err: Error) => {
        stopTimer();
        log.warn(`forwarding ${q.fqdn} failed: ${err.message}`);
        dnsMetrics.upstreamFailures.inc();
        reply(emptyReply(q, RCODE.SERVFAIL));
      },
    ).catch((err: Error) => this.warnRateLimited(`dns: failed to answer a forwarded query: ${err.message}`));
  }

  /** Replaces the lookup table (Istio's UpdateLookupTable). */
  updateLookupTable(nt: NameTable): void {
    const table = new LookupTable(nt, this.scope, this.searchDomains);
    this.lookupTable = table;
    this.answerCache.clear();
    this.nameTable = nt;
    log.debug(`updated lookup table with ${table.size} hosts`);
  }

  /** The NDS handler to register on the xDS proxy: a table that does not decode is NACKed. */
  readonly nameTableHandler: AgentTypeHandler = {
    typeUrl: TypeUrl.NameTable,
    handle: async (resources) => {
      // an empty response changes nothing (Istio: the name table is a singleton)
      const first = resources[0];
      if (!first) return;
      if (first.typeUrl !== TypeUrl.NameTable) throw new Error(`mismatched message type: got "${first.typeUrl}", want "${TypeUrl.NameTable}"`);
      let nt: NameTable;
      try {
        nt = await decodeNameTable(first.value);
      } catch (err) {
        log.error(`failed to unmarshal name table: ${(err as Error).message}`);
        throw err;
      }
      this.updateLookupTable(nt);
    },
  };

  /** Readiness: the first name table has arrived (Istio's IsReady). */
  ready(): boolean {
    return this.lookupTable !== undefined;
  }

  /**
   * /debug/ndsz: the table as received plus every alternate name it answers to (entries with the
   * registry "Kubernetes"), in proto3 JSON; undefined before the first table (Istio's GetDNSTable).
   */
  debugTable(): { table: Record<string, Record<string, unknown>> } | undefined {
    const nt = this.nameTable;
    if (!nt) return undefined;
    const out = new Map<string, NameInfo>(nt);
    forEachHost(nt, this.scope, (names, v4, v6) => {
      for (const name of names) {
        if (!out.has(name)) out.set(name, { ips: [...v4, ...v6], registry: 'Kubernetes', shortname: '', namespace: '', altHosts: [] });
      }
    });
    return nameTableJson(out);
  }

  /** Bound addresses (for tests, benchmarks and logs). */
  addresses(): { udp: string[]; tcp: string[] } {
    const udp: string[] = [];
    const tcp: string[] = [];
    for (const l of this.listeners) {
      if (l.udp) udp.push(joinHostPort(l.host, l.udp.address().port));
      const a = l.tcp?.address();
      if (a && typeof a === 'object') tcp.push(joinHostPort(l.host, a.port));
    }
    return { udp, tcp };
  }

  /** The port every listener shares. */
  get port(): number {
    const first = this.listeners[0]?.udp;
    return first ? first.address().port : 0;
  }

  /** Stops listening, closes client connections and cancels upstream queries. Idempotent. */
  /** Memory pressure: the answer cache is rebuilt from the table and upstream answers as queries come. */
  dropCaches(): void {
    this.answerCache.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.forwarder.close();
    for (const s of this.tcpConnections) s.destroy();
    this.tcpConnections.clear();
    await this.closeListeners();
  }

  private closeListeners(): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const l of this.listeners.splice(0)) {
      const { udp, tcp } = l;
      if (udp) waits.push(new Promise((r) => udp.close(() => r())));
      if (tcp?.listening) waits.push(new Promise((r) => tcp.close(() => r())));
    }
    return Promise.all(waits).then(noop);
  }
}

function noop(): void {}

