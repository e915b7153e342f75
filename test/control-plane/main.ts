// Entry point of the development control plane: `node dist-test/test/control-plane/main.js --help`.
// Runs until SIGINT/SIGTERM, then closes its streams and exits 0.

import { runCli } from './cli.js';

const io = {
  stdout: (t: string) => void process.stdout.write(t),
  stderr: (t: string) => void process.stderr.write(t),
};

const outcome = await runCli(process.argv.slice(2), io);
if ('exitCode' in outcome) {
  process.exitCode = outcome.exitCode;
} else {
  const cp = outcome.controlPlane;
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.exit(1);
    }
    stopping = true;
    io.stderr(`${new Date().toISOString()}\t${signal}: stopping\n`);
    cp.close().then(
      () => process.exit(0),
      (err: unknown) => {
        io.stderr(`control-plane: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
