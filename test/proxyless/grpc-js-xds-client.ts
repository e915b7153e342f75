// A proxyless gRPC client that nobody here wrote the xDS side of: @grpc/grpc-js-xds resolves an
// `xds:///` target using the bootstrap in GRPC_XDS_BOOTSTRAP (written by the agent), through the
// agent's xDS socket. Prints one JSON line per RPC. Usage: node grpc-js-xds-client.js <target> <n>

import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';

grpcXds.register();
const [target = '', countText = '1'] = process.argv.slice(2);
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const identity = (b: Buffer): Buffer => b;

async function call(i: number): Promise<void> {
  const deadline = new Date(Date.now() + 20_000);
  const reply = await new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest('/hello.Greeter/SayHello', identity, identity, Buffer.from(`hello ${i}`), { deadline }, (err, res) => (err ? reject(err) : resolve(res!))),
  );
  process.stdout.write(JSON.stringify({ i, reply: reply.toString() }) + '\n');
}

try {
  for (let i = 0; i < Number(countText); i++) await call(i);
  client.close();
  process.exit(0);
} catch (err) {
  process.stderr.write(`rpc failed: ${(err as Error).message}\n`);
  process.exit(1);
}
