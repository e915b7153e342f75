// A DNS load generator that runs in its own Node process, so it never shares an event loop with
// the server under test: UDP queries from one socket, either a closed loop with a fixed number
// outstanding (latency, throughput) or a blast of everything at once (floods). It prints one JSON
// line of figures.

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

export interface LoadOptions {
  readonly host: string;
  readonly port: number;
  /**
   * Alternate queries between `port` and these ports (A/B under the same machine noise); the
   * figures of each are in `byPort`, in this order after `port`.
   */
  readonly alsoPorts?: readonly number[];
  /** Queries cycle through these: [name, type]. */
  readonly names: readonly (readonly [string, 'A' | 'AAAA' | 'TXT'])[];
  readonly total: number;
  /** Queries outstanding at once; 0 = send them all at once. */
  readonly concurrency: number;
  readonly timeoutMs?: number;
  /** Wait for answers this long after the last send in blast mode. */
  readonly drainMs?: number;
  /** Advertise this EDNS size (no OPT record when undefined). */
  readonly edns?: number;
}

export interface LoadResult {
  readonly sent: number;
  readonly answered: number;
  readonly timeouts: number;
  readonly rcodes: Readonly<Record<string, number>>;
  readonly truncated: number;
  /** Answers with at least one answer record. */
  readonly withAnswers: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly qps: number;
  readonly durationMs: number;
  /** Per target port (port, then alsoPorts): answered, p50Ms, p99Ms. */
  readonly byPort: readonly { readonly port: number; readonly answered: number; readonly p50Ms: number; readonly p99Ms: number }[];
}

const SOURCE = String.raw`
const dgram = require('node:dgram');
const packet = require(process.argv[1]);
const opts = JSON.parse(process.argv[2]);
const sock = dgram.createSocket(opts.host.includes(':') ? 'udp6' : 'udp4');
try { sock.setRecvBufferSize?.(4 << 20); } catch {}
// with several targets, each name goes to each of them in turn
const queries = opts.names.flatMap((n) => Array(1 + (opts.alsoPorts || []).length).fill(n)).map(([name, type]) => packet.encode({ type: 'query', id: 0, flags: packet.RECURSION_DESIRED, questions: [{ name, type }],
  additionals: opts.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns }] }));
const pending = new Map();
const lat = [];
const ports = [opts.port, ...(opts.alsoPorts || [])];
const latByPort = ports.map(() => []);
const rcodes = {};
let sent = 0, answered = 0, timeouts = 0, truncated = 0, withAnswers = 0, nextId = 0;
const t0 = process.hrtime.bigint();
function finish() {
  const durationMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const pct = (l, p) => (l.length ? l[Math.min(l.length - 1, Math.floor(p * l.length))] : NaN);
  for (const l of [lat, ...latByPort]) l.sort((a, b) => a - b);
  const byPort = ports.map((port, i) => ({ port, answered: latByPort[i].length, p50Ms: pct(latByPort[i], 0.5), p99Ms: pct(latByPort[i], 0.99) }));
  process.stdout.write(JSON.stringify({ sent, answered, timeouts, rcodes, truncated, withAnswers, p50Ms: pct(lat, 0.5), p99Ms: pct(lat, 0.99), qps: answered / (durationMs / 1000), durationMs, byPort }) + '\n');
  sock.close();
}
function send() {
  if (sent >= opts.total) return;
  let id = nextId++ & 0xffff;
  while (pending.has(id)) id = nextId++ & 0xffff;
  const q = Buffer.from(queries[sent % queries.length]);
  q.writeUInt16BE(id, 0);
  const timer = opts.concurrency > 0 ? setTimeout(() => { pending.delete(id); timeouts++; done(); }, opts.timeoutMs) : undefined;
  const target = sent % ports.length;
  pending.set(id, { t: process.hrtime.bigint(), timer, target });
  sent++;
  sock.send(q, ports[target], opts.host);
}
function done() {
  if (opts.concurrency > 0) {
    if (sent < opts.total) send();
    else if (pending.size === 0) finish();
  }
}
sock.on('message', (msg) => {
  if (msg.length < 12) return;
  const id = msg.readUInt16BE(0);
  const p = pending.get(id);
  if (!p) return;
  pending.delete(id);
  if (p.timer) clearTimeout(p.timer);
  const ms = Number(process.hrtime.bigint() - p.t) / 1e6;
  lat.push(ms);
  latByPort[p.target].push(ms);
  answered++;
  const flags = msg.readUInt16BE(2);
  const rcode = String(flags & 15);
  rcodes[rcode] = (rcodes[rcode] || 0) + 1;
  if (flags & 0x200) truncated++;
  if (msg.readUInt16BE(6) > 0) withAnswers++;
  done();
});
sock.on('error', () => {});
sock.bind(0, () => {
  if (opts.concurrency > 0) {
    for (let i = 0; i < opts.concurrency; i++) send();
  } else {
    // blast: everything now, in batches so the event loop can read answers meanwhile
    const batch = () => {
      for (let i = 0; i < 250 && sent < opts.total; i++) send();
      if (sent < opts.total) setImmediate(batch);
      else setTimeout(() => { timeouts = sent - answered; finish(); }, opts.drainMs);
    };
    batch();
  }
});
`;

const dnsPacketPath = createRequire(import.meta.url).resolve('dns-packet');

/** Runs the load in a child process and returns its figures. */
export function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const args = JSON.stringify({ timeoutMs: 2000, drainMs: 1000, ...opts });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', SOURCE, dnsPacketPath, args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) return reject(new Error(`load client failed (${code}): ${err}`));
      resolve(JSON.parse(line) as LoadResult);
    });
  });
}
