// Bench `xds`: push latency of realistic cluster pushes (100 KB .. 50 MB), SotW and Delta, for a
// client reading through the agent (`pilot-agent proxy`, proxyless mode, unix socket) versus the
// same client connected straight to the upstream, in the same run; the agent's CPU time and peak
// RSS per size; and the agent's idle RSS with one client connected.
// The upstream replays pre-encoded responses (bench/xds-replay-server.ts), so transport is timed.
// A third path goes through a Node byte relay (bench/byte-relay.ts) on a unix socket: the floor of
// any Node process in the path on this machine, so that the agent's ratio can be read against
// what is its own (`<size>_over_floor`) and what any relay would pay (`<size>_floor_ratio`).

import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DELTA, SOTW, type XdsProtocol } from '../src/xds/protocol.js';
import { encodeDeltaRequest, encodeSotwRequest } from '../src/xds/wire.js';
import { median, peakRssMiB, round, rssMiB, type Bench } from './harness.js';
import { spawnTracked, startProxylessAgent, waitForLine, type ProxylessAgent } from './processes.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const SIZES: readonly [string, number][] = [
  ['100kb', 100 * 1024],
  ['1mb', 1024 * 1024],
  ['10mb', 10 * 1024 * 1024],
  ['50mb', 50 * 1024 * 1024],
];
const identity = (b: Buffer): Buffer => b;
/** Pushes up to this size are sampled SMALL_PUSH_SAMPLE_FACTOR times as often as large ones. */
const SMALL_PUSH_BYTES = 1024 * 1024;
const SMALL_PUSH_SAMPLE_FACTOR = 6;
const CLK_TCK = 100;
/** Every order of the three paths (direct, via the agent, via the byte relay), taken in turn. */
const ORDERS: readonly (readonly number[])[] = [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]];

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime + stime
}

/** A raw ADS stream: requests carry `size:<n>` as the first resource name; returns full-receipt times. */
class RawStream {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  private waiter: ((b: Buffer) => void) | undefined;

  constructor(target: string, private readonly protocol: XdsProtocol) {
    // Envoy's HTTP/2 windows are 256 MiB by default; give the stand-in client the same, both paths
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.enable_channelz': 0,
      'grpc-node.flow_control_window': 256 * 1024 * 1024,
    });
    this.call = this.client.makeBidiStreamRequest(protocol.method, identity, identity);
    this.call.on('data', (b: Buffer) => this.waiter?.(b));
    this.call.on('error', () => undefined);
  }

  async push(size: number): Promise<number> {
    const req =
      this.protocol.kind === 'sotw'
        ? encodeSotwRequest({ typeUrl: CDS, responseNonce: '', resourceNames: [`size:${size}`] })
        : encodeDeltaRequest({ typeUrl: CDS, responseNonce: '', subscribe: [`size:${size}`] });
    const t0 = process.hrtime.bigint();
    const got = new Promise<Buffer>((resolve) => (this.waiter = resolve));
    this.call.write(Buffer.from(req));
    await got;
    return Number(process.hrtime.bigint() - t0) / 1e6;
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

export const xdsBench: Bench = async ({ runs }) => {
  const n = Math.max(3, Math.min(runs, 7));
  const dir = mkdtempSync(join(tmpdir(), 'pa-bench-xds-'));
  const replay = spawnTracked('replay server', process.execPath, [fileURLToPath(new URL('./xds-replay-server.js', import.meta.url)), ...SIZES.map(([, s]) => String(s))], { echoStderr: true });
  let agent: ProxylessAgent | undefined;
  let relay: ReturnType<typeof spawnTracked> | undefined;
  try {
    const m = await waitForLine(replay, /listening on (\d+) sizes (\S+)/, 120_000);
    const upstream = `127.0.0.1:${m[1]}`;
    const actualBytes = new Map(m[2]!.split(',').map((p) => p.split(':').map(Number) as [number, number]));
    // FILE_MOUNTED_CERTS: no CA client. The replay server is no CA, so the agent would otherwise
    // retry its certificate request all through the run, generating an RSA key per attempt (about
    // 1.3 s of CPU in the first 40 s, in bursts), on the cores the timed pushes need, and on the
    // agent's side only. In a mesh the CA answers and the key is made once, before any push.
    agent = await startProxylessAgent({ dir, discoveryAddress: upstream, logLevels: 'default:warn,xdsproxy:warn', env: { FILE_MOUNTED_CERTS: 'true' } });
    const socket = agent.socketPath;
    const pid = agent.pid;
    const relaySocket = join(dir, 'relay.sock');
    relay = spawnTracked('byte relay', process.execPath, [fileURLToPath(new URL('./byte-relay.js', import.meta.url)), relaySocket, upstream], { echoStderr: true });
    await waitForLine(relay, /^relaying on /);

    const rows: [string, string][] = [];
    const figures: Record<string, number> = {};
    let idle = 0;
    for (const protocol of [SOTW, DELTA]) {
      const direct = new RawStream(upstream, protocol);
      const via = new RawStream(`unix:${socket}`, protocol);
      const floor = new RawStream(`unix:${relaySocket}`, protocol);
      await direct.push(SIZES[0]![1]);
      await via.push(SIZES[0]![1]);
      await floor.push(SIZES[0]![1]);
      if (protocol === SOTW) {
        await sleep(2000);
        idle = rssMiB(pid);
      }
      for (const [label, size] of SIZES) {
        // one unmeasured push of this size on each path first: the first large message warms up
        // code (and buffers) in every process, which would otherwise count against whichever
        // path and protocol happen to go first
        await direct.push(size);
        await via.push(size);
        await floor.push(size);
        const d: number[] = [];
        const v: number[] = [];
        const f: number[] = [];
        const cpu0 = cpuSeconds(pid);
        // small pushes take a few ms, where one scheduling hiccup on a shared 2-core machine moves
        // a 7-sample median by 20-40%: they get more samples (cheap), large ones keep n
        const samples = size <= SMALL_PUSH_BYTES ? n * SMALL_PUSH_SAMPLE_FACTOR : n;
        const paths: [RawStream, number[]][] = [[direct, d], [via, v], [floor, f]];
        for (let i = 0; i < samples; i++) {
          // the paths take turns in every order: what one push leaves behind (a collection, buffers
          // to release in the shared client and server) falls on each path after each other alike
          for (const p of ORDERS[i % ORDERS.length]!) {
            const [stream, into] = paths[p]!;
            into.push(await stream.push(size));
          }
        }
        const cpuPerPush = ((cpuSeconds(pid) - cpu0) / samples) * 1000;
        const ratio = median(v) / median(d);
        const floorRatio = median(f) / median(d);
        const peak = peakRssMiB(pid);
        const key = `${protocol.kind}_${label}`;
        figures[`${key}_ratio`] = round(ratio);
        figures[`${key}_direct_ms`] = round(median(d));
        figures[`${key}_agent_ms`] = round(median(v));
        figures[`${key}_floor_ms`] = round(median(f));
        figures[`${key}_floor_ratio`] = round(floorRatio);
        figures[`${key}_over_floor`] = round(median(v) / median(f));
        figures[`${key}_agent_cpu_ms`] = round(cpuPerPush);
        figures[`${key}_agent_peak_rss_mb`] = round(peak, 1);
        rows.push([`${protocol.kind} ${label} (${(actualBytes.get(size)! / 1048576).toFixed(2)} MiB)`, `direct ${median(d).toFixed(1)} ms, via agent ${median(v).toFixed(1)} ms, ratio ${ratio.toFixed(2)} (byte relay ${median(f).toFixed(1)} ms, ${floorRatio.toFixed(2)}), agent CPU ${cpuPerPush.toFixed(0)} ms/push, agent peak RSS ${peak.toFixed(0)} MiB`]);
      }
      direct.close();
      via.close();
      floor.close();
    }
    const largest = Math.max(...actualBytes.values()) / 1048576;
    const growth = (peakRssMiB(pid) - idle) / largest;
    figures.rss_growth_over_largest_message = round(growth);
    figures.idle_rss_mb = round(idle, 1);
    rows.push(['agent idle RSS, one client connected (MiB)', idle.toFixed(1)]);
    rows.push(['agent peak RSS growth / largest message', growth.toFixed(2)]);
    rows.push(['runs per size and path', `${n} (${n * SMALL_PUSH_SAMPLE_FACTOR} up to ${SMALL_PUSH_BYTES / 1048576} MiB)`]);
    return { rows, figures };
  } finally {
    await agent?.stop({ signal: 'SIGKILL' });
    await relay?.stop({ signal: 'SIGKILL' });
    await replay.stop({ signal: 'SIGKILL' });
    rmSync(dir, { recursive: true, force: true });
  }
};
