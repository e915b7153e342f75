// envoy.service.discovery.v3.AggregatedDiscoveryService: StreamAggregatedResources (state of the
// world) and DeltaAggregatedResources (incremental), with the request handling istiod uses
// (pkg/xds ShouldRespond) and the xDS protocol's nonce rules.
//
// SotW, per stream and type:
//   - a request without a nonce (first request of a type, or a reconnect) opens the watch and is
//     answered with the current resources: all of them for a wildcard subscription (CDS/LDS with no
//     names, or "*"), the named ones otherwise;
//   - a request carrying error_detail is a NACK of the response with that nonce: recorded, never
//     answered (the rejected version is not re-sent until the resources change);
//   - a request whose nonce is not the latest one sent for the type is stale and ignored;
//   - otherwise it ACKs the response with that nonce; if the resource names changed, a response
//     follows (for named types only when names were added);
//   - an empty name list for a named type unsubscribes.
// Delta, per stream and type: the server remembers the version of every resource the client has
// (from initial_resource_versions, then from what it sent) and only ever sends what differs;
// resources that disappeared are listed in removed_resources; subscribe/unsubscribe edit the
// subscription ("*" = wildcard; an empty first subscribe of CDS/LDS is the legacy wildcard).
// Subscription changes are honoured whatever the nonce; nonces only locate ACKs and NACKs.
//
// EDS and RDS names are always answered, as istiod answers them: a subscribed name the store has no
// resource for gets an empty ClusterLoadAssignment / RouteConfiguration (ANSWER_EVERY_NAME_TYPES),
// so an Envoy warming its clusters and listeners on them completes its initialisation.
//
// When resources change, every stream watching the type gets a response: SotW wildcard streams
// always, SotW named streams when one of their names changed, Delta streams when their diff is
// not empty. Changed types are pushed in CDS, EDS, LDS, RDS, ... order.

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import type { JsonValue } from '@bufbuild/protobuf';
import { DEBUG_TYPE, SYNCZ, debugResources, type DebugStreamView } from './debug.js';
import { EMPTY_NAME_TABLE, emptyAnswer, type ChangeEvent, type ResourceStore, type StoredResource } from './resources.js';
import {
  PUSH_ORDER,
  TypeUrl,
  createMessage,
  normalizeTypeUrl,
  messageToJson,
  shortType,
  xdsSchemas,
  type AnyMsg,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DiscoveryRequest,
  type DiscoveryResponse,
} from './xds-protos.js';

export type StreamKind = 'sotw' | 'delta';

export interface AckRecord {
  readonly streamId: string;
  readonly kind: StreamKind;
  readonly typeUrl: string;
  /** The version_info (Delta: system_version_info) of the response the client accepted. */
  readonly version: string;
  readonly nonce: string;
  readonly at: number;
}

export interface NackRecord {
  readonly streamId: string;
  readonly kind: StreamKind;
  readonly typeUrl: string;
  /** The version of the rejected response ('' when the nonce is unknown). */
  readonly version: string;
  readonly nonce: string;
  /** SotW: the version_info the client sent (its last accepted version). */
  readonly clientVersion: string;
  readonly errorDetail: { readonly code: number; readonly message: string };
  /** The nonce was not the latest one sent for the type. */
  readonly stale: boolean;
  readonly at: number;
}

export type RequestOutcome = 'initial' | 'ack' | 'nack' | 'stale' | 'unsubscribe' | 'subscription-change' | 'invalid' | 'debug';

export interface RequestRecord {
  readonly at: number;
  readonly typeUrl: string;
  readonly responseNonce: string;
  /** SotW */
  readonly versionInfo?: string;
  readonly resourceNames?: readonly string[];
  /** Delta */
  readonly subscribe?: readonly string[];
  readonly unsubscribe?: readonly string[];
  readonly initialResourceVersions?: Readonly<Record<string, string>>;
  readonly errorDetail?: { readonly code: number; readonly message: string };
  outcome?: RequestOutcome;
}

export interface ResponseRecord {
  readonly at: number;
  readonly typeUrl: string;
  readonly version: string;
  readonly nonce: string;
  readonly resourceCount: number;
  /** The first 100 resource names. */
  readonly resourceNames: readonly string[];
  /** Delta only. */
  readonly removed?: readonly string[];
  /** Sum of the serialized resource sizes. */
  readonly bytes: number;
  /** Sent by pushNow() rather than by a request or a change. */
  readonly forced: boolean;
}

export interface SubscriptionInfo {
  readonly wildcard: boolean;
  readonly names: readonly string[];
  readonly lastNonceSent?: string;
  readonly lastVersionSent?: string;
  readonly ackedVersion?: string;
  readonly nack?: { readonly version: string; readonly code: number; readonly message: string };
  /** Delta: the version of each resource the client has, as far as the server knows. */
  readonly clientVersions?: Readonly<Record<string, string>>;
}

export interface StreamInfo {
  readonly id: string;
  readonly kind: StreamKind;
  readonly peer: string;
  /** The URI SAN of the client certificate the peer presented and the root verified, if any. */
  readonly peerIdentity?: string;
  /** The stream's gRPC request metadata (headers); binary (-bin) values are base64. */
  readonly metadata: Readonly<Record<string, readonly string[]>>;
  /** The Node of the first request that carried one, as proto3 JSON (snake_case). */
  readonly node?: JsonValue;
  readonly openedAt: number;
  readonly closedAt?: number;
  readonly closeReason?: string;
  readonly requestCount: number;
  /** The last 200 requests. */
  readonly requests: readonly RequestRecord[];
  readonly lastRequest?: RequestRecord;
  readonly lastRequestByType: Readonly<Record<string, RequestRecord>>;
  /** The last 200 responses. */
  readonly responses: readonly ResponseRecord[];
  readonly responseCount: number;
  readonly subscriptions: Readonly<Record<string, SubscriptionInfo>>;
}

export interface RejectedStream {
  readonly kind: StreamKind;
  readonly peer: string;
  readonly metadata: Readonly<Record<string, readonly string[]>>;
  readonly reason: string;
  readonly at: number;
}

export interface AdsServerOptions {
  readonly store: ResourceStore;
  readonly isWildcardType: (typeUrl: string) => boolean;
  /** Named types whose every subscribed name is answered, with an empty resource when the store has none (istiod: EDS, RDS). */
  readonly answersEveryName: (typeUrl: string) => boolean;
  /** Returns why the call is refused, or undefined to accept it. */
  readonly authorize: (md: grpc.Metadata) => string | undefined;
  readonly log: (msg: string) => void;
  readonly controlPlaneId: string;
}

const KEEP_RECORDS = 200;

function pushCapped<T>(list: T[], v: T, cap = KEEP_RECORDS): void {
  list.push(v);
  if (list.length > cap) list.splice(0, list.length - cap);
}

export function metadataRecord(md: grpc.Metadata): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, vals] of Object.entries(md.toJSON())) {
    out[k] = vals.map((v) => (Buffer.isBuffer(v) ? v.toString('base64') : String(v)));
  }
  return out;
}

interface SotwTypeState {
  names: Set<string>;
  wildcard: boolean;
  nonceSent?: string;
  versionSent?: string;
  sentAt?: number;
  ackedNonce?: string;
  readonly sentVersions: Map<string, string>;
  ackedVersion?: string;
  nack?: { version: string; code: number; message: string };
}

interface DeltaTypeState {
  readonly subscribed: Set<string>;
  wildcard: boolean;
  readonly known: Map<string, string>;
  readonly sentVersions: Map<string, string>;
  nonceSent?: string;
  versionSent?: string;
  sentAt?: number;
  ackedNonce?: string;
  ackedVersion?: string;
  nack?: { version: string; code: number; message: string };
}

type AnyCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse> | grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>;

class StreamBase {
  readonly openedAt = Date.now();
  closedAt?: number;
  closeReason?: string;
  node?: JsonValue;
  requestCount = 0;
  responseCount = 0;
  readonly requests: RequestRecord[] = [];
  readonly lastRequestByType = new Map<string, RequestRecord>();
  readonly responses: ResponseRecord[] = [];
  private nonceCounter = 0;
  private readonly noncePrefix = randomBytes(4).toString('hex');
  /** Read at open: the connection may be gone by the time the stream is inspected. */
  readonly peerIdentity: string | undefined;

  constructor(
    readonly id: string,
    readonly kind: StreamKind,
    readonly call: AnyCall,
    readonly metadata: Record<string, string[]>,
  ) {
    this.peerIdentity = peerIdentityOf(call);
  }

  get open(): boolean {
    return this.closedAt === undefined;
  }

  nextNonce(): string {
    return `${this.noncePrefix}-${++this.nonceCounter}`;
  }

  record(req: RequestRecord): void {
    this.requestCount++;
    pushCapped(this.requests, req);
    this.lastRequestByType.set(req.typeUrl, req);
  }
}

class SotwStream extends StreamBase {
  readonly types = new Map<string, SotwTypeState>();
}

class DeltaStream extends StreamBase {
  readonly types = new Map<string, DeltaTypeState>();
}

type Stream = SotwStream | DeltaStream;

function rememberNonce(map: Map<string, string>, nonce: string, version: string): void {
  map.set(nonce, version);
  if (map.size > 64) map.delete(map.keys().next().value!);
}

export class AdsServer extends EventEmitter<{ update: [] }> {
  private nextId = 1;
  private readonly openStreams = new Map<string, Stream>();
  private readonly closedStreams: Stream[] = [];
  readonly ackLog: AckRecord[] = [];
  readonly nackLog: NackRecord[] = [];
  readonly rejected: RejectedStream[] = [];
  private readonly pending = new Map<string, { changed: Set<string>; removed: Set<string> }>();
  private flushScheduled = false;
  private debugAnswers = 0;
  private debugDelayMs = 0;
  private holding = 0;
  private closed = false;
  private readonly unsubscribeStore: () => void;
  /** Empty resources made for names the store lacks, by type URL and name (they never change). */
  private readonly emptyResources = new Map<string, Map<string, StoredResource>>();

  constructor(private readonly opts: AdsServerOptions) {
    super();
    this.setMaxListeners(0);
    this.unsubscribeStore = opts.store.onChange((events) => this.onStoreChange(events));
  }

  implementation(): grpc.UntypedServiceImplementation {
    return {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.handleSotw(call),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => this.handleDelta(call),
    };
  }

  // ------------------------------------------------------------------------------------------
  // Inspection

  streams(opts: { includeClosed?: boolean } = {}): StreamInfo[] {
    const all: Stream[] = opts.includeClosed ? [...this.closedStreams, ...this.openStreams.values()] : [...this.openStreams.values()];
    return all.sort((a, b) => a.openedAt - b.openedAt).map((s) => this.info(s));
  }

  stream(id: string): StreamInfo | undefined {
    const s = this.openStreams.get(id) ?? this.closedStreams.find((c) => c.id === id);
    return s && this.info(s);
  }

  private info(s: Stream): StreamInfo {
    const subscriptions: Record<string, SubscriptionInfo> = {};
    if (s instanceof SotwStream) {
      for (const [t, st] of s.types) {
        subscriptions[t] = {
          wildcard: st.wildcard,
          names: [...st.names],
          lastNonceSent: st.nonceSent,
          lastVersionSent: st.versionSent,
          ackedVersion: st.ackedVersion,
          nack: st.nack && { ...st.nack },
        };
      }
    } else {
      for (const [t, st] of s.types) {
        subscriptions[t] = {
          wildcard: st.wildcard,
          names: [...st.subscribed],
          lastNonceSent: st.nonceSent,
          lastVersionSent: st.versionSent,
          ackedVersion: st.ackedVersion,
          nack: st.nack && { ...st.nack },
          clientVersions: Object.fromEntries(st.known),
        };
      }
    }
    return {
      id: s.id,
      kind: s.kind,
      peer: s.call.getPeer(),
      peerIdentity: s.peerIdentity,
      metadata: s.metadata,
      node: s.node,
      openedAt: s.openedAt,
      closedAt: s.closedAt,
      closeReason: s.closeReason,
      requestCount: s.requestCount,
      requests: [...s.requests],
      lastRequest: s.requests[s.requests.length - 1],
      lastRequestByType: Object.fromEntries(s.lastRequestByType),
      responses: [...s.responses],
      responseCount: s.responseCount,
      subscriptions,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Pushes

  /** Runs fn without pushing the changes it makes; they go out with pushNow() or the next push. */
  hold<T>(fn: () => T): T {
    this.holding++;
    try {
      return fn();
    } finally {
      this.holding--;
    }
  }

  private onStoreChange(events: readonly ChangeEvent[]): void {
    for (const e of events) {
      let p = this.pending.get(e.typeUrl);
      if (!p) this.pending.set(e.typeUrl, (p = { changed: new Set(), removed: new Set() }));
      for (const n of e.changed) {
        p.changed.add(n);
        p.removed.delete(n);
      }
      for (const n of e.removed) {
        p.removed.add(n);
        p.changed.delete(n);
      }
    }
    if (this.holding > 0 || this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private orderedTypes(types: Iterable<string>): string[] {
    const rank = (t: string) => {
      const i = PUSH_ORDER.indexOf(t);
      return i < 0 ? PUSH_ORDER.length : i;
    };
    return [...types].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Pushes pending changes now. */
  flush(): void {
    if (this.closed) return;
    const pending = new Map(this.pending);
    this.pending.clear();
    for (const typeUrl of this.orderedTypes(pending.keys())) {
      const p = pending.get(typeUrl)!;
      for (const s of this.openStreams.values()) {
        if (s instanceof SotwStream) {
          const st = s.types.get(typeUrl);
          if (!st) continue;
          if (st.wildcard || [...p.changed, ...p.removed].some((n) => st.names.has(n))) this.sendSotw(s, typeUrl, false);
        } else if (s.types.has(typeUrl)) {
          this.sendDelta(s, typeUrl, { forced: false, respondEmpty: false });
        }
      }
    }
  }

  /**
   * Sends every watched type (or the given ones) to every open stream now, whatever was ACKed or
   * NACKed before. SotW streams get their full current state; Delta streams get every resource
   * in their subscription again. Returns the number of responses sent.
   */
  pushNow(typeUrls?: readonly string[]): number {
    // pending changes of the pushed types go out with the forced push itself (one response each)
    if (typeUrls) for (const t of typeUrls) this.pending.delete(t);
    else this.pending.clear();
    this.flush();
    let sent = 0;
    for (const s of this.openStreams.values()) {
      const types = this.orderedTypes(typeUrls ?? s.types.keys());
      for (const t of types) {
        if (!s.types.has(t)) continue;
        if (s instanceof SotwStream) sent += this.sendSotw(s, t, true) ? 1 : 0;
        else sent += this.sendDelta(s, t, { forced: true, respondEmpty: true }) ? 1 : 0;
      }
    }
    return sent;
  }

  /** Ends every open stream with the given status (clients are expected to reconnect). */
  disconnectAll(code: grpc.status = grpc.status.UNAVAILABLE, details = 'control plane closed the stream'): number {
    const streams = [...this.openStreams.values()];
    for (const s of streams) this.endStream(s, code, details);
    return streams.length;
  }

  /** Ends one stream with the given status. */
  disconnect(id: string, code: grpc.status = grpc.status.UNAVAILABLE, details = 'control plane closed the stream'): boolean {
    const s = this.openStreams.get(id);
    if (!s) return false;
    this.endStream(s, code, details);
    return true;
  }

  private endStream(s: Stream, code: grpc.status, details: string): void {
    this.markClosed(s, `server: ${grpc.status[code]} ${details}`);
    try {
      s.call.emit('error', { code, details, metadata: new grpc.Metadata() });
    } catch {
      // already gone
    }
  }

  close(): void {
    this.closed = true;
    this.unsubscribeStore();
    this.disconnectAll(grpc.status.UNAVAILABLE, 'control plane shutting down');
  }

  /**
   * What a wildcard subscription gets: every stored resource, and for the name table with none
   * stored, istiod's empty one (its NDS generator always sends a table; an agent with DNS capture
   * stays not ready until one arrives).
   */
  private wildcardResources(typeUrl: string): StoredResource[] {
    const all = this.opts.store.all(typeUrl);
    if (all.length > 0 || normalizeTypeUrl(typeUrl) !== TypeUrl.NameTable) return all;
    return [EMPTY_NAME_TABLE];
  }

  /** The resource a named subscription gets for `name`: the stored one, else istiod's empty answer where istiod gives one. */
  private lookup(typeUrl: string, name: string): StoredResource | undefined {
    const stored = this.opts.store.get(typeUrl, name);
    if (!stored && name === EMPTY_NAME_TABLE.name && this.wildcardResources(typeUrl)[0] === EMPTY_NAME_TABLE) return EMPTY_NAME_TABLE;
    if (stored || !this.opts.answersEveryName(typeUrl)) return stored;
    let byName = this.emptyResources.get(typeUrl);
    if (!byName) this.emptyResources.set(typeUrl, (byName = new Map()));
    let empty = byName.get(name);
    if (!empty) byName.set(name, (empty = emptyAnswer(typeUrl, name)));
    return empty;
  }

  // ------------------------------------------------------------------------------------------
  // Stream plumbing

  private accept(kind: StreamKind, call: AnyCall): Stream | undefined {
    const metadata = metadataRecord(call.metadata);
    const refusal = this.closed ? 'control plane shutting down' : this.opts.authorize(call.metadata);
    if (refusal) {
      pushCapped(this.rejected, { kind, peer: call.getPeer(), metadata, reason: refusal, at: Date.now() });
      this.opts.log(`ads: refused ${kind} stream from ${call.getPeer()}: ${refusal}`);
      call.emit('error', { code: this.closed ? grpc.status.UNAVAILABLE : grpc.status.UNAUTHENTICATED, details: refusal, metadata: new grpc.Metadata() });
      this.emit('update');
      return undefined;
    }
    const id = `${kind}-${this.nextId++}`;
    const s = kind === 'sotw' ? new SotwStream(id, kind, call, metadata) : new DeltaStream(id, kind, call, metadata);
    this.openStreams.set(id, s);
    this.opts.log(`ads: ${id} connected from ${call.getPeer()}${s.peerIdentity ? ` as ${s.peerIdentity}` : ''}`);
    const onGone = (reason: string) => () => this.markClosed(s, reason);
    call.on('cancelled', onGone('cancelled by client'));
    call.on('error', (err: Error) => this.markClosed(s, `error: ${err.message}`));
    call.on('close', onGone('closed'));
    call.on('end', () => {
      this.markClosed(s, 'client half-closed');
      try {
        call.end();
      } catch {
        // ignore
      }
    });
    this.emit('update');
    return s;
  }

  private markClosed(s: Stream, reason: string): void {
    if (!s.open) return;
    s.closedAt = Date.now();
    s.closeReason = reason;
    this.openStreams.delete(s.id);
    pushCapped(this.closedStreams, s, 1000);
    this.opts.log(`ads: ${s.id} closed (${reason})`);
    this.emit('update');
  }

  private captureNode(s: Stream, node: DiscoveryRequest['node']): void {
    if (s.node === undefined && node) {
      try {
        s.node = messageToJson(xdsSchemas().Node, node);
      } catch {
        s.node = null;
      }
    }
  }

  private write(s: Stream, msg: DiscoveryResponse | DeltaDiscoveryResponse): boolean {
    if (!s.open || s.call.cancelled || s.call.writableEnded || s.call.destroyed) return false;
    try {
      (s.call as grpc.ServerDuplexStream<unknown, unknown>).write(msg);
      return true;
    } catch (err) {
      this.markClosed(s, `write failed: ${(err as Error).message}`);
      return false;
    }
  }

  private packAny(r: StoredResource): AnyMsg {
    return createMessage<AnyMsg>(xdsSchemas().Any, { typeUrl: r.typeUrl, value: r.binary });
  }

  private controlPlane() {
    return { identifier: this.opts.controlPlaneId };
  }

  // ------------------------------------------------------------------------------------------
  // Debug types (istio.io/debug/...)

  private debugView(s: Stream): DebugStreamView {
    const watched = [...s.types].map(([typeUrl, st]) => ({
      typeUrl,
      wildcard: st.wildcard,
      names: [...('names' in st ? st.names : st.subscribed)],
      ...(st.nonceSent !== undefined ? { nonceSent: st.nonceSent } : {}),
      ...(st.ackedNonce !== undefined ? { nonceAcked: st.ackedNonce } : {}),
      ...(st.sentAt !== undefined ? { lastSentAt: st.sentAt } : {}),
      ...(st.nack ? { nack: st.nack } : {}),
    }));
    return { ...(s.node !== undefined ? { node: s.node } : {}), watched };
  }

  /** Delays the answers to debug requests (a slow istiod). */
  setDebugDelay(ms: number): void {
    this.debugDelayMs = ms;
  }

  private sendDebug(s: Stream, typeUrl: string, names: readonly string[]): void {
    if (this.debugDelayMs > 0) {
      setTimeout(() => this.answerDebug(s, typeUrl, names), this.debugDelayMs).unref();
      return;
    }
    this.answerDebug(s, typeUrl, names);
  }

  private answerDebug(s: Stream, typeUrl: string, names: readonly string[]): void {
    const found = debugResources(typeUrl, names, this.debugView(s), [...this.openStreams.values()].map((x) => this.debugView(x)), this.opts.store);
    const version = `${new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')}/${++this.debugAnswers}`;
    const nonce = s.nextNonce();
    // istiod names itself only in syncz answers (ControlPlane(typeURL))
    const controlPlane = typeUrl === SYNCZ ? { controlPlane: this.controlPlane() } : {};
    const packed = (a: AnyMsg) => createMessage<AnyMsg>(xdsSchemas().Any, a);
    const resp =
      s instanceof SotwStream
        ? createMessage<DiscoveryResponse>(xdsSchemas().DiscoveryResponse, { versionInfo: version, resources: found.map((r) => packed(r.resource)), typeUrl, nonce, ...controlPlane })
        : createMessage<DeltaDiscoveryResponse>(xdsSchemas().DeltaDiscoveryResponse, {
            systemVersionInfo: version,
            resources: found.map((r) => createMessage(xdsSchemas().Resource, { name: r.name, resource: packed(r.resource) })),
            typeUrl,
            nonce,
            ...controlPlane,
          });
    if (this.write(s, resp)) this.opts.log(`ads: ${s.id} debug ${typeUrl}${names.length ? ` ${names.join(',')}` : ''}: ${found.length} resources`);
  }

  // ------------------------------------------------------------------------------------------
  // State of the world

  private handleSotw(call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>): void {
    const s = this.accept('sotw', call) as SotwStream | undefined;
    if (!s) return;
    call.on('data', (req: DiscoveryRequest) => {
      try {
        this.onSotwRequest(s, req);
      } catch (err) {
        this.opts.log(`ads: ${s.id}: ${(err as Error).stack ?? err}`);
        this.endStream(s, grpc.status.INTERNAL, (err as Error).message);
      }
      this.emit('update');
    });
  }

  private onSotwRequest(s: SotwStream, req: DiscoveryRequest): void {
    this.captureNode(s, req.node);
    const typeUrl = req.typeUrl;
    const rec: RequestRecord = {
      at: Date.now(),
      typeUrl,
      responseNonce: req.responseNonce,
      versionInfo: req.versionInfo,
      resourceNames: [...req.resourceNames],
      errorDetail: req.errorDetail && { code: req.errorDetail.code, message: req.errorDetail.message },
    };
    s.record(rec);
    if (!typeUrl) {
      rec.outcome = 'invalid';
      this.opts.log(`ads: ${s.id}: request without type_url ignored`);
      return;
    }
    // istiod answers debug requests at once and never opens a watch for them
    if (typeUrl.startsWith(DEBUG_TYPE)) {
      rec.outcome = 'debug';
      this.sendDebug(s, typeUrl, req.resourceNames);
      return;
    }
    const wildcardType = this.opts.isWildcardType(typeUrl);
    let st = s.types.get(typeUrl);

    if (req.errorDetail) {
      rec.outcome = 'nack';
      const version = st?.sentVersions.get(req.responseNonce) ?? '';
      const nack: NackRecord = {
        streamId: s.id,
        kind: 'sotw',
        typeUrl,
        version,
        nonce: req.responseNonce,
        clientVersion: req.versionInfo,
        errorDetail: { code: req.errorDetail.code, message: req.errorDetail.message },
        stale: !st || req.responseNonce !== st.nonceSent,
        at: rec.at,
      };
      this.nackLog.push(nack);
      if (this.nackLog.length > 100_000) this.nackLog.splice(0, 50_000);
      if (st) st.nack = { version, code: nack.errorDetail.code, message: nack.errorDetail.message };
      this.opts.log(`ads: ${s.id} NACK ${shortType(typeUrl)} version ${version}: ${req.errorDetail.message}`);
      return;
    }

    if (!wildcardType && req.resourceNames.length === 0) {
      if (st && req.responseNonce && req.responseNonce === st.nonceSent) this.recordAck(s, typeUrl, st, req.responseNonce);
      s.types.delete(typeUrl);
      rec.outcome = 'unsubscribe';
      return;
    }

    const wildcard = req.resourceNames.includes('*') || (wildcardType && req.resourceNames.length === 0);
    const names = new Set(req.resourceNames.filter((n) => n !== '*'));
    if (!req.responseNonce || !st) {
      st = { names, wildcard, sentVersions: new Map() };
      s.types.set(typeUrl, st);
      rec.outcome = 'initial';
      this.sendSotw(s, typeUrl, false);
      return;
    }
    if (req.responseNonce !== st.nonceSent) {
      rec.outcome = 'stale';
      return;
    }
    this.recordAck(s, typeUrl, st, req.responseNonce);
    const added = [...names].filter((n) => !st.names.has(n));
    const removed = [...st.names].filter((n) => !names.has(n));
    const wildcardChanged = wildcard !== st.wildcard;
    st.names = names;
    st.wildcard = wildcard;
    if (added.length === 0 && removed.length === 0 && !wildcardChanged) {
      rec.outcome = 'ack';
      return;
    }
    rec.outcome = 'subscription-change';
    if (wildcardType || wildcard || wildcardChanged || added.length > 0) this.sendSotw(s, typeUrl, false);
  }

  private recordAck(s: Stream, typeUrl: string, st: SotwTypeState | DeltaTypeState, nonce: string): void {
    const version = st.sentVersions.get(nonce) ?? '';
    st.ackedVersion = version;
    st.ackedNonce = nonce;
    st.nack = undefined;
    this.ackLog.push({ streamId: s.id, kind: s.kind, typeUrl, version, nonce, at: Date.now() });
    if (this.ackLog.length > 100_000) this.ackLog.splice(0, 50_000);
    this.opts.log(`ads: ${s.id} ACK ${shortType(typeUrl)} version ${version}`);
  }

  private sendSotw(s: SotwStream, typeUrl: string, forced: boolean): boolean {
    const st = s.types.get(typeUrl);
    if (!st) return false;
    const store = this.opts.store;
    const resources = st.wildcard
      ? this.wildcardResources(typeUrl)
      : [...st.names].map((n) => this.lookup(typeUrl, n)).filter((r): r is StoredResource => r !== undefined);
    const version = store.version(typeUrl);
    const nonce = s.nextNonce();
    const resp = createMessage<DiscoveryResponse>(xdsSchemas().DiscoveryResponse, {
      versionInfo: version,
      resources: resources.map((r) => this.packAny(r)),
      typeUrl,
      nonce,
      controlPlane: this.controlPlane(),
    });
    if (!this.write(s, resp)) return false;
    st.nonceSent = nonce;
    st.versionSent = version;
    st.sentAt = Date.now();
    rememberNonce(st.sentVersions, nonce, version);
    this.recordResponse(s, { typeUrl, version, nonce, resources, forced });
    return true;
  }

  private recordResponse(s: Stream, r: { typeUrl: string; version: string; nonce: string; resources: StoredResource[]; removed?: string[]; forced: boolean }): void {
    s.responseCount++;
    const bytes = r.resources.reduce((n, x) => n + x.binary.length, 0);
    pushCapped(s.responses, {
      at: Date.now(),
      typeUrl: r.typeUrl,
      version: r.version,
      nonce: r.nonce,
      resourceCount: r.resources.length,
      resourceNames: r.resources.slice(0, 100).map((x) => x.name),
      removed: r.removed,
      bytes,
      forced: r.forced,
    });
    this.opts.log(
      `ads: ${s.id} push ${shortType(r.typeUrl)} version ${r.version} nonce ${r.nonce}: ${r.resources.length} resources (${bytes} bytes)` +
        (r.removed && r.removed.length > 0 ? `, ${r.removed.length} removed` : '') +
        (r.forced ? ' [forced]' : ''),
    );
  }

  // ------------------------------------------------------------------------------------------
  // Delta

  private handleDelta(call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>): void {
    const s = this.accept('delta', call) as DeltaStream | undefined;
    if (!s) return;
    call.on('data', (req: DeltaDiscoveryRequest) => {
      try {
        this.onDeltaRequest(s, req);
      } catch (err) {
        this.opts.log(`ads: ${s.id}: ${(err as Error).stack ?? err}`);
        this.endStream(s, grpc.status.INTERNAL, (err as Error).message);
      }
      this.emit('update');
    });
  }

  private onDeltaRequest(s: DeltaStream, req: DeltaDiscoveryRequest): void {
    this.captureNode(s, req.node);
    const typeUrl = req.typeUrl;
    const rec: RequestRecord = {
      at: Date.now(),
      typeUrl,
      responseNonce: req.responseNonce,
      subscribe: [...req.resourceNamesSubscribe],
      unsubscribe: [...req.resourceNamesUnsubscribe],
      initialResourceVersions: { ...req.initialResourceVersions },
      errorDetail: req.errorDetail && { code: req.errorDetail.code, message: req.errorDetail.message },
    };
    s.record(rec);
    if (!typeUrl) {
      rec.outcome = 'invalid';
      return;
    }
    if (typeUrl.startsWith(DEBUG_TYPE)) {
      rec.outcome = 'debug';
      this.sendDebug(s, typeUrl, req.resourceNamesSubscribe);
      return;
    }
    let st = s.types.get(typeUrl);
    const first = !st;
    if (!st) {
      st = {
        subscribed: new Set(),
        wildcard: this.opts.isWildcardType(typeUrl) && req.resourceNamesSubscribe.length === 0,
        known: new Map(Object.entries(req.initialResourceVersions)),
        sentVersions: new Map(),
      };
      s.types.set(typeUrl, st);
      rec.outcome = 'initial';
    }

    if (req.responseNonce) {
      const version = st.sentVersions.get(req.responseNonce);
      if (req.errorDetail) {
        rec.outcome = 'nack';
        const nack: NackRecord = {
          streamId: s.id,
          kind: 'delta',
          typeUrl,
          version: version ?? '',
          nonce: req.responseNonce,
          clientVersion: '',
          errorDetail: { code: req.errorDetail.code, message: req.errorDetail.message },
          stale: version === undefined || req.responseNonce !== st.nonceSent,
          at: rec.at,
        };
        this.nackLog.push(nack);
        if (this.nackLog.length > 100_000) this.nackLog.splice(0, 50_000);
        st.nack = { version: nack.version, code: nack.errorDetail.code, message: nack.errorDetail.message };
        this.opts.log(`ads: ${s.id} NACK ${shortType(typeUrl)} version ${nack.version}: ${req.errorDetail.message}`);
      } else if (version !== undefined) {
        rec.outcome = 'ack';
        this.recordAck(s, typeUrl, st, req.responseNonce);
      } else {
        rec.outcome = 'stale';
      }
    }

    let added = false;
    for (const n of req.resourceNamesSubscribe) {
      if (n === '*') {
        if (!st.wildcard) added = true;
        st.wildcard = true;
      } else if (!st.subscribed.has(n)) {
        st.subscribed.add(n);
        added = true;
      }
    }
    let removedAny = false;
    for (const n of req.resourceNamesUnsubscribe) {
      if (n === '*') {
        if (st.wildcard) removedAny = true;
        st.wildcard = false;
      } else if (st.subscribed.delete(n)) {
        removedAny = true;
      }
    }
    if (!st.wildcard) for (const n of [...st.known.keys()]) if (!st.subscribed.has(n)) st.known.delete(n);
    if (!first && (added || removedAny) && rec.outcome !== 'nack') rec.outcome = 'subscription-change';
    if (first || added) this.sendDelta(s, typeUrl, { forced: false, respondEmpty: first && st.wildcard });
  }

  private sendDelta(s: DeltaStream, typeUrl: string, o: { forced: boolean; respondEmpty: boolean }): boolean {
    const st = s.types.get(typeUrl);
    if (!st) return false;
    const store = this.opts.store;
    const candidates = st.wildcard
      ? this.wildcardResources(typeUrl)
      : [...st.subscribed].map((n) => this.lookup(typeUrl, n)).filter((r): r is StoredResource => r !== undefined);
    const resources = o.forced ? candidates : candidates.filter((r) => st.known.get(r.name) !== r.version);
    const removed = [...st.known.keys()].filter((n) => (st.wildcard || st.subscribed.has(n)) && !this.lookup(typeUrl, n));
    if (resources.length === 0 && removed.length === 0 && !o.respondEmpty) return false;
    const version = store.version(typeUrl);
    const nonce = s.nextNonce();
    const resp = createMessage<DeltaDiscoveryResponse>(xdsSchemas().DeltaDiscoveryResponse, {
      systemVersionInfo: version,
      resources: resources.map((r) => createMessage(xdsSchemas().Resource, { name: r.name, version: r.version, resource: this.packAny(r) })),
      typeUrl,
      removedResources: removed,
      nonce,
      controlPlane: this.controlPlane(),
    });
    if (!this.write(s, resp)) return false;
    for (const r of resources) st.known.set(r.name, r.version);
    for (const n of removed) st.known.delete(n);
    st.nonceSent = nonce;
    st.versionSent = version;
    st.sentAt = Date.now();
    rememberNonce(st.sentVersions, nonce, version);
    this.recordResponse(s, { typeUrl, version, nonce, resources, removed, forced: o.forced });
    return true;
  }
}

/** The URI SAN of a verified client certificate on the call's connection (grpc-js' auth context). */
function peerIdentityOf(call: AnyCall): string | undefined {
  const san = call.getAuthContext()?.sslPeerCertificate?.subjectaltname;
  return san?.split(', ').find((s) => s.startsWith('URI:'))?.slice('URI:'.length);
}
