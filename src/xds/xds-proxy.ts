// The xDS proxy: Envoy (or a proxyless gRPC app) talks ADS to us on a unix socket; each of its
// streams gets a fresh upstream stream to istiod. Messages pass through as the bytes that came
// in; only the type URL, nonce and version are read off the wire. Responses of a few types are
// handled here instead: agent-consumed types (DNS name table, ProxyConfig) are ACKed/NACKed by
// the agent and never reach Envoy, ECDS goes through an async rewrite (Wasm), istiod's debug
// answers (istio.io/debug/*) go to the request the debug port sent on this stream's upstream
// (tapRequest), and types Envoy does not know are dropped.
//
// Streaming: a large push is forwarded piece by piece as it arrives, never assembled. Whether a
// push may be streamed is decided from its first resource's type URL, read from the first bytes
// (response-scanner.ts): a push of an ordinary Envoy type streams on; anything the agent must see
// whole (its own types, ECDS, unknown types, small messages) is held until complete and handled
// as a whole message. So memory does not grow with the size of a push, and a push reaches Envoy
// about as fast as istiod sends it instead of crossing the agent twice.
//
// Ordering: responses are handled one at a time, in arrival order, even when a rewrite is async:
// the next response is not read until the previous one is done. Backpressure: when Envoy leaves
// more than a little unread, or while a held response is being handled, the upstream stream is
// paused, so a slow Envoy slows istiod's stream (HTTP/2 flow control) instead of growing memory.

import type { ClientStream } from '../grpc/client.js';
import { frameHeader, frameMessage, GrpcDeframer, type FrameSink } from '../grpc/frames.js';
import { GrpcUnixServer, type ServerStream, type StreamEnd } from '../grpc/server.js';
import type { HeldListener } from '../grpc/held-listener.js';
import { Status, statusName, unmarshalFailure, type GrpcStatus } from '../grpc/status.js';
import { metrics, recordRecvSize, TerminationType } from '../metrics/registry.js';
import { GcPacer } from '../util/gc.js';
import { logger } from '../util/logger.js';
import { DELTA, SOTW, type XdsProtocol } from './protocol.js';
import { ResponseScanner } from './response-scanner.js';
import { isDebugPayloadType, isDebugType, isRelayedToEnvoy, shortType, TypeUrl } from './type-urls.js';
import { ISTIO_KEEPALIVE, type KeepaliveOptions } from '../grpc/keepalive.js';
import { Backoff, type BackoffOptions } from '../util/backoff.js';
import { openUpstream } from './upstream.js';
import type { UpstreamOptions } from './upstream-options.js';
import { deltaResources, encodeDeltaRequest, encodeSotwRequest, sotwResources, type RequestSummary, type ResponseSummary } from './wire.js';
import type { LastKnownGood, LkgSpool } from './last-known-good.js';
import { AckRecorder, CacheResponder } from './lkg-session.js';
import { isoUtc } from '../util/time.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('xdsproxy');

export type ResponseAction =
  | { readonly kind: 'forward'; readonly message: Uint8Array }
  /** NACK upstream (with the last ACKed version) and forward nothing. */
  | { readonly kind: 'nack'; readonly reason: string };

/** Rewrites responses of one type before Envoy sees them (ECDS/Wasm). May be async. */
export interface ResponseInterceptor {
  intercept(message: Buffer, ctx: { protocol: XdsProtocol; summary: ResponseSummary; signal: AbortSignal }): ResponseAction | Promise<ResponseAction>;
}

/** A type consumed by the agent itself. `handle` throws to NACK. */
export interface AgentTypeHandler {
  readonly typeUrl: string;
  handle(resources: readonly { typeUrl: string; value: Uint8Array }[], version: string): void | Promise<void>;
}

/** A debug request from the debug port (istio.io/debug/...). */
export interface TapRequest {
  readonly typeUrl: string;
  readonly resourceNames: readonly string[];
  /** The client's own SotW request (gRPC tap), sent as it is to a SotW upstream. */
  readonly sotwRequest?: Uint8Array;
}

/** istiod's answer to a TapRequest: the response message as it came, and its protocol. */
export interface TapResult {
  readonly message: Buffer;
  readonly protocol: 'sotw' | 'delta';
}

export class TapNotConnectedError extends Error {
  override readonly name = 'TapNotConnectedError';
  readonly code = 'XDS_DEBUG_NOT_CONNECTED';
}

export interface TypeSyncState {
  lastVersion: string;
  lastNonce: string;
  lastResources: number;
  lastBytes: number;
  /** How the last response reached Envoy: streamed on as it arrived, or held whole first. */
  lastForwarding?: 'streamed' | 'held' | 'last-known-good';
  responses: number;
  /** What Envoy (or the agent, for agent types) answered to the last response. */
  lastAck: 'ACK' | 'NACK' | 'pending' | 'none';
  lastNackReason?: string;
}

export interface XdsProxyOptions {
  readonly socketPath: string;
  /** The socket, bound already (before Envoy's spawn); otherwise start() binds it. */
  readonly listener?: HeldListener;
  readonly upstream: UpstreamOptions;
  /**
   * Spacing of upstream dials after failures (jittered, capped; reset by a dial that reaches
   * istiod), so that a client reconnecting in a loop cannot make the agent hammer an istiod that
   * is down. Default: 500 ms, x1.5, +/-50 %, at most 15 s.
   */
  readonly dialBackoff?: BackoffOptions;
  /** Largest request message accepted from Envoy (default 64 MiB); larger: RESOURCE_EXHAUSTED. */
  readonly maxRequestBytes?: number;
  /** Keepalive pings to Envoy on the xDS socket (GRPC_KEEPALIVE_*; default Istio's 30 s / 10 s). */
  readonly serverKeepalive?: KeepaliveOptions;
  /** Streams one client may open at once on the xDS socket (ISTIO_GPRC_MAXSTREAMS). */
  readonly maxConcurrentStreams?: number;
  /**
   * PROXY_XDS_LAST_KNOWN_GOOD: what the client ACKs is saved here, and served from here when
   * istiod cannot be reached at start.
   */
  readonly lastKnownGood?: LastKnownGood;
}

const toBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Ends of an upstream stream Istio counts as expected (its GRPCErrorType's ExpectedError). */
function expectedUpstreamEnd(status: GrpcStatus): boolean {
  return status.code === Status.CANCELLED || status.code === Status.DEADLINE_EXCEEDED;
}

let connectionIds = 0;

/** How far "too_many_pings" may stretch the keepalive interval (a dead istiod is still noticed). */
const MAX_KEEPALIVE_INTERVAL_MS = 30 * 60_000;

/**
 * A young-generation collection after every this many bytes of responses: the buffers Node's
 * HTTP/2 layer read them into are freed while young and their pages reused (util/gc.ts).
 */
const COLLECT_EVERY_RESPONSE_BYTES = 1024 * 1024;
/**
 * Larger responses are not counted: they set off V8's own external-memory collections, and pacing
 * them too measured worse (more page faults, +40 ms of CPU per 50 MB push in half the runs).
 */
const PACED_UP_TO_BYTES = 4 * 1024 * 1024;

/** Responses from this size on may be streamed; smaller ones are always held whole (cheap). */
const STREAM_FROM_BYTES = 64 * 1024;
/** Rewrites (ECDS) waiting their turn before istiod is paused: a bound on what they hold, never reached by istiod's pace. */
const MAX_QUEUED_REWRITES = 8;

/** The response being received: streamed on, held whole, or not yet decided. */
interface InboundResponse {
  readonly length: number;
  readonly scanner: ResponseScanner;
  mode: 'deciding' | 'stream' | 'hold';
  parts: Buffer[];
  /** Stream mode: the type it was streamed as (its first resource's). */
  streamedAs?: string;
  /** Stream mode with last-known-good on: the bytes, spooled for saving once Envoy ACKs them. */
  spool?: LkgSpool;
}

/** Upstream endings that mean "istiod cannot be reached", for serving the last-known-good state. */
const UNREACHABLE = new Set<number>([Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED]);

type PauseReason = 'envoy-slow' | 'handling' | 'rewrites';

export interface ConnectionView {
  readonly id: number;
  readonly protocol: 'sotw' | 'delta';
  readonly upstream: 'waiting to dial' | 'dialling' | 'connected' | 'last-known-good';
  /** Why istiod's stream is not being read: Envoy not keeping up, a held response being handled, or too many rewrites waiting. */
  readonly pausedFor: readonly PauseReason[];
  readonly unreadUpstreamBytes: number;
  /** A response is being streamed to Envoy as it arrives (nothing else may be written meanwhile). */
  readonly streaming: boolean;
  /** Rewrites (ECDS) running or waiting their turn. */
  readonly rewrites: number;
}

class ProxyConnection implements FrameSink {
  readonly id = ++connectionIds;
  private upstream: ClientStream | undefined;
  private readonly deframer = new GrpcDeframer(this);
  private current: InboundResponse | undefined;
  /** Rewrites (ECDS) run one after another, in arrival order, while other responses go on. */
  private rewrites: Promise<void> = Promise.resolve();
  private rewritesQueued = 0;
  /** Writes waiting for the end of the message being streamed to Envoy (a write now would split it). */
  private afterStreamed: (() => void)[] = [];
  private readonly pausedFor = new Set<PauseReason>();
  private awaitingEnvoyDrain = false;
  private awaitingIstiodDrain = false;
  private closed = false;
  private initialRequestsSent = false;
  /** Requests Envoy sent before the upstream stream was opened (the dial backing off). */
  private waitingRequests: Buffer[] = [];
  /** The agent's own requests (the debug port's) waiting for the dial. */
  private waitingAgentRequests: Uint8Array[] = [];
  private dialTimer: NodeJS.Timeout | undefined;
  private upstreamConnected = false;
  /** Requests written to the upstream stream before its connection was up (counted once it is). */
  private requestsBeforeConnected = 0;
  private readonly abort = new AbortController();
  /** Last version Envoy ACKed, per type (SotW): what a NACK by the agent reports. */
  private readonly ackedVersion = new Map<string, string>();
  /** Last-known-good on: saves what the client ACKs. */
  private readonly recorder: AckRecorder | undefined;
  /** Set while this stream is answered from the last-known-good store (istiod unreachable at start). */
  private cache: CacheResponder | undefined;
  /** Requests forwarded before istiod ever answered: replayed against the store if it cannot be reached. */
  private requestsBeforeFirstResponse: Buffer[] | undefined;

  constructor(
    private readonly proxy: XdsProxy,
    private readonly downstream: ServerStream,
    readonly protocol: XdsProtocol,
  ) {
    const store = proxy.options.lastKnownGood;
    if (store) {
      this.recorder = new AckRecorder(store, protocol.kind, this.id);
      if (!proxy.istiodAnswered) this.requestsBeforeFirstResponse = [];
    }
  }

  start(): void {
    // Envoy's stream is watched from the start, so that it going away is noticed while the
    // upstream stream opens; its requests wait (and Envoy's reading pauses) until it exists.
    this.downstream.attach({
      onRequest: (msg) => this.onDownstreamRequest(msg),
      onGone: (kind, reason) => this.onDownstreamGone(kind, reason),
    });
    const wait = this.proxy.dialWaitMs();
    if (wait <= 0) return this.dial();
    // istiod has not answered since start and the last dial failed: the store answers at once
    if (this.requestsBeforeFirstResponse && this.serveFromCache(`${this.proxy.dialFailures} dials failed`)) return;
    // A dial failed less than the backoff ago: this stream fails at once, as under Istio's agent
    // (its dial for the stream fails), so that Envoy shows itself disconnected
    // (control_plane.connected_state 0), logs why, and retries on its own backoff; the agent does
    // not dial istiod again before its backoff ends, however often a client reconnects.
    const details = `istiod at ${this.proxy.options.upstream.address} unreachable: ${this.proxy.lastDialError}; not dialling again for ${Math.ceil(wait)} ms (backing off after ${this.proxy.dialFailures} failed attempts)`;
    log.debug(`connection ${this.id}: ${details}`);
    // each refused stream stands for one of the failed reconnects Envoy would make under Istio's agent
    metrics.istiodConnectionTerminations.inc({ type: TerminationType.error });
    this.close({ code: Status.UNAVAILABLE, details });
  }

  private dial(): void {
    if (this.closed) return;
    const upstreamAddress = this.proxy.options.upstream.address;
    try {
      this.upstream = openUpstream(this.proxy.options.upstream, this.protocol.method, {
        onConnected: () => {
          this.upstreamConnected = true;
          if (this.requestsBeforeConnected > 0) metrics.xdsProxyRequests.inc(this.requestsBeforeConnected);
          this.requestsBeforeConnected = 0;
          this.proxy.dialSucceeded();
        },
        onData: (chunk) => {
          if (!this.closed) this.deframer.push(chunk);
        },
        onEnd: (status, connected, connection) => this.onUpstreamGone(status, connected, connection.goawayCode === 0),
      }, { keepalive: this.proxy.keepalive, onTooManyPings: () => this.proxy.pingedTooOften() });
    } catch (err) {
      metrics.istiodConnectionFailures.inc();
      this.proxy.dialFailed((err as Error).message);
      log.error(`failed to connect to upstream ${upstreamAddress}: ${(err as Error).message}`);
      this.close({ code: Status.UNAVAILABLE, details: (err as Error).message });
      return;
    }
    log.info(`connection ${this.id}: ${this.protocol.kind} stream accepted on the xDS socket, dialling upstream ${upstreamAddress}`);
    const waiting = this.waitingRequests;
    this.waitingRequests = [];
    for (const msg of waiting) this.forwardRequest(msg);
    if (waiting.length > 0) this.downstream.resume();
    const own = this.waitingAgentRequests;
    this.waitingAgentRequests = [];
    for (const msg of own) this.sendUpstream(msg);
  }

  /**
   * A request of the agent's own (the debug port's) on this stream's upstream; held until the dial
   * when it is not open yet. False when it cannot be sent: the stream is closed or answered from
   * the last-known-good store.
   */
  sendAgentRequest(msg: Uint8Array): boolean {
    if (this.closed || this.cache) return false;
    if (!this.upstream) this.waitingAgentRequests.push(msg);
    else this.sendUpstream(msg);
    return true;
  }

  // Envoy -> istiod
  private onDownstreamRequest(msg: Buffer): void {
    if (this.closed) return;
    // checked on arrival, so that what waits for the dial or is replayed later is known to parse
    const req = this.summarize(msg);
    if (!req) return;
    if (this.cache) return this.answerFromCache(msg, req);
    if (!this.upstream) {
      // the dial is waiting: keep this one, and let HTTP/2 flow control hold the rest in Envoy
      this.waitingRequests.push(msg);
      this.downstream.pause();
      return;
    }
    this.forwardRequest(msg, req);
  }

  /**
   * A request's summary. One that does not parse (from a broken or hostile client: the socket is
   * open to every process in the pod) ends its connection the way grpc-go ends Istio's, INTERNAL
   * "grpc: failed to unmarshal the received message", counted and logged as an unexpected
   * downstream end; the agent and its other connections go on.
   */
  private summarize(msg: Buffer): RequestSummary | undefined {
    try {
      return this.protocol.summarizeRequest(msg);
    } catch (err) {
      const status = unmarshalFailure(err);
      metrics.envoyConnectionTerminations.inc({ type: TerminationType.error });
      log.warn(`connection ${this.id}: downstream terminated with unexpected error: ${status.details} (${msg.length}-byte ${this.protocol.kind} request)`);
      this.close(status);
      return undefined;
    }
  }

  private forwardRequest(msg: Buffer, req: RequestSummary = this.protocol.summarizeRequest(msg)): void {
    if (this.closed) return;
    recordRecvSize(msg.length);
    this.proxy.noteRequest(req.typeUrl, req.isNack, req.responseNonce);
    this.recorder?.request(req);
    this.requestsBeforeFirstResponse?.push(msg);
    if (this.protocol.kind === 'sotw' && req.versionInfo && !req.isNack) this.ackedVersion.set(req.typeUrl, req.versionInfo);
    log.debug(`connection ${this.id}: request ${shortType(req.typeUrl)} nonce=${req.responseNonce}${req.isNack ? ' NACK' : ''}`);
    this.sendUpstream(msg);
    if (!this.initialRequestsSent && req.typeUrl === TypeUrl.Listener) {
      this.initialRequestsSent = true;
      // agent-consumed types are subscribed on the first LDS request, as Istio does
      for (const typeUrl of this.proxy.agentTypes()) this.sendUpstream(this.protocol.encodeRequest({ typeUrl, responseNonce: '' }));
      this.sendHealth();
    }
  }

  /** The workload's last health state to istiod; only once Envoy's first LDS request went (as Istio). */
  sendHealth(): void {
    const health = this.proxy.workloadHealth;
    if (!health || !this.initialRequestsSent || this.closed) return;
    const error = health.healthy ? undefined : { code: Status.INTERNAL, message: health.message ?? 'unhealthy' };
    this.sendUpstream(this.protocol.encodeRequest({ typeUrl: TypeUrl.HealthInformation, responseNonce: '', ...(error ? { error } : {}) }));
  }

  private sendUpstream(msg: Uint8Array): void {
    const up = this.upstream;
    if (!up || this.closed) return;
    // every request istiod is sent is counted, the agent's own (subscriptions, ACKs of the types it
    // consumes, a Wasm NACK) as well as Envoy's, as Istio counts them; those written before the
    // connection is up count once it is (Istio's send loop starts after the stream opened): a
    // dial that fails counts none
    if (this.upstreamConnected) metrics.xdsProxyRequests.inc();
    else this.requestsBeforeConnected++;
    if (!up.write(frameMessage(msg)) && !this.awaitingIstiodDrain) {
      // istiod is not reading: stop reading Envoy until it does
      this.awaitingIstiodDrain = true;
      this.downstream.pause();
      up.onceDrain(() => {
        this.awaitingIstiodDrain = false;
        this.downstream.resume();
      });
    }
  }

  // istiod -> Envoy, as the deframer's sink

  messageStart(length: number, compressed: boolean): void {
    if (compressed) return this.upstreamBroke(Status.INTERNAL, 'istiod sent a compressed message; compression is not negotiated');
    // grpc-go's limit on Istio's upstream (math.MaxInt32), refused before a byte is buffered
    if (length > MAX_UPSTREAM_MESSAGE_BYTES) return this.upstreamBroke(Status.RESOURCE_EXHAUSTED, `grpc: received message larger than max (${length} vs. ${MAX_UPSTREAM_MESSAGE_BYTES})`);
    this.proxy.noteMessageSize(length);
    this.proxy.istiodAnswered = true;
    this.requestsBeforeFirstResponse = undefined;
    this.current = { length, scanner: new ResponseScanner(this.protocol.kind), mode: length >= STREAM_FROM_BYTES ? 'deciding' : 'hold', parts: [] };
  }

  messageData(piece: Buffer): void {
    const m = this.current;
    if (!m || this.closed) return;
    m.scanner.push(piece);
    // a held message that cannot be valid is not buffered on to its declared end (up to 2 GiB)
    if (m.scanner.error !== undefined && m.mode !== 'stream') return this.upstreamBroke(Status.INTERNAL, `malformed xDS response: ${m.scanner.error}`);
    if (m.mode === 'stream') {
      m.spool?.append(piece);
      return this.forward(piece);
    }
    m.parts.push(piece);
    if (m.mode === 'deciding' && m.scanner.firstResourceType !== null) this.decide(m);
  }

  messageEnd(): void {
    const m = this.current;
    this.current = undefined;
    if (m?.mode === 'stream') this.releaseAfterStreamed();
    if (m && m.length < PACED_UP_TO_BYTES) this.proxy.gcPacer.note(m.length);
    if (!m || this.closed) return;
    let summary: ResponseSummary;
    try {
      summary = m.scanner.finish();
    } catch (err) {
      m.spool?.discard();
      if (m.mode === 'stream') {
        log.warn(`connection ${this.id}: forwarded a response that does not parse (${(err as Error).message}); Envoy will reject it`);
        return;
      }
      return this.upstreamBroke(Status.INTERNAL, (err as Error).message);
    }
    // counted once whole and parsed, as Istio counts what its Recv returned
    metrics.xdsProxyResponses.inc();
    if (m.mode === 'stream') {
      if (m.spool) this.recorder?.sent(summary.typeUrl, summary.nonce, summary.version, { spool: m.spool });
      this.proxy.noteResponse(summary, m.length, 'streamed');
      log.debug(`connection ${this.id}: streamed response ${shortType(summary.typeUrl)} resources=${summary.resourceCount} nonce=${summary.nonce}`);
      if (summary.typeUrl !== m.streamedAs) {
        log.warn(`connection ${this.id}: response of type ${summary.typeUrl} carried ${m.streamedAs} resources and was forwarded as they came; Envoy will judge it`);
      }
      return;
    }
    const msg = m.parts.length === 1 ? m.parts[0]! : Buffer.concat(m.parts, m.length);
    m.parts = [];
    if (!this.proxy.handlerFor(summary.typeUrl) && this.proxy.interceptorFor(summary.typeUrl) && !isDebugType(summary.typeUrl)) return this.rewriteInBackground(msg, summary);
    // nothing more is read until this response is handled: that is what keeps responses in order
    this.stopReading('handling');
    this.handleResponse(msg, summary).then(
      () => {
        if (this.closed) return;
        this.readAgain('handling');
      },
      (err: unknown) => {
        log.error(`connection ${this.id}: ${(err as Error).message}`);
        this.close({ code: Status.INTERNAL, details: (err as Error).message });
      },
    );
  }

  /**
   * A response to rewrite (ECDS: its Wasm modules are fetched, which a remote server may stretch to
   * the fetch timeout, 30 s from istiod) is rewritten off the read path, as Istio's goroutine does:
   * other types keep flowing meanwhile, rewrites keep their own order, and each is written to
   * Envoy between two messages. Past MAX_QUEUED_REWRITES waiting, istiod is paused.
   */
  private rewriteInBackground(msg: Buffer, summary: ResponseSummary): void {
    // counted when it arrives: what /debug/syncz shows is what istiod sent
    this.proxy.noteResponse(summary, msg.length, 'held');
    this.rewritesQueued++;
    // called at a message's end: nothing is half-streamed to Envoy, so holding the deframer here
    // cannot keep a queued rewrite waiting for a message that istiod, paused, never finishes
    if (this.rewritesQueued > MAX_QUEUED_REWRITES && !this.deframer.isHeldFor('rewrites')) this.stopReading('rewrites');
    this.rewrites = this.rewrites
      .then(() => (this.closed ? undefined : this.handleResponse(msg, summary, { noted: true })))
      .then(
        () => undefined,
        (err: unknown) => {
          log.error(`connection ${this.id}: ${(err as Error).message}`);
          this.close({ code: Status.INTERNAL, details: (err as Error).message });
        },
      )
      .finally(() => {
        this.rewritesQueued--;
        if (this.rewritesQueued <= MAX_QUEUED_REWRITES && this.deframer.isHeldFor('rewrites') && !this.closed) this.readAgain('rewrites');
      });
  }

  /** Resolves at the end of the message being streamed to Envoy, or when the connection closes. */
  private streamedMessageEnd(): Promise<void> {
    return new Promise((resolve) => this.afterStreamed.push(resolve));
  }

  private releaseAfterStreamed(): void {
    const waiting = this.afterStreamed;
    this.afterStreamed = [];
    for (const go of waiting) go();
  }

  /** Streams the response on when it is an ordinary Envoy type; otherwise holds it whole. */
  private decide(m: InboundResponse): void {
    const t = m.scanner.firstResourceType;
    if (!t || !isRelayedToEnvoy(t) || isDebugPayloadType(t) || this.proxy.handlerFor(t) || this.proxy.interceptorFor(t)) {
      m.mode = 'hold';
      return;
    }
    m.mode = 'stream';
    m.streamedAs = t;
    const held = m.parts;
    m.parts = [];
    if (this.recorder) {
      m.spool = this.recorder.spool();
      for (const p of held) m.spool.append(p);
    }
    this.forward([frameHeader(m.length), ...held]);
  }

  private forward(bytes: Buffer | readonly Buffer[]): void {
    const written = Buffer.isBuffer(bytes) ? this.downstream.write(bytes) : this.downstream.writeAll(bytes);
    if (written || this.awaitingEnvoyDrain) return;
    this.awaitingEnvoyDrain = true;
    this.pause('envoy-slow');
    this.downstream.onceDrain(() => {
      this.awaitingEnvoyDrain = false;
      this.resume('envoy-slow');
    });
  }

  /**
   * Stops parsing istiod's bytes (the deframer keeps what arrives) and reading them (HTTP/2 flow
   * control then holds istiod), for as long as any reason holds. Only ever called between two
   * messages.
   */
  private stopReading(reason: 'handling' | 'rewrites'): void {
    this.deframer.hold(reason);
    this.pause(reason);
  }

  private readAgain(reason: 'handling' | 'rewrites'): void {
    this.resume(reason);
    this.deframer.release(reason);
  }

  private pause(reason: PauseReason): void {
    this.pausedFor.add(reason);
    this.upstream?.pause();
  }

  private resume(reason: PauseReason): void {
    this.pausedFor.delete(reason);
    if (this.pausedFor.size === 0 && !this.closed) this.upstream?.resume();
  }

  private async handleResponse(msg: Buffer, summary: ResponseSummary, { noted = false } = {}): Promise<void> {
    const { typeUrl } = summary;
    if (!noted) this.proxy.noteResponse(summary, msg.length, 'held');
    log.debug(`connection ${this.id}: response ${shortType(typeUrl)} resources=${summary.resourceCount} nonce=${summary.nonce}`);

    // istiod's answer to a request from the debug port: never Envoy's, never ACKed (as Istio)
    if (isDebugType(typeUrl)) return this.proxy.forwardToTap(msg, this.protocol.kind, typeUrl);

    const handler = this.proxy.handlerFor(typeUrl);
    if (handler) {
      const resources =
        this.protocol.kind === 'sotw'
          ? sotwResources(msg)
          : deltaResources(msg).flatMap((r) => (r.resource ? [r.resource] : []));
      // an empty response to an agent type is neither handled nor ACKed, as Istio (its types are singletons)
      if (resources.length === 0) return;
      let error: { code: number; message: string } | undefined;
      try {
        await handler.handle(resources, summary.version);
      } catch (err) {
        error = { code: Status.INTERNAL, message: (err as Error).message };
        log.warn(`NACK ${shortType(typeUrl)} version ${summary.version}: ${(err as Error).message}`);
      }
      this.proxy.noteAgentAck(typeUrl, error?.message);
      if (!error) this.recorder?.commit(typeUrl, summary.version, msg);
      this.sendUpstream(this.protocol.encodeRequest({ typeUrl, responseNonce: summary.nonce, versionInfo: summary.version, ...(error ? { error } : {}) }));
      return;
    }

    const interceptor = this.proxy.interceptorFor(typeUrl);
    let out: Uint8Array = msg;
    if (interceptor) {
      const action = await interceptor.intercept(msg, { protocol: this.protocol, summary, signal: this.abort.signal });
      if (this.closed) return;
      if (action.kind === 'nack') {
        const versionInfo = this.ackedVersion.get(typeUrl) ?? '';
        log.warn(`NACK ${shortType(typeUrl)} upstream (last ACKed version "${versionInfo}"): ${action.reason}`);
        this.proxy.noteAgentAck(typeUrl, action.reason);
        this.sendUpstream(this.protocol.encodeRequest({ typeUrl, responseNonce: summary.nonce, versionInfo, error: { code: Status.INTERNAL, message: action.reason } }));
        return;
      }
      out = action.message;
    } else if (!isRelayedToEnvoy(typeUrl)) {
      this.proxy.noteDroppedType(typeUrl);
      return;
    }
    const bytes = toBuffer(out);
    // a rewrite ends while another push may be half-way to Envoy: wait for its end, checking again
    // after each wait (the next one may have started meanwhile); from the last check to the write
    // below nothing yields, so no other message's bytes can come between
    while (interceptor && this.current?.mode === 'stream' && !this.closed) await this.streamedMessageEnd();
    if (this.closed) return;
    // registered before the write: Envoy's ACK may be read before the write's callback runs
    this.recorder?.sent(typeUrl, summary.nonce, summary.version, { bytes });
    await this.writeDownstream(bytes);
  }

  private writeDownstream(msg: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const signal = this.abort.signal;
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      // a stream torn down mid-write may never call back: closing releases the wait
      signal.addEventListener('abort', done, { once: true });
      // waiting for the write callback keeps a held response from piling up toward a slow Envoy
      this.downstream.writeMessage(msg, done);
    });
  }

  private onUpstreamGone(status: GrpcStatus, connected: boolean, recycled = false): void {
    if (this.closed) return;
    if (!connected) {
      // counted below as a termination with error, not as a connection failure: Istio's dial does
      // not block, so an istiod it cannot reach (refused, TLS, a wrong root) fails the stream, and
      // istiod_connection_failures counts only dial options it could not build (the catch in dial())
      this.proxy.dialFailed(status.details);
      log.error(`connection ${this.id}: failed to connect to upstream ${this.proxy.options.upstream.address}: ${status.details}`);
    }
    // only istiod's OK is a graceful end for Envoy (grpc-go's io.EOF, which Istio turns into OK); a
    // CANCELLED reaches Envoy as it came, as Istio passes every other status on
    const graceful = connected && status.code === Status.OK && this.deframer.atMessageBoundary;
    // Istio's GRPCErrorType: a deadline, a cancel or istiod recycling its connection (GOAWAY
    // NO_ERROR, then UNAVAILABLE when the grace period ends) is an expected end, counted as a
    // cancellation though Envoy still sees the status
    const expected = graceful || (connected && (expectedUpstreamEnd(status) || (recycled && status.code === Status.UNAVAILABLE)));
    metrics.istiodConnectionTerminations.inc({ type: expected ? TerminationType.cancelled : TerminationType.error });
    // at start, before istiod ever answered: serve what the client last ACKed, if anything is saved
    if (this.requestsBeforeFirstResponse && (!connected || UNREACHABLE.has(status.code)) && this.serveFromCache(status.details)) return;
    if (expected) log.info(`connection ${this.id}: upstream closed the stream${graceful ? '' : ` (${statusName(status.code)}: ${status.details})`}`);
    else if (connected) log.warn(`connection ${this.id}: upstream terminated with unexpected error: ${statusName(status.code)}: ${status.details}`);
    // ending Envoy's stream cancels its receive, which Istio counts as Envoy's cancellation
    metrics.envoyConnectionTerminations.inc({ type: TerminationType.cancelled });
    // Envoy must see the stream end so that it reconnects and resends its full state
    if (graceful) this.close(undefined);
    else this.close(status.code === Status.OK ? { code: Status.INTERNAL, details: 'istiod ended the stream in the middle of a message' } : status);
  }

  /** istiod sent what no valid stream carries: said, counted as Istio's receive error would be, and the stream ended. */
  private upstreamBroke(code: number, details: string): void {
    this.current?.spool?.discard();
    this.current = undefined;
    metrics.istiodConnectionTerminations.inc({ type: TerminationType.error });
    metrics.envoyConnectionTerminations.inc({ type: TerminationType.cancelled });
    log.warn(`connection ${this.id}: upstream terminated with unexpected error: ${statusName(code)}: ${details}`);
    this.close({ code, details });
  }

  private onDownstreamGone(kind: StreamEnd, reason: string): void {
    if (this.closed) return;
    const expected = kind !== 'error';
    metrics.envoyConnectionTerminations.inc({ type: expected ? TerminationType.cancelled : TerminationType.error });
    if (expected) log.debug(`connection ${this.id}: downstream ${kind}: ${reason}`);
    else log.warn(`connection ${this.id}: downstream terminated with unexpected error: ${reason}`);
    // closing the upstream stream ends its receive with a cancellation, which Istio counts too
    if (this.upstream && this.upstreamConnected) metrics.istiodConnectionTerminations.inc({ type: TerminationType.cancelled });
    this.close(undefined);
  }

  /**
   * istiod cannot be reached at start: answer this stream from the last-known-good store and keep
   * dialling. Returns false when nothing is saved for this node (the stream then fails as usual).
   */
  private serveFromCache(reason: string): boolean {
    const entries = this.proxy.lastKnownGoodEntries(this.protocol.kind);
    if (entries.size === 0) return false;
    this.upstream = undefined;
    this.cache = new CacheResponder(entries, this.protocol.kind);
    this.proxy.servingFromCache(this.id, reason, this.cache.types);
    // the agent's own types (the DNS name table) are taken from the store too
    for (const typeUrl of this.proxy.agentTypes()) {
      const entry = entries.get(typeUrl);
      if (!entry) continue;
      const resources = this.protocol.kind === 'sotw' ? sotwResources(entry.payload) : deltaResources(entry.payload).flatMap((r) => (r.resource ? [r.resource] : []));
      void Promise.resolve()
        .then(() => this.proxy.handlerFor(typeUrl)?.handle(resources, entry.version))
        .catch((err: unknown) => log.warn(`last-known-good ${shortType(typeUrl)} not applied: ${(err as Error).message}`));
    }
    const replay = this.requestsBeforeFirstResponse ?? [];
    this.requestsBeforeFirstResponse = undefined;
    for (const msg of replay) this.answerFromCache(msg);
    this.scheduleProbe();
    return true;
  }

  private answerFromCache(msg: Buffer, req: RequestSummary = this.protocol.summarizeRequest(msg)): void {
    const cache = this.cache;
    if (!cache || this.closed) return;
    this.proxy.noteRequest(req.typeUrl, req.isNack, req.responseNonce);
    for (const a of cache.answer(req, msg)) {
      const { resourceCount } = this.protocol.summarizeResponse(a.message);
      this.proxy.noteResponse({ typeUrl: a.entry.typeUrl, nonce: a.nonce, version: a.entry.version, resourceCount }, a.message.length, 'last-known-good');
      this.downstream.writeMessage(a.message, () => undefined);
    }
  }

  /** While serving from the store: dial istiod again (backing off); once it answers, hand over. */
  private scheduleProbe(): void {
    const wait = Math.max(this.proxy.dialWaitMs(), 100);
    this.dialTimer = setTimeout(() => {
      this.dialTimer = undefined;
      if (this.closed) return;
      try {
        this.upstream = openUpstream(this.proxy.options.upstream, this.protocol.method, {
          onConnected: () => {
            this.proxy.dialSucceeded();
            log.info(`connection ${this.id}: istiod is reachable again: closing the stream so the client re-subscribes through it`);
            // Envoy keeps its configuration across ADS reconnects; istiod's answer then replaces the store
            this.close({ code: Status.UNAVAILABLE, details: 'istiod is reachable again: reconnect to receive its configuration' });
          },
          onData: () => undefined,
          onEnd: (st, connected) => {
            this.upstream = undefined;
            if (this.closed || connected) return;
            // each failed probe stands for one of the reconnects Envoy would make under Istio's agent
            metrics.istiodConnectionTerminations.inc({ type: TerminationType.error });
            this.proxy.dialFailed(st.details);
            log.debug(`connection ${this.id}: istiod still unreachable: ${st.details}`);
            this.scheduleProbe();
          },
        });
      } catch (err) {
        log.error(`connection ${this.id}: ${(err as Error).message}`);
        this.proxy.dialFailed((err as Error).message);
        this.scheduleProbe();
      }
    }, timerDelay(wait));
  }

  /** For /debug/syncz: where this stream's upstream is and why it is not being read, if it is not. */
  view(): ConnectionView {
    return {
      id: this.id,
      protocol: this.protocol.kind,
      upstream: this.cache ? 'last-known-good' : !this.upstream ? 'waiting to dial' : this.upstreamConnected ? 'connected' : 'dialling',
      pausedFor: [...this.pausedFor],
      unreadUpstreamBytes: this.deframer.bufferedBytes,
      streaming: this.current?.mode === 'stream',
      rewrites: this.rewritesQueued,
    };
  }

  /** Ends both sides; `status` undefined ends the downstream with OK. Idempotent. */
  /** A newer stream of Envoy's took over: ended as Istio ends it (its stop channel), both ends counted as cancelled. */
  replaced(): void {
    if (this.closed) return;
    if (this.upstream && this.upstreamConnected) metrics.istiodConnectionTerminations.inc({ type: TerminationType.cancelled });
    metrics.envoyConnectionTerminations.inc({ type: TerminationType.cancelled });
    this.close(undefined);
  }

  close(status: GrpcStatus | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    if (this.dialTimer) clearTimeout(this.dialTimer);
    this.waitingRequests = [];
    this.waitingAgentRequests = [];
    this.recorder?.close();
    this.current?.spool?.discard();
    this.releaseAfterStreamed();
    if (this.cache) {
      this.cache = undefined;
      this.proxy.servingFromCacheEnded(this.id);
    }
    // a push cut in the middle of being streamed must not be followed by a status (Envoy would
    // read a truncated message): the stream is reset instead
    const cutMidPush = this.current?.mode === 'stream';
    this.current = undefined;
    this.upstream?.close();
    if (cutMidPush) this.downstream.reset();
    else this.downstream.finish(status);
    this.proxy.connectionClosed(this);
  }
}

/** The largest message Istio's agent takes from istiod (grpc-go's limit, set to math.MaxInt32). */
const MAX_UPSTREAM_MESSAGE_BYTES = 2 ** 31 - 1;

export class XdsProxy {
  private server: GrpcUnixServer | undefined;
  private active: ProxyConnection | undefined;
  private readonly open = new Set<ProxyConnection>();
  private readonly handlers = new Map<string, AgentTypeHandler>();
  private readonly interceptors = new Map<string, ResponseInterceptor>();
  private readonly droppedTypes = new Set<string>();
  private readonly sync = new Map<string, TypeSyncState>();
  private largestMessage = 0;
  readonly gcPacer = new GcPacer(COLLECT_EVERY_RESPONSE_BYTES);
  private openConnections = 0;
  private readonly dialBackoff: Backoff;
  private failedDials = 0;
  private nextDialAt = 0;
  private keepaliveNow: KeepaliveOptions;
  /** Whether istiod has sent anything since the agent started (after that, no last-known-good serving). */
  istiodAnswered = false;
  /** Connections answered from the last-known-good store, and why. */
  private readonly servingCache = new Map<number, { since: string; reason: string }>();
  /** The debug port's request waiting for istiod's answer (one at a time). */
  private tapWaiter: { readonly typeUrl: string; readonly connection: ProxyConnection; readonly finish: (r: TapResult | undefined) => void } | undefined;
  private tapQueue: Promise<unknown> = Promise.resolve();

  constructor(readonly options: XdsProxyOptions) {
    this.dialBackoff = new Backoff({ maxMs: 15_000, ...options.dialBackoff });
    this.keepaliveNow = options.upstream.keepalive ?? ISTIO_KEEPALIVE;
  }

  /** Keepalive for the next upstream connection: Istio's, until istiod's ping policy asks for less. */
  get keepalive(): KeepaliveOptions {
    return this.keepaliveNow;
  }

  /**
   * istiod refused our pings as too frequent (GOAWAY "too_many_pings"): ping half as often on the
   * next connections, as grpc-go's client does, so the agent settles on what the server allows.
   */
  pingedTooOften(): void {
    const intervalMs = Math.min(this.keepaliveNow.intervalMs * 2, MAX_KEEPALIVE_INTERVAL_MS);
    if (intervalMs === this.keepaliveNow.intervalMs) return;
    this.keepaliveNow = { ...this.keepaliveNow, intervalMs };
    log.warn(`istiod sent GOAWAY "too_many_pings": keepalive pings every ${intervalMs} ms from the next connection`);
  }

  /** How long a new upstream dial should wait (0: dial now). */
  dialWaitMs(): number {
    return Math.max(0, this.nextDialAt - performance.now());
  }

  /** Consecutive upstream dials that did not reach istiod. */
  get dialFailures(): number {
    return this.failedDials;
  }

  /** Why the last dial failed, for the streams refused while the backoff runs. */
  lastDialError = '';

  dialFailed(reason: string): void {
    this.lastDialError = reason;
    this.failedDials++;
    this.nextDialAt = performance.now() + this.dialBackoff.next();
  }

  dialSucceeded(): void {
    this.failedDials = 0;
    this.nextDialAt = 0;
    this.dialBackoff.reset();
  }

  registerHandler(handler: AgentTypeHandler): void {
    this.handlers.set(handler.typeUrl, handler);
  }

  registerInterceptor(typeUrl: string, interceptor: ResponseInterceptor): void {
    this.interceptors.set(typeUrl, interceptor);
  }

  handlerFor(typeUrl: string): AgentTypeHandler | undefined {
    return this.handlers.get(typeUrl);
  }

  interceptorFor(typeUrl: string): ResponseInterceptor | undefined {
    return this.interceptors.get(typeUrl);
  }

  agentTypes(): string[] {
    return [...this.handlers.keys()];
  }

  /** The workload's health as last reported (ProxyConfig readinessProbe); sent on every new connection after its first LDS request. */
  workloadHealth: { readonly healthy: boolean; readonly message?: string | undefined } | undefined;

  /** A change of the workload's health: kept for new connections, and sent now on the active one. */
  reportHealth(health: { readonly healthy: boolean; readonly message?: string | undefined }): void {
    this.workloadHealth = health;
    this.active?.sendHealth();
  }

  lastKnownGoodEntries(protocol: 'sotw' | 'delta'): ReturnType<LastKnownGood['load']> {
    return this.options.lastKnownGood?.load(protocol) ?? new Map();
  }

  servingFromCache(connectionId: number, reason: string, types: readonly string[]): void {
    this.servingCache.set(connectionId, { since: isoUtc(Date.now()), reason });
    metrics.xdsServingLastKnownGood.set(1);
    log.warn(`connection ${connectionId}: istiod is unreachable at start (${reason}): serving the last-known-good configuration (${types.map(shortType).join(', ')}) from ${this.options.lastKnownGood?.directory} while dialling istiod`);
  }

  servingFromCacheEnded(connectionId: number): void {
    this.servingCache.delete(connectionId);
    if (this.servingCache.size === 0) metrics.xdsServingLastKnownGood.set(0);
  }

  /** The open downstream streams, for /debug/syncz. */
  connectionsView(): ConnectionView[] {
    return [...this.open].map((c) => c.view());
  }

  /** For /debug/syncz: whether the store is on, being served, and what it holds. */
  lastKnownGoodView(): Record<string, unknown> {
    const store = this.options.lastKnownGood;
    if (!store) return { enabled: false };
    const saved = (protocol: 'sotw' | 'delta'): Record<string, unknown> =>
      Object.fromEntries([...store.load(protocol)].map(([t, e]) => [t, { version: e.version, savedAt: e.savedAt, bytes: e.payload.length }]));
    return {
      enabled: true,
      directory: store.directory,
      serving: this.servingCache.size > 0,
      servingConnections: Object.fromEntries(this.servingCache),
      saved: { sotw: saved('sotw'), delta: saved('delta') },
    };
  }

  /** Per-type sync state, for /debug. */
  syncState(): ReadonlyMap<string, Readonly<TypeSyncState>> {
    return this.sync;
  }

  get connections(): number {
    return this.openConnections;
  }

  get largestMessageBytes(): number {
    return this.largestMessage;
  }

  async start(): Promise<void> {
    const server = new GrpcUnixServer(
      this.options.socketPath,
      new Map([
        [SOTW.method, (stream: ServerStream) => this.accept(stream, SOTW)],
        [DELTA.method, (stream: ServerStream) => this.accept(stream, DELTA)],
      ]),
      {
        name: 'xDS',
        log: (m) => log.info(m),
        logError: (m) => log.error(m),
        ...(this.options.maxRequestBytes !== undefined ? { maxRequestBytes: this.options.maxRequestBytes } : {}),
        ...(this.options.serverKeepalive ? { keepalive: this.options.serverKeepalive } : {}),
        ...(this.options.maxConcurrentStreams !== undefined ? { maxConcurrentStreams: this.options.maxConcurrentStreams } : {}),
      },
    );
    await server.start(this.options.listener);
    this.server = server;
    log.info(`xDS proxy listening on ${this.options.socketPath}, upstream ${this.options.upstream.address}`);
  }

  private accept(stream: ServerStream, protocol: XdsProtocol): void {
    const con = new ProxyConnection(this, stream, protocol);
    const previous = this.active;
    this.active = con;
    this.openConnections++;
    this.open.add(con);
    if (previous) {
      log.info(`connection ${previous.id} replaced by connection ${con.id}`);
      previous.replaced();
    }
    con.start();
  }

  connectionClosed(con: ProxyConnection): void {
    this.openConnections--;
    this.open.delete(con);
    if (this.active === con) this.active = undefined;
    // a debug request waiting on this stream gets no answer now (Istio: the stream's stop channel)
    if (this.tapWaiter?.connection === con) this.tapWaiter.finish(undefined);
  }

  /**
   * Istio's tapRequest: sends a debug request (istio.io/debug/...) to istiod on the current Envoy
   * stream's upstream and resolves with istiod's answer of that type, or undefined when none comes
   * within `timeoutMs` or the stream ends first. Requests go one at a time. Throws
   * TapNotConnectedError when no client is connected (there is no upstream to ask).
   */
  tapRequest(request: TapRequest, timeoutMs: number): Promise<TapResult | undefined> {
    const con = this.active;
    if (!con) return Promise.reject(new TapNotConnectedError('proxy not connected to Istiod'));
    const run = (): Promise<TapResult | undefined> =>
      new Promise((resolve) => {
        const finish = (r: TapResult | undefined): void => {
          clearTimeout(timer);
          if (this.tapWaiter?.finish === finish) this.tapWaiter = undefined;
          resolve(r);
        };
        const timer = setTimeout(() => finish(undefined), timerDelay(timeoutMs));
        this.tapWaiter = { typeUrl: request.typeUrl, connection: con, finish };
        const msg = con.protocol.kind === 'sotw' ? (request.sotwRequest ?? encodeSotwRequest({ typeUrl: request.typeUrl, responseNonce: '', resourceNames: request.resourceNames })) : encodeDeltaRequest({ typeUrl: request.typeUrl, responseNonce: '', subscribe: request.resourceNames });
        if (!con.sendAgentRequest(msg)) finish(undefined);
      });
    const result = this.tapQueue.then(run);
    this.tapQueue = result.catch(() => undefined);
    return result;
  }

  /** istiod answered a debug type: to the waiting debug request if it asked for that type. */
  forwardToTap(message: Buffer, protocol: 'sotw' | 'delta', typeUrl: string): void {
    const waiter = this.tapWaiter;
    if (!waiter) {
      log.info(`tap response "${typeUrl}" arrived too late; discarding`);
      return;
    }
    // an answer of another type is taken and dropped while the request keeps waiting, as in Istio
    if (waiter.typeUrl === typeUrl) waiter.finish({ message, protocol });
  }

  /** Envoy's answer counts for the last response only when it names that response's nonce. */
  noteRequest(typeUrl: string, isNack: boolean, responseNonce: string): void {
    const s = this.sync.get(typeUrl);
    if (s && s.lastAck === 'pending' && responseNonce === s.lastNonce) s.lastAck = isNack ? 'NACK' : 'ACK';
  }

  noteAgentAck(typeUrl: string, nackReason: string | undefined): void {
    const s = this.sync.get(typeUrl);
    if (!s) return;
    s.lastAck = nackReason === undefined ? 'ACK' : 'NACK';
    if (nackReason !== undefined) s.lastNackReason = nackReason;
  }

  noteResponse(summary: ResponseSummary, bytes: number, forwarding: 'streamed' | 'held' | 'last-known-good'): void {
    let s = this.sync.get(summary.typeUrl);
    if (!s) {
      s = { lastVersion: '', lastNonce: '', lastResources: 0, lastBytes: 0, responses: 0, lastAck: 'none' };
      this.sync.set(summary.typeUrl, s);
    }
    s.lastVersion = summary.version;
    s.lastNonce = summary.nonce;
    s.lastResources = summary.resourceCount;
    s.lastBytes = bytes;
    s.lastForwarding = forwarding;
    s.responses++;
    s.lastAck = 'pending';
  }

  noteMessageSize(bytes: number): void {
    metrics.xdsMessageBytes.observe(bytes);
    if (bytes > this.largestMessage) {
      this.largestMessage = bytes;
      metrics.xdsLargestMessageBytes.set(bytes);
    }
  }

  noteDroppedType(typeUrl: string): void {
    if (this.droppedTypes.has(typeUrl)) return;
    this.droppedTypes.add(typeUrl);
    log.error(`Skipping forwarding type url ${typeUrl} to Envoy as is not a valid Envoy type`);
  }

  /** Stops accepting, ends the active stream and closes the socket. Idempotent. */
  async close(): Promise<void> {
    this.active?.close(undefined);
    const server = this.server;
    this.server = undefined;
    await server?.close();
  }
}
