// The Envoy-like client of bench `soak`, in a process of its own (so that its memory and CPU are
// not the agent's, and its decoding never stalls the bench's timers): the Envoy stand-in's
// AdsClient (test/envoy-stand-in/ads-client.ts) on the agent's XDS socket, subscribing CDS, then
// EDS/LDS/RDS as Envoy does, decoding every resource strictly, ACKing or NACKing, and reconnecting
// with Envoy's backoff whenever its stream ends (here: mostly when another client replaces it).
//
// Started with fork() by bench/soak.ts: `node soak-client.js <target> <GRPC|DELTA_GRPC>`. Reports
// over the IPC channel; exits when asked, or when the channel closes (the bench is gone).

import { pathToFileURL } from 'node:url';
import { AdsClient, type AdsType } from '../test/envoy-stand-in/ads-client.js';

export const GENERATION_PREFIX = 'soak-generation-';

export type ClientEvent =
  | { readonly kind: 'update'; readonly type: AdsType; readonly version: string; readonly ack: boolean; readonly reason?: string; readonly generation?: number; readonly count: number }
  | { readonly kind: 'open'; readonly stream: number }
  | { readonly kind: 'closed'; readonly stream: number; readonly reason: string; readonly retryInMs: number }
  | { readonly kind: 'initialized' }
  | { readonly kind: 'state'; readonly id: number; readonly state: ClientState };

export interface HeldType {
  /** Last accepted version_info (SotW) / system_version_info (Delta). */
  readonly version: string;
  readonly wildcard: boolean;
  /** Named subscriptions (EDS, RDS, ECDS). */
  readonly names: readonly string[];
  /** What the client holds: name -> version (Delta: the resource's version; SotW: the response's version_info). */
  readonly held: Readonly<Record<string, string>>;
}

export interface ClientState {
  readonly connected: boolean;
  readonly streamsOpened: number;
  readonly acks: number;
  readonly nacks: number;
  readonly lastStreamError?: string;
  readonly types: Readonly<Partial<Record<AdsType, HeldType>>>;
}

export type ClientCommand = { readonly cmd: 'state'; readonly id: number } | { readonly cmd: 'stop' };

/** The generation stamped in a push's names (`soak-generation-<n>`), if any. */
export function generationOf(names: readonly string[]): number | undefined {
  for (const n of names) if (n.startsWith(GENERATION_PREFIX)) return Number(n.slice(GENERATION_PREFIX.length));
  return undefined;
}

function main(target: string, apiType: 'GRPC' | 'DELTA_GRPC'): void {
  const send = (e: ClientEvent): void => {
    if (process.connected) process.send!(e);
  };
  const client = new AdsClient(
    { target, apiType, node: { id: 'sidecar~10.0.0.1~soak.default~default.svc.cluster.local', cluster: 'soak.default' } },
    {
      onUpdate: (u) => send({ kind: 'update', type: u.type, version: u.version, ack: u.ack, ...(u.reason ? { reason: u.reason } : {}), generation: generationOf(u.names), count: u.names.length }),
      onStreamOpen: (stream) => send({ kind: 'open', stream }),
      onStreamClosed: (stream, reason, _types, retryInMs) => send({ kind: 'closed', stream, reason, retryInMs }),
      onInitialized: () => send({ kind: 'initialized' }),
    },
  );
  const state = (): ClientState => {
    const snap = client.snapshot() as { types: Record<string, { version: string; subscription: { wildcard: boolean; names: string[] } }> };
    const types: Partial<Record<AdsType, HeldType>> = {};
    for (const [t, s] of Object.entries(snap.types)) {
      const type = t as AdsType;
      const held: Record<string, string> = {};
      for (const r of client.resourcesJson(type)) held[r.name] = r.version;
      types[type] = { version: s.version, wildcard: s.subscription.wildcard, names: s.subscription.names, held };
    }
    return { connected: client.connected, streamsOpened: client.streamsOpened, acks: client.acks, nacks: client.nacks, ...(client.lastStreamError ? { lastStreamError: client.lastStreamError } : {}), types };
  };
  process.on('message', (m: ClientCommand) => {
    if (m.cmd === 'state') send({ kind: 'state', id: m.id, state: state() });
    else if (m.cmd === 'stop') {
      client.close();
      process.exit(0);
    }
  });
  process.on('disconnect', () => {
    client.close();
    process.exit(0);
  });
  client.start();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main(process.argv[2] ?? '', process.argv[3] === 'GRPC' ? 'GRPC' : 'DELTA_GRPC');
