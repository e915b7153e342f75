// Loaded into the agent by bench `soak` (`node --import <this> bin/pilot-agent.js ...`): every 2 s,
// appends the agent's process.memoryUsage() as a JSON line to $PA_BENCH_MEMORY_FILE, so that RSS
// growth can be told apart: the V8 heap (live objects and garbage not yet collected), memory held
// outside it (Buffers, ArrayBuffers), or neither (the allocator keeping freed pages). A timer and an
// append every 2 s: no measurable cost to the agent.

import { appendFileSync } from 'node:fs';

const file = process.env.PA_BENCH_MEMORY_FILE;
if (file) {
  setInterval(() => {
    const m = process.memoryUsage();
    const line = { at: Date.now(), rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
    try {
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // the bench's directory is gone: it is stopping us
    }
  }, 2000).unref();
}
