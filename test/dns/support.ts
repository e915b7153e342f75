// Shared code of the DNS proxy tests and the `dns` bench: dig as the client, dnsmasq as a real
// upstream resolver, scripted fake upstreams, and a NameTable encoder written from Istio's field
// numbers independently of our nds.proto (so a numbering mistake there cannot cancel out).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import protobuf from 'protobufjs/minimal.js';

export interface NameInfoInput {
  readonly ips: readonly string[];
  readonly registry?: string;
  readonly shortname?: string;
  readonly namespace?: string;
  readonly altHosts?: readonly string[];
}

/** istio.networking.nds.v1.NameTable: table=1 (map<string, NameInfo>); NameInfo: ips=1, registry=2, shortname=3, namespace=4, alt_hosts=5. */
export function encodeNameTableWire(table: Readonly<Record<string, NameInfoInput>>): Uint8Array {
  const w = protobuf.Writer.create();
  for (const [host, info] of Object.entries(table)) {
    const v = protobuf.Writer.create();
    for (const ip of info.ips) v.uint32((1 << 3) | 2).string(ip);
    if (info.registry) v.uint32((2 << 3) | 2).string(info.registry);
    if (info.shortname) v.uint32((3 << 3) | 2).string(info.shortname);
    if (info.namespace) v.uint32((4 << 3) | 2).string(info.namespace);
    for (const alt of info.altHosts ?? []) v.uint32((5 << 3) | 2).string(alt);
    const value = v.finish();
    // map entry: key=1, value=2
    const entry = protobuf.Writer.create();
    entry.uint32((1 << 3) | 2).string(host);
    entry.uint32((2 << 3) | 2).bytes(value);
    w.uint32((1 << 3) | 2).bytes(entry.finish());
  }
  return w.finish();
}

/** An OPT record for dns-packet (its types want every field). */
export function optAnswer(udpPayloadSize: number, options: { code: number; data: Buffer }[] = []): dnsPacket.Answer {
  return { type: 'OPT', name: '.', udpPayloadSize, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options } as dnsPacket.Answer;
}

export interface DigAnswer {
  readonly name: string;
  readonly ttl: number;
  readonly type: string;
  readonly data: string;
}

export interface DigResult {
  readonly status: string;
  readonly flags: readonly string[];
  readonly answers: readonly DigAnswer[];
  /** EDNS UDP size of the reply's OPT record, if any. */
  readonly ednsUdp: number | undefined;
  readonly raw: string;
  readonly ms: number;
}

/** Runs `dig @server -p port <args>` and parses the header, flags and answer section. */
export function dig(server: string, port: number, args: readonly string[]): Promise<DigResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile('dig', [`@${server}`, '-p', String(port), '+noall', '+comments', '+answer', '+tries=1', '+time=5', ...args], { timeout: 20_000 }, (err, stdout) => {
      const ms = performance.now() - t0;
      const status = /status: ([A-Z]+)/.exec(stdout)?.[1];
      if (!status) return reject(new Error(`dig ${args.join(' ')}: no answer (${err?.message ?? ''})\n${stdout}`));
      const flags = (/;; flags: ([^;]*);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
      const udp = /; EDNS: version: \d+, flags:[^;]*; udp: (\d+)/.exec(stdout)?.[1];
      const answers: DigAnswer[] = [];
      for (const line of stdout.split('\n')) {
        if (line.startsWith(';') || line.trim() === '') continue;
        const [name, ttl, , type, ...data] = line.trim().split(/\s+/);
        answers.push({ name: name!, ttl: Number(ttl), type: type!, data: data.join(' ') });
      }
      resolve({ status, flags, answers, ednsUdp: udp === undefined ? undefined : Number(udp), raw: stdout, ms });
    });
  });
}

export interface Dnsmasq {
  readonly host: string;
  readonly port: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** dnsmasq answering from a hosts file only (NXDOMAIN for everything else), on host:port. */
export async function startDnsmasq(opts: { host: string; port: number; hosts: string; extraArgs?: readonly string[] }): Promise<Dnsmasq> {
  const dir = mkdtempSync(join(tmpdir(), 'pa-dnsmasq-'));
  chmodSync(dir, 0o755);
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, opts.hosts, { mode: 0o644 });
  const args = [
    '-k',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    `--addn-hosts=${hostsFile}`,
    '--local=/#/',
    '-p',
    String(opts.port),
    `--listen-address=${opts.host}`,
    '--bind-interfaces',
    '--pid-file=',
    '--log-facility=-',
    ...(process.getuid?.() === 0 ? ['--user=root'] : []),
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn('dnsmasq', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  // ready once it answers
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`dnsmasq exited: ${err}`);
    }
    try {
      await udpQuery(opts.host, opts.port, 'ready.invalid', 'A', 300);
      break;
    } catch {
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`dnsmasq did not start: ${err}`);
      }
    }
  }
  return { host: opts.host, port: opts.port, process: child, stop };
}

/** One UDP query from a fresh socket; resolves with the decoded answer. */
export function udpQuery(host: string, port: number, name: string, type: dnsPacket.RecordType, timeoutMs = 2000, edns?: number): Promise<dnsPacket.DecodedPacket & { size: number }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const id = Math.floor(Math.random() * 65536);
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`no answer for ${name} from ${host}:${port}`));
    }, timeoutMs);
    sock.on('message', (msg) => {
      const pkt = dnsPacket.decode(msg);
      if (pkt.id !== id) return;
      clearTimeout(timer);
      sock.close();
      resolve(Object.assign(pkt, { size: msg.length }));
    });
    sock.on('error', () => undefined);
    const additionals: dnsPacket.Answer[] = edns === undefined ? [] : [optAnswer(edns)];
    sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }], additionals }), port, host);
  });
}

/** A UDP socket that reads queries and never answers (an upstream that times out). */
export async function silentUdp(host = '127.0.0.1'): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  const sock = createSocket('udp4');
  let n = 0;
  sock.on('message', () => n++);
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return { port: sock.address().port, received: () => n, close: () => new Promise((r) => sock.close(() => r())) };
}

export interface SeenQuery {
  readonly protocol: 'udp' | 'tcp';
  readonly packet: dnsPacket.DecodedPacket;
}

export type FakeHandler = (q: dnsPacket.DecodedPacket, protocol: 'udp' | 'tcp') => dnsPacket.Packet | undefined;

/** A scripted upstream on UDP and TCP (same port); `handler` returns the reply (undefined: none). */
export async function fakeUpstream(handler: FakeHandler): Promise<{ port: number; seen: SeenQuery[]; close: () => Promise<void> }> {
  const seen: SeenQuery[] = [];
  const onUdp = (udp: UdpSocket) => (msg: Buffer, rinfo: { port: number; address: string }): void => {
    const q = dnsPacket.decode(msg);
    seen.push({ protocol: 'udp', packet: q });
    const r = handler(q, 'udp');
    if (r) udp.send(dnsPacket.encode({ ...r, id: q.id, type: 'response', questions: q.questions }), rinfo.port, rinfo.address);
  };
  const onTcp = (sock: Socket): void => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const q = dnsPacket.decode(msg);
        seen.push({ protocol: 'tcp', packet: q });
        const r = handler(q, 'tcp');
        if (r) sock.write(dnsPacket.streamEncode({ ...r, id: q.id, type: 'response', questions: q.questions }));
      }
    });
  };
  const { udp, tcp } = await udpAndTcpOnOnePort('127.0.0.1', onUdp, onTcp);
  return {
    port: udp.address().port,
    seen,
    close: async () => {
      await new Promise<void>((r) => udp.close(() => r()));
      await new Promise<void>((r) => tcp.close(() => r()));
    },
  };
}

/**
 * A UDP socket on a free port and a TCP server on the same port number. The kernel picks the UDP
 * port without regard to TCP, so that number may be taken on TCP (a listener, or a client
 * connection's local port, ESTABLISHED or in TIME_WAIT, of which a loaded suite leaves hundreds):
 * then both are closed and another port is tried. Never waits forever, never leaves an
 * 'error' event unhandled.
 */
async function udpAndTcpOnOnePort(
  host: string,
  onUdp: (udp: UdpSocket) => (msg: Buffer, rinfo: { port: number; address: string }) => void,
  onTcp: (sock: Socket) => void,
): Promise<{ udp: UdpSocket; tcp: Server }> {
  for (let attempt = 1; ; attempt++) {
    const udp = createSocket('udp4');
    udp.on('message', onUdp(udp));
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', () => undefined);
    const tcp = createServer(onTcp);
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(udp.address().port, host, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      tcp.on('error', () => undefined);
      return { udp, tcp };
    } catch (err) {
      await new Promise<void>((r) => udp.close(() => r()));
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
    }
  }
}

/** n A records 10.<x>.<y>.<z> for `name`, as dnsmasq hosts-file lines. */
export function hostsLines(name: string, n: number, base = 20): string {
  let out = '';
  for (let i = 0; i < n; i++) out += `10.${base}.${Math.floor(i / 250)}.${(i % 250) + 1} ${name}\n`;
  return out;
}
