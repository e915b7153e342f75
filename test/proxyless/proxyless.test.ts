// Proxyless gRPC through the agent: the agent runs as Istio's injector starts it for a proxyless
// pod (DISABLE_ENVOY, GRPC_XDS_BOOTSTRAP), talks TLS + token to the development control plane,
// and real xDS clients that nobody here wrote — @grpc/grpc-js-xds and Debian's python3-grpcio
// (gRPC C-core) — resolve an xds:/// target through it and call a gRPC server the test starts.

import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startControlPlane, type ControlPlane } from '../control-plane/index.js';
import { helloXdsResources, HELLO_SERVICE, startHelloServer } from '../support/hello-mesh.js';
import { injectedProxy, writeIstiodMounts } from '../support/hello-pod.js';
import { repoRoot } from '../support/paths.js';
import { runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const SERVICE = HELLO_SERVICE;
const TOKEN = 'proxyless-token';

let cp: ControlPlane;
let server: grpc.Server;
let work: ReturnType<typeof tempDir>;
let agent: RunningProcess;

beforeAll(async () => {
  work = tempDir('pa-proxyless-');
  const hello = await startHelloServer();
  server = hello.server;
  cp = await startControlPlane({ token: TOKEN });
  for (const [typeUrl, resources] of Object.entries(helloXdsResources(hello.port))) cp.setResources(typeUrl, resources, { replace: true });

  // the pod's mounted files: istiod's root CA and the projected service-account token
  writeIstiodMounts(work.path, cp.rootCertPem, TOKEN);

  const pod = injectedProxy('grpc-agent.yaml.injected');
  agent = runAgent(pod.args, {
    cwd: work.path,
    env: {
      ...pod.env,
      // the fixture's absolute paths, relative to the test's scratch root (the container's /)
      GRPC_XDS_BOOTSTRAP: './etc/istio/proxy/grpc-bootstrap.json',
      OUTPUT_CERTS: './var/lib/istio/data',
      ISTIOD_SAN: 'istiod.istio-system.svc',
      PROXY_CONFIG: JSON.stringify({ discoveryAddress: cp.address, statusPort: 0 }),
      ISTIO_METAJSON_BROKEN: '{"app": ',
    },
  });
  await vi.waitFor(
    () => {
      if (agent.child.exitCode !== null) throw new Error(`agent exited:\n${agent.output()}`);
      expect(existsSync(join(work.path, 'etc/istio/proxy/grpc-bootstrap.json'))).toBe(true);
    },
    { timeout: 20_000, interval: 50 },
  );
});

afterAll(async () => {
  await stopAgent(agent);
  await cp?.close();
  server?.forceShutdown();
  work?.cleanup();
});

function runClient(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      env: { PATH: process.env.PATH ?? '', GRPC_XDS_BOOTSTRAP: join(work.path, 'etc/istio/proxy/grpc-bootstrap.json') },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe('proxyless gRPC through the agent', () => {
  it('writes a gRPC bootstrap pointing at the agent socket with the grpc generator', () => {
    const bootstrap = JSON.parse(readFileSync(join(work.path, 'etc/istio/proxy/grpc-bootstrap.json'), 'utf8')) as {
      xds_servers: { server_uri: string }[];
      node: { metadata: Record<string, unknown> };
    };
    expect(bootstrap.xds_servers[0]!.server_uri).toBe(`unix:///${join(work.path, 'etc/istio/proxy/XDS').replace(/^\//, '')}`);
    expect(bootstrap.node.metadata.GENERATOR).toBe('grpc');
    // with no Envoy bootstrap to log it, the bad ISTIO_METAJSON_* is logged here, once
    expect(agent.output().split('\n').filter((l) => l.includes('Env variable BROKEN [{"app": ] failed json unmarshal'))).toHaveLength(1);
  });

  it('serves a @grpc/grpc-js-xds client: xds:/// resolves through the agent and RPCs reach the server', async () => {
    const client = join(repoRoot, 'dist-test/test/proxyless/grpc-js-xds-client.js');
    const r = await runClient(process.execPath, [client, `xds:///${SERVICE}`, '3']);
    expect(r.code, r.out).toBe(0);
    const replies = r.out.trim().split('\n').map((l) => JSON.parse(l) as { reply: string });
    expect(replies.map((x) => x.reply)).toEqual([0, 1, 2].map((i) => `greetings from the test server: hello ${i}`));
    // the agent carried the stream to istiod with its credentials and the client's node
    const stream = cp.streams().find((s) => (s.node as { metadata?: { GENERATOR?: string } } | undefined)?.metadata?.GENERATOR === 'grpc');
    expect(stream?.metadata.authorization).toEqual([`Bearer ${TOKEN}`]);
    expect(stream?.metadata.clusterid).toEqual(['Kubernetes']);
  });

  it("serves Debian's python3-grpcio client (gRPC C-core xDS) the same way", async () => {
    const r = await runClient('/usr/bin/python3', [join(repoRoot, 'test/proxyless/python_grpc_client.py'), `xds:///${SERVICE}`, '2']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('greetings from the test server: hello 0');
    expect(r.out).toContain('greetings from the test server: hello 1');
  });
});
