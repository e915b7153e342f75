// The two halves of last-known-good xDS on one downstream stream (see last-known-good.ts):
// - AckRecorder: remembers the last response of each type sent to Envoy (held responses as bytes,
//   streamed ones spooled to a file as they pass) and saves it when Envoy ACKs it, never before:
//   what is saved is what Envoy accepted.
// - CacheResponder: while istiod is unreachable at start, answers the client's subscriptions from
//   the store, each with a fresh nonce, and takes its ACKs.

import { WireType } from '@bufbuild/protobuf/wire';
import { LkgSpool, deltaPayloadFor, withNonce, type LastKnownGood, type LkgEntry, type LkgProtocol } from './last-known-good.js';
import { forEachField, XdsField, type RequestSummary } from './wire.js';

interface Pending {
  readonly nonce: string;
  readonly version: string;
  readonly bytes?: Buffer;
  readonly spool?: LkgSpool;
}

export class AckRecorder {
  private readonly pending = new Map<string, Pending>();
  private spools = 0;

  constructor(
    private readonly store: LastKnownGood,
    private readonly protocol: LkgProtocol,
    private readonly connectionId: number,
  ) {}

  /** A spool for a response about to be streamed through. */
  spool(): LkgSpool {
    return new LkgSpool(this.store.directory, `${this.connectionId}-${++this.spools}`);
  }

  /** A response went to the client (whole `bytes`, or streamed into `spool`); it waits for its ACK. */
  sent(typeUrl: string, nonce: string, version: string, content: { bytes: Buffer } | { spool: LkgSpool }): void {
    this.pending.get(typeUrl)?.spool?.discard(); // superseded before it was ACKed
    this.pending.set(typeUrl, { nonce, version, ...content });
  }

  /** The client's request: an ACK of the pending response saves it; a NACK drops it. */
  request(req: RequestSummary): void {
    const p = this.pending.get(req.typeUrl);
    if (!p || !req.responseNonce || p.nonce !== req.responseNonce) return;
    this.pending.delete(req.typeUrl);
    if (req.isNack) return p.spool?.discard();
    // SotW: a spooled response is saved from its file, never read back whole
    if (p.spool && this.protocol === 'sotw') return this.store.saveSotw(req.typeUrl, p.version, p.spool);
    const bytes = p.bytes ?? p.spool?.take();
    if (bytes) this.commit(req.typeUrl, p.version, bytes);
  }

  /** Saves a response the agent itself accepted (its own types: no client ACK to wait for). */
  commit(typeUrl: string, version: string, bytes: Buffer): void {
    if (this.protocol === 'sotw') this.store.saveSotw(typeUrl, version, bytes);
    else this.store.applyDelta(typeUrl, bytes);
  }

  close(): void {
    for (const p of this.pending.values()) p.spool?.discard();
    this.pending.clear();
  }
}

/** A DeltaDiscoveryRequest's resource_names_subscribe and resource_names_unsubscribe. */
function deltaSubscription(buf: Uint8Array): { subscribe: string[]; unsubscribe: string[] } {
  const subscribe: string[] = [];
  const unsubscribe: string[] = [];
  const f = XdsField.DeltaDiscoveryRequest;
  const text = new TextDecoder();
  forEachField(buf, (field, wire, _start, payload, end) => {
    if (wire !== WireType.LengthDelimited) return;
    if (field === f.resource_names_subscribe) subscribe.push(text.decode(buf.subarray(payload, end)));
    else if (field === f.resource_names_unsubscribe) unsubscribe.push(text.decode(buf.subarray(payload, end)));
  });
  return { subscribe, unsubscribe };
}

export class CacheResponder {
  private nonces = 0;
  /** Delta: the names each type is subscribed to (undefined: wildcard). */
  private readonly names = new Map<string, Set<string> | undefined>();
  private readonly served = new Set<string>();

  constructor(
    private readonly entries: ReadonlyMap<string, LkgEntry>,
    private readonly protocol: LkgProtocol,
  ) {}

  get types(): readonly string[] {
    return [...this.entries.keys()];
  }

  entry(typeUrl: string): LkgEntry | undefined {
    return this.entries.get(typeUrl);
  }

  /**
   * The answers to one client request: the stored state of its type when the request subscribes
   * (SotW: no nonce; Delta: a first or changed subscription), nothing for an ACK or NACK.
   */
  answer(req: RequestSummary, raw: Uint8Array): { message: Buffer; nonce: string; entry: LkgEntry }[] {
    const entry = this.entries.get(req.typeUrl);
    if (!entry) return [];
    if (this.protocol === 'sotw') {
      if (req.responseNonce && this.served.has(req.typeUrl)) return [];
      return [this.serve(entry, entry.payload)];
    }
    const { subscribe, unsubscribe } = deltaSubscription(raw);
    const first = !this.names.has(req.typeUrl);
    if (first) this.names.set(req.typeUrl, subscribe.length > 0 ? new Set(subscribe) : undefined);
    const names = this.names.get(req.typeUrl);
    if (!first && names) {
      for (const n of subscribe) names.add(n);
      for (const n of unsubscribe) names.delete(n);
    }
    if (!first && subscribe.length === 0) return [];
    return [this.serve(entry, deltaPayloadFor(entry.payload, entry.typeUrl, names))];
  }

  private serve(entry: LkgEntry, payload: Buffer): { message: Buffer; nonce: string; entry: LkgEntry } {
    this.served.add(entry.typeUrl);
    const nonce = `lkg-${++this.nonces}`;
    return { message: withNonce(payload, nonce), nonce, entry };
  }
}
