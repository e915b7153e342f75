// The development control plane: a stand-in for istiod serving ADS (SotW + Delta) and the Istio CA
// on one gRPC port, over TLS (its own serving certificate, signed by its CA root) or plaintext.
// For tests, benchmarks and the demo only - see README.md in this folder.

import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AdsServer, type AckRecord, type NackRecord, type RejectedStream, type StreamInfo, type StreamKind } from './ads-server.js';
import { CertificateAuthority, caServiceDefinition, type CertificateAuthorityOptions } from './ca.js';
import { ResourceDirectory, ResourceStore, toStoredResource, type FileError, type ReloadResult, type ResourceInput, type StoredResource } from './resources.js';
import { ANSWER_EVERY_NAME_TYPES, NON_WILDCARD_TYPES, UNLIMITED_MESSAGE_OPTIONS, adsServiceDefinition, normalizeTypeUrl } from './xds-protos.js';

export const DEFAULT_SERVING_SANS: readonly string[] = ['istiod.istio-system.svc', 'localhost', '127.0.0.1'];

export interface ControlPlaneOptions {
  /** `host:port` to listen on (`[::1]:0` for IPv6). Port 0 picks a free port. Default `127.0.0.1:0`. */
  readonly listen?: string;
  /** Serve without TLS. Default: TLS with a serving certificate signed by the CA root. */
  readonly plaintext?: boolean;
  /**
   * Ask TLS clients for a certificate, as istiod does (Go's VerifyClientCertIfGiven): a client may
   * present none; one it presents must chain to the CA root, and its identity is recorded on the
   * stream (StreamInfo.peerIdentity). Default: certificates are not requested.
   */
  readonly requestClientCertificates?: boolean;
  /** SANs of the serving certificate. Default istiod.istio-system.svc, localhost, 127.0.0.1. */
  readonly servingSans?: readonly string[];
  /** Write the CA root certificate (PEM) to this file. */
  readonly rootCertOut?: string;
  /** Load resources from this directory (and watch it). */
  readonly resourcesDir?: string;
  /** Require `authorization: Bearer <token>` on ADS streams and CA calls. */
  readonly token?: string;
  readonly ca?: CertificateAuthorityOptions;
  /** Types whose SotW/Delta subscriptions name resources. Default: Istio's list (EDS, RDS, SDS, ECDS, VHDS). */
  readonly nonWildcardTypes?: readonly string[];
  /**
   * Named types whose every subscribed name is answered, with an empty resource when none is set.
   * Default: istiod's (ClusterLoadAssignment, RouteConfiguration); [] answers stored resources only.
   */
  readonly answerEveryNameTypes?: readonly string[];
  /** Log lines (default: none). */
  readonly log?: (msg: string) => void;
  /** Directory watch tuning (defaults: 50 ms debounce, 2 s poll). */
  readonly watch?: { readonly debounceMs?: number; readonly pollIntervalMs?: number };
  /** DiscoveryResponse.control_plane.identifier. */
  readonly controlPlaneId?: string;
}

export interface SetResourcesOptions {
  /** Replace every resource of the type (default: add or update the given ones only). */
  readonly replace?: boolean;
  /** Push to connected streams (default true); false defers until pushNow() or the next push. */
  readonly push?: boolean;
}

export interface WaitOptions {
  readonly timeoutMs?: number;
  readonly streamId?: string;
}

export interface ControlPlane {
  /** `host:port` actually bound. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /** The CA root (PEM): trust anchor of the serving certificate and of signed workload certs. */
  readonly rootCertPem: string;
  /** The serving certificate (PEM) when TLS is on. */
  readonly servingCertPem?: string;
  readonly ca: CertificateAuthority;
  readonly store: ResourceStore;

  /** Adds/updates resources of a type (validated strictly when given as JSON). Returns the type's version_info. */
  setResources(typeUrl: string, resources: readonly ResourceInput[], opts?: SetResourcesOptions): string;
  /** Removes resources by name. Returns the type's version_info. */
  removeResources(typeUrl: string, names: readonly string[], opts?: { readonly push?: boolean }): string;
  resources(typeUrl: string): StoredResource[];
  /** version_info of a type ("0" before it has resources). */
  version(typeUrl: string): string;
  /** Re-sends the current state of every watched type (or the given ones) to every stream; returns responses sent. */
  pushNow(typeUrls?: readonly string[]): number;
  /** Delays the answers to debug requests (istio.io/debug/...), to test a slow istiod; 0 to stop. */
  setDebugDelay(ms: number): void;

  acks(typeUrl?: string): AckRecord[];
  nacks(typeUrl?: string): NackRecord[];
  /** Resolves with the first ACK (past or future) of `version` (any version when omitted) for the type. */
  waitForAck(typeUrl: string, version?: string, opts?: WaitOptions): Promise<AckRecord>;
  waitForNack(typeUrl: string, opts?: WaitOptions & { readonly version?: string }): Promise<NackRecord>;

  connectedStreams(): StreamInfo[];
  /** Every stream seen, closed ones included, oldest first. */
  streams(): StreamInfo[];
  stream(id: string): StreamInfo | undefined;
  /** The most recently opened stream (open or not). */
  lastStream(): StreamInfo | undefined;
  /** Resolves with the first open stream matching (new or existing). */
  waitForStream(opts?: { readonly kind?: StreamKind; readonly timeoutMs?: number; readonly match?: (s: StreamInfo) => boolean }): Promise<StreamInfo>;
  /** Streams refused (bad token). */
  rejectedStreams(): RejectedStream[];
  /** Ends open streams with a status (default UNAVAILABLE) so that clients reconnect. */
  disconnectAll(code?: grpc.status, details?: string): number;
  disconnect(streamId: string, code?: grpc.status, details?: string): boolean;

  /** Files in the resource directory that currently fail to parse. */
  resourceErrors(): FileError[];
  /** Rescans the resource directory now. */
  reloadResources(): ReloadResult | undefined;
  /** Resolves after the next directory reload that changed something or hit an error. */
  waitForReload(opts?: { readonly timeoutMs?: number }): Promise<ReloadResult>;

  close(): Promise<void>;
}

function bearerCheck(token: string | undefined): (md: grpc.Metadata) => string | undefined {
  return (md) => {
    if (token === undefined) return undefined;
    const values = md.get('authorization');
    if (values.length === 0) return 'request authenticate failure: no authorization metadata (expected a bearer token)';
    if (!values.some((v) => String(v) === `Bearer ${token}`)) return 'request authenticate failure: bearer token rejected';
    return undefined;
  };
}

function writeFileAtomic(file: string, data: string): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`listen address must be host:port, got ${JSON.stringify(listen)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`port out of range in ${listen}`);
  return { host: m[1]!, port };
}

type Subscribe = (onEvent: () => void) => () => void;

function waitUntil<T>(subscribe: Subscribe, check: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
  const now = check();
  if (now !== undefined) return Promise.resolve(now);
  return new Promise<T>((resolve, reject) => {
    const onEvent = () => {
      const v = check();
      if (v === undefined) return;
      cleanup();
      resolve(v);
    };
    const unsubscribe = subscribe(onEvent);
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      unsubscribe();
    };
  });
}

export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = options.log ?? (() => undefined);
  const tls = !options.plaintext;
  const ca = await CertificateAuthority.create(options.ca);
  const store = new ResourceStore();
  const nonWildcard = new Set((options.nonWildcardTypes ?? NON_WILDCARD_TYPES).map(normalizeTypeUrl));
  const answerEveryName = new Set((options.answerEveryNameTypes ?? ANSWER_EVERY_NAME_TYPES).map(normalizeTypeUrl));
  const authorize = bearerCheck(options.token);
  const ads = new AdsServer({
    store,
    isWildcardType: (t) => !nonWildcard.has(t),
    answersEveryName: (t) => answerEveryName.has(t),
    authorize,
    log,
    controlPlaneId: options.controlPlaneId ?? 'pilot-agent-ts development control plane',
  });

  let directory: ResourceDirectory | undefined;
  const server = new grpc.Server({ ...UNLIMITED_MESSAGE_OPTIONS });
  const cleanupOnError = () => {
    directory?.close();
    ads.close();
    server.forceShutdown();
  };
  try {
    if (options.resourcesDir) {
      directory = new ResourceDirectory(path.resolve(options.resourcesDir), store, { log, ...options.watch });
      const first = directory.start();
      for (const e of first.errors) log(`resources: ${e.message}`);
    }

    server.addService(adsServiceDefinition(), ads.implementation());
    server.addService(caServiceDefinition(), ca.handler(authorize, log));

    let servingCertPem: string | undefined;
    let creds: grpc.ServerCredentials;
    if (tls) {
      const serving = await ca.issueServingCert(options.servingSans ?? DEFAULT_SERVING_SANS);
      servingCertPem = serving.certChainPem;
      creds = options.requestClientCertificates
        ? optionalClientCertCredentials(serving, ca.rootCertPem)
        : grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.certChainPem), private_key: Buffer.from(serving.keyPem) }], false);
    } else {
      creds = grpc.ServerCredentials.createInsecure();
    }
    const listen = options.listen ?? '127.0.0.1:0';
    const { host } = splitHostPort(listen);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(listen, creds, (err, p) => (err ? reject(new Error(`cannot listen on ${listen}: ${err.message}`)) : resolve(p))),
    );
    if (options.rootCertOut) writeFileAtomic(options.rootCertOut, ca.rootCertPem);
    const address = `${host}:${port}`;
    log(`listening on ${address} (${tls ? 'TLS' : 'plaintext'})`);

    const adsEmitter: Subscribe = (fn) => {
      ads.on('update', fn);
      return () => ads.off('update', fn);
    };
    const timeoutOf = (o?: { timeoutMs?: number }) => o?.timeoutMs ?? 10_000;
    let closed: Promise<void> | undefined;

    const cp: ControlPlane = {
      address,
      host,
      port,
      tls,
      rootCertPem: ca.rootCertPem,
      servingCertPem,
      ca,
      store,
      setResources(typeUrl, resources, opts = {}) {
        const t = normalizeTypeUrl(typeUrl);
        const upsert = resources.map((r) => toStoredResource(t, r));
        const apply = () => store.apply([{ typeUrl: t, upsert, replace: opts.replace }]);
        if (opts.push === false) ads.hold(apply);
        else apply();
        return store.version(t);
      },
      removeResources(typeUrl, names, opts = {}) {
        const t = normalizeTypeUrl(typeUrl);
        const apply = () => store.apply([{ typeUrl: t, remove: names }]);
        if (opts.push === false) ads.hold(apply);
        else apply();
        return store.version(t);
      },
      resources: (typeUrl) => store.all(typeUrl),
      version: (typeUrl) => store.version(typeUrl),
      pushNow: (typeUrls) => ads.pushNow(typeUrls?.map(normalizeTypeUrl)),
      setDebugDelay: (ms) => ads.setDebugDelay(ms),
      acks: (typeUrl) => ads.ackLog.filter((a) => !typeUrl || a.typeUrl === normalizeTypeUrl(typeUrl)),
      nacks: (typeUrl) => ads.nackLog.filter((a) => !typeUrl || a.typeUrl === normalizeTypeUrl(typeUrl)),
      waitForAck(typeUrl, version, opts) {
        const t = normalizeTypeUrl(typeUrl);
        return waitUntil(
          adsEmitter,
          () => ads.ackLog.find((a) => a.typeUrl === t && (version === undefined || a.version === version) && (!opts?.streamId || a.streamId === opts.streamId)),
          timeoutOf(opts),
          () => `an ACK of ${t}${version !== undefined ? ` version ${version}` : ''}; ACKs so far: ${JSON.stringify(ads.ackLog.filter((a) => a.typeUrl === t).map((a) => a.version))}, NACKs: ${JSON.stringify(ads.nackLog.filter((a) => a.typeUrl === t).map((a) => `${a.version}: ${a.errorDetail.message}`))}`,
        );
      },
      waitForNack(typeUrl, opts) {
        const t = normalizeTypeUrl(typeUrl);
        return waitUntil(
          adsEmitter,
          () => ads.nackLog.find((a) => a.typeUrl === t && (opts?.version === undefined || a.version === opts.version) && (!opts?.streamId || a.streamId === opts.streamId)),
          timeoutOf(opts),
          () => `a NACK of ${t}; ACKs so far: ${JSON.stringify(ads.ackLog.filter((a) => a.typeUrl === t).map((a) => a.version))}`,
        );
      },
      connectedStreams: () => ads.streams(),
      streams: () => ads.streams({ includeClosed: true }),
      stream: (id) => ads.stream(id),
      lastStream() {
        const all = ads.streams({ includeClosed: true });
        return all[all.length - 1];
      },
      waitForStream(opts = {}) {
        return waitUntil(
          adsEmitter,
          () => ads.streams().find((s) => (!opts.kind || s.kind === opts.kind) && (!opts.match || opts.match(s))),
          timeoutOf(opts),
          () => `a${opts.kind ? ` ${opts.kind}` : 'n'} ADS stream; open: ${JSON.stringify(ads.streams().map((s) => s.id))}, refused: ${JSON.stringify(ads.rejected.map((r) => r.reason))}`,
        );
      },
      rejectedStreams: () => [...ads.rejected],
      disconnectAll: (code, details) => ads.disconnectAll(code, details),
      disconnect: (id, code, details) => ads.disconnect(id, code, details),
      resourceErrors: () => directory?.errors() ?? [],
      reloadResources: () => directory?.reload(),
      waitForReload(opts) {
        const dir = directory;
        if (!dir) return Promise.reject(new Error('no resource directory configured'));
        return new Promise<ReloadResult>((resolve, reject) => {
          const timer = setTimeout(() => {
            dir.off('reload', onReload);
            reject(new Error(`timed out after ${timeoutOf(opts)} ms waiting for a reload of ${dir.dir}`));
          }, timeoutOf(opts));
          const onReload = (r: ReloadResult) => {
            clearTimeout(timer);
            resolve(r);
          };
          dir.once('reload', onReload);
        });
      },
      close() {
        closed ??= (async () => {
          directory?.close();
          ads.close();
          await new Promise<void>((resolve) => {
            const force = setTimeout(() => {
              server.forceShutdown();
              resolve();
            }, 1000);
            server.tryShutdown(() => {
              clearTimeout(force);
              resolve();
            });
          });
          log('control plane stopped');
        })();
        return closed;
      },
    };
    return cp;
  } catch (err) {
    cleanupOnError();
    throw err;
  }
}

/**
 * Server credentials that request, but do not require, a client certificate verified against the
 * root. grpc-js offers that only through certificate providers (createSsl can only require one).
 */
function optionalClientCertCredentials(serving: { certChainPem: string; keyPem: string }, rootCertPem: string): grpc.ServerCredentials {
  const identity = Object.freeze({ certificate: Buffer.from(serving.certChainPem), privateKey: Buffer.from(serving.keyPem) });
  const root = Object.freeze({ caCertificate: Buffer.from(rootCertPem) });
  // The certificates never change; each listener gets them right after registering. Not during
  // the call: grpc-js 1.14 registers the provider's listeners before its own watcher of them, so an
  // update delivered synchronously is lost and the server drops every connection.
  const provider: grpc.experimental.CertificateProvider = {
    addCaCertificateListener: (listener) => queueMicrotask(() => listener(root)),
    removeCaCertificateListener: () => undefined,
    addIdentityCertificateListener: (listener) => queueMicrotask(() => listener(identity)),
    removeIdentityCertificateListener: () => undefined,
  };
  // grpc-js 1.14 names the parameters (ca, identity, require) but hands the first to the
  // identity slot: one provider serving both avoids depending on that order
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}
