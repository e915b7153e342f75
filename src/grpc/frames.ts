// gRPC's message framing over HTTP/2: a 1-byte compressed flag and a 4-byte big-endian length in
// front of each message. Deframing is incremental, so that a message can be handled (or forwarded)
// piece by piece as it arrives; README.md in this folder says why the agent speaks gRPC itself.

export const FRAME_HEADER_BYTES = 5;

/** The 5-byte gRPC frame header of an uncompressed message of `length` bytes. */
export function frameHeader(length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h[0] = 0;
  h.writeUInt32BE(length, 1);
  return h;
}

/** One whole framed message (for the small messages the agent writes itself). */
export function frameMessage(message: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, FRAME_HEADER_BYTES);
  return out;
}

/** Receives the messages of one HTTP/2 stream, piece by piece. */
export interface FrameSink {
  messageStart(length: number, compressed: boolean): void;
  /** A piece of the current message's body (a view into the received chunk, not a copy). */
  messageData(piece: Buffer): void;
  messageEnd(): void;
}

/**
 * Splits a stream of HTTP/2 DATA chunks into gRPC messages. The sink may `hold()` the deframer
 * from any callback (the proxy does while it handles a message asynchronously): chunks received
 * meanwhile are kept, unparsed, until every reason it was held for is released.
 */
export class GrpcDeframer {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  /** Body bytes still to come of the current message; -1 between messages. */
  private remaining = -1;
  /** Why the deframer is held: parsing resumes once none is left. */
  private readonly heldFor = new Set<string>();

  constructor(private readonly sink: FrameSink) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.heldFor.size === 0 && this.pending.length === 0 && this.remaining >= chunk.length) {
      // the common case while a large message streams: the whole chunk is more of its body
      this.remaining -= chunk.length;
      this.sink.messageData(chunk);
      if (this.remaining === 0) this.endMessage();
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.drain();
  }

  hold(reason = 'sink'): void {
    this.heldFor.add(reason);
  }

  release(reason = 'sink'): void {
    this.heldFor.delete(reason);
    this.drain();
  }

  isHeldFor(reason: string): boolean {
    return this.heldFor.has(reason);
  }

  /** Received bytes not yet handed to the sink. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** True when the stream ended between two messages (anything else is a truncated message). */
  get atMessageBoundary(): boolean {
    return this.remaining === -1 && this.headerFill === 0 && this.pendingBytes === 0;
  }

  private drain(): void {
    while (this.heldFor.size === 0 && this.pending.length > 0) {
      const chunk = this.pending[0]!;
      let used: number;
      if (this.remaining === -1) {
        used = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length);
        chunk.copy(this.header, this.headerFill, 0, used);
        this.headerFill += used;
        this.consume(used);
        if (this.headerFill === FRAME_HEADER_BYTES) {
          this.headerFill = 0;
          this.remaining = this.header.readUInt32BE(1);
          this.sink.messageStart(this.remaining, this.header[0] !== 0);
          if (this.remaining === 0) this.endMessage();
        }
        continue;
      }
      used = Math.min(this.remaining, chunk.length);
      const piece = used === chunk.length ? chunk : chunk.subarray(0, used);
      this.consume(used);
      this.remaining -= used;
      this.sink.messageData(piece);
      if (this.remaining === 0) this.endMessage();
    }
  }

  private endMessage(): void {
    this.remaining = -1;
    this.sink.messageEnd();
  }

  private consume(n: number): void {
    this.pendingBytes -= n;
    const chunk = this.pending[0]!;
    if (n === chunk.length) this.pending.shift();
    else this.pending[0] = chunk.subarray(n);
  }
}

/** A sink that hands over whole messages (requests from Envoy are small). */
export function wholeMessages(onMessage: (message: Buffer, compressed: boolean) => void): FrameSink {
  let parts: Buffer[] = [];
  let compressed = false;
  return {
    messageStart: (_length, c) => {
      parts = [];
      compressed = c;
    },
    messageData: (piece) => parts.push(piece),
    messageEnd: () => {
      const message = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      parts = [];
      onMessage(message, compressed);
    },
  };
}
