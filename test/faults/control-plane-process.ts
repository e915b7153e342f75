// The development control plane as a child process, so a test can kill it (SIGKILL, mid-push) and
// start it again on the same port with the same CA root, as istiod restarts; and a TCP relay in
// front of it that counts the bytes it passes toward the agent, so a kill can land inside a push.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { repoRoot } from '../support/paths.js';

const controlPlaneMain = join(repoRoot, 'dist-test/test/control-plane/main.js');

export interface CaRoot {
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
}

/** A CA root made with openssl, kept across control-plane restarts. */
export function makeCaRoot(dir: string): CaRoot {
  const keyFile = join(dir, 'ca-key.pem');
  const certFile = join(dir, 'ca-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/O=cluster.local', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'pipe' });
  return { certFile, keyFile, certPem: readFileSync(certFile, 'utf8') };
}

export interface ControlPlaneProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  kill(): Promise<void>;
}

export async function startControlPlaneProcess(o: { port: number; resources: string; root: CaRoot; token: string; certTtl?: string }): Promise<ControlPlaneProcess> {
  const args = [controlPlaneMain, '--listen', `127.0.0.1:${o.port}`, '--resources', o.resources, '--token', o.token, '--ca-root-cert', o.root.certFile, '--ca-root-key', o.root.keyFile];
  if (o.certTtl) args.push('--cert-ttl', o.certTtl);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening on')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`control plane exited ${code}: ${out}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => out,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** A TCP relay to `target`, counting the bytes it passes back (toward the agent). */
export async function startRelay(targetPort: number): Promise<{ port: number; bytesDown: () => number; close: () => Promise<void> }> {
  let down = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    upstream.on('data', (d: Buffer) => {
      down += d.length;
      if (!client.write(d)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    client.pipe(upstream);
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    bytesDown: () => down,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
