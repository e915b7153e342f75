// Network namespaces for the istio-iptables tests: a "pod" namespace joined by a veth pair to a
// "peer" namespace (the rest of the network), processes run inside them, and iptables state read
// from them. Names carry the test process id, so parallel runs do not collide; each test deletes
// what it created and stops only the processes it started.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { agentBin } from '../support/processes.js';
import { istioTestdata } from '../support/paths.js';

let counter = 0;

export const canUseNetns: boolean = (() => {
  if (process.getuid?.() !== 0) return false;
  const probe = `pa-ipt-probe-${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore' });
    execFileSync('iptables-save', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export interface Namespace {
  readonly name: string;
  exec(cmd: string, ...args: string[]): string;
  /** /etc/resolv.conf as seen by `ip netns exec` in this namespace */
  setResolvConf(text: string): void;
  remove(): void;
}

const created = new Set<Namespace>();

/** Deletes every namespace this process created and has not deleted yet (afterAll safety net, e.g. after a timeout). */
export function removeCreatedNamespaces(): void {
  for (const ns of [...created]) ns.remove();
}

/** Generous cap for tests that run the CLI several times: each run probes the iptables variants (a dozen processes). */
export const NETNS_TEST_TIMEOUT = 120_000;

function namespace(name: string): Namespace {
  ip('netns', 'add', name);
  try {
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    ip('netns', 'del', name);
    throw err;
  }
  const etc = `/etc/netns/${name}`;
  const ns: Namespace = {
    name,
    exec: (cmd, ...args) => ip('netns', 'exec', name, cmd, ...args),
    setResolvConf(text) {
      mkdirSync(etc, { recursive: true });
      writeFileSync(`${etc}/resolv.conf`, text);
    },
    remove() {
      created.delete(ns);
      try {
        ip('netns', 'del', name);
      } catch {
        /* already gone */
      }
      rmSync(etc, { recursive: true, force: true });
    },
  };
  created.add(ns);
  return ns;
}

/** A namespace with loopback only, or with an interface holding `address` (CIDR): one end of a veth pair kept inside. */
export function standaloneNamespace(address?: string): Namespace {
  const ns = namespace(`pa-ipt-${process.pid}-${++counter}`);
  if (!address) return ns;
  try {
    ns.exec('ip', 'link', 'add', 'pod0', 'type', 'veth', 'peer', 'name', 'pod0p');
    ns.exec('ip', 'addr', 'add', address, 'dev', 'pod0', ...(address.includes(':') ? ['nodad'] : []));
    ns.exec('ip', 'link', 'set', 'pod0p', 'up');
    ns.exec('ip', 'link', 'set', 'pod0', 'up');
  } catch (err) {
    ns.remove();
    throw err;
  }
  return ns;
}

export interface PodNetwork {
  readonly pod: Namespace;
  readonly peer: Namespace;
  readonly podIP: string;
  readonly peerIP: string;
  remove(): void;
}

/** pod (eth0, default route via the peer) <-veth-> peer. */
export function podWithPeer(): PodNetwork {
  const n = ++counter;
  const pod = namespace(`pa-ipt-${process.pid}-${n}-pod`);
  const peer = namespace(`pa-ipt-${process.pid}-${n}-peer`);
  const octet = (process.pid + n) % 250;
  const podIP = `10.213.${octet}.2`;
  const peerIP = `10.213.${octet}.1`;
  try {
    const tmp = `pai${process.pid % 100000}x${n}`;
    ip('link', 'add', tmp, 'type', 'veth', 'peer', 'name', `${tmp}p`);
    ip('link', 'set', tmp, 'netns', pod.name);
    ip('link', 'set', `${tmp}p`, 'netns', peer.name);
    pod.exec('ip', 'link', 'set', tmp, 'name', 'eth0');
    peer.exec('ip', 'link', 'set', `${tmp}p`, 'name', 'eth0');
    pod.exec('ip', 'addr', 'add', `${podIP}/24`, 'dev', 'eth0');
    peer.exec('ip', 'addr', 'add', `${peerIP}/24`, 'dev', 'eth0');
    pod.exec('ip', 'link', 'set', 'eth0', 'up');
    peer.exec('ip', 'link', 'set', 'eth0', 'up');
    pod.exec('ip', 'route', 'add', 'default', 'via', peerIP);
  } catch (err) {
    pod.remove();
    peer.remove();
    throw err;
  }
  return { pod, peer, podIP, peerIP, remove: () => [pod, peer].forEach((ns) => ns.remove()) };
}

export interface CommandResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command inside a namespace, optionally as another user, and waits for it to exit. */
export interface RunOptions {
  readonly user?: number;
  readonly env?: Readonly<Record<string, string>>;
}

export function runIn(ns: Namespace, argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  const asUser = opts.user === undefined ? [] : ['setpriv', `--reuid=${opts.user}`, `--regid=${opts.user}`, '--clear-groups'];
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, ...asUser, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `pilot-agent <argv>` inside a namespace. */
export function pilotAgent(ns: Namespace, argv: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  return runIn(ns, [process.execPath, agentBin, ...argv], opts);
}

export function istioIptables(ns: Namespace, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
  return pilotAgent(ns, ['istio-iptables', ...args], opts);
}

/** iptables-save of a namespace without comments and counters: what a second run must leave unchanged. */
export function rulesOf(ns: Namespace, family: 4 | 6 = 4): string {
  return ns.exec(family === 4 ? 'iptables-save' : 'ip6tables-save')
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\s*\[\d+:\d+\]$/, ''))
    .join('\n');
}

/** One table of rulesOf(), from its `*table` line to its COMMIT. */
export function tableOf(ns: Namespace, table: string, family: 4 | 6 = 4): string {
  const all = rulesOf(ns, family);
  const start = all.indexOf(`*${table}\n`);
  return start < 0 ? '' : all.slice(start, all.indexOf('COMMIT', start));
}

/**
 * TCP servers inside a namespace, each answering every connection with its label and closing.
 * Resolves once all listen.
 */
export function startServers(ns: Namespace, servers: Record<number, string>): Promise<{ stop: () => Promise<void> }> {
  const script = `
    const net = require('node:net');
    const servers = ${JSON.stringify(servers)};
    let listening = 0;
    for (const [port, label] of Object.entries(servers)) {
      net.createServer((c) => { c.on('error', () => {}); c.end(label); }).listen(Number(port), '0.0.0.0', () => {
        if (++listening === Object.keys(servers).length) process.stdout.write('ready\\n');
      });
    }`;
  const child: ChildProcess = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`servers in ${ns.name} exited (${code}): ${stderr}`)));
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        resolve({
          stop: async () => {
            child.kill('SIGTERM');
            await exited;
          },
        });
      }
    });
  });
}

/** Connects from inside a namespace (as `user`) and returns what the other end answered, or the error code. */
export async function connectFrom(ns: Namespace, host: string, port: number, opts: RunOptions = {}): Promise<string> {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(host)}, port: ${port}, timeout: 5000 });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('end', () => process.stdout.write(data));
    s.on('timeout', () => { process.stdout.write('error:timeout'); s.destroy(); });
    s.on('error', (e) => process.stdout.write('error:' + e.code));`;
  const r = await runIn(ns, [process.execPath, '-e', script], opts);
  return r.stdout;
}

/** The istio-init container's args of an injected pod fixture (`istio-iptables -p 15001 ...`). */
export function injectedInitArgs(fixture: string): string[] | undefined {
  for (const doc of parseAllDocuments(readFileSync(`${istioTestdata}/injection/${fixture}`, 'utf8'))) {
    type PodSpec = { initContainers?: { name: string; args?: string[] }[] };
    const top = (doc.toJS() as { spec?: PodSpec & { template?: { spec?: PodSpec } } } | null)?.spec;
    // a Deployment's pod template, or a Pod
    const init = (top?.template?.spec ?? top)?.initContainers?.find((c) => c.name === 'istio-init');
    if (init?.args) return init.args;
  }
  return undefined;
}
