// The floor for bench `xds`: the least any Node process between the client and istiod can cost.
// It accepts on a unix socket, as the agent's XDS socket does, dials the upstream over TCP and
// pipes the bytes both ways without reading them: the client's HTTP/2 connection reaches the
// upstream end to end. The agent parses HTTP/2 and gRPC on both sides; what it takes beyond this
// relay is its own cost, what this relay takes is the price of a Node process in the path on the
// machine the bench runs on. Prints `relaying on <path>` once it listens.
//
// Usage: byte-relay.js <socket path> <upstream host:port>

import { createServer, connect, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

const [socketPath, upstream] = process.argv.slice(2);
const m = /^(.+):(\d+)$/.exec(upstream ?? '');
if (!socketPath || !m) {
  process.stderr.write(`usage: byte-relay.js <socket path> <upstream host:port>; got "${process.argv.slice(2).join(' ')}"\n`);
  process.exit(2);
}
const [, host, port] = m;

function relay(down: Socket): void {
  // no Nagle on the TCP leg, as the agent's upstream connection
  const up = connect({ host: host!, port: Number(port), noDelay: true });
  down.pipe(up);
  up.pipe(down);
  // either side failing ends both, as a broken connection through the agent would
  down.on('error', () => up.destroy());
  up.on('error', () => down.destroy());
  down.on('close', () => up.destroy());
  up.on('close', () => down.destroy());
}

rmSync(socketPath, { force: true });
createServer(relay).listen(socketPath, () => process.stdout.write(`relaying on ${socketPath}\n`));
