// Istio's gRPC tuning variables on the agent's xDS paths: GRPC_KEEPALIVE_INTERVAL/_TIMEOUT (pkg/keepalive)
// and ISTIO_GPRC_MAXSTREAMS (pilot/pkg/grpc). Through the real agent, an HTTP/2 client on its xDS
// socket sees the advertised stream limit and the agent's pings at the configured interval; the
// connection to istiod takes the same values, with grpc-go's floors (10 s for a client).

import http2 from 'node:http2';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadAgentConfig } from '../../src/config/load.js';
import { grpcGoKeepalive } from '../../src/grpc/keepalive.js';
import { upstreamOptionsFrom } from '../../src/xds/upstream-options.js';
import { injectedProxy } from '../support/hello-pod.js';
import { killStarted, runAgent, tempDir, type RunningProcess } from '../support/processes.js';

let work: ReturnType<typeof tempDir> | undefined;
let agent: RunningProcess | undefined;

afterEach(async () => {
  if (agent && agent.child.exitCode === null) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  killStarted();
  work?.cleanup();
});

describe('gRPC tuning env vars', () => {
  it('the xDS socket advertises ISTIO_GPRC_MAXSTREAMS and pings every GRPC_KEEPALIVE_INTERVAL', { timeout: 30_000 }, async () => {
    work = tempDir('pa-grpc-env-');
    const pod = injectedProxy('hello.yaml.injected');
    agent = runAgent(pod.args, {
      cwd: work.path,
      env: {
        ...pod.env,
        DISABLE_ENVOY: 'true',
        GRPC_KEEPALIVE_INTERVAL: '300ms', // a server pings at most every second (grpc-go's floor)
        GRPC_KEEPALIVE_TIMEOUT: '5s',
        ISTIO_GPRC_MAXSTREAMS: '7',
        PROXY_CONFIG: JSON.stringify({ statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1' }),
      },
    });
    const socket = join(work.path, 'etc/istio/proxy/XDS');
    await vi.waitFor(() => {
      if (agent!.child.exitCode !== null) throw new Error(`agent exited:\n${agent!.output()}`);
      expect(existsSync(socket)).toBe(true);
    }, { timeout: 20_000, interval: 50 });

    const session = http2.connect('http://localhost', { path: socket } as http2.ClientSessionOptions);
    session.on('error', () => undefined);
    try {
      const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
      expect(settings.maxConcurrentStreams).toBe(7);
      const pings: number[] = [];
      session.on('ping', () => pings.push(Date.now()));
      await vi.waitFor(() => expect(pings.length).toBeGreaterThanOrEqual(2), { timeout: 10_000, interval: 50 });
      // two pings a second apart at least: the configured 300 ms raised to grpc-go's 1 s floor
      expect(pings[1]! - pings[0]!).toBeGreaterThanOrEqual(900);
    } finally {
      session.destroy();
    }
  });

  it('GRPC_XDS_BOOTSTRAP set empty writes no gRPC bootstrap, as Istio; unset writes the default one', { timeout: 30_000 }, async () => {
    const pod = injectedProxy('hello.yaml.injected');
    for (const [value, written] of [[undefined, true], ['', false]] as const) {
      work?.cleanup();
      work = tempDir('pa-grpc-bootstrap-');
      const env: Record<string, string> = { ...pod.env, DISABLE_ENVOY: 'true', PROXY_CONFIG: JSON.stringify({ statusPort: 0, controlPlaneAuthPolicy: 'NONE', discoveryAddress: '127.0.0.1:1' }) };
      delete env.GRPC_XDS_BOOTSTRAP;
      if (value !== undefined) env.GRPC_XDS_BOOTSTRAP = value;
      const a = runAgent(pod.args, { cwd: work.path, env });
      agent = a;
      const socket = join(work.path, 'etc/istio/proxy/XDS');
      // the bootstrap comes before the xDS socket is served: once that is there, it is too, or never
      await vi.waitFor(() => {
        if (a.child.exitCode !== null) throw new Error(`agent exited:\n${a.output()}`);
        expect(a.output()).toContain(`xDS proxy listening on ${socket}`);
      }, { timeout: 20_000, interval: 50 });
      expect(existsSync(join(work.path, 'etc/istio/proxy/grpc-bootstrap.json')), `GRPC_XDS_BOOTSTRAP=${JSON.stringify(value)}`).toBe(written);
      if (!written) expect(a.output()).toContain('GRPC_XDS_BOOTSTRAP is empty: no gRPC xDS bootstrap is written');
      a.child.kill('SIGTERM');
      expect((await a.exited).code).toBe(0);
    }
  });

  it('the connection to istiod takes GRPC_KEEPALIVE_INTERVAL/_TIMEOUT, with grpc-go client rules', () => {
    const upstream = (env: Record<string, string>) =>
      upstreamOptionsFrom(loadAgentConfig({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE' }), ...env }, cwd: '/', hostAddresses: ['10.0.0.1'] })).keepalive;
    expect(upstream({})).toEqual({ intervalMs: 30_000, timeoutMs: 10_000 });
    expect(upstream({ GRPC_KEEPALIVE_INTERVAL: '45s', GRPC_KEEPALIVE_TIMEOUT: '20s' })).toEqual({ intervalMs: 45_000, timeoutMs: 20_000 });
    expect(upstream({ GRPC_KEEPALIVE_INTERVAL: '1s', GRPC_KEEPALIVE_TIMEOUT: '0s' })).toEqual({ intervalMs: 10_000, timeoutMs: 20_000 });
    expect(grpcGoKeepalive(0, 0, 'server')).toEqual({ intervalMs: 2 * 3_600_000, timeoutMs: 20_000 });
    // a value that does not parse: warned, and Istio's default (istio/pkg/env)
    const soon = loadAgentConfig({ env: { GRPC_KEEPALIVE_INTERVAL: 'soon' }, cwd: '/', hostAddresses: ['10.0.0.1'] });
    expect(soon.env.GRPC_KEEPALIVE_INTERVAL).toBe(30_000);
    expect(soon.warnings.join('\n')).toContain('env GRPC_KEEPALIVE_INTERVAL: expected a duration such as "5s", "100ms" or "1h30m" (value: "soon"); using the default, 30s');
  });
});
