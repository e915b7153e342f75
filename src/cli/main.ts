// Command-line wiring (commander): the only place that reads process.argv, installs signal handlers
// or calls process.exit. Commands and flags follow Istio's pilot-agent; flags it does not know are
// accepted with one warning, so that a newer injector's arguments never stop a pod from starting.
// Subcommand implementations that pull heavy modules are imported when their command runs: the
// agent (gRPC, Prometheus client, ...) and the configuration loader (YAML) only for `proxy`, so
// that `pilot-agent wait` (the postStart hook that holds the application's start) starts fast.

import { Command, CommanderError, Option } from 'commander';
import { openSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { ConfigError } from '../config/errors.js';
import { pflagArgs } from './argv.js';
import { registerBootstrapCommand } from './bootstrap-command.js';
import { addProxyFlags, goBool, goInt, proxyFlagsOf } from './flags.js';
import { CAPTURE_FLAGS } from '../iptables/flag-table.js';
import { buildInfo } from '../version.js';
import { configureLogging, logger, parseOutputLevels } from '../util/logger.js';

const log = logger('default');

/**
 * A command that fails (bad configuration, start-up failure, `wait` timing out, an unknown command
 * or a missing argument) exits 255, as Istio's does (cobra's error -> os.Exit(-1)); pods and
 * scripts that look at the status see the same number. istio-iptables keeps its own codes (1, 126)
 * and an agent that stops on an unexpected internal error exits 1, so the two stay apart.
 */
export const COMMAND_FAILED_EXIT = 255;

/**
 * Separates unknown flags from operands, the way pflag strips unknown flags: `--x=v` is one flag,
 * `--x v` consumes `v` as its value when `v` does not look like a flag.
 */
export function splitUnknown(args: readonly string[]): { operands: string[]; unknown: string[] } {
  const operands: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('-') && a !== '-') {
      unknown.push(a);
      if (!a.includes('=') && i + 1 < args.length && !args[i + 1]!.startsWith('-') && a.startsWith('--')) unknown.push(args[++i]!);
      continue;
    }
    operands.push(a);
  }
  return { operands, unknown };
}

function warnUnknown(unknown: readonly string[]): void {
  const names = unknown.filter((u) => u.startsWith('-')).map((u) => u.split('=')[0]);
  if (names.length > 0) log.warn(`ignoring unknown flags: ${names.join(', ')} (accepted for compatibility with newer injectors)`);
}

interface GlobalOpts {
  log_output_level: string;
  log_as_json: boolean;
  log_target: readonly string[];
}

/**
 * Standard streams whose reader went away (EPIPE: a closed pipe): written no more. A log line must
 * never fail the agent; unguarded, the EPIPE became an uncaught exception whose own log line
 * failed again, in a loop that held the emergency stop until its 15 s watchdog SIGKILLed Envoy.
 */
const brokenStreams = new Set<NodeJS.WriteStream>();

function guardStandardStreams(): void {
  const streams: [NodeJS.WriteStream, string, NodeJS.WriteStream][] = [
    [process.stdout, 'stdout', process.stderr],
    [process.stderr, 'stderr', process.stdout],
  ];
  for (const [stream, name, other] of streams) {
    stream.on('error', (err) => {
      if (brokenStreams.has(stream)) return;
      brokenStreams.add(stream);
      if (!brokenStreams.has(other)) other.write(`log target ${name}: ${err.message}; its log lines are dropped from now on\n`);
    });
  }
}

function writeStandard(stream: NodeJS.WriteStream, text: string): void {
  if (!brokenStreams.has(stream)) stream.write(text);
}

function setupLogging(opts: GlobalOpts): void {
  const targets = opts.log_target.filter(Boolean);
  const writers = targets.map((t): ((line: string) => void) => {
    if (t === 'stdout') return (line) => writeStandard(process.stdout, line);
    if (t === 'stderr') return (line) => writeStandard(process.stderr, line);
    // opened now, so that a target that cannot be written stops the command with its name (as
    // Istio's log.Configure does) instead of an unhandled stream error after Envoy has started
    let fd: number;
    try {
      fd = openSync(t, 'a');
    } catch (err) {
      throw new ConfigError([{ source: 'flag --log_target', field: '', value: t, message: `cannot open the log file: ${(err as Error).message}` }]);
    }
    // written synchronously, as zap writes Istio's: a line logged just before process.exit (a
    // fatal error, a command's failure) is in the file, not in a write queue that exit drops
    let failed = false;
    return (line) => {
      if (failed) return;
      try {
        writeSync(fd, line);
      } catch (err) {
        // a write that fails (a full disk) loses log lines, never the agent
        failed = true;
        writeStandard(process.stderr, `log target ${t}: ${(err as Error).message}; its log lines are dropped from now on\n`);
      }
    };
  });
  configureLogging({
    outputLevels: parseOutputLevels(opts.log_output_level),
    asJson: opts.log_as_json,
    write: (line) => writers.forEach((w) => w(line)),
  });
}

function printFlags(cmd: Command): void {
  for (const opt of cmd.options) {
    const key = opt.attributeName();
    const v = cmd.getOptionValue(key) as unknown;
    log.info(`FLAG: --${opt.long?.replace(/^--/, '')}=${JSON.stringify(v ?? '')}`);
  }
}

/** How long the emergency stop after a fatal error may take before Envoy is killed outright. */
const FATAL_STOP_MS = 15_000;

function describeError(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

async function runProxy(type: string | undefined, cmd: Command): Promise<number> {
  // Process-wide, before anything starts: whatever happens from here on, Envoy must not outlive
  // the agent, and the agent must not go on in a state nobody planned for.
  const running: { agent?: import('../agent/agent.js').Agent } = {};
  let fatal = false;
  const onFatal = (origin: string, err: unknown): void => {
    if (fatal) {
      log.error(`${origin} during the emergency stop: ${describeError(err)}`);
      return;
    }
    fatal = true;
    log.error(`${origin}: ${describeError(err)}`);
    log.error('the agent cannot continue in an unknown state: stopping Envoy and exiting');
    setTimeout(() => {
      log.error(`emergency stop still running after ${FATAL_STOP_MS} ms: killing Envoy`);
      process.exit(1); // the 'exit' handler kills Envoy
    }, FATAL_STOP_MS);
    void (running.agent?.abort() ?? Promise.resolve()).then(
      () => process.exit(1),
      (abortErr: unknown) => {
        log.error(`emergency stop: ${describeError(abortErr)}`);
        process.exit(1);
      },
    );
  };
  process.on('uncaughtException', (err) => onFatal('uncaught exception', err));
  process.on('unhandledRejection', (reason) => onFatal('unhandled promise rejection', reason));
  // the last word on every way out (process.exit included): no Envoy left behind
  process.on('exit', () => running.agent?.killEnvoyNow());
  let stopBeforeStart = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    log.info(`Received ${sig}, starting graceful termination`);
    if (running.agent) void running.agent.stop();
    else stopBeforeStart = true;
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Istio's agent exits at SIGHUP and SIGQUIT (Go's default), with no drain. Here Envoy is stopped
  // at once first, so that it never outlives the agent, and the exit status is the signal's.
  let abrupt: NodeJS.Signals | undefined;
  const onAbrupt = (sig: NodeJS.Signals): void => {
    log.warn(`Received ${sig}: stopping Envoy without draining and exiting`);
    abrupt ??= sig;
    if (running.agent) void running.agent.quitNow();
    else stopBeforeStart = true;
  };
  process.on('SIGHUP', onAbrupt);
  process.on('SIGQUIT', onAbrupt);
  // a signal that arrived between the launcher and here was held for us
  for (const sig of earlySignals.signals) onSignal(sig);
  earlySignals.release();

  const { operands, unknown } = splitUnknown(cmd.args);
  warnUnknown(unknown);
  printFlags(cmd);
  log.info(`Version ${buildInfo.version} (Istio ${buildInfo.istioCompatVersion} compatible, node ${buildInfo.nodeVersion})`);
  const proxyType = type ?? operands[0];
  const flags = proxyFlagsOf(cmd);
  const [{ Agent }, { loadAgentConfig, withResolvedAddresses }, { toYaml }] = await Promise.all([import('../agent/agent.js'), import('../config/load.js'), import('../util/yaml.js')]);
  const config = await withResolvedAddresses(loadAgentConfig({ proxyType, flags, env: process.env }));
  for (const w of config.warnings) log.warn(w);
  log.info(`Proxy role: ips=${JSON.stringify(config.node.ipAddresses)} type=${config.proxyType} id=${config.node.id} domain=${config.node.dnsDomain}`);
  if (stopBeforeStart) {
    log.info('Stopped before start-up: nothing was started');
    return abrupt ? 128 + (osConstants.signals[abrupt] ?? 0) : 0;
  }

  const agent = new Agent(config, { processEnv: process.env, logAsJson: cmd.optsWithGlobals<GlobalOpts>().log_as_json });
  running.agent = agent;
  try {
    await agent.start();
  } finally {
    // after Envoy is spawned: writing YAML loads the YAML library, which Envoy need not wait for.
    // A log line must never fail a running agent (it would exit without stopping Envoy gracefully)
    try {
      log.info(`Effective config: ${toYaml(config.proxyConfig).trimEnd()}`);
    } catch (err) {
      log.warn(`Effective config could not be written as YAML: ${(err as Error).message}`);
    }
  }
  const code = await agent.done;
  return abrupt ? 128 + (osConstants.signals[abrupt] ?? 0) : code;
}

/** An option parser collecting every use of a repeated flag, the default dropped at the first. */
function appendToGiven(): (value: string, previous: readonly string[]) => string[] {
  const given = new Set<readonly string[]>();
  return (value, previous) => {
    const out = given.has(previous) ? [...previous, value] : [value];
    given.add(out);
    return out;
  };
}

export function buildProgram(): Command {
  const program = new Command('pilot-agent')
    // commander's own errors become rejections, so that one place decides the exit status
    .exitOverride()
    .description('Istio Pilot agent: runs in the sidecar or gateway container and bootstraps Envoy.')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .showSuggestionAfterError(false)
    .option('--log_output_level <levels>', 'Comma-separated minimum per-scope logging level, as scope:level (default:info)', 'default:info')
    .addOption(new Option('--log_as_json [bool]', 'Whether to format output as JSON').default(false).argParser(goBool))
    // pflag's StringArray, as Istio's: repeated, each one path (commas are part of it); the
    // first given replaces the default
    .addOption(new Option('--log_target <path>', 'A path to output logs to: stdout, stderr or a file; repeat for several').default(['stdout']).argParser(appendToGiven()))
    .option('--log_stacktrace_level <levels>', 'Accepted for compatibility', 'default:none')
    .option('--log_caller <scopes>', 'Accepted for compatibility', '')
    .option('--log_rotate <path>', 'Accepted for compatibility', '')
    .hook('preAction', (_this, action) => {
      const opts = action.optsWithGlobals<GlobalOpts>();
      // istio-iptables --dry-run prints the rules on stdout, so its logs go to stderr unless --log_target says otherwise
      const toStderr = action.name() === 'istio-iptables' && program.getOptionValueSource('log_target') === 'default';
      setupLogging(toStderr ? { ...opts, log_target: ['stderr'] } : opts);
    });

  addProxyFlags(
    program
      .command('proxy')
      .argument('[type]', 'sidecar, router or waypoint', undefined)
      .description('XDS proxy agent')
      .allowUnknownOption(true)
      .allowExcessArguments(true),
  ).action(async (type: string | undefined, _opts: unknown, cmd: Command) => {
      process.exitCode = await runProxy(type, cmd);
    });

  registerBootstrapCommand(program);

  program
    .command('wait')
    .description('Waits until the Envoy proxy is ready')
    .option('--timeoutSeconds <n>', 'maximum number of seconds to wait for Envoy to be ready', goInt('timeoutSeconds'), 60)
    .option('--requestTimeoutMillis <n>', 'number of milliseconds to wait for response', goInt('requestTimeoutMillis'), 500)
    .option('--periodMillis <n>', 'number of milliseconds to wait between attempts', goInt('periodMillis'), 500)
    .option('--url <url>', 'URL to use in requests', 'http://localhost:15021/healthz/ready')
    .action(async (o: { timeoutSeconds: number; requestTimeoutMillis: number; periodMillis: number; url: string }) => {
      const { waitUntilReady } = await import('./wait.js');
      await waitUntilReady(o);
    });

  program
    .command('request')
    .description('Makes an HTTP request to the Envoy admin API')
    .argument('<method>')
    .argument('<path>')
    .argument('[body]', '', '')
    .option('--debug-port <port>', 'Set the port to make a local request to. The default points to the Envoy admin API.', goInt('debug-port'), 15000)
    .action(async (method: string, path: string, body: string, o: { debugPort: number }) => {
      const { debugRequest } = await import('./request.js');
      const out = await debugRequest({ port: o.debugPort, method, path, body });
      process.stdout.write(out + '\n');
    });

  const iptables = program
    .command('istio-iptables')
    .description('Set up iptables rules for Istio Sidecar (istio-init, and istio-validation with --run-validation)')
    .allowUnknownOption(true)
    .allowExcessArguments(true);
  for (const f of CAPTURE_FLAGS) {
    iptables.addOption(new Option(`${f.short ? `-${f.short}, ` : ''}--${f.long} ${f.kind === 'bool' ? '[bool]' : '<value>'}`, `${f.description}${f.env.length > 0 ? ` (env ${f.env.join(', ')})` : ''}`));
  }
  iptables.action(async (_opts: unknown, cmd: Command) => {
    warnUnknown(splitUnknown(cmd.args).unknown);
    const values = Object.fromEntries(cmd.options.map((o) => [o.long!.slice(2), cmd.getOptionValue(o.attributeName()) as string | boolean | undefined]));
    const { runIstioIptables } = await import('../iptables/run.js');
    // The rules are programmed synchronously: a SIGTERM or SIGINT arriving meanwhile is taken once
    // they are done (a reconcile's guardrails, which drop all traffic, removed; no table left half
    // written), then ends the command as the signal would (128+n). Istio's dies at once and can
    // leave the guardrails in place.
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => process.exit(128 + osConstants.signals[sig]));
    try {
      process.exitCode = await runIstioIptables(values, { env: process.env, stdout: (text) => writeStandard(process.stdout, text) });
    } catch (err) {
      // Istio's istio-iptables exits 1 on its own failures (handleErrorWithCode), not cobra's 255
      logCommandError(err);
      process.exitCode = 1;
    }
    // a signal that arrived during the synchronous work is delivered on the next turn of the loop:
    // give it that turn before the CLI exits with the command's own code
    await new Promise((resolve) => setTimeout(resolve, 0));
  });

  program
    .command('version')
    .description('Prints out build version information')
    .addOption(new Option('-s, --short [bool]', 'Use --short=false to generate full version information').default(false).argParser(goBool))
    .addOption(new Option('-o, --output <format>', "One of 'yaml' or 'json'.").choices(['', 'yaml', 'json']).default(''))
    .action(async (o: { short: boolean; output: string }) => {
      const toYaml = o.output === 'yaml' ? (await import('../util/yaml.js')).toYaml : undefined;
      // Istio's shapes and keys (pkg/version: BuildInfo), which scripts parse; the values are ours:
      // the runtime stands where Go's version does, the tag is the Istio release followed
      const info = { version: buildInfo.version, revision: 'unknown', golang_version: `node ${buildInfo.nodeVersion}`, status: 'Clean', tag: buildInfo.istioCompatVersion };
      if (o.output === 'json') process.stdout.write(JSON.stringify({ clientVersion: info }, null, 2) + '\n');
      else if (toYaml) process.stdout.write(toYaml({ clientVersion: info }) + '\n');
      else if (o.short) process.stdout.write(`client version: ${info.version}\n`);
      else process.stdout.write(`client version: version.BuildInfo{Version:"${info.version}", GitRevision:"${info.revision}", GolangVersion:"${info.golang_version}", BuildStatus:"${info.status}", GitTag:"${info.tag}"}\n`);
    });

  // cobra's: `completion <shell>` with --no-descriptions; with no shell, the help
  const completion = program.command('completion').description('Generate the autocompletion script for the specified shell');
  for (const shell of ['bash', 'zsh', 'fish', 'powershell'] as const) {
    completion
      .command(shell)
      .description(`Generate the autocompletion script for ${shell}`)
      .option('--no-descriptions', 'disable completion descriptions')
      .action(async (o: { descriptions: boolean }) => {
        const { completionScript } = await import('./completion.js');
        process.stdout.write(completionScript(program, shell, o.descriptions));
      });
  }

  return program;
}

function logCommandError(err: unknown): void {
  if (err instanceof ConfigError) {
    for (const w of err.warnings) log.warn(w);
    log.error(err.message);
  } else log.error(`Error: ${(err as Error).message}`);
}

/** SIGTERM/SIGINT held by bin/pilot-agent.js while the CLI loads. */
export interface EarlySignals {
  readonly signals: readonly NodeJS.Signals[];
  /** Stops holding: the signals' own handlers (or their default action) apply from then on. */
  release(): void;
}

const NO_EARLY_SIGNALS: EarlySignals = { signals: [], release: () => undefined };
let earlySignals = NO_EARLY_SIGNALS;

/**
 * Runs the CLI. A signal held while it loaded: `proxy` stops before starting anything (exit 0);
 * other commands die by the signal, as they would have without the launcher.
 */
export function main(argv: string[], early: EarlySignals = NO_EARLY_SIGNALS): void {
  guardStandardStreams();
  const isProxy = argv.slice(2).includes('proxy');
  const first = early.signals[0];
  if (first) {
    early.release();
    if (isProxy) {
      log.info(`Received ${first} before start-up: nothing was started`);
      process.exit(0);
    }
    process.kill(process.pid, first);
    return;
  }
  // `proxy` takes the hold over once its handlers are installed; the others keep Node's default
  if (isProxy) earlySignals = early;
  else early.release();
  const program = buildProgram();
  program
    .parseAsync([...argv.slice(0, 2), ...pflagArgs(program, argv.slice(2))])
    .then(
      () => process.exit(process.exitCode ?? 0),
      (err: unknown) => {
        // commander has printed its message already. The help it prints for a missing subcommand
        // ends in 0, as cobra's does for a command that only groups others.
        if (err instanceof CommanderError) process.exit(err.exitCode === 0 || err.code === 'commander.help' ? 0 : COMMAND_FAILED_EXIT);
        logCommandError(err);
        process.exit(COMMAND_FAILED_EXIT);
      },
    );
}
