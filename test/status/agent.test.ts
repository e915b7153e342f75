// The status port inside the real `pilot-agent proxy` (with the Envoy stand-in). They run the built
// CLI (dist/), like test/agent/proxy-lifecycle.test.ts.

import { describe, expect, it, vi } from 'vitest';
import { readRecord } from '../envoy-stand-in/recorder.js';
import { useStatusAgent } from './agent-harness.js';
import { call, httpServer, type TestServer } from './support.js';

let app: TestServer | undefined;
const { start, base, waitReady, record: recordFile } = useStatusAgent('hello-probes.yaml.injected', async () => {
  await app?.close();
  app = undefined;
});

describe('status port in pilot-agent proxy', () => {
  it('gets ready with Envoy, serves metrics and app probes, and quits at once on /quitquitquit', async () => {
    app = await httpServer((_q, r) => r.end('alive'));
    const probers = JSON.stringify({ '/app-health/hello/livez': { httpGet: { port: app.port } } });
    const agent = start({ proxyConfig: { terminationDrainDuration: '60s' }, env: { ISTIO_KUBE_APP_PROBERS: probers } });
    await waitReady(agent);
    expect(agent.output()).toContain('Envoy proxy is ready');
    const metrics = await call(`${base()}/stats/prometheus`);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('istio_agent_startup_duration_seconds');
    expect(await call(`${base()}/app-health/hello/livez`).then((r) => [r.status, r.body])).toEqual([200, 'alive']);
    const t0 = Date.now();
    expect((await call(`${base()}/quitquitquit`, { method: 'POST' })).status).toBe(200);
    const exit = await agent.exited;
    expect(exit.code, agent.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000); // not the 60 s drain
  });

  it('/drain drains Envoy without exiting; the later SIGTERM is immediate', async () => {
    const agent = start({ proxyConfig: { terminationDrainDuration: '60s' } });
    await waitReady(agent);
    expect((await call(`${base()}/drain`, { method: 'POST' })).status).toBe(200);
    await vi.waitFor(() => expect(readRecord(recordFile()).filter((e) => e.event === 'admin' && e.path === '/drain_listeners').map((e) => e.query)).toEqual([{ inboundonly: '', graceful: '', skip_exit: '' }]), {
      timeout: 10_000,
    });
    expect(agent.child.exitCode).toBeNull();
    const t0 = Date.now();
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code, agent.output()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('with DISABLE_ENVOY is ready without the Envoy checks', async () => {
    const agent = start({ env: { DISABLE_ENVOY: 'true' } });
    await waitReady(agent);
    agent.child.kill('SIGTERM');
    expect((await agent.exited).code).toBe(0);
  });

  it('refuses to start, before Envoy, when ISTIO_KUBE_APP_PROBERS is invalid', async () => {
    const agent = start({ env: { ISTIO_KUBE_APP_PROBERS: '{"/app-health/hello/livez":{"httpGet":{"port":"http"}}}' } });
    expect((await agent.exited).code).toBe(255);
    expect(agent.output()).toContain('env ISTIO_KUBE_APP_PROBERS: /app-health/hello/livez: httpGet.port: the port must be int type');
    expect(readRecord(recordFile()).filter((e) => e.event === 'start')).toHaveLength(0);
  });
});
