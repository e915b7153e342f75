// A memory fix for @grpc/grpc-js' message decoder, applied once at load.
//
// grpc-js assembles a received message from its HTTP/2 chunks with Buffer.concat, but keeps the
// chunk list referenced until the *next* message starts. For the xDS proxy that means a 50 MB
// push is held twice (chunks + assembled message) for as long as it takes to forward it, on top
// of the framed copy grpc-js makes to send it on: 3x the message live at once. Dropping the list
// as soon as a message is complete lets the chunks be collected before the forward copy is made.
// The patch is guarded: if grpc-js changes its decoder, it is skipped (with no behaviour change).

import { createRequire } from 'node:module';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

interface DecoderLike {
  readState: number;
  readPartialMessage: unknown[];
  write(data: Buffer): Buffer[];
}

const NO_DATA = 0;
let applied = false;

export function releaseDecoderChunksEarly(): boolean {
  if (applied) return true;
  try {
    const require = createRequire(import.meta.url);
    const mod = require('@grpc/grpc-js/build/src/stream-decoder.js') as { StreamDecoder?: { prototype: DecoderLike } };
    const proto = mod.StreamDecoder?.prototype;
    if (!proto || typeof proto.write !== 'function') return false;
    const original = proto.write;
    proto.write = function (this: DecoderLike, data: Buffer): Buffer[] {
      const out = original.call(this, data);
      if (this.readState === NO_DATA && Array.isArray(this.readPartialMessage)) this.readPartialMessage = [];
      return out;
    };
    applied = true;
    return true;
  } catch {
    return false;
  }
}

let collect: (() => void) | undefined;

/**
 * Collects garbage now. Called when a large push has just been assembled: its HTTP/2 chunks are
 * garbage (see above) but V8 frees external memory only when its heuristics fire, and the framed
 * copy for the forward is about to be made. A full collection of the agent's small heap costs a
 * few milliseconds, against tens of megabytes less peak memory per large push.
 */
export function collectGarbageNow(): void {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}
