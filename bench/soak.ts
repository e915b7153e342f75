// Bench `soak` (reliability issue #13): N minutes (`--minutes`, default 3, fractions allowed) of
// xDS pushes of varying size through the real agent to an Envoy-like client, while other clients
// connect and drop on the XDS socket and the control plane restarts every 30 s. It reports whether
// the agent's memory and file descriptors grow, whether it stayed up, and whether the client that
// is connected at the end holds exactly the control plane's final configuration.
//
// Processes (each tracked by PID and stopped on every exit path, SIGINT included):
//   - the agent: `pilot-agent proxy sidecar`, proxyless (DISABLE_ENVOY), in a scratch pod root;
//   - the development control plane (test/control-plane/main.js) over TLS with a bearer token and
//     client certificates requested, as istiod; its CA root is generated once and passed in
//     (--ca-root-cert/--ca-root-key), so a restarted control plane keeps its root, as istiod does
//     with istio-ca-secret. Every 30 s it is stopped, alternately with SIGTERM (a rollout: streams
//     end with UNAVAILABLE) and SIGKILL (a crash: connections cut mid-push), and restarted on the
//     same port. TLS rather than plaintext because that is the agent's production path to istiod:
//     handshakes, certificates and TLS sockets are part of what must not leak;
//   - the Envoy-like client (bench/soak-client.ts): the Envoy stand-in's AdsClient (Delta, Istio's
//     default; `--sotw` for state of the world) subscribing CDS, EDS, LDS and RDS through the agent
//     and reconnecting with Envoy's backoff. Its own process: its RSS is not the agent's.
// In this process: the pushes (files written into the control plane's watched directory), the
// churn clients (raw HTTP/2 ADS streams that replace whoever is connected, as a flapping Envoy
// would, and drop after a random time: while the agent dials, mid-push, or after the full state;
// by RST_STREAM, by closing the socket, or as a burst of streams on one connection), and sampling.
//
// Pushes: every 3 s the file push.json is replaced (atomically) with clusters whose total encoded
// size is the next of ten sizes from 1 KiB to 20 MiB (geometric; each block of ten is a shuffled
// permutation, so every 30 s sees the same sizes): realistic clusters cloned from Istio's sidecar
// config dump (up to ~270 KB, with their endpoints in base.json), then clusters padded through
// metadata to the size, a cluster and a listener named after the push's generation
// (soak-generation-<n>), so the client's updates say which push they carry. base.json also holds
// the config dump's listeners and routes. With Delta only what changed travels: the padded clusters
// carry the generation, so they change (and travel) with every push.
//
// Figures: RSS (VmRSS) and open fds of the agent sampled every 2 s; growth = median over the last
// minute minus median over the first minute (runs shorter than 2 minutes: last third minus first
// third). Medians, not maxima: a 20 MiB push in flight lifts RSS for a moment, and one such push
// landing in one window and not the other would swing a maximum by tens of MiB without any leak;
// a leak moves the whole distribution, which the median follows. converged = 1 when, after churn,
// pushes and restarts stop, the client reconnects and holds for every type it subscribes exactly
// the resources of the final files (Delta: each resource's content version; SotW: names) with the
// version_info the control plane reports for them (CDS and LDS; SotW: every type), within 120 s.
// To tell where memory goes, the agent runs with a small probe (bench/agent-memory-probe.ts, loaded
// with `node --import`) that records its V8 heap (committed and used) and the memory outside it
// (Buffers): RSS growing with those flat is native memory the allocator keeps, not objects held.
// Open fds are classified (which unix socket, TCP state and peer, pipes, ...) at the start, at the
// end of the soak, and at rest after convergence, so a descriptor left behind is named.

import http2 from 'node:http2';
import net from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { frameMessage } from '../src/grpc/frames.js';
import { DELTA, SOTW } from '../src/xds/protocol.js';
import { ANSWER_EVERY_NAME_TYPES, buildResourceSet, CertificateAuthority, emptyAnswer, parseResourceFile, privateKeyToPem, type ResourceSet } from '../test/control-plane/index.js';
import { decodeMessage, messageToJson } from '../test/control-plane/xds-protos.js';
import { messageSchema } from '../test/support/envoy-protos.js';
import { freePort } from '../test/support/processes.js';
import { rng } from '../test/support/random.js';
import { ADS_TYPE_URLS, type AdsType } from '../test/envoy-stand-in/ads-client.js';
import { median, peakRssMiB, round, rssMiB, type Bench } from './harness.js';
import { killStartedChildren, spawnTracked, startControlPlaneProcess, startProxylessAgent, type BenchChild, type ProxylessAgent } from './processes.js';
import { GENERATION_PREFIX, type ClientEvent, type ClientState } from './soak-client.js';

const CDS = ADS_TYPE_URLS.CDS;
const LDS = ADS_TYPE_URLS.LDS;
const TOKEN = 'soak-token';
const KiB = 1024;
const MiB = 1024 * 1024;
/** Ten push sizes, 1 KiB to 20 MiB, geometric. */
const SIZES = Array.from({ length: 10 }, (_, i) => Math.round(KiB * (20 * KiB) ** (i / 9)));
const PUSH_INTERVAL_MS = 3000;
const RESTART_INTERVAL_MS = 30_000;
const SAMPLE_INTERVAL_MS = 2000;
const CONVERGE_TIMEOUT_MS = 120_000;
/** Copies of the config dump's clusters and endpoints (3 clusters, ~670 bytes, per copy). */
const REALISTIC_COPIES = 400;
const PAD_MAX = MiB;
/** Encoded bytes of a padding cluster besides its padding (name, type, timeout, metadata framing). */
const PAD_OVERHEAD = 80;

const ADS_TYPE_OF: Record<string, AdsType> = Object.fromEntries(Object.entries(ADS_TYPE_URLS).map(([t, url]) => [url.slice(url.lastIndexOf('/') + 1), t as AdsType]));

const pause = (ms: number, signal: AbortSignal): Promise<void> => sleep(ms, undefined, { signal }).catch(() => undefined);

function writeAtomic(file: string, text: string): void {
  const tmp = join(file, '..', `.${file.slice(file.lastIndexOf('/') + 1)}.tmp`); // dot files are not read by the control plane
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

// ----- the resources ----------------------------------------------------------------------------

function resourceJson(typeUrl: string, binary: Uint8Array): string {
  const schema = messageSchema(typeUrl);
  return JSON.stringify({ '@type': typeUrl, ...(messageToJson(schema, decodeMessage<object>(schema, binary)) as Record<string, unknown>) });
}

/** Writes the control plane's resource directory: base.json once, push.json for every push. */
class PushWriter {
  private readonly clusters: { json: string; bytes: number }[];
  private readonly realisticBytes: number;
  private readonly pad = 'x'.repeat(PAD_MAX);
  readonly pushFile: string;
  readonly baseFile: string;

  constructor(readonly dir: string) {
    const realistic = buildResourceSet({ scale: REALISTIC_COPIES, kinds: ['clusters', 'endpoints'] });
    const base = buildResourceSet({ scale: 1, kinds: ['listeners', 'routes'] });
    this.clusters = (realistic.byType.get(CDS) ?? []).map((r) => ({ json: resourceJson(CDS, r.binary), bytes: r.binary.length }));
    this.realisticBytes = realistic.bytes(CDS);
    const all = (set: ResourceSet) => [...set.byType.entries()].filter(([t]) => t !== CDS).flatMap(([t, list]) => list.map((r) => resourceJson(t, r.binary)));
    mkdirSync(dir, { recursive: true });
    this.baseFile = join(dir, 'base.json');
    this.pushFile = join(dir, 'push.json');
    writeAtomic(this.baseFile, `[${[...all(realistic), ...all(base)].join(',\n')}]\n`);
  }

  /** Replaces push.json with about `size` bytes of clusters stamped with `generation`; returns the bytes. */
  write(generation: number, size: number): number {
    const parts: string[] = [];
    let bytes = 0;
    const realistic = Math.min(size, this.realisticBytes);
    for (const [i, c] of this.clusters.entries()) {
      if (i > 0 && bytes + c.bytes > realistic) break;
      parts.push(c.json);
      bytes += c.bytes;
    }
    const stamp = `${GENERATION_PREFIX}${generation}`;
    parts.push(JSON.stringify({ '@type': CDS, name: stamp, type: 'STATIC', connect_timeout: '1s' }));
    bytes += 40;
    const rest = size - bytes;
    if (rest > 4 * PAD_OVERHEAD) {
      const n = Math.ceil(rest / PAD_MAX);
      const each = Math.floor(rest / n) - PAD_OVERHEAD;
      for (let k = 0; k < n; k++) {
        parts.push(`{"@type":"${CDS}","name":"soak-pad-${k}","type":"STATIC","connect_timeout":"1s","metadata":{"filter_metadata":{"soak":{"generation":${generation},"pad":"${this.pad.slice(0, each)}"}}}}`);
      }
      bytes += n * (each + PAD_OVERHEAD);
    }
    parts.push(JSON.stringify({ '@type': LDS, name: stamp, address: { socket_address: { address: '127.0.0.1', port_value: 15999 } } }));
    writeAtomic(this.pushFile, `[${parts.join(',\n')}]\n`);
    return bytes;
  }

  /** What the files hold now: type name -> resource name -> content version. */
  expected(): Map<string, Map<string, string>> {
    const out = new Map<string, Map<string, string>>();
    for (const file of [this.baseFile, this.pushFile]) {
      for (const r of parseResourceFile(file, readFileSync(file, 'utf8'))) {
        const t = r.typeUrl.slice(r.typeUrl.lastIndexOf('/') + 1);
        if (!out.has(t)) out.set(t, new Map());
        out.get(t)!.set(r.name, r.version);
      }
    }
    return out;
  }
}

// ----- the control plane, restarted on one port -------------------------------------------------

class ControlPlaneRunner {
  proc: BenchChild | undefined;
  /** version_info per type of the running instance, from its log (`resources: <type> version <n>`). */
  versions = new Map<AdsType, string>();
  restarts = { SIGTERM: 0, SIGKILL: 0 };
  readonly downtimesMs: number[] = [];
  private instance = 0;

  constructor(
    private readonly port: number,
    private readonly args: readonly string[],
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    let lastError: unknown;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        const { proc } = await startControlPlaneProcess(['--listen', this.address, ...this.args]);
        this.proc = proc;
        const instance = ++this.instance;
        this.versions = new Map();
        const take = (line: string): void => {
          const m = /\tresources: (\S+) version (\S+) /.exec(line);
          const type = m && ADS_TYPE_OF[m[1]!];
          if (type && instance === this.instance) this.versions.set(type, m[2]!);
        };
        for (const line of proc.tail(400)) take(line); // its initial load, logged before it listened
        proc.onLine(take);
        return;
      } catch (err) {
        lastError = err; // the port not yet free after a kill: try again
        await sleep(500);
      }
    }
    throw lastError;
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const t0 = Date.now();
    await this.proc?.stop({ signal, graceMs: 5000 });
    this.restarts[signal]++;
    await this.start();
    this.downtimesMs.push(Date.now() - t0);
  }
}

// ----- the churn clients --------------------------------------------------------------------------

type DropMode = 'cancel' | 'close-socket' | 'burst';

/** Raw HTTP/2 ADS streams on the XDS socket, each replacing whoever is connected, dropped after a while. */
class Churn {
  private readonly sessions = new Set<http2.ClientHttp2Session>();
  clients = 0;
  streams = 0;
  bytes = 0;
  readonly modes: Record<DropMode, number> = { cancel: 0, 'close-socket': 0, burst: 0 };

  constructor(
    private readonly socketPath: string,
    private readonly random: () => number,
  ) {}

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await pause(1000 + this.random() * 2000, signal);
      if (!signal.aborted) this.open();
    }
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
  }

  private open(): void {
    const r = this.random();
    // cut while the agent dials istiod, in the middle of a push, or after the full state
    const lifetimeMs = r < 0.25 ? this.random() * 50 : r < 0.75 ? 100 + this.random() * 1900 : 2000 + this.random() * 2000;
    const m = this.random();
    const mode: DropMode = m < 0.45 ? 'cancel' : m < 0.9 ? 'close-socket' : 'burst';
    const protocol = this.clients % 2 === 0 ? SOTW : DELTA;
    this.clients++;
    this.modes[mode]++;
    const session = http2.connect('http://localhost', { createConnection: () => net.connect(this.socketPath) });
    this.sessions.add(session);
    session.on('error', () => undefined);
    session.on('close', () => this.sessions.delete(session));
    const request = frameMessage(protocol.encodeRequest({ typeUrl: CDS, responseNonce: '' }));
    const streams: http2.ClientHttp2Stream[] = [];
    for (let i = 0; i < (mode === 'burst' ? 5 : 1); i++) {
      const stream = session.request({ ':method': 'POST', ':path': protocol.method, 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => undefined);
      stream.on('data', (d: Buffer) => (this.bytes += d.length));
      stream.write(request);
      streams.push(stream);
      this.streams++;
    }
    setTimeout(() => {
      if (mode === 'cancel') {
        for (const s of streams) s.close(http2.constants.NGHTTP2_CANCEL);
        session.close();
      } else {
        session.destroy();
      }
    }, lifetimeMs).unref();
  }
}

// ----- the Envoy-like client ----------------------------------------------------------------------

class EnvoyLikeClient {
  readonly generations = new Set<number>();
  streamsOpened = 0;
  closedByReason = new Map<string, number>();
  nacks: string[] = [];
  initialized: Promise<void>;
  private readonly proc: BenchChild;
  private readonly pending = new Map<number, (s: ClientState) => void>();
  private nextId = 0;

  constructor(target: string, apiType: 'GRPC' | 'DELTA_GRPC') {
    const script = fileURLToPath(new URL('./soak-client.js', import.meta.url));
    this.proc = spawnTracked('Envoy-like client', process.execPath, [script, target, apiType], { ipc: true });
    let ready: () => void = () => undefined;
    this.initialized = new Promise((resolve) => (ready = resolve));
    this.proc.child.on('message', (e: ClientEvent) => {
      if (e.kind === 'initialized') ready();
      else if (e.kind === 'open') this.streamsOpened = e.stream;
      else if (e.kind === 'closed') {
        const reason = e.reason.replace(/\d+/g, 'N').slice(0, 120);
        this.closedByReason.set(reason, (this.closedByReason.get(reason) ?? 0) + 1);
      } else if (e.kind === 'update') {
        if (!e.ack) this.nacks.push(`${e.type} ${e.version}: ${e.reason ?? ''}`.slice(0, 300));
        else if (e.type === 'CDS' && e.generation !== undefined && e.generation > 0) this.generations.add(e.generation); // 0: the state before the soak
      } else if (e.kind === 'state') {
        this.pending.get(e.id)?.(e.state);
        this.pending.delete(e.id);
      }
    });
  }

  get alive(): boolean {
    return this.proc.alive();
  }

  tail(): string[] {
    return this.proc.tail();
  }

  state(timeoutMs = 30_000): Promise<ClientState> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error('the Envoy-like client did not report its state'));
      }, timeoutMs);
      this.pending.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.proc.child.send({ cmd: 'state', id });
    });
  }

  async stop(): Promise<void> {
    if (this.proc.alive() && this.proc.child.connected) this.proc.child.send({ cmd: 'stop' });
    await this.proc.stop({ signal: 'SIGTERM', graceMs: 3000 });
  }
}

/** Differences between what the client holds and the final configuration (empty: converged). */
function differences(state: ClientState, expected: Map<string, Map<string, string>>, cpVersions: Map<AdsType, string>, delta: boolean): string[] {
  const out: string[] = [];
  if (!state.connected) out.push(`client not connected (last stream error: ${state.lastStreamError ?? 'none'})`);
  for (const must of ['CDS', 'LDS'] as const) if (!state.types[must]) out.push(`client holds no ${must}`);
  for (const [t, held] of Object.entries(state.types) as [AdsType, NonNullable<ClientState['types'][AdsType]>][]) {
    const url = ADS_TYPE_URLS[t];
    const all = expected.get(url.slice(url.lastIndexOf('/') + 1)) ?? new Map<string, string>();
    const want = held.wildcard ? all : new Map([...all].filter(([n]) => held.names.includes(n)));
    // EDS and RDS names the configuration has nothing for are answered empty, as istiod does
    if (!held.wildcard && ANSWER_EVERY_NAME_TYPES.includes(url)) for (const n of held.names) if (!want.has(n)) want.set(n, emptyAnswer(url, n).version);
    const have = new Map(Object.entries(held.held));
    const missing = [...want.keys()].filter((n) => !have.has(n));
    const extra = [...have.keys()].filter((n) => !want.has(n));
    const stale = delta ? [...want].filter(([n, v]) => have.has(n) && have.get(n) !== v).map(([n]) => n) : [];
    if (missing.length) out.push(`${t}: ${missing.length} missing (${missing.slice(0, 3).join(', ')})`);
    if (extra.length) out.push(`${t}: ${extra.length} not in the final config (${extra.slice(0, 3).join(', ')})`);
    if (stale.length) out.push(`${t}: ${stale.length} with old content (${stale.slice(0, 3).join(', ')})`);
    // Delta: a named type is not answered again when nothing changed, so its system version may be
    // an earlier instance's; its content versions above are the check
    if (!delta || held.wildcard) {
      const cp = cpVersions.get(t);
      if (held.version !== cp) out.push(`${t}: version_info "${held.version}", control plane at "${cp ?? '?'}"`);
    }
  }
  return out;
}

// ----- sampling -----------------------------------------------------------------------------------

interface Sample {
  readonly t: number;
  readonly rss: number;
  readonly fds: number;
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

const TCP_STATES: Record<string, string> = { '01': 'ESTABLISHED', '02': 'SYN_SENT', '06': 'TIME_WAIT', '07': 'CLOSE', '08': 'CLOSE_WAIT', '09': 'LAST_ACK', '0A': 'LISTEN', '0B': 'CLOSING' };

/** What each socket inode is, from /proc/net: `unix XDS`, `unix (unnamed)`, `tcp ESTABLISHED to :15012`, ... */
function socketTable(): Map<string, string> {
  const out = new Map<string, string>();
  const read = (f: string): string[] => {
    try {
      return readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean);
    } catch {
      return [];
    }
  };
  for (const line of read('/proc/net/unix')) {
    const f = line.trim().split(/\s+/);
    out.set(f[6]!, `unix ${f[7] ? f[7].slice(f[7].lastIndexOf('/') + 1) : '(unnamed)'}`);
  }
  for (const line of [...read('/proc/net/tcp'), ...read('/proc/net/tcp6')]) {
    const f = line.trim().split(/\s+/);
    const remotePort = parseInt(f[2]!.split(':')[1]!, 16);
    const state = TCP_STATES[f[3]!] ?? f[3]!;
    out.set(f[9]!, state === 'LISTEN' ? 'tcp LISTEN' : `tcp ${state} to :${remotePort}`);
  }
  return out;
}

/** Open fds of a process by kind (a socket's kind as socketTable names it, pipe, anon_inode:[eventpoll], a path). */
function fdKinds(pid: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  let sockets: Map<string, string> | undefined;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const kind = inode ? ((sockets ??= socketTable()).get(inode) ?? 'socket (other)') : (/^(pipe):/.exec(target)?.[1] ?? target);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

interface HeapSample {
  readonly t: number;
  /** V8 heap in use (live objects and garbage not yet collected), MiB. */
  readonly heap: number;
  /** V8 heap committed (heapTotal: what the heap holds of RSS), MiB. */
  readonly heapTotal: number;
  /** Memory V8 knows of outside its heap (Buffers, ArrayBuffers), MiB. */
  readonly external: number;
}

/** What the memory probe loaded into the agent wrote (bench/agent-memory-probe.ts), relative to t0. */
function readHeapSamples(file: string, t0: number): HeapSample[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { at: number; heapUsed: number; heapTotal: number; external: number })
    .map((m) => ({ t: m.at - t0, heap: m.heapUsed / MiB, heapTotal: m.heapTotal / MiB, external: m.external / MiB }));
}

/** `84/41/13/22, ...`: medians of RSS, V8 heap committed, V8 heap used (MiB) and fds in each whole minute (third of a shorter run). */
function perMinute(samples: readonly Sample[], heap: readonly HeapSample[], step: number): string {
  const end = samples.length ? samples[samples.length - 1]!.t : 0;
  const out: string[] = [];
  for (let from = 0; from + step <= end + SAMPLE_INTERVAL_MS; from += step) {
    const part = samples.filter((s) => s.t >= from && s.t < from + step);
    const h = heap.filter((s) => s.t >= from && s.t < from + step);
    const m = (f: (x: HeapSample) => number): string => (h.length ? median(h.map(f)).toFixed(0) : '?');
    if (part.length) out.push(`${median(part.map((s) => s.rss)).toFixed(0)}/${m((x) => x.heapTotal)}/${m((x) => x.heap)}/${median(part.map((s) => s.fds))}`);
  }
  return out.join(', ');
}

const fmtKinds = (k: Record<string, number>): string =>
  Object.entries(k)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([n, c]) => `${n} ${c}`)
    .join(', ');

// ----- the bench ----------------------------------------------------------------------------------

export const soakBench: Bench = async ({ options }) => {
  const minutes = options.has('--minutes') ? Number(options.get('--minutes')) : 3;
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${JSON.stringify(options.get('--minutes'))}`);
  const delta = !options.has('--sotw');
  // --agent-env NAME=VALUE,...: extra environment for the agent (e.g. glibc malloc tuning, to see
  // whether RSS growth is the allocator's)
  const agentEnv = Object.fromEntries(
    (options.get('--agent-env') ?? '')
      .split(',')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  if (Object.keys(agentEnv).some((k) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))) throw new Error(`--agent-env takes NAME=VALUE,...; got ${JSON.stringify(options.get('--agent-env'))}`);
  const durationMs = minutes * 60_000;
  let windowMs = minutes >= 2 ? 60_000 : durationMs / 3;
  const random = rng(13); // deterministic: runs are comparable
  const load0 = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-soak-'));
  const root = join(dir, 'pod');
  mkdirSync(root);
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\nbench soak: ${signal}, stopping the processes it started\n`);
    killStartedChildren();
    rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killStartedChildren);

  let agent: ProxylessAgent | undefined;
  let cp: ControlPlaneRunner | undefined;
  let client: EnvoyLikeClient | undefined;
  try {
    // the control plane's CA root, kept across its restarts
    const ca = await CertificateAuthority.create();
    writeFileSync(join(dir, 'ca-cert.pem'), ca.rootCertPem);
    writeFileSync(join(dir, 'ca-key.pem'), await privateKeyToPem(ca.root.key));
    const writer = new PushWriter(join(dir, 'xds'));
    let generation = 0;
    writer.write(generation, SIZES[0]!);
    cp = new ControlPlaneRunner(await freePort(), [
      '--resources', writer.dir, '--token', TOKEN, '--request-client-certs',
      '--ca-root-cert', join(dir, 'ca-cert.pem'), '--ca-root-key', join(dir, 'ca-key.pem'),
    ]);
    await cp.start();
    const memoryFile = join(dir, 'agent-memory.jsonl');
    agent = await startProxylessAgent({
      dir: root,
      discoveryAddress: cp.address,
      tls: { rootCertPem: ca.rootCertPem, token: TOKEN },
      logLevels: 'default:warn,xdsproxy:info',
      nodeArgs: ['--import', new URL('./agent-memory-probe.js', import.meta.url).href],
      env: { ...agentEnv, PA_BENCH_MEMORY_FILE: memoryFile },
    });
    const theAgent = agent;
    let replacements = 0;
    const agentErrors = new Map<string, number>();
    agent.onLine((line) => {
      if (/connection \d+ replaced by connection \d+/.test(line)) replacements++;
      const error = /\terror\t(.*)$/.exec(line)?.[1];
      if (error !== undefined) {
        const key = error.replace(/\d+/g, 'N').slice(0, 140);
        agentErrors.set(key, (agentErrors.get(key) ?? 0) + 1);
      }
    });
    const stopAll = new AbortController();
    let stopping = false;
    let agentExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    void agent.exited.then((e) => {
      if (stopping) return;
      agentExit = e;
      stopAll.abort();
    });

    client = new EnvoyLikeClient(`unix:${agent.socketPath}`, delta ? 'DELTA_GRPC' : 'GRPC');
    await Promise.race([client.initialized, sleep(60_000).then(() => Promise.reject(new Error(`the Envoy-like client did not receive CDS and LDS within 60 s:\n${client!.tail().join('\n')}\nagent:\n${theAgent.tail().join('\n')}`)))]);

    // ---- the soak
    const t0 = Date.now();
    const samples: Sample[] = [];
    const firstKinds = fdKinds(agent.pid);
    let lastKinds = firstKinds;
    const sample = (): void => {
      if (!theAgent.alive()) return;
      try {
        samples.push({ t: Date.now() - t0, rss: rssMiB(theAgent.pid), fds: fdCount(theAgent.pid) });
        lastKinds = fdKinds(theAgent.pid);
      } catch {
        // exited between the check and the read
      }
    };
    sample();
    const sampler = setInterval(sample, SAMPLE_INTERVAL_MS);
    const end = setTimeout(() => stopAll.abort(), durationMs);
    const churn = new Churn(agent.socketPath, random);
    let pushedBytes = 0;
    let order: number[] = [];
    const pushes = (async () => {
      while (!stopAll.signal.aborted) {
        await pause(PUSH_INTERVAL_MS, stopAll.signal);
        if (stopAll.signal.aborted) break;
        if (order.length === 0) order = SIZES.map((s) => [random(), s] as const).sort(([a], [b]) => a - b).map(([, s]) => s);
        pushedBytes += writer.write(++generation, order.shift()!);
      }
    })();
    const restarts = (async () => {
      for (let i = 0; !stopAll.signal.aborted; i++) {
        await pause(RESTART_INTERVAL_MS, stopAll.signal);
        if (!stopAll.signal.aborted) await cp!.restart(i % 2 === 0 ? 'SIGTERM' : 'SIGKILL');
      }
    })();
    await Promise.all([churn.run(stopAll.signal), pushes, restarts]);
    clearTimeout(end);
    clearInterval(sampler);
    sample();
    const soakMs = Date.now() - t0;
    const agentAlive = agentExit === undefined && theAgent.alive();
    const peak = agentAlive ? peakRssMiB(theAgent.pid) : NaN;

    // ---- convergence: no more churn, pushes or restarts; the client reconnects and catches up
    let converged = false;
    let convergeMs = NaN;
    let lastDiff: string[] = ['not checked: the agent died'];
    if (agentAlive) {
      const expected = writer.expected();
      const c0 = Date.now();
      while (Date.now() - c0 < CONVERGE_TIMEOUT_MS && theAgent.alive()) {
        try {
          lastDiff = differences(await client.state(), expected, cp.versions, delta);
        } catch (err) {
          lastDiff = [(err as Error).message];
        }
        if (lastDiff.length === 0) {
          converged = true;
          convergeMs = Date.now() - c0;
          break;
        }
        await sleep(1000);
      }
      if (!theAgent.alive()) lastDiff = ['the agent died while the client converged'];
    }
    // at rest again, as at the start: one client connected, no churn; what is open now and was not then stayed behind
    let settledKinds: Record<string, number> | undefined;
    if (converged) {
      await sleep(3000);
      try {
        settledKinds = fdKinds(theAgent.pid);
      } catch {
        // exited
      }
    }
    const aliveAtEnd = agentAlive && theAgent.alive();
    const load1 = loadavg();
    stopping = true;

    // ---- figures (a soak cut short by the agent's death: thirds of what ran)
    if (soakMs < 2 * windowMs) windowMs = soakMs / 3;
    const inWindow = (from: number, to: number) => samples.filter((s) => s.t >= from && s.t <= to);
    const first = inWindow(0, windowMs);
    const last = inWindow(soakMs - windowMs, soakMs);
    const rssFirst = median(first.map((s) => s.rss));
    const rssLast = median(last.map((s) => s.rss));
    const heap = readHeapSamples(memoryFile, t0).filter((h) => h.t >= 0 && h.t <= soakMs);
    const heapIn = (from: number, to: number) => heap.filter((s) => s.t >= from && s.t <= to);
    const heapFirst = median(heapIn(0, windowMs).map((s) => s.heap));
    const heapLast = median(heapIn(soakMs - windowMs, soakMs).map((s) => s.heap));
    const totalFirst = median(heapIn(0, windowMs).map((s) => s.heapTotal));
    const totalLast = median(heapIn(soakMs - windowMs, soakMs).map((s) => s.heapTotal));
    const extFirst = median(heapIn(0, windowMs).map((s) => s.external));
    const extLast = median(heapIn(soakMs - windowMs, soakMs).map((s) => s.external));
    const fdFirst = median(first.map((s) => s.fds));
    const fdLast = median(last.map((s) => s.fds));
    const windowName = windowMs === 60_000 ? 'first / last minute' : 'first / last third';
    const rows: [string, string][] = [
      ['duration (min), client protocol', `${(soakMs / 60_000).toFixed(2)}, ${delta ? 'Delta' : 'SotW'}${Object.keys(agentEnv).length ? `, agent env ${options.get('--agent-env')}` : ''}`],
      ['load average at start / end (1 min)', `${load0[0]!.toFixed(2)} / ${load1[0]!.toFixed(2)}`],
      [`agent RSS median, ${windowName} (MiB)`, `${rssFirst.toFixed(1)} / ${rssLast.toFixed(1)}`],
      ['rss_growth_mb (target <= 10)', (rssLast - rssFirst).toFixed(1)],
      [`agent open fds median, ${windowName}`, `${fdFirst} / ${fdLast}`],
      ['fd_growth (target <= 4)', String(fdLast - fdFirst)],
      [`agent V8 heap committed, used; outside the heap: median, ${windowName} (MiB)`, `${totalFirst.toFixed(1)} / ${totalLast.toFixed(1)}, ${heapFirst.toFixed(1)} / ${heapLast.toFixed(1)}; ${extFirst.toFixed(1)} / ${extLast.toFixed(1)}`],
      [`agent RSS / heap committed / heap used (MiB) / fds, median per ${windowMs === 60_000 ? 'minute' : 'third'}`, perMinute(samples, heap, windowMs)],
      ['agent peak RSS, VmHWM (MiB)', aliveAtEnd ? peak.toFixed(1) : 'n/a (agent died)'],
      ['samples (every 2 s), in each window', `${samples.length}, ${first.length} / ${last.length}`],
      ['pushes written (1 KiB .. 20 MiB), total', `${generation}, ${(pushedBytes / MiB).toFixed(0)} MiB`],
      ['pushes delivered to the Envoy-like client', `${client.generations.size} distinct generations (others superseded while it was disconnected)`],
      ['control-plane restarts (SIGTERM / SIGKILL), median downtime', `${cp.restarts.SIGTERM + cp.restarts.SIGKILL} (${cp.restarts.SIGTERM} / ${cp.restarts.SIGKILL}), ${cp.downtimesMs.length ? median(cp.downtimesMs).toFixed(0) : '-'} ms`],
      ['churn clients (streams): cancel / close socket / burst of 5', `${churn.clients} (${churn.streams}): ${churn.modes.cancel} / ${churn.modes['close-socket']} / ${churn.modes.burst}, ${(churn.bytes / MiB).toFixed(0)} MiB received`],
      ['client replacements (agent log)', String(replacements)],
      ['Envoy-like client streams opened, NACKs', `${client.streamsOpened}, ${client.nacks.length}`],
      ['agent error log lines', String([...agentErrors.values()].reduce((a, b) => a + b, 0))],
      ['agent alive the whole time', aliveAtEnd ? 'yes' : `NO (exit code ${agentExit?.code ?? theAgent.child.exitCode}, signal ${agentExit?.signal ?? theAgent.child.signalCode})`],
      ['converged', converged ? `1 (${(convergeMs / 1000).toFixed(1)} s after the churn stopped)` : `0: ${lastDiff.slice(0, 6).join('; ')}`],
    ];
    const count = (k: Record<string, number>): number => Object.values(k).reduce((a, b) => a + b, 0);
    if (settledKinds) rows.push(['agent fds at rest: start / after convergence', `${count(firstKinds)} / ${count(settledKinds)}`]);
    if (fdLast !== fdFirst || (settledKinds && count(settledKinds) !== count(firstKinds))) {
      rows.push(['agent fds by kind, start', fmtKinds(firstKinds)]);
      rows.push(['agent fds by kind, last sample of the soak', fmtKinds(lastKinds)]);
      if (settledKinds) rows.push(['agent fds by kind, after convergence', fmtKinds(settledKinds)]);
    }
    for (const [reason, n] of [...client.closedByReason].sort(([, a], [, b]) => b - a).slice(0, 4)) rows.push([`client stream ends: ${reason}`, String(n)]);
    for (const nack of client.nacks.slice(0, 3)) rows.push(['client NACK', nack]);
    for (const [msg, n] of [...agentErrors].sort(([, a], [, b]) => b - a).slice(0, 4)) rows.push([`agent error (${n}x)`, msg]);
    if (!aliveAtEnd) {
      const lines = theAgent.tail(30);
      process.stderr.write(`\nbench soak: the agent died; its last output lines:\n${lines.join('\n')}\n`);
      rows.push(['agent last output (all on stderr)', lines.slice(-3).join(' | ')]);
    }
    return {
      rows,
      figures: {
        rss_growth_mb: round(rssLast - rssFirst, 1),
        fd_growth: fdLast - fdFirst,
        converged: converged && aliveAtEnd ? 1 : 0,
        agent_alive: aliveAtEnd ? 1 : 0,
        rss_first_mb: round(rssFirst, 1),
        rss_last_mb: round(rssLast, 1),
        heap_growth_mb: round(heapLast - heapFirst, 1),
        heap_committed_growth_mb: round(totalLast - totalFirst, 1),
        external_growth_mb: round(extLast - extFirst, 1),
        fd_first: fdFirst,
        fd_last: fdLast,
        ...(settledKinds ? { fd_at_rest_growth: count(settledKinds) - count(firstKinds) } : {}),
        ...(aliveAtEnd ? { peak_rss_mb: round(peak, 1) } : {}),
        pushes_written: generation,
        pushes_delivered: client.generations.size,
        cp_restarts: cp.restarts.SIGTERM + cp.restarts.SIGKILL,
        client_replacements: replacements,
        churn_clients: churn.clients,
        client_streams: client.streamsOpened,
        client_nacks: client.nacks.length,
        ...(converged ? { converge_s: round(convergeMs / 1000, 1) } : {}),
        minutes: round(soakMs / 60_000, 2),
        window_s: round(windowMs / 1000),
        load_avg_1m: round(load1[0]!),
      },
    };
  } finally {
    await client?.stop().catch(() => undefined);
    await agent?.stop({ signal: 'SIGTERM', graceMs: 10_000 });
    await cp?.proc?.stop({ signal: 'SIGTERM', graceMs: 5000 });
    killStartedChildren();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', killStartedChildren);
    rmSync(dir, { recursive: true, force: true });
  }
};
