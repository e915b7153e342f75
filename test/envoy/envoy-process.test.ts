// EnvoyProcess.terminate() must be safe in every state (before start, while spawning, running,
// draining, after exit, after a failed start) and never leave the child running: a real child
// process (`sleep`) stands for Envoy, and the admin API is unreachable, as it is while Envoy
// starts.

import { afterEach, describe, expect, it } from 'vitest';
import { EnvoyAdminClient } from '../../src/envoy/admin-client.js';
import { EnvoyProcess, EnvoyStartError } from '../../src/envoy/envoy-process.js';
import { freePort, isAlive } from '../support/processes.js';

const started: EnvoyProcess[] = [];
afterEach(() => {
  for (const p of started.splice(0)) p.killNow();
});

async function envoyLike(binaryPath = '/bin/sleep'): Promise<EnvoyProcess> {
  const p = new EnvoyProcess({
    binaryPath,
    args: ['300'],
    env: { PATH: '/usr/bin:/bin' },
    admin: new EnvoyAdminClient(await freePort()),
    inboundOnly: true,
    terminationDrainMs: 60_000,
    exitOnZeroActiveConnections: false,
    minimumDrainMs: 0,
    knownListeners: new Set(),
    killGraceMs: 1000,
  });
  started.push(p);
  return p;
}

describe('EnvoyProcess.terminate in every state', () => {
  it('before start: settles at once as a requested stop, and again when called again', async () => {
    const p = await envoyLike();
    const first = await p.terminate();
    expect(first).toEqual({ code: 0, signal: null, requested: true });
    expect(await p.terminate()).toBe(first);
    expect(p.state).toBe('exited');
  });

  it('while Envoy is being spawned: waits for the spawn, then stops the child that was spawned', async () => {
    const p = await envoyLike();
    const starting = p.start();
    const stopping = p.terminate({ maxDrainMs: 0 });
    await starting;
    const pid = p.pid!;
    const exit = await stopping;
    expect(exit.requested).toBe(true);
    expect(isAlive(pid)).toBe(false);
  });

  it('twice at once while running, with a bounded drain: both settle, the child is gone', async () => {
    const p = await envoyLike();
    await p.start();
    const pid = p.pid!;
    const [a, b] = await Promise.all([p.terminate({ maxDrainMs: 200 }), p.terminate({ maxDrainMs: 200 })]);
    expect(a).toBe(b);
    expect(isAlive(pid)).toBe(false);
  });

  it('bounds the configured drain with maxDrainMs', async () => {
    const p = await envoyLike();
    await p.start();
    const t0 = Date.now();
    await p.terminate({ maxDrainMs: 300 });
    // the configured 60 s drain was not waited for (generous bound: this is not a timing test)
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('after a failed start: the start error names the binary, terminate still settles', async () => {
    const p = await envoyLike('/nonexistent/envoy');
    await expect(p.start()).rejects.toThrow(EnvoyStartError);
    await expect(p.start()).rejects.toThrow(/already started|does not exist/);
    expect(await p.terminate()).toEqual({ code: 0, signal: null, requested: true });
  });

  it('after Envoy exited by itself: returns its exit, not a requested stop', async () => {
    const p = new EnvoyProcess({
      binaryPath: '/bin/sh',
      args: ['-c', 'exit 7'],
      env: {},
      admin: new EnvoyAdminClient(await freePort()),
      inboundOnly: true,
      terminationDrainMs: 0,
      exitOnZeroActiveConnections: false,
      minimumDrainMs: 0,
      knownListeners: new Set(),
    });
    await p.start();
    const exit = await p.exited;
    expect(exit).toEqual({ code: 7, signal: null, requested: false });
    expect(await p.terminate()).toBe(exit);
  });
});
