// The status port's connection limit. Anyone who can reach the pod IP can open connections to
// 15020, and each one costs a file descriptor and buffers; but the kubelet's probes must be
// answered whatever else is connected, or a flood would make the pod unready (or restart it).
//
// So the cap does not simply refuse newcomers, which would hand the port to whoever connected
// first and holds on: when a connection beyond the cap arrives, the oldest *idle* connection gives
// way - one that has not sent a whole request yet (a slowloris, or a client that connects and waits)
// or an idle keep-alive one. A kubelet probe sends its request at once and closes after the answer,
// so to starve it a flood would have to evict it in the moment between its connect and its
// request. Only when every open connection has a request in progress is the newcomer refused: those
// are bounded in time (probes by their timeout, scrapes by their deadline, the rest answer at once).
//
// Requests pipelined on one connection are handled one after another, as Go's net/http does (node
// would start them all at once: 500 pipelined probe requests in one packet, 500 connections to the
// app), so the work in progress is bounded by the connection cap too. More than a few waiting is
// no client we serve (neither the kubelet nor Prometheus pipelines): the connection is closed.

import type { Socket } from 'node:net';

/** Pipelined requests that may wait behind the one in progress on a connection. */
const MAX_WAITING_PER_CONNECTION = 8;

export class ConnectionGuard {
  /** Connections without a request in progress, oldest first (a Map keeps insertion order). */
  private readonly idle = new Map<Socket, true>();
  /** Connections with a request in progress, and the requests waiting behind it. */
  private readonly busy = new Map<Socket, (() => void)[]>();
  private atLimit = false;

  constructor(
    private readonly max: number,
    private readonly warn: (message: string) => void,
  ) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`status server: maxConnections must be a positive integer, got ${max}`);
  }

  get size(): number {
    return this.idle.size + this.busy.size;
  }

  /** A new connection: tracked, or refused (destroyed) when the cap is reached and nothing can give way. */
  accept(socket: Socket): void {
    // a peer's reset must never become an uncaught exception (node's own handler reports it as clientError)
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.idle.delete(socket);
      this.busy.delete(socket);
      if (this.atLimit && this.size <= this.max / 2) this.atLimit = false;
    });
    if (this.size >= this.max) {
      if (!this.atLimit) {
        this.atLimit = true;
        this.warn(`status port: ${this.max} connections open (the limit); closing the oldest idle ones for new ones, refusing new ones while all are busy`);
      }
      const oldest = this.idle.keys().next();
      if (oldest.done) return void socket.destroy();
      this.idle.delete(oldest.value);
      oldest.value.destroy();
    }
    this.idle.set(socket, true);
  }

  /**
   * A request arrived on `socket`: `handle` runs once the requests before it on the connection are
   * answered (`res` closed). Too many waiting: the connection is closed and `handle` never runs.
   */
  request(socket: Socket, res: { once(event: 'close', cb: () => void): unknown }, handle: () => void): void {
    const run = (): void => {
      res.once('close', () => this.next(socket));
      handle();
    };
    const waiting = this.busy.get(socket);
    if (waiting === undefined) {
      this.idle.delete(socket);
      this.busy.set(socket, []);
      return run();
    }
    if (waiting.length >= MAX_WAITING_PER_CONNECTION) return void socket.destroy();
    waiting.push(run);
  }

  /** The request in progress on `socket` is answered: the next one waiting runs, or the connection is idle again. */
  private next(socket: Socket): void {
    const waiting = this.busy.get(socket);
    if (waiting === undefined) return; // closed meanwhile
    const run = waiting.shift();
    if (run) return run();
    this.busy.delete(socket);
    // idle again, and now the newest idle one
    if (!socket.destroyed) this.idle.set(socket, true);
  }

  destroyAll(): void {
    for (const s of [...this.idle.keys(), ...this.busy.keys()]) s.destroy();
  }
}
