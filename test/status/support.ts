// Shared code of the status-port tests: real test servers (HTTP, HTTPS with a self-signed
// certificate made by openssl, TCP, gRPC health), plain HTTP calls that report the status, body and
// headers, the injected fixtures' status-port env, and a StatusServer started on a free port.

import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { parseAllDocuments } from 'yaml';
import { StatusServer, type StatusServerOptions } from '../../src/status/server.js';
import { istioTestdata } from '../support/paths.js';
import { freePort } from '../support/processes.js';

export { freePort };

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** One request without keep-alive; a gzip body is decoded (the raw size is in `rawBytes`). */
export function call(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; timeoutMs?: number; localAddress?: string } = {},
): Promise<Reply & { rawBytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', agent: false, headers: { connection: 'close', ...opts.headers }, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const body = res.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        resolve({ status: res.statusCode ?? 0, body: body.toString('utf8'), headers: res.headers, rawBytes: raw.length });
      });
    });
    req.setTimeout(opts.timeoutMs ?? 10_000, () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

// ----- injected fixtures -------------------------------------------------------------------------

/** Env of the istio-proxy container of an injected fixture (Deployment or bare Pod). */
export function proxyEnv(fixture: string): Record<string, string> {
  const docs = parseAllDocuments(readFileSync(join(istioTestdata, 'injection', fixture), 'utf8')).map((d) => d.toJS() as Record<string, unknown>);
  for (const doc of docs) {
    const spec = ((doc?.spec as { template?: { spec: unknown } } | undefined)?.template?.spec ?? doc?.spec) as
      | { containers?: { name: string; env?: { name: string; value?: string }[] }[]; initContainers?: { name: string; env?: { name: string; value?: string }[] }[] }
      | undefined;
    const proxy = [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])].find((c) => c.name === 'istio-proxy');
    if (!proxy) continue;
    return Object.fromEntries((proxy.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
  }
  throw new Error(`no istio-proxy container in ${fixture}`);
}

/** Rewrites every `"port": N` of a probers/annotations JSON through `map` (numbers and strings). */
export function remapPorts(json: string, map: ReadonlyMap<number, number>): string {
  return json.replace(/"port":\s*("?)(\d+)\1/g, (m, q: string, p: string) => (map.has(Number(p)) ? `"port":${q}${map.get(Number(p))}${q}` : m));
}

/** Distinct port numbers mentioned in a probers/annotations JSON. */
export function portsIn(json: string): number[] {
  return [...new Set([...json.matchAll(/"port":\s*"?(\d+)"?/g)].map((m) => Number(m[1])))];
}

// ----- test servers ------------------------------------------------------------------------------

export interface TestServer {
  readonly port: number;
  /** Requests seen: method, url, headers, remote address. */
  readonly seen: { method: string; url: string; headers: http.IncomingHttpHeaders; remoteAddress: string; remotePort?: number }[];
  close(): Promise<void>;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

function track(server: http.Server | https.Server | net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

export async function httpServer(handler: Handler, opts: { port?: number; host?: string; tls?: { key: string; cert: string } } = {}): Promise<TestServer> {
  const seen: TestServer['seen'] = [];
  const wrapped: Handler = (req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, remoteAddress: req.socket.remoteAddress ?? '', remotePort: req.socket.remotePort ?? 0 });
    handler(req, res);
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, wrapped) : http.createServer(wrapped);
  const sockets = track(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as net.AddressInfo).port, seen, close: closer(server, sockets) };
}

export async function tcpServer(opts: { port?: number } = {}): Promise<TestServer> {
  const seen: TestServer['seen'] = [];
  const server = net.createServer((s) => {
    seen.push({ method: 'TCP', url: '', headers: {}, remoteAddress: s.remoteAddress ?? '' });
    s.end();
  });
  const sockets = track(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  return { port: (server.address() as net.AddressInfo).port, seen, close: closer(server, sockets) };
}

/** A self-signed certificate for localhost/127.0.0.1, made with the openssl CLI. */
export function selfSignedCert(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'pa-status-cert-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=app.test', '-addext', 'subjectAltName=DNS:app.test',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'pipe' });
    return { key: readFileSync(join(dir, 'key.pem'), 'utf8'), cert: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// The health service as the gRPC project publishes it (grpc/health/v1/health.proto), parsed by
// protobufjs: the test server does not share the agent's encoding code.
const HEALTH_PROTO = `
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`;

export interface GrpcHealthServer {
  readonly port: number;
  /** service name -> status name; a missing name answers NOT_FOUND, as grpc's health server. */
  readonly statuses: Map<string, 'SERVING' | 'NOT_SERVING' | 'UNKNOWN'>;
  readonly userAgents: string[];
  /** The source address of each Check call. */
  readonly peers: string[];
  close(): Promise<void>;
}

export async function grpcHealthServer(opts: { implementHealth?: boolean; port?: number } = {}): Promise<GrpcHealthServer> {
  const root = protobuf.parse(HEALTH_PROTO).root;
  const Req = root.lookupType('grpc.health.v1.HealthCheckRequest');
  const Res = root.lookupType('grpc.health.v1.HealthCheckResponse');
  const statuses = new Map<string, 'SERVING' | 'NOT_SERVING' | 'UNKNOWN'>([['', 'SERVING']]);
  const userAgents: string[] = [];
  const peers: string[] = [];
  const server = new grpc.Server();
  if (opts.implementHealth !== false) {
    server.addService(
      {
        Check: {
          path: '/grpc.health.v1.Health/Check',
          requestStream: false,
          responseStream: false,
          requestSerialize: (v: { service: string }) => Buffer.from(Req.encode(Req.create(v)).finish()),
          requestDeserialize: (b: Buffer) => Req.toObject(Req.decode(b), { defaults: true }) as { service: string },
          responseSerialize: (v: { status: string }) => Buffer.from(Res.encode(Res.fromObject(v)).finish()),
          responseDeserialize: (b: Buffer) => Res.toObject(Res.decode(b), { enums: String }) as { status: string },
        },
      },
      {
        Check: (call: grpc.ServerUnaryCall<{ service: string }, { status: string }>, cb: grpc.sendUnaryData<{ status: string }>) => {
          userAgents.push(String(call.metadata.get('user-agent')[0] ?? ''));
          peers.push(call.getPeer().replace(/:\d+$/, ''));
          const s = statuses.get(call.request.service);
          if (s === undefined) cb({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
          else cb(null, { status: s });
        },
      },
    );
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${opts.port ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, statuses, userAgents, peers, close: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

// ----- raw TCP peers (hostile or broken metrics sources) -----------------------------------------

const rawServers: net.Server[] = [];
const rawSockets = new Set<net.Socket>();

/** A raw TCP server on loopback; `onConnection` gets each accepted socket (tracked, errors ignored). */
export async function rawServer(onConnection: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer((s) => {
    rawSockets.add(s);
    s.on('close', () => rawSockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  rawServers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** Answers the request with `head`, then writes `filler` for as long as the peer reads. */
export const endlessAnswer =
  (head: string, filler: string) =>
  (s: net.Socket): void => {
    const chunk = Buffer.from(filler.repeat(Math.ceil(65_536 / filler.length)));
    s.once('data', () => {
      s.write(head);
      const pump = (): void => {
        while (!s.destroyed) if (!s.write(chunk)) return void s.once('drain', pump);
      };
      pump();
    });
  };

/** Connections the raw servers still have open (the agent's connections to them, seen from their side). */
export const openRawConnections = (): number => rawSockets.size;

/** Closes every raw server and its connections (afterEach). */
export async function closeRawServers(): Promise<void> {
  for (const s of rawSockets) s.destroy();
  await Promise.all(rawServers.splice(0).map((s) => new Promise((r) => s.close(r))));
}

// ----- status server -----------------------------------------------------------------------------

const started: StatusServer[] = [];

/** A StatusServer on a free port (retrying if the port was taken meanwhile). */
export async function startStatus(opts: Omit<StatusServerOptions, 'port' | 'proxyType' | 'adminPort'> & Partial<Pick<StatusServerOptions, 'port' | 'proxyType' | 'adminPort'>>): Promise<StatusServer> {
  for (let attempt = 0; ; attempt++) {
    const port = opts.port ?? (await freePort());
    const s = new StatusServer({ proxyType: 'sidecar', adminPort: 1, ...opts, port });
    try {
      await s.start();
      started.push(s);
      return s;
    } catch (err) {
      if (attempt >= 3 || opts.port !== undefined) throw err;
    }
  }
}

/** Closes every StatusServer started through startStatus (afterEach). */
export async function closeStarted(): Promise<void> {
  await Promise.all(started.splice(0).map((s) => s.close()));
}
