// Helpers for tests that run the Envoy stand-in (test/envoy-stand-in/) directly. Tests of the agent
// normally let the agent spawn it (ProxyConfig binaryPath = envoyStandInPath); these helpers cover
// spawning it by hand, talking to its admin API and reading its record file.
//
// Every process started here is tracked by PID and killed (only those PIDs) by stop(); temp dirs
// are removed by stop().

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { envoyStandInPath, repoRoot } from './paths.js';

export interface RecordEvent {
  readonly event: string;
  readonly [k: string]: unknown;
}

export interface HttpResult {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

/** One HTTP request without keep-alive (no sockets left behind). */
export function httpRequest(url: string, opts: { method?: string; body?: string; timeoutMs?: number } = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 5000, () => req.destroy(new Error(`timeout: ${opts.method ?? 'GET'} ${url}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** The argv pilot-agent passes to Envoy (istio-reference.md §3), with a config path. */
export function istioEnvoyArgs(configPath: string, extra: readonly string[] = []): string[] {
  return [
    '-c', configPath,
    '--drain-time-s', '45',
    '--drain-strategy', 'immediate',
    '--local-address-ip-version', 'v4',
    '--file-flush-interval-msec', '1000',
    '--disable-hot-restart',
    '--allow-unknown-static-fields',
    ...extra,
  ];
}

/** A small valid sidecar-like bootstrap: admin on loopback, ADS over the xds-grpc pipe, one static listener. */
export function minimalBootstrap(opts: { adminPort?: number; xdsSocket?: string } = {}): Record<string, unknown> {
  return {
    node: { id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', cluster: 'pod.ns', metadata: { ISTIO_VERSION: '1.32.0' } },
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: opts.adminPort ?? 0 } } },
    dynamic_resources: {
      lds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      cds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' },
      ads_config: {
        api_type: 'DELTA_GRPC',
        set_node_on_first_message_only: true,
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc' } }],
      },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: opts.xdsSocket ?? './etc/istio/proxy/XDS' } } } }] }] },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
      listeners: [{ name: '0.0.0.0_15090', address: { socket_address: { protocol: 'TCP', address: '0.0.0.0', port_value: 15090 } } }],
    },
  };
}

let built = false;

/**
 * Makes sure the compiled stand-in is current: runs `envoy --version` once, and the launcher rebuilds
 * dist-test/ when it is missing or older than its sources (so the first real spawn is not slowed).
 */
export function ensureStandInBuilt(): void {
  if (built) return;
  try {
    execFileSync(envoyStandInPath, ['--version'], { cwd: repoRoot, stdio: 'pipe', timeout: 120_000 });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`the Envoy stand-in does not start:\n${String(e.stdout ?? '')}${String(e.stderr ?? '')}`, { cause: err });
  }
  built = true;
}

export interface StartOptions {
  /** Bootstrap: an object (written as JSON), or raw text written as is. Default minimalBootstrap(). */
  readonly bootstrap?: unknown;
  /** File name for the bootstrap inside the temp dir (extension decides JSON vs YAML). */
  readonly bootstrapName?: string;
  /** Full argv; `{config}` is replaced by the bootstrap path, `{dir}` by the temp dir. Default istioEnvoyArgs. */
  readonly args?: readonly string[];
  /** Extra ENVOY_STANDIN_* (or other) environment variables. */
  readonly env?: Readonly<Record<string, string>>;
  /** Wait until /ready says LIVE (default: when ENVOY_STANDIN_START_STATE is unset or live). */
  readonly waitForLive?: boolean;
  /** Wait for the admin address (default true); false for runs expected to fail early. */
  readonly waitForAdmin?: boolean;
}

export class StandInProcess {
  adminUrl = '';
  private out = '';
  private err = '';
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly child: ChildProcess,
    readonly dir: string,
    readonly configPath: string,
    readonly recordFile: string,
  ) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (c: string) => (this.out += c));
    child.stderr?.on('data', (c: string) => (this.err += c));
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }
  get stdout(): string {
    return this.out;
  }
  get stderr(): string {
    return this.err;
  }
  get exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** Events from ENVOY_STANDIN_RECORD, which survives the process. */
  record(): RecordEvent[] {
    if (!fs.existsSync(this.recordFile)) return [];
    return fs
      .readFileSync(this.recordFile, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as RecordEvent);
  }

  get(p: string): Promise<HttpResult> {
    return httpRequest(this.adminUrl + p);
  }

  post(p: string, body?: string): Promise<HttpResult> {
    return httpRequest(this.adminUrl + p, { method: 'POST', ...(body !== undefined ? { body } : {}) });
  }

  /** POST /standin/stats. */
  async setStats(stats: Record<string, number | { value: number; type: 'counter' | 'gauge' }>): Promise<{ set: string[]; rejected: string[] }> {
    const res = await this.post('/standin/stats', JSON.stringify(stats));
    if (res.status !== 200) throw new Error(`/standin/stats: ${res.status} ${res.body}`);
    return JSON.parse(res.body) as { set: string[]; rejected: string[] };
  }

  /** Parsed `name: value` lines of GET /stats?<query>. */
  async statsText(query = ''): Promise<Map<string, number>> {
    const res = await this.get(`/stats${query ? `?${query}` : ''}`);
    const out = new Map<string, number>();
    for (const line of res.body.split('\n').filter(Boolean)) {
      const idx = line.lastIndexOf(': ');
      out.set(line.slice(0, idx), Number(line.slice(idx + 2)));
    }
    return out;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (!this.exitInfo) this.child.kill(signal);
  }

  /** Kills this process (SIGKILL if still running) and removes its temp dir. */
  async stop(): Promise<void> {
    if (!this.exitInfo) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function poll<T>(what: string, proc: StandInProcess, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exit) throw new Error(`the Envoy stand-in exited (${JSON.stringify(proc.exit)}) before ${what}; stderr:\n${proc.stderr}`);
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr:\n${proc.stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Spawns the stand-in launcher the way the agent would, in its own temp dir. */
export async function startEnvoyStandIn(opts: StartOptions = {}): Promise<StandInProcess> {
  ensureStandInBuilt();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'envoy-standin-'));
  const configPath = path.join(dir, opts.bootstrapName ?? 'envoy-rev.json');
  const bootstrap = opts.bootstrap ?? minimalBootstrap();
  fs.writeFileSync(configPath, typeof bootstrap === 'string' ? bootstrap : JSON.stringify(bootstrap, null, 2));
  const recordFile = path.join(dir, 'record.jsonl');
  const addressFile = path.join(dir, 'admin-address');
  const baseArgs = (opts.args ?? istioEnvoyArgs('{config}')).map((a) => a.replace('{config}', configPath).replace('{dir}', dir));
  const waitForAdmin = opts.waitForAdmin ?? true;
  const args = waitForAdmin && !baseArgs.includes('--admin-address-path') ? [...baseArgs, '--admin-address-path', addressFile] : baseArgs;
  const child = spawn(envoyStandInPath, args, {
    cwd: dir,
    env: { ...process.env, ENVOY_STANDIN_RECORD: recordFile, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const proc = new StandInProcess(child, dir, configPath, recordFile);
  try {
    if (waitForAdmin) {
      const addrFile = args[args.indexOf('--admin-address-path') + 1]!;
      const address = await poll('the admin address', proc, () => {
        const text = fs.existsSync(addrFile) ? fs.readFileSync(addrFile, 'utf8').trim() : '';
        return text || undefined;
      });
      proc.adminUrl = `http://${address}`;
      const startState = opts.env?.ENVOY_STANDIN_START_STATE ?? 'live';
      if (opts.waitForLive ?? startState === 'live') {
        await poll('LIVE', proc, async () => ((await proc.get('/ready')).status === 200 ? true : undefined));
      }
    }
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
