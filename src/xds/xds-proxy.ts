// The xDS proxy: Envoy (or a proxyless gRPC app) talks ADS to us on a unix socket; each of its
// streams gets a fresh upstream stream to istiod. Messages pass through as the bytes that came
// in; only the type URL, nonce and version are read off the wire (see wire.ts). Responses of a
// few types are handled here instead: agent-consumed types (DNS name table, ProxyConfig) are
// ACKed/NACKed by the agent and never reach Envoy, ECDS goes through an async rewrite (Wasm),
// and types Envoy does not know are dropped.
//
// Ordering: responses are processed one at a time, in arrival order, even when a rewrite is
// async; the next response waits. Backpressure: at most one response is being written to Envoy
// and one queued; beyond that the upstream stream is paused, so a slow Envoy slows istiod's
// stream instead of growing our memory.

import * as grpc from '@grpc/grpc-js';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { metrics } from '../metrics/registry.js';
import { logger } from '../util/logger.js';
import { collectGarbageNow, releaseDecoderChunksEarly } from './grpc-memory.js';
import { DELTA, SOTW, type XdsProtocol } from './protocol.js';
import { isEnvoyType, shortType, TypeUrl } from './type-urls.js';
import { openUpstream, type UpstreamOptions, type UpstreamStream } from './upstream.js';
import { deltaResources, sotwResources, type ResponseSummary } from './wire.js';

const log = logger('xdsproxy');

releaseDecoderChunksEarly();

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

export interface TypeSyncState {
  lastVersion: string;
  lastNonce: string;
  lastResources: number;
  lastBytes: number;
  responses: number;
  /** What Envoy (or the agent, for agent types) answered to the last response. */
  lastAck: 'ACK' | 'NACK' | 'pending' | 'none';
  lastNackReason?: string;
}

export interface XdsProxyOptions {
  readonly socketPath: string;
  readonly upstream: UpstreamOptions;
}

const identity = (b: Buffer): Buffer => b;
const toBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** gRPC status for the outcome of a stream: classify by code, never by message text. */
function isExpectedEnd(code: number | undefined): boolean {
  return code === undefined || code === grpc.status.OK || code === grpc.status.CANCELLED;
}

let connectionIds = 0;

/** Pushes from this size on have their receive buffers collected before they are forwarded. */
const LARGE_MESSAGE_BYTES = 8 * 1024 * 1024;

class ProxyConnection {
  readonly id = ++connectionIds;
  private upstream: UpstreamStream | undefined;
  private readonly queue: Buffer[] = [];
  private pumping = false;
  private closed = false;
  private initialRequestsSent = false;
  private readonly abort = new AbortController();
  /** Last version Envoy ACKed, per type (SotW): what a NACK by the agent reports. */
  private readonly ackedVersion = new Map<string, string>();

  constructor(
    private readonly proxy: XdsProxy,
    readonly protocol: XdsProtocol,
    private readonly downstream: grpc.ServerDuplexStream<Buffer, Buffer>,
  ) {}

  start(): void {
    const ds = this.downstream;
    ds.on('error', (err: grpc.ServiceError) => this.onDownstreamGone('error', err));
    ds.on('cancelled', () => this.onDownstreamGone('cancel'));
    ds.on('end', () => this.onDownstreamGone('end'));
    let up: UpstreamStream;
    try {
      up = openUpstream(this.proxy.options.upstream, this.protocol.method);
    } catch (err) {
      metrics.istiodConnectionFailures.inc();
      log.error(`failed to connect to upstream ${this.proxy.options.upstream.address}: ${(err as Error).message}`);
      this.finishDownstream({ code: grpc.status.UNAVAILABLE, details: (err as Error).message });
      return;
    }
    this.upstream = up;
    log.info(`connection ${this.id}: ${this.protocol.kind} stream accepted on the xDS socket, connected upstream to ${this.proxy.options.upstream.address}`);
    up.call.on('data', (msg: Buffer) => this.onUpstreamResponse(msg));
    up.call.on('error', (err: grpc.ServiceError) => this.onUpstreamGone(err.code, err.details));
    up.call.on('status', (st: grpc.StatusObject) => {
      if (st.code === grpc.status.OK) this.onUpstreamGone(st.code, st.details);
    });
    ds.on('data', (msg: Buffer) => this.onDownstreamRequest(msg));
  }

  // Envoy -> istiod
  private onDownstreamRequest(msg: Buffer): void {
    if (this.closed || !this.upstream) return;
    const req = this.protocol.summarizeRequest(msg);
    metrics.xdsProxyRequests.inc();
    this.proxy.noteRequest(req.typeUrl, req.isNack);
    if (this.protocol.kind === 'sotw' && req.versionInfo && !req.isNack) this.ackedVersion.set(req.typeUrl, req.versionInfo);
    log.debug(`connection ${this.id}: request ${shortType(req.typeUrl)} nonce=${req.responseNonce}${req.isNack ? ' NACK' : ''}`);
    this.sendUpstream(msg);
    if (!this.initialRequestsSent && req.typeUrl === TypeUrl.Listener) {
      this.initialRequestsSent = true;
      // agent-consumed types are subscribed on the first LDS request, as Istio does
      for (const typeUrl of this.proxy.agentTypes()) this.sendUpstream(this.protocol.encodeRequest({ typeUrl, responseNonce: '' }));
    }
  }

  private sendUpstream(msg: Uint8Array): void {
    const call = this.upstream?.call;
    if (!call || this.closed) return;
    if (!call.write(msg)) {
      // istiod is not reading: stop reading Envoy until it does
      this.downstream.pause();
      call.once('drain', () => this.downstream.resume());
    }
  }

  // istiod -> Envoy
  private onUpstreamResponse(msg: Buffer): void {
    if (this.closed) return;
    metrics.xdsProxyResponses.inc();
    this.proxy.noteMessageSize(msg.length);
    if (msg.length >= LARGE_MESSAGE_BYTES) collectGarbageNow();
    this.queue.push(msg);
    if (this.queue.length >= 2) this.upstream?.call.pause();
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.closed && this.queue.length > 0) {
        const msg = this.queue.shift()!;
        await this.handleResponse(msg);
        if (this.queue.length < 2) this.upstream?.call.resume();
      }
    } catch (err) {
      log.error(`connection ${this.id}: ${(err as Error).message}`);
      this.close({ code: grpc.status.INTERNAL, details: (err as Error).message });
    } finally {
      this.pumping = false;
    }
  }

  private async handleResponse(msg: Buffer): Promise<void> {
    const summary = this.protocol.summarizeResponse(msg);
    const { typeUrl } = summary;
    this.proxy.noteResponse(summary, msg.length);
    log.debug(`connection ${this.id}: response ${shortType(typeUrl)} resources=${summary.resourceCount} nonce=${summary.nonce}`);

    const handler = this.proxy.handlerFor(typeUrl);
    if (handler) {
      const resources =
        this.protocol.kind === 'sotw'
          ? sotwResources(msg)
          : deltaResources(msg).flatMap((r) => (r.resource ? [r.resource] : []));
      let error: { code: number; message: string } | undefined;
      try {
        await handler.handle(resources, summary.version);
      } catch (err) {
        error = { code: grpc.status.INTERNAL, message: (err as Error).message };
        log.warn(`NACK ${shortType(typeUrl)} version ${summary.version}: ${(err as Error).message}`);
      }
      this.proxy.noteAgentAck(typeUrl, error?.message);
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
        this.sendUpstream(this.protocol.encodeRequest({ typeUrl, responseNonce: summary.nonce, versionInfo, error: { code: grpc.status.INTERNAL, message: action.reason } }));
        return;
      }
      out = action.message;
    } else if (!isEnvoyType(typeUrl)) {
      this.proxy.noteDroppedType(typeUrl);
      return;
    }
    await this.writeDownstream(out);
    // the assembled push and grpc-js' framed copy are garbage now; free them before the next
    // push starts arriving, so that pushes do not stack up in memory
    if (msg.length >= LARGE_MESSAGE_BYTES) collectGarbageNow();
  }

  private writeDownstream(msg: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      const signal = this.abort.signal;
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      // a stream torn down mid-write may never call back: closing releases the wait
      signal.addEventListener('abort', done, { once: true });
      // waiting for the write callback keeps at most one message in flight toward Envoy
      this.downstream.write(toBuffer(msg), done);
    });
  }

  private onUpstreamGone(code: number | undefined, details: string | undefined): void {
    if (this.closed) return;
    const expected = isExpectedEnd(code);
    metrics.istiodConnectionTerminations.inc({ type: expected ? 'cancel' : 'error' });
    if (expected) log.info(`connection ${this.id}: upstream closed the stream`);
    else log.warn(`connection ${this.id}: upstream terminated with unexpected error: ${grpc.status[code ?? 2]}: ${details ?? ''}`);
    // Envoy must see the stream end so that it reconnects and resends its full state
    this.close(expected ? undefined : { code: code ?? grpc.status.UNAVAILABLE, details: details ?? 'upstream error' });
  }

  private onDownstreamGone(kind: 'error' | 'cancel' | 'end', err?: grpc.ServiceError): void {
    if (this.closed) return;
    const expected = kind !== 'error' || isExpectedEnd(err?.code);
    metrics.envoyConnectionTerminations.inc({ type: expected ? 'cancel' : 'error' });
    if (expected) log.debug(`connection ${this.id}: downstream ${kind}`);
    else log.warn(`connection ${this.id}: downstream terminated with unexpected error: ${err?.message ?? ''}`);
    this.close(undefined);
  }

  /** Ends both sides; `status` undefined ends the downstream with OK. Idempotent. */
  close(status: { code: number; details: string } | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.queue.length = 0;
    this.upstream?.close();
    this.finishDownstream(status);
    this.proxy.connectionClosed(this);
  }

  private finishDownstream(status: { code: number; details: string } | undefined): void {
    this.closed = true;
    const ds = this.downstream;
    if (ds.destroyed || ds.writableEnded) return;
    try {
      if (status) ds.emit('error', { code: status.code, details: status.details, metadata: new grpc.Metadata() });
      else ds.end();
    } catch {
      /* the stream went away meanwhile */
    }
  }
}

export class XdsProxy {
  private server: grpc.Server | undefined;
  private active: ProxyConnection | undefined;
  private readonly handlers = new Map<string, AgentTypeHandler>();
  private readonly interceptors = new Map<string, ResponseInterceptor>();
  private readonly droppedTypes = new Set<string>();
  private readonly sync = new Map<string, TypeSyncState>();
  private largestMessage = 0;
  private openConnections = 0;

  constructor(readonly options: XdsProxyOptions) {}

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
    const path = this.options.socketPath;
    mkdirSync(dirname(path), { recursive: true });
    rmSync(path, { force: true }); // grpc-js does not remove a stale socket file
    const server = new grpc.Server({
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.enable_channelz': 0,
    });
    const method = (protocol: XdsProtocol): grpc.MethodDefinition<Buffer, Buffer> => ({
      path: protocol.method,
      requestStream: true,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    });
    server.addService(
      { StreamAggregatedResources: method(SOTW), DeltaAggregatedResources: method(DELTA) },
      {
        StreamAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.accept(SOTW, call),
        DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => this.accept(DELTA, call),
      },
    );
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    chmodSync(path, 0o666); // Istio's uds listener: the socket is shared with Envoy's user
    this.server = server;
    log.info(`xDS proxy listening on ${path}, upstream ${this.options.upstream.address}`);
  }

  private accept(protocol: XdsProtocol, call: grpc.ServerDuplexStream<Buffer, Buffer>): void {
    const con = new ProxyConnection(this, protocol, call);
    const previous = this.active;
    this.active = con;
    this.openConnections++;
    if (previous) {
      log.info(`connection ${previous.id} replaced by connection ${con.id}`);
      previous.close(undefined);
    }
    con.start();
  }

  connectionClosed(con: ProxyConnection): void {
    this.openConnections--;
    if (this.active === con) this.active = undefined;
  }

  noteRequest(typeUrl: string, isNack: boolean): void {
    const s = this.sync.get(typeUrl);
    if (s && s.lastAck === 'pending') s.lastAck = isNack ? 'NACK' : 'ACK';
  }

  noteAgentAck(typeUrl: string, nackReason: string | undefined): void {
    const s = this.sync.get(typeUrl);
    if (!s) return;
    s.lastAck = nackReason === undefined ? 'ACK' : 'NACK';
    if (nackReason !== undefined) s.lastNackReason = nackReason;
  }

  noteResponse(summary: ResponseSummary, bytes: number): void {
    let s = this.sync.get(summary.typeUrl);
    if (!s) {
      s = { lastVersion: '', lastNonce: '', lastResources: 0, lastBytes: 0, responses: 0, lastAck: 'none' };
      this.sync.set(summary.typeUrl, s);
    }
    s.lastVersion = summary.version;
    s.lastNonce = summary.nonce;
    s.lastResources = summary.resourceCount;
    s.lastBytes = bytes;
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
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1000);
      timer.unref();
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    rmSync(this.options.socketPath, { force: true });
  }
}
