// --run-validation (the istio-validation container with the CNI plugin): proves that outbound
// traffic is captured before the app starts. Listeners on the loopback address at the proxy
// port and the inbound capture port; a client connects to 127.0.0.6:<probe port> (::6 for an
// IPv6 pod), once a second, until one of those connections arrives at a listener or the probe
// timeout passes. Istio reads SO_ORIGINAL_DST on the accepted socket, which Node cannot; here the
// accepted connection's source port is matched with the probe's own local port instead: NAT
// REDIRECT rewrites only the destination, so a match proves the probe was redirected.

import { connect, createServer, type Server, type Socket } from 'node:net';
import { logger } from '../util/logger.js';
import { timerDelay } from '../util/timer-delay.js';

const log = logger('default');

/** Istio's exit code when validation fails. */
export const VALIDATION_ERROR_CODE = 126;

export interface ValidationOptions {
  readonly ipv6: boolean;
  readonly proxyPort: number;
  readonly inboundCapturePort: number;
  readonly probePort: number;
  readonly timeoutMs: number;
  /** between probe attempts; Istio's is one second */
  readonly retryMs?: number;
}

export class ValidationError extends Error {
  readonly code = 'IPTABLES_VALIDATION';
}

export async function validateCapture(o: ValidationOptions): Promise<void> {
  log.info('Starting iptables validation. This check verifies that iptables rules are properly established for the network.');
  const listenHost = o.ipv6 ? '::1' : '127.0.0.1';
  const probeHost = o.ipv6 ? '::6' : '127.0.0.6';
  const servers: Server[] = [];
  const sockets = new Set<Socket>();
  const probePorts = new Set<number>();
  const arrivedPorts = new Set<number>();
  let timer: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;

  const outcome = new Promise<void>((resolve, reject) => {
    const matched = (port: number): void => {
      if (probePorts.has(port) && arrivedPorts.has(port)) resolve();
    };
    timer = setTimeout(() => reject(new ValidationError('validation timeout')), timerDelay(o.timeoutMs));

    const listen = (port: number): Promise<boolean> =>
      new Promise((done) => {
        const server = createServer((conn) => {
          sockets.add(conn);
          conn.on('error', () => undefined);
          const from = conn.remotePort;
          conn.end(String(o.probePort));
          if (from === undefined || conn.remoteAddress?.replace(/^::ffff:/, '') !== listenHost) return; // a probe from elsewhere
          arrivedPorts.add(from);
          matched(from);
        });
        server.once('error', (err) => {
          log.error(`Error on listening on ${listenHost}:${port}: ${err.message}`);
          done(false);
        });
        server.listen({ host: listenHost, port }, () => {
          log.info(`Listening on ${o.ipv6 ? `[${listenHost}]` : listenHost}:${port}`);
          servers.push(server);
          done(true);
        });
      });

    const probe = (): void => {
      const socket = connect({ host: probeHost, port: o.probePort, localAddress: listenHost });
      sockets.add(socket);
      socket.on('connect', () => {
        if (socket.localPort !== undefined) {
          probePorts.add(socket.localPort);
          matched(socket.localPort);
        }
        socket.end();
      });
      socket.on('error', (err) => log.debug(`Error connecting to ${probeHost}:${o.probePort}: ${err.message}`));
      retry = setTimeout(probe, timerDelay(o.retryMs ?? 1000));
    };

    void Promise.all([listen(o.proxyPort), listen(o.inboundCapturePort)]).then((ok) => {
      if (!ok.some(Boolean)) reject(new ValidationError(`no listener available: ${listenHost}:${o.proxyPort},${listenHost}:${o.inboundCapturePort}`));
      else probe();
    });
  });

  try {
    await outcome;
    log.info('Validation passed, iptables rules established');
  } catch (err) {
    log.error(`Validation failed: ${(err as Error).message}`);
    throw err;
  } finally {
    clearTimeout(timer);
    clearTimeout(retry);
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
  }
}
