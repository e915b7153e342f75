// The SDS server's protocol handling, with a scripted secret provider: first request, ACK, NACK,
// stale nonces, subscription changes, per-name pushes, unknown and pending names, versions and
// nonces, Delta/Fetch UNIMPLEMENTED, and the socket's life cycle.

import { spawn } from 'node:child_process';
import { existsSync, lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Lookup, SecretItem } from '../../src/security/secret-manager.js';
import { SdsServer, type SecretProvider } from '../../src/sds/server.js';
import { captureLogs, until, workDir, type Work } from '../security/support.js';
import { SdsClient } from '../envoy-stand-in/sds-client.js';
import { RawSdsClient } from './raw-client.js';

class ScriptedSecrets implements SecretProvider {
  private readonly items = new Map<string, SecretItem>();
  readonly pending = new Set<string>();
  private readonly listeners = new Set<(n: string) => void>();
  private gen = 0;
  lookups = 0;

  set(name: string, content: string): SecretItem {
    const base = { resourceName: name, source: 'ca' as const, createdTime: Date.now(), generation: ++this.gen };
    const item: SecretItem = name === 'ROOTCA' || name.startsWith('file-root:') ? { ...base, rootCert: content } : { ...base, certificateChain: content, privateKey: `key-of-${content}` };
    this.items.set(name, item);
    this.pending.delete(name);
    for (const l of this.listeners) l(name);
    return item;
  }

  lookup(name: string): Lookup {
    this.lookups++;
    const item = this.items.get(name);
    if (item) return { status: 'ready', item };
    if (this.pending.has(name)) return { status: 'pending', reason: 'scripted' };
    return { status: 'unknown', reason: `unknown resource name ${JSON.stringify(name)}` };
  }

  onUpdate(fn: (n: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  readonly released: string[] = [];
  release(name: string): void {
    this.released.push(name);
  }
}

let work: Work;
let secrets: ScriptedSecrets;
let server: SdsServer;
let logs: ReturnType<typeof captureLogs>;
const clients: RawSdsClient[] = [];

beforeEach(async () => {
  work = workDir('pa-sds-');
  logs = captureLogs();
  secrets = new ScriptedSecrets();
  secrets.set('default', 'chain-1');
  secrets.set('ROOTCA', 'root-1');
  server = new SdsServer({ socketPath: join(work.dir, 'var/run/secrets/workload-spiffe-uds/socket'), secrets });
  await server.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server.close();
  logs.restore();
  work.cleanup();
});

function client(): RawSdsClient {
  const c = new RawSdsClient(server.socketPath);
  clients.push(c);
  return c;
}

describe('SDS StreamSecrets', () => {
  it('answers the first request with the named secrets, a version and a nonce; an ACK gets nothing', async () => {
    const c = client();
    c.send({ names: ['default', 'ROOTCA'], nodeId: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local' });
    const r = await c.next();
    expect(r.typeUrl).toBe('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret');
    expect(r.versionInfo).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\/\d+$/);
    expect(r.nonce).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.secrets).toEqual([
      { name: 'default', certificateChain: 'chain-1', privateKey: 'key-of-chain-1' },
      { name: 'ROOTCA', trustedCa: 'root-1' },
    ]);
    c.ack(r, ['default', 'ROOTCA']);
    await c.none(200);
    await until('the ACK', () => (server.streamInfo()[0]?.lastAckedNonce === r.nonce ? true : undefined));
    expect(server.streamInfo()[0]).toMatchObject({ nodeId: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', subscribed: ['default', 'ROOTCA'], responses: 1, nacks: 0 });
  });

  it('pushes a changed secret only to streams subscribed to it, with a new version and nonce', async () => {
    const a = client();
    const b = client();
    a.send({ names: ['default'] });
    b.send({ names: ['ROOTCA'] });
    const ra = await a.next();
    const rb = await b.next();
    a.ack(ra, ['default']);
    b.ack(rb, ['ROOTCA']);
    await until('both ACKs', () => (server.streamInfo().every((s) => s.lastAckedNonce) ? true : undefined));
    secrets.set('default', 'chain-2');
    const push = await a.next();
    expect(push.secrets).toEqual([{ name: 'default', certificateChain: 'chain-2', privateKey: 'key-of-chain-2' }]);
    expect(push.versionInfo).not.toBe(ra.versionInfo);
    expect(push.nonce).not.toBe(ra.nonce);
    await b.none(200);
  });

  it('a NACK is logged and not answered; the next change is pushed as usual', async () => {
    const c = client();
    c.send({ names: ['default'] });
    const r = await c.next();
    c.send({ names: ['default'], version: '', nonce: r.nonce, error: 'Failed to load certificate chain' });
    await c.none(300);
    expect(logs.text()).toMatch(/SDS: ACK ERROR \d+ INTERNAL:Failed to load certificate chain/);
    expect(server.streamInfo()[0]).toMatchObject({ nacks: 1, lastNack: { nonce: r.nonce, message: 'Failed to load certificate chain' } });
    secrets.set('default', 'chain-2');
    expect((await c.next()).secrets[0]).toMatchObject({ certificateChain: 'chain-2' });
  });

  it('an ACK adding names gets only those; removing names stops their pushes; stale nonces are ignored', async () => {
    const c = client();
    c.send({ names: ['default'] });
    const r1 = await c.next();
    c.ack(r1, ['default', 'ROOTCA']);
    const r2 = await c.next();
    expect(r2.secrets.map((s) => s.name)).toEqual(['ROOTCA']);
    c.send({ names: ['default', 'ROOTCA', 'file-root:x'], version: r1.versionInfo, nonce: r1.nonce }); // stale: ignored
    await c.none(200);
    c.ack(r2, ['ROOTCA']);
    await until('the ACK', () => (server.streamInfo()[0]?.lastAckedNonce === r2.nonce ? true : undefined));
    secrets.set('default', 'chain-2');
    await c.none(200);
    secrets.set('ROOTCA', 'root-2');
    expect((await c.next()).secrets).toEqual([{ name: 'ROOTCA', trustedCa: 'root-2' }]);
  });

  it('an unknown name is logged once and not served; the stream and the other names carry on', async () => {
    const c = client();
    c.send({ names: ['default', 'no-such-secret'] });
    const r = await c.next();
    expect(r.secrets.map((s) => s.name)).toEqual(['default']);
    c.ack(r, ['default', 'no-such-secret']);
    await c.none(200);
    expect(c.ended).toBeUndefined();
    expect(logs.text().match(/not serving "no-such-secret": unknown resource name/g)).toHaveLength(1);
    expect(server.streamInfo()[0]!.waiting).toEqual(['no-such-secret']);
    secrets.set('default', 'chain-2');
    expect((await c.next()).secrets.map((s) => s.name)).toEqual(['default']);
  });

  it('a secret that is not ready yet is sent as soon as it is, on the same stream', async () => {
    secrets.pending.add('file-cert:a~b');
    const c = client();
    c.send({ names: ['file-cert:a~b', 'ROOTCA'] });
    const r = await c.next();
    expect(r.secrets.map((s) => s.name)).toEqual(['ROOTCA']);
    c.ack(r, ['file-cert:a~b', 'ROOTCA']);
    await c.none(100);
    secrets.set('file-cert:a~b', 'gateway-chain');
    expect((await c.next()).secrets).toEqual([{ name: 'file-cert:a~b', certificateChain: 'gateway-chain', privateKey: 'key-of-gateway-chain' }]);
    expect(logs.text()).toMatch(/file-cert:a~b is not ready yet \(scripted\)/);
  });

  it('reconnect: a new stream (no nonce) gets everything again; empty names unsubscribe', async () => {
    const c1 = client();
    c1.send({ names: ['default'] });
    await c1.next();
    c1.close();
    const c2 = client();
    c2.send({ names: ['default'], version: 'v-old' });
    expect((await c2.next()).secrets.map((s) => s.name)).toEqual(['default']);
    const r = c2.responses[0]!;
    c2.send({ names: [], version: r.versionInfo, nonce: r.nonce });
    await until('the unsubscribe', () => (server.streamInfo().find((s) => s.responses === 1 && s.subscribed.length === 0) ? true : undefined));
    secrets.set('default', 'chain-2');
    await c2.none(200);
  });

  it("the stand-in's client NACKs secrets Envoy would reject; the server logs it once and does not retry", async () => {
    const client = new SdsClient({ target: `unix:${server.socketPath}`, resourceNames: ['default', 'ROOTCA'] }, {});
    client.start();
    try {
      await until('the NACK', () => (server.streamInfo()[0]?.nacks === 1 ? true : undefined));
      await new Promise((r) => setTimeout(r, 300));
      expect(server.streamInfo()[0]).toMatchObject({ responses: 1, nacks: 1, lastNack: { message: expect.stringMatching(/Failed to load certificate chain/) } });
      expect(client.nacks).toBe(1);
      expect(client.secrets()).toEqual([]);
    } finally {
      client.close();
    }
  });

  it('DeltaSecrets and FetchSecrets answer UNIMPLEMENTED, as Istio does', async () => {
    const d = new RawSdsClient(server.socketPath, '/envoy.service.secret.v3.SecretDiscoveryService/DeltaSecrets');
    clients.push(d);
    await until('the status', () => d.ended);
    expect(d.ended).toEqual({ code: grpc.status.UNIMPLEMENTED, details: 'DeltaSecrets not implemented' });
    const unary = new grpc.Client(`unix:${server.socketPath}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      unary.makeUnaryRequest('/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (e) => resolve(e!)),
    );
    unary.close();
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err.details).toBe('FetchSecrets not implemented');
  });

  it('never sends a generation older than the one a stream already has', async () => {
    const c = client();
    c.send({ names: ['default'] });
    const r = await c.next();
    c.ack(r, ['default']);
    // re-announcing the same generation (a duplicate notification) sends nothing
    (secrets as unknown as { listeners: Set<(n: string) => void> }).listeners.forEach((l) => l('default'));
    await c.none(200);
  });
});

describe('SDS under clients that misbehave', () => {
  it('a client that asks again and again but never reads gets a bounded number of responses, then what it missed once it reads', async () => {
    const big = 'R'.repeat(200 * 1024); // an OS CA bundle's size
    secrets.set('file-root:system', big);
    const c = client();
    c.call.pause();
    for (let i = 0; i < 300; i++) c.send({ names: ['file-root:system'] }); // each one (no nonce) asks for everything again
    // once blocked, the server writes nothing more and reads no more requests until the client reads
    await until('the stream to block', () => (server.streamInfo()[0]?.blocked ? true : undefined));
    const written = server.streamInfo()[0]!.responses;
    // about 1 MiB of writes in flight, not 300 copies (60 MB) queued in the agent
    expect(written).toBeLessThan(20);
    c.call.resume();
    // the client reads; the server reads the requests it had left and answers them, the last
    // response carrying the secret
    await until('every request to be read and answered', () => {
      const info = server.streamInfo()[0]!;
      return !info.blocked && c.responses.length === info.responses && c.responses.length > written ? true : undefined;
    });
    await c.none(300);
    expect(c.responses.at(-1)!.secrets.map((x) => x.trustedCa?.length)).toEqual([big.length]);
  });

  it("refuses a request larger than gRPC's 4 MiB, as Istio's SDS server does", async () => {
    const c = client();
    c.send({ names: ['file-root:' + 'x'.repeat(4 * 1024 * 1024)] });
    await until('the stream to end', () => c.ended);
    expect(c.ended!.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // the server carries on
    const d = client();
    d.send({ names: ['default'] });
    expect((await d.next()).secrets.map((x) => x.name)).toEqual(['default']);
  });

  it('tells the secret manager when no stream subscribes to a name any more', async () => {
    const a = client();
    const b = client();
    a.send({ names: ['default', 'ROOTCA'] });
    const ra = await a.next();
    b.send({ names: ['ROOTCA'] });
    await b.next();
    a.ack(ra, ['default']); // drops ROOTCA, which b still has
    await a.none(100);
    expect(secrets.released).toEqual([]);
    a.close();
    await until('default to be released', () => (secrets.released.includes('default') ? true : undefined));
    expect(secrets.released).toEqual(['default']);
    b.send({ names: [] }); // unsubscribes from everything
    await until('ROOTCA to be released', () => (secrets.released.includes('ROOTCA') ? true : undefined));
    expect(secrets.released).toEqual(['default', 'ROOTCA']);
  });
});

describe('SDS socket', () => {
  it('removes a stale socket left by a dead process, refuses a live one or a regular file, and removes its own on close', async () => {
    const path = join(work.dir, 'var/run/secrets/workload-spiffe-uds/stale');
    // a process that binds the socket and dies without unlinking it
    await new Promise<void>((resolve) => {
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      child.on('exit', () => resolve());
    });
    expect(lstatSync(path).isSocket()).toBe(true);
    const s = new SdsServer({ socketPath: path, secrets });
    await s.start();
    const c = new RawSdsClient(path);
    c.send({ names: ['default'] });
    expect((await c.next()).secrets.map((x) => x.name)).toEqual(['default']);
    c.close();
    expect(logs.text()).toMatch(/removing stale SDS socket/);
    await expect(new SdsServer({ socketPath: path, secrets }).start()).rejects.toThrow(/another SDS server is listening there/);
    await s.close();
    expect(existsSync(path)).toBe(false);
    writeFileSync(path, 'not a socket');
    await expect(new SdsServer({ socketPath: path, secrets }).start()).rejects.toThrow(/exists and is not a socket/);
    await expect(new SdsServer({ socketPath: join(work.dir, 'x'.repeat(120)), secrets }).start()).rejects.toThrow(/limited to 107 bytes/);
  });
});
