// Garbage collection on demand, for the two places that need it: the memory governor (a full
// collection under memory pressure) and the xDS proxy (a young-generation collection paced by the
// bytes istiod sends).
//
// Why the proxy paces collections: Node's HTTP/2 layer reads each chunk of istiod's stream into a
// new buffer outside the JavaScript heap, and only a collection frees it. V8 barely counts that
// memory, so it collects late: measured with 1.26 MB pushes, the agent's malloc heap grew by ~34 MB
// before the first collection, every push landed on fresh pages (~200 page faults per push, about
// 2 ms of kernel time), and the memory stayed mapped afterwards. A young-generation collection after
// every MiB received frees those buffers while they are still young (~0.3-1 ms each, on a
// young generation of a few MiB), and the next reads reuse the same pages.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor' }) => void;

let gcFunction: GcFunction | null | undefined;

/**
 * V8 offers collection on demand only behind --expose-gc, which takes effect in contexts created
 * after it is set: a new context hands the function over. Done once, on first need (~1.5 ms and
 * ~0.5 MiB), so that an agent that never needs it does not pay at start-up. A runtime that refuses
 * the flag leaves collection to V8: null, and every request a no-op, never an exception.
 */
function gc(): GcFunction | null {
  if (gcFunction === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      const fn: unknown = runInNewContext('typeof gc === "function" ? gc : null');
      gcFunction = typeof fn === 'function' ? (fn as GcFunction) : null;
    } catch {
      gcFunction = null;
    }
  }
  return gcFunction;
}

/**
 * A full collection, now (nothing where the runtime offers none). Called without options: Node
 * 20's V8 does not know `{ type: 'major' }` and runs a young-generation collection for it, which
 * frees nothing that has reached the old generation.
 */
export function collectAll(): void {
  gc()?.();
}

/** A young-generation collection, now (nothing where the runtime offers none). */
export function collectYoung(): void {
  gc()?.({ type: 'minor' });
}

/** The largest buffer glibc's dynamic thresholds are raised to; see keepFreedPagesMapped(). */
const MALLOC_THRESHOLD_BYTES = 4 * 1024 * 1024;
let thresholdsRaised = false;

/**
 * glibc's malloc returns the top of its heap to the kernel whenever more than 128 KiB is free
 * there (M_TRIM_THRESHOLD), so memory freed by a collection is unmapped and the next reads fault
 * it in again, page by page. glibc raises that threshold by itself once the process frees a chunk
 * it had mmapped: the mmap threshold becomes that chunk's size and the trim threshold twice it
 * (mallopt(3), "dynamic mmap threshold"). Node cannot call mallopt(); freeing one buffer of
 * MALLOC_THRESHOLD_BYTES does the same: buffers under 4 MiB then come from the heap and up to
 * 8 MiB of freed memory stays mapped for reuse. Measured: page faults per 1.26 MB push 160-190
 * with collections alone, ~20 with both. Elsewhere (musl, another allocator) it is one
 * allocation freed, nothing more. The buffer is never written, so it costs no resident memory.
 */
function keepFreedPagesMapped(): void {
  if (thresholdsRaised) return;
  thresholdsRaised = true;
  // dropped at once: the collection that follows frees it
  Buffer.allocUnsafeSlow(MALLOC_THRESHOLD_BYTES);
}

/**
 * Asks for a young-generation collection once `everyBytes` have been noted since the last one.
 * The collection runs on the next turn of the event loop, after what the caller is doing has let
 * go of its buffers (collecting in the middle of a message would promote its live buffers to the
 * old generation, which only a full collection frees).
 */
export class GcPacer {
  private since = 0;
  private scheduled = false;

  constructor(
    private readonly everyBytes: number,
    private readonly collect: () => void = collectYoung,
  ) {}

  /** `bytes` more have been received and let go of. */
  note(bytes: number): void {
    this.since += bytes;
    if (this.since < this.everyBytes || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.since = 0;
      keepFreedPagesMapped();
      this.collect();
    }).unref();
  }
}
