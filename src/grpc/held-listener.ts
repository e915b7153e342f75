// A listening socket bound before the server that answers on it is loaded. The agent binds the
// xDS and SDS sockets and the xDS debug port, spawns Envoy, and only then loads the servers
// (node:http2 and the proxy's own code cost tens of milliseconds that Envoy's spawn need not wait
// for; bench `startup`). A bind that fails still stops start-up before Envoy runs, as in Istio.
// Envoy may connect from its first moment: the kernel completes the connection and the listener
// holds it, unread, until the server takes it. Only node:net is needed here, which the spawn
// loads anyway.

import { chmodSync, lstatSync, rmSync } from 'node:fs';
import { makeDirSync } from '../util/make-dir.js';
import net from 'node:net';
import { dirname } from 'node:path';
import { unixSocketAccepts } from './dial.js';
import { rateLimited } from '../util/rate-limited.js';

/** A unix socket path: at most 107 bytes on Linux. */
const MAX_SOCKET_PATH = 107;

export interface ListenerOptions {
  /** What the socket serves, in messages ("SDS", "xDS", "debug"). */
  readonly name: string;
  /** Where an error of the listening socket goes (an accept failing: out of file descriptors), at most every 10 s. */
  readonly warn?: (message: string) => void;
}

export interface UnixListenerOptions extends ListenerOptions {
  /** File mode of the socket (default 0666: Istio's sockets are shared with Envoy's user). */
  readonly mode?: number;
  readonly log?: (message: string) => void;
}

/** Whoever serves the connections: an http2 or http server takes them through its 'connection' event. */
export interface ConnectionTaker {
  emit(event: 'connection', socket: net.Socket): boolean;
}

/** A listening socket whose connections wait, unread, until `handTo` names who serves them. */
export class HeldListener {
  private readonly held = new Set<net.Socket>();
  private taker: ConnectionTaker | undefined;
  private closed = false;

  private constructor(
    private readonly server: net.Server,
    /** The unix socket's path (removed on close); undefined for TCP. */
    readonly path: string | undefined,
  ) {
    server.on('connection', (socket) => this.onConnection(socket));
  }

  /**
   * Binds the unix socket `path`. A socket file nobody listens on (left by a crash) is removed
   * first, as grpc servers and listen() never do; anything else there, or a live listener, is an
   * error naming the path rather than something to delete.
   */
  static async unix(path: string, options: UnixListenerOptions): Promise<HeldListener> {
    await clearPath(path, options);
    const listener = await HeldListener.listen({ path }, path, options);
    chmodSync(path, options.mode ?? 0o666);
    return listener;
  }

  /** Binds a TCP port (0: any free one). */
  static tcp(host: string, port: number, options: ListenerOptions = { name: 'TCP' }): Promise<HeldListener> {
    return HeldListener.listen({ host, port }, undefined, options);
  }

  private static async listen(at: net.ListenOptions, path: string | undefined, options: ListenerOptions): Promise<HeldListener> {
    // paused: what a client sends stays in the kernel until the server that parses it takes over
    const server = net.createServer({ pauseOnConnect: true });
    const listener = new HeldListener(server, path);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // from now on an error is an accept that failed (libuv reports EMFILE when even its spare fd
    // is gone): without a listener it would be thrown and end the agent; the server goes on
    // accepting once descriptors are free again
    const where = path ?? `${typeof at.host === 'string' ? at.host : ''}:${listener.port}`;
    const warn = rateLimited(options.warn ?? (() => undefined));
    server.on('error', (err: Error) => warn(`${options.name} listener on ${where}: ${err.message}${/EMFILE|ENFILE/.test(err.message) ? ' (out of file descriptors: new connections are refused until some close)' : ''}`));
    return listener;
  }

  /** The TCP port listened on (the one picked when 0 was asked for); 0 for a unix socket. */
  get port(): number {
    const address = this.server.address();
    return address && typeof address === 'object' ? address.port : 0;
  }

  /** Connections waiting for `handTo`. */
  get waiting(): number {
    return this.held.size;
  }

  /** From now on `taker` serves every connection, first those that were waiting. */
  handTo(taker: ConnectionTaker): void {
    if (this.closed) throw new Error(`the listener on ${this.describe()} is closed`);
    if (this.taker) throw new Error(`the connections on ${this.describe()} are already served`);
    this.taker = taker;
    for (const socket of this.held) this.give(socket);
    this.held.clear();
  }

  private describe(): string {
    return this.path ?? `port ${this.port}`;
  }

  private onConnection(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    if (this.taker) return this.give(socket);
    this.held.add(socket);
    // A paused socket reads nothing, not even the end of a client that gave up: the taker reads
    // that end and the connection closes there. One broken meanwhile is forgotten.
    socket.once('close', () => this.held.delete(socket));
    socket.on('error', () => undefined);
  }

  private give(socket: net.Socket): void {
    if (socket.destroyed) return;
    this.taker!.emit('connection', socket);
    // reading starts once the taker has the socket: an http2 session reads its handle directly,
    // and is in place by now
    socket.resume();
  }

  /** Stops accepting, drops waiting connections and removes a unix socket's file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const socket of this.held) socket.destroy();
    this.held.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.path) rmSync(this.path, { force: true });
  }
}

async function clearPath(path: string, options: UnixListenerOptions): Promise<void> {
  const fail = (why: string): Error => new Error(`cannot serve ${options.name} on ${path}: ${why}`);
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) throw fail(`a unix socket path is limited to ${MAX_SOCKET_PATH} bytes`);
  makeDirSync(dirname(path));
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw fail('the path exists and is not a socket');
  const live = await unixSocketAccepts(path, 1000).then(
    () => true,
    () => false,
  );
  if (live) throw fail(`another ${options.name} server is listening there`);
  options.log?.(`removing stale ${options.name} socket ${path}`);
  rmSync(path, { force: true });
}
