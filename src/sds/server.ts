// The SDS server Envoy connects to (Istio's security/pkg/nodeagent/sds): gRPC service
// envoy.service.secret.v3.SecretDiscoveryService on a unix socket (./var/run/secrets/workload-spiffe-uds/
// <WORKLOAD_IDENTITY_SOCKET_FILE>), State-of-the-World StreamSecrets only; DeltaSecrets and FetchSecrets
// answer UNIMPLEMENTED, as Istio's do.
//
// Per stream, Istio's xds.ShouldRespond rules: the first request (no nonce) subscribes to its names
// and gets them; a NACK (error_detail) is logged and not answered (the next change is pushed as
// usual, never a retry loop); a request with a stale nonce is ignored; an ACK with new names gets
// those names. SDS is not a wildcard type: a response carries only the secrets that changed, and a
// push goes only to streams subscribed to that name. Every response has a fresh version
// (`<RFC 3339 time>/<counter>`) and nonce (a UUID).
//
// A secret that is not ready yet (the first certificate is still being fetched) is not an error: the
// stream waits and the secret is sent when the secret manager announces it. An unknown name is
// logged once per stream and never served; the stream carries on. Each stream remembers the
// generation it last sent per name and never sends an older one.
//
// A client that does not read is not written to without bound: once a stream's unsent bytes pass
// the write buffer, its requests stop being read and the secrets to send wait as names, sent in
// one response when it drains. Requests are capped at gRPC's 4 MiB, as Istio's SDS server is.
// The secret manager is told when no stream subscribes to a name any more, so that the state it
// keeps for names a client made up goes with them.

import { GrpcUnixServer, type ServerStream } from '../grpc/server.js';
import type { HeldListener } from '../grpc/held-listener.js';
import { Status, statusName } from '../grpc/status.js';
import type { Lookup, SecretItem } from '../security/secret-manager.js';
import { logger } from '../util/logger.js';
import { SDS_METRIC_TYPE, sdsMetrics } from './metrics.js';
import { sdsCodec, SECRET_TYPE_URL, type SdsCodec, type SecretMessage } from './protos.js';
import { isoUtc } from '../util/time.js';
import { lazyBuiltin } from '../util/builtin.js';

const log = logger('sds');

const SERVICE = 'envoy.service.secret.v3.SecretDiscoveryService';

/** grpc-go's default receive limit, which Istio's SDS server keeps (its requests name a secret or two). */
const MAX_SDS_REQUEST_BYTES = 4 * 1024 * 1024;

/** What the server needs from the secret manager. */
export interface SecretProvider {
  lookup(name: string): Lookup;
  onUpdate(fn: (name: string) => void): () => void;
  /** No stream subscribes to `name` any more. */
  release?(name: string): void;
}

export interface SdsServerOptions {
  /** Absolute path of the unix socket. */
  readonly socketPath: string;
  readonly secrets: SecretProvider;
  /** Another SDS server owns the workload socket: this one serves file certificates only. */
  readonly filesOnly?: boolean;
  /** The socket, bound already (before Envoy's spawn); otherwise start() binds it. */
  readonly listener?: HeldListener;
}

export interface SdsStreamInfo {
  readonly id: number;
  readonly nodeId: string;
  readonly subscribed: readonly string[];
  /** Subscribed names not served yet (pending or unknown). */
  readonly waiting: readonly string[];
  readonly lastNonceSent: string;
  readonly lastVersionSent: string;
  readonly lastAckedNonce: string;
  readonly responses: number;
  readonly nacks: number;
  readonly lastNack?: { readonly nonce: string; readonly version: string; readonly message: string };
  /** The client is not reading what was written; nothing more is, until it does. */
  readonly blocked: boolean;
}

interface Stream {
  readonly id: number;
  readonly call: ServerStream;
  nodeId: string;
  /** undefined until the first request (or after an unsubscribe-all). */
  subscribed: Set<string> | undefined;
  readonly dirty: Set<string>;
  /** name -> generation last sent on this stream. */
  readonly sent: Map<string, number>;
  readonly reported: Set<string>;
  nonceSent: string;
  versionSent: string;
  ackedNonce: string;
  responses: number;
  nacks: number;
  lastNack?: { nonce: string; version: string; message: string };
  closed: boolean;
  /** The client is not reading: nothing is written, and no request read, until it drains. */
  blocked: boolean;
}

/** Go's time.RFC3339 (seconds, `Z`), which Istio uses in version_info. */
function rfc3339(d: Date): string {
  return isoUtc(d.getTime()).replace(/\.\d{3}Z$/, 'Z');
}

function toMessage(item: SecretItem, name: string): SecretMessage | undefined {
  if (item.rootCert !== undefined) return { name, trustedCa: item.rootCert, ...(item.crl !== undefined ? { crl: item.crl } : {}) };
  if (item.certificateChain !== undefined && item.privateKey !== undefined) return { name, certificateChain: item.certificateChain, privateKey: item.privateKey };
  return undefined;
}

export class SdsServer {
  private server: GrpcUnixServer | undefined;
  private readonly streams = new Map<number, Stream>();
  /** name -> how many streams subscribe to it. */
  private readonly subscribers = new Map<string, number>();
  private nextId = 1;
  private versionCounter = 0;
  /** Set once the schemas have loaded (with the first stream). */
  private codec: SdsCodec | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: SdsServerOptions) {}

  get socketPath(): string {
    return this.options.socketPath;
  }

  async start(): Promise<void> {
    const path = this.options.socketPath;
    // DeltaSecrets and FetchSecrets answer UNIMPLEMENTED with Istio's messages
    const unimplemented = (name: string) => (stream: ServerStream) => stream.finish({ code: Status.UNIMPLEMENTED, details: `${name} not implemented` });
    const server = new GrpcUnixServer(
      path,
      new Map([
        [`/${SERVICE}/StreamSecrets`, (stream: ServerStream) => this.onStream(stream)],
        [`/${SERVICE}/DeltaSecrets`, unimplemented('DeltaSecrets')],
        [`/${SERVICE}/FetchSecrets`, unimplemented('FetchSecrets')],
      ]),
      { name: 'SDS', log: (m) => log.info(m), logError: (m) => log.error(m), maxRequestBytes: MAX_SDS_REQUEST_BYTES },
    );
    await server.start(this.options.listener);
    this.server = server;
    this.unsubscribe = this.options.secrets.onUpdate((name) => this.onSecretUpdate(name));
    log.info(`Starting SDS server for ${this.options.filesOnly ? 'file certificates only' : 'workload certificates'}, will listen on "${path}"`);
  }

  /** Open streams, for tests and debugging. */
  streamInfo(): SdsStreamInfo[] {
    return [...this.streams.values()].map((s) => ({
      id: s.id,
      nodeId: s.nodeId,
      subscribed: [...(s.subscribed ?? [])],
      waiting: [...(s.subscribed ?? [])].filter((n) => !s.sent.has(n)),
      lastNonceSent: s.nonceSent,
      lastVersionSent: s.versionSent,
      lastAckedNonce: s.ackedNonce,
      responses: s.responses,
      nacks: s.nacks,
      ...(s.lastNack ? { lastNack: { ...s.lastNack } } : {}),
      blocked: s.blocked,
    }));
  }

  private onStream(call: ServerStream): void {
    const s: Stream = {
      id: this.nextId++,
      call,
      nodeId: '',
      subscribed: undefined,
      dirty: new Set(),
      sent: new Map(),
      reported: new Set(),
      nonceSent: '',
      versionSent: '',
      ackedNonce: '',
      responses: 0,
      nacks: 0,
      closed: false,
      blocked: false,
    };
    this.streams.set(s.id, s);
    const close = (why: string): void => {
      if (s.closed) return;
      s.closed = true;
      this.streams.delete(s.id);
      this.setSubscribed(s, undefined);
      log.debug(`SDS: stream ${s.id} closed: ${why}`);
    };
    // the codec loads with the first stream; requests that come before it wait, in order
    if (!this.codec) void sdsCodec().catch(() => undefined);
    call.attach({
      onRequest: (buf) => {
        if (this.codec) this.onRequest(s, buf, this.codec);
        else
          sdsCodec().then(
            (codec) => {
              this.codec = codec;
              this.onRequest(s, buf, codec);
            },
            (err: unknown) => {
              log.error(`SDS: cannot load the Envoy message schemas: ${(err as Error).message}`);
              if (!s.closed) s.call.finish({ code: Status.INTERNAL, details: `SDS messages unavailable: ${(err as Error).message}` });
            },
          );
      },
      onGone: (kind, reason) => {
        if (kind === 'error') sdsMetrics.internalErrors.inc();
        close(reason);
        if (kind === 'end') call.finish(); // the client is done: end ours with OK
      },
    });
  }

  private onRequest(s: Stream, buf: Buffer, codec: SdsCodec): void {
    if (s.closed) return;
    let req;
    try {
      req = codec.decodeDiscoveryRequest(buf);
    } catch (err) {
      log.error(`SDS: stream ${s.id}: cannot decode a DiscoveryRequest: ${(err as Error).message}`);
      s.call.finish({ code: Status.INVALID_ARGUMENT, details: `malformed DiscoveryRequest: ${(err as Error).message}` });
      return;
    }
    if (req.nodeId && !s.nodeId) s.nodeId = req.nodeId;
    if (req.typeUrl && req.typeUrl !== SECRET_TYPE_URL) {
      log.warn(`SDS: stream ${s.id}: ignoring a request for type ${req.typeUrl}`);
      return;
    }
    const names = req.resourceNames;
    if (req.errorDetail) {
      s.nacks++;
      s.lastNack = { nonce: req.responseNonce, version: req.versionInfo, message: req.errorDetail.message };
      sdsMetrics.rejects.inc({ type: SDS_METRIC_TYPE });
      log.warn(`SDS: ACK ERROR ${s.id} ${statusName(req.errorDetail.code)}:${req.errorDetail.message}`, {
        resources: names.join(','),
        version: req.versionInfo,
        nonce: req.responseNonce,
      });
      return;
    }
    if (names.length === 0) {
      log.debug(`SDS: stream ${s.id}: unsubscribed from every secret`);
      this.setSubscribed(s, undefined);
      s.dirty.clear();
      s.sent.clear();
      return;
    }
    if (req.responseNonce === '' || s.subscribed === undefined) {
      log.debug(`SDS: stream ${s.id}: INIT/RECONNECT ${names.join(',')}`);
      this.setSubscribed(s, new Set(names));
      s.sent.clear();
      s.dirty.clear();
      for (const n of names) s.dirty.add(n);
      this.flush(s);
      return;
    }
    if (req.responseNonce !== s.nonceSent) {
      log.debug(`SDS: stream ${s.id}: expired nonce ${req.responseNonce} received, sent ${s.nonceSent}`);
      sdsMetrics.expiredNonce.inc({ type: SDS_METRIC_TYPE });
      return;
    }
    s.ackedNonce = req.responseNonce;
    const previous = s.subscribed;
    const current = new Set(names);
    this.setSubscribed(s, current);
    for (const n of previous) {
      if (!current.has(n)) {
        s.dirty.delete(n);
        s.sent.delete(n);
      }
    }
    const added = names.filter((n) => !previous.has(n));
    if (added.length === 0) {
      log.debug(`SDS: stream ${s.id}: ACK ${req.versionInfo} ${req.responseNonce}`);
      return;
    }
    for (const n of added) {
      s.sent.delete(n);
      s.dirty.add(n);
    }
    this.flush(s);
  }

  /** Replaces a stream's subscription, keeping the per-name subscriber counts. */
  private setSubscribed(s: Stream, next: Set<string> | undefined): void {
    const previous = s.subscribed;
    s.subscribed = next;
    if (next) for (const n of next) if (!previous?.has(n)) this.subscribers.set(n, (this.subscribers.get(n) ?? 0) + 1);
    if (!previous) return;
    for (const n of previous) {
      if (next?.has(n)) continue;
      const left = (this.subscribers.get(n) ?? 1) - 1;
      if (left > 0) {
        this.subscribers.set(n, left);
        continue;
      }
      this.subscribers.delete(n);
      this.options.secrets.release?.(n);
    }
  }

  private onSecretUpdate(name: string): void {
    for (const s of this.streams.values()) {
      if (s.closed || !s.subscribed?.has(name)) continue;
      s.dirty.add(name);
      this.flush(s);
    }
  }

  /** Sends every dirty subscribed secret that is ready, in one response. */
  private flush(s: Stream): void {
    if (s.closed || !s.subscribed || s.blocked) return;
    const out: SecretMessage[] = [];
    const generations: [string, number][] = [];
    for (const name of [...s.dirty]) {
      if (!s.subscribed.has(name)) {
        s.dirty.delete(name);
        continue;
      }
      const r = this.options.secrets.lookup(name);
      if (r.status === 'unknown') {
        s.dirty.delete(name);
        if (!s.reported.has(name)) {
          s.reported.add(name);
          log.warn(`SDS: stream ${s.id}: not serving ${JSON.stringify(name)}: ${r.reason}`);
        }
        continue;
      }
      if (r.status === 'pending') {
        if (!s.reported.has(name)) {
          s.reported.add(name);
          log.info(`SDS: stream ${s.id}: ${name} is not ready yet (${r.reason}); it will be pushed when it is`);
        }
        continue;
      }
      s.dirty.delete(name);
      const previous = s.sent.get(name);
      if (previous !== undefined && r.item.generation <= previous) continue; // never resend or go back
      const msg = toMessage(r.item, name);
      if (!msg) continue;
      out.push(msg);
      generations.push([name, r.item.generation]);
    }
    if (out.length === 0) return;
    const version = `${rfc3339(new Date())}/${++this.versionCounter}`;
    const nonce = lazyBuiltin.crypto().randomUUID();
    let payload: Buffer;
    try {
      // a stream has subscribed, so its request was decoded: the codec is loaded
      payload = this.codec!.encodeSecretResponse(version, nonce, out);
    } catch (err) {
      log.error(`SDS: cannot encode secrets ${out.map((m) => m.name).join(',')}: ${(err as Error).message}`);
      return;
    }
    for (const [name, gen] of generations) {
      s.sent.set(name, gen);
      s.reported.delete(name);
    }
    s.nonceSent = nonce;
    s.versionSent = version;
    s.responses++;
    const endTimer = sdsMetrics.sendTime.startTimer();
    if (!s.call.writeMessage(payload, () => endTimer())) {
      // the client is not reading: stop reading its requests (HTTP/2 flow control then holds it
      // back) and keep what changes meanwhile as dirty names, sent once it has caught up
      s.blocked = true;
      s.call.pause();
      s.call.onceDrain(() => {
        s.blocked = false;
        if (s.closed) return;
        s.call.resume();
        this.flush(s);
      });
    }
    log.info(`SDS: PUSH resources:${out.length} names:${out.map((m) => m.name).join(',')} version:${version} stream:${s.id}${s.nodeId ? ` node:${s.nodeId}` : ''}`);
  }

  /** Stops the server at once (open streams are cancelled) and removes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    const server = this.server;
    this.server = undefined;
    for (const s of this.streams.values()) s.closed = true;
    this.streams.clear();
    await server?.close();
  }
}
