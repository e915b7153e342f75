// /debug/pprof/* on the status port of the real `pilot-agent proxy` (built CLI, Envoy stand-in):
// Istio's --profiling (default true) serves Go's pprof there; this agent serves V8's CPU profile and
// sampling heap profile at the same paths, and a full heap snapshot beside them, one at a time, and says plainly which Go profiles it has not.
// The loopback-only rule is tested from a network namespace in lifecycle.test.ts.

import http from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { useStatusAgent } from './agent-harness.js';
import { call } from './support.js';

const { start, base, waitReady } = useStatusAgent('hello.yaml.injected');

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

describe('/debug/pprof with --profiling (Istio\'s default)', () => {
  it('serves an index, the command line, a CPU profile of the asked length and a heap snapshot, one at a time', { timeout: 90_000 }, async () => {
    const agent = start();
    await waitReady(agent);

    const index = await call(`${base()}/debug/pprof/`);
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    for (const name of ['profile', 'heap', 'heapsnapshot', 'cmdline']) expect(index.body).toContain(`<a href="${name}">${name}</a>`);
    expect(index.body).toContain('Not served (Go runtime profiles with no Node.js equivalent): allocs, block, goroutine, mutex, threadcreate, symbol, trace.');
    expect(JSON.parse((await call(`${base()}/debug`)).body)).toMatchObject({ endpoints: expect.arrayContaining(['/debug/pprof/']) });

    const cmdline = await call(`${base()}/debug/pprof/cmdline`);
    expect(cmdline.status).toBe(200);
    const argv = cmdline.body.split('\0'); // node, the launcher, then the container's args
    expect(argv[0]).toBe(process.execPath);
    expect(argv[1]).toMatch(/bin\/pilot-agent\.js$/);
    expect(argv.slice(2, 4)).toEqual(['proxy', 'sidecar']);

    // a 1 s CPU profile of the agent, in V8's .cpuprofile format
    const profiled = await call(`${base()}/debug/pprof/profile?seconds=1`, { timeoutMs: 30_000 });
    expect(profiled.status, profiled.body).toBe(200);
    expect(profiled.headers['content-type']).toBe('application/json');
    expect(profiled.headers['content-disposition']).toBe('attachment; filename="profile.cpuprofile"');
    const profile = JSON.parse(profiled.body) as CpuProfile;
    expect(profile.nodes[0]!.callFrame.functionName).toBe('(root)');
    expect(profile.samples.length).toBe(profile.timeDeltas.length);
    expect(profile.samples.length).toBeGreaterThan(0);
    expect(profile.endTime - profile.startTime).toBeGreaterThanOrEqual(990_000); // µs: it covered the second asked for
    // every sample names a node of the call tree
    const ids = new Set(profile.nodes.map((n) => n.id));
    expect(profile.samples.every((id) => ids.has(id))).toBe(true);

    // while a profile runs, another profile or a snapshot is refused
    const long = call(`${base()}/debug/pprof/profile?seconds=3`, { timeoutMs: 30_000 });
    await vi.waitFor(() => expect(agent.output()).toContain('pprof: CPU profile for 3s requested by'), { timeout: 10_000, interval: 50 });
    const second = await call(`${base()}/debug/pprof/profile?seconds=1`);
    expect(second.status).toBe(409);
    expect(second.body).toMatch(/^a 3s CPU profile is being taken \(started \d+s ago\); one profile at a time/);
    expect((await call(`${base()}/debug/pprof/heap`)).status).toBe(409);
    expect((await long).status).toBe(200);

    // a sampling heap profile over the seconds asked for (cheap, as Go's heap profile): allocations
    // of the agent's own code are in it
    const heapProfile = await call(`${base()}/debug/pprof/heap?seconds=1`, { timeoutMs: 30_000 });
    expect(heapProfile.status, heapProfile.body).toBe(200);
    expect(heapProfile.headers['content-disposition']).toBe('attachment; filename="heap.heapprofile"');
    const sampledHeap = JSON.parse(heapProfile.body) as { head: { callFrame: { functionName: string }; children: unknown[] }; samples: unknown[] };
    expect(sampledHeap.head.callFrame.functionName).toBe('(root)');
    expect(Array.isArray(sampledHeap.samples)).toBe(true);
    expect((await call(`${base()}/debug/pprof/heap?seconds=0`)).status).toBe(400);

    // the full heap snapshot, streamed, at its own path
    const heap = await call(`${base()}/debug/pprof/heapsnapshot`, { timeoutMs: 60_000 });
    expect(heap.status).toBe(200);
    expect(heap.headers['content-disposition']).toBe('attachment; filename="heap.heapsnapshot"');
    const snapshot = JSON.parse(heap.body) as { snapshot: { meta: { node_fields: string[] }; node_count: number }; strings: string[] };
    expect(snapshot.snapshot.meta.node_fields).toContain('self_size');
    expect(snapshot.snapshot.node_count).toBeGreaterThan(1000);
    expect(snapshot.strings).toContain('StatusServer'); // the agent's own classes are in it

    // a caller that leaves mid-profile ends it: the next one is served
    const leaving = http.get(`${base()}/debug/pprof/profile?seconds=60`);
    leaving.on('error', () => undefined);
    await vi.waitFor(() => expect(agent.output()).toContain('pprof: CPU profile for 60s requested by'), { timeout: 10_000, interval: 50 });
    leaving.destroy();
    await vi.waitFor(() => expect(agent.output()).toContain('pprof: CPU profile abandoned (the caller left or the server is closing)'), { timeout: 10_000, interval: 50 });
    expect((await call(`${base()}/debug/pprof/profile?seconds=1`, { timeoutMs: 30_000 })).status).toBe(200);

    // bad lengths are refused, naming the value; Go-only profiles are named as such
    for (const bad of ['0', 'abc', '301', '1.5']) {
      const res = await call(`${base()}/debug/pprof/profile?seconds=${bad}`);
      expect(res.status).toBe(400);
      expect(res.body).toBe(`seconds: expected a whole number of seconds from 1 to 300, got "${bad}"\n`);
    }
    for (const goOnly of ['goroutine', 'allocs', 'block', 'mutex', 'threadcreate', 'symbol', 'trace']) {
      const res = await call(`${base()}/debug/pprof/${goOnly}`);
      expect(res.status).toBe(404);
      expect(res.body).toContain(`/debug/pprof/${goOnly} is a Go runtime profile`);
      expect(res.body).toContain('Served here: /debug/pprof/profile, /debug/pprof/heap, /debug/pprof/heapsnapshot, /debug/pprof/cmdline');
    }
    expect((await call(`${base()}/debug/pprof/nosuch`)).body).toBe('unknown profile "nosuch". Served here: /debug/pprof/profile, /debug/pprof/heap, /debug/pprof/heapsnapshot, /debug/pprof/cmdline\n');
    expect(agent.child.exitCode).toBeNull();
  });

  it('with --profiling=false, /debug/pprof/ is not served', { timeout: 60_000 }, async () => {
    const agent = start({ args: ['--profiling=false'] });
    await waitReady(agent);
    const res = await call(`${base()}/debug/pprof/profile?seconds=1`);
    expect(res.status).toBe(404);
    expect(res.body).toBe('profiling is off (pilot-agent proxy --profiling=false)\n');
    expect(JSON.parse((await call(`${base()}/debug`)).body).endpoints).not.toContain('/debug/pprof/');
  });
});
