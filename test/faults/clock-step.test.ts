// The wall clock stepped under the running agent (NTP correcting a VM resumed from suspend, a node
// booted with a wrong RTC): durations are measured on the monotonic clock, so a step changes
// nothing the agent waits for. The agent runs under libfaketime (Debian's faketime), which moves
// only this process's wall clock, from a file read at every clock call, and leaves the monotonic
// clock alone, as a real step does.
//
// Before the fix the xDS proxy's dial backoff was kept as a wall-clock time: after a step back of
// an hour, Envoy's next stream was held for an hour with no istiod behind it, while Envoy counted
// itself connected (the agent held streams through its backoff then; it now refuses them, which
// would have refused every reconnect for an hour).

import * as grpc from '@grpc/grpc-js';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openSotw, startControlPlane, type ControlPlane, type SotwClient } from '../control-plane/index.js';
import { freePort, runAgent, stopAgent, tempDir, type RunningProcess } from '../support/processes.js';

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';

let agent: RunningProcess | undefined;
let cp: ControlPlane | undefined;
let work: ReturnType<typeof tempDir> | undefined;
const clients: SotwClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await stopAgent(agent);
  agent = undefined;
  await cp?.close();
  cp = undefined;
  work?.cleanup();
  work = undefined;
});

describe('a wall-clock step under the agent', () => {
  it('does not stretch the xDS dial backoff: a step back of an hour, then istiod back, and the next stream is served at once', { timeout: 60_000 }, async () => {
    // scripts/system-deps.sh installs it; without it this test cannot say anything, so it fails
    expect(existsSync(LIBFAKETIME), `${LIBFAKETIME} (Debian package faketime)`).toBe(true);
    work = tempDir('pa-clock-step-');
    const clock = join(work.path, 'clock-offset');
    writeFileSync(clock, '+0\n');
    const port = await freePort(); // istiod is down: nothing listens here yet
    agent = runAgent(['proxy', 'sidecar', '--log_output_level=default:info'], {
      cwd: work.path,
      env: {
        LD_PRELOAD: LIBFAKETIME,
        FAKETIME_TIMESTAMP_FILE: clock,
        FAKETIME_NO_CACHE: '1',
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
        POD_NAME: 'clock',
        POD_NAMESPACE: 'default',
        INSTANCE_IP: '10.0.0.1',
        DISABLE_ENVOY: 'true',
        // no CA to reach: the certificate is not what this test is about
        FILE_MOUNTED_CERTS: 'true',
        PROXY_CONFIG: JSON.stringify({ controlPlaneAuthPolicy: 'NONE', discoveryAddress: `127.0.0.1:${port}`, statusPort: 0 }),
      },
    });
    const socket = join(work.path, 'etc/istio/proxy/XDS');
    await vi.waitFor(() => expect(existsSync(socket), agent!.output()).toBe(true), { timeout: 20_000, interval: 50 });
    const target = { address: `unix:${socket}`, tls: false as const };

    // the first stream's dial is refused: the proxy backs off (500 ms, +-50 %)
    const refused = openSotw(target);
    clients.push(refused);
    refused.request({ type_url: CDS });
    expect((await refused.status).code).toBe(grpc.status.UNAVAILABLE);

    // the wall clock goes back an hour; the agent must not notice
    writeFileSync(clock, '-3600\n');

    cp = await startControlPlane({ plaintext: true, listen: `127.0.0.1:${port}` });
    cp.setResources(CDS, [{ json: { '@type': CDS, name: 'after-the-step', type: 'STATIC', connect_timeout: '1s' } }], { replace: true });
    // reconnect as Envoy does: a stream refused while the backoff runs is retried a moment later
    const t0 = performance.now();
    for (;;) {
      const client = openSotw(target);
      clients.push(client);
      client.request({ type_url: CDS });
      // a refused stream ends the wait for a response (rejected) and then settles its status
      const first = await client.next(15_000).then(
        (res) => ({ res }),
        async () => ({ st: await client.status }),
      );
      if ('res' in first) {
        expect(first.res.resources).toHaveLength(1);
        break;
      }
      // refused within the backoff (at most 750 ms), never for the hour the wall clock went back
      expect(first.st.details).toMatch(/not dialling again for \d{1,3} ms/);
      expect(performance.now() - t0).toBeLessThan(15_000);
      await new Promise((r) => setTimeout(r, 100));
    }
    // the step did reach the agent: its last lines are stamped an hour back
    const stamps = [...agent.output().matchAll(/^(\d{4}-\d\d-\d\dT[\d:.]+Z)\t/gm)].map((m) => Date.parse(m[1]!));
    expect(Math.abs(Date.now() - 3600_000 - stamps.at(-1)!)).toBeLessThan(60_000);
  });
});
