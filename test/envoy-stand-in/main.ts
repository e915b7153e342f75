// Entry point of the Envoy stand-in: an executable the agent can spawn instead of Envoy
// (ProxyConfig binaryPath = test/envoy-stand-in/envoy). See README.md in this folder for what it
// does, the ENVOY_STANDIN_* knobs and the /standin/* test controls.

import { loadBootstrap, BootstrapError } from './bootstrap.js';
import { readStandInConfig, StandInConfigError, DEFAULT_VERSION } from './config.js';
import { EnvoyLog } from './log.js';
import { parseEnvoyArgs } from './options.js';
import { Recorder } from './recorder.js';
import { StandInServer } from './server.js';

function programName(): string {
  // process.argv[1] is the launcher (test/envoy-stand-in/envoy), which is what Envoy's argv[0] would be.
  return process.argv[1] ?? 'envoy';
}

/** Runs the stand-in with Envoy's argv (without argv[0]). Never returns normally: the process exits. */
export async function main(args: readonly string[]): Promise<void> {
  let config;
  try {
    config = readStandInConfig(process.env);
  } catch (err) {
    if (err instanceof StandInConfigError) {
      process.stderr.write(`envoy stand-in: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const recorder = new Recorder(config.recordFile);
  recorder.record({ event: 'start', argv: [...args], pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });

  const running: { server?: StandInServer } = {};
  const exit: (code: number, signal?: NodeJS.Signals) => never = (code, signal) => {
    recorder.record(signal ? { event: 'exit', signal } : { event: 'exit', code });
    running.server?.close();
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
    process.exit(code);
  };

  const parsed = parseEnvoyArgs(args, { programName: programName(), version: config?.version ?? DEFAULT_VERSION });
  if (parsed.kind === 'exit') {
    if (parsed.stdout) process.stdout.write(parsed.stdout);
    if (parsed.stderr) process.stderr.write(parsed.stderr);
    exit(parsed.code);
  }
  const options = parsed.options;
  const log = new EnvoyLog(options.logLevel, options.componentLogLevels);

  // Envoy handles these from the start: SIGTERM/SIGINT shut down at once and exit 0 (no drain).
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      recorder.record({ event: 'signal', signal: sig });
      log.warn('main', sig === 'SIGTERM' ? 'caught ENVOY_SIGTERM' : 'caught SIGINT');
      log.info('main', 'shutting down server instance');
      log.info('main', 'main dispatch loop exited');
      log.info('main', 'exiting');
      exit(0);
    });
  }
  for (const sig of ['SIGHUP', 'SIGUSR1'] as const) {
    process.on(sig, () => {
      recorder.record({ event: 'signal', signal: sig });
      if (sig === 'SIGUSR1') log.info('main', 'caught SIGUSR1. Reopening access logs.');
      else log.info('main', 'caught and eating SIGHUP. See documentation for how to hot restart.');
    });
  }

  let bootstrap;
  try {
    bootstrap = loadBootstrap({
      configPath: options.configPath,
      configYaml: options.configYaml,
      allowUnknownStaticFields: options.allowUnknownStaticFields,
      lenientUnknownFields: !config.strictUnknownFields,
    });
  } catch (err) {
    if (!(err instanceof BootstrapError)) throw err;
    recorder.record({ event: 'config_error', message: err.message });
    log.critical('main', `error initializing configuration '${options.configPath}': ${err.message}`);
    process.stderr.write(`${err.message}\n`);
    exit(1);
  }

  if (options.mode === 'validate') {
    for (const w of bootstrap.unknownFieldWarnings) log.warn('misc', w);
    log.info('main', `configuration '${options.configPath}' OK`);
    exit(0);
  }

  const server = new StandInServer({ options, bootstrap, config, log, recorder, exit });
  running.server = server;
  try {
    await server.start();
  } catch (err) {
    log.critical('main', `error initializing configuration '${options.configPath}': ${(err as Error).message}`);
    process.stderr.write(`${(err as Error).message}\n`);
    exit(1);
  }
}
