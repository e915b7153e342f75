// Command-line wiring (commander): the only place that reads process.argv, installs signal handlers
// or calls process.exit. Commands and flags follow Istio's pilot-agent; flags it does not know are
// accepted with one warning, so that a newer injector's arguments never stop a pod from starting.

import { Command, Option } from 'commander';
import { createWriteStream } from 'node:fs';
import { stringify as toYaml } from 'yaml';
import { Agent } from '../agent/agent.js';
import { ConfigError } from '../config/errors.js';
import { DEFAULT_PROXY_FLAGS, loadAgentConfig, type ProxyFlags } from '../config/load.js';
import { buildInfo } from '../version.js';
import { configureLogging, logger, parseOutputLevels } from '../util/logger.js';
import { debugRequest } from './request.js';
import { waitUntilReady } from './wait.js';

const log = logger('default');

/** Go-style boolean flag value: `--flag`, `--flag=true`, `--flag=false`. */
function goBool(v: string | undefined): boolean {
  if (v === undefined) return true;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  throw new Error(`invalid boolean value ${JSON.stringify(v)}`);
}

function goInt(name: string): (v: string) => number {
  return (v) => {
    if (!/^[+-]?\d+$/.test(v)) throw new Error(`invalid argument ${JSON.stringify(v)} for "--${name}" flag: expected an integer`);
    return Number(v);
  };
}

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
  log_target: string;
}

function setupLogging(opts: GlobalOpts): void {
  const targets = opts.log_target.split(',').map((s) => s.trim()).filter(Boolean);
  const writers = targets.map((t): ((line: string) => void) => {
    if (t === 'stdout') return (line) => process.stdout.write(line);
    if (t === 'stderr') return (line) => process.stderr.write(line);
    const stream = createWriteStream(t, { flags: 'a' });
    return (line) => stream.write(line);
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

async function runProxy(type: string | undefined, cmd: Command): Promise<number> {
  const o = cmd.opts<ProxyFlags & { profiling: boolean }>();
  const { operands, unknown } = splitUnknown(cmd.args);
  warnUnknown(unknown);
  printFlags(cmd);
  log.info(`Version ${buildInfo.version} (Istio ${buildInfo.istioCompatVersion} compatible, node ${buildInfo.nodeVersion})`);
  const proxyType = type ?? operands[0];
  const flags: ProxyFlags = {
    domain: o.domain,
    meshConfig: o.meshConfig,
    proxyLogLevel: o.proxyLogLevel,
    proxyComponentLogLevel: o.proxyComponentLogLevel,
    concurrency: o.concurrency,
    templateFile: o.templateFile,
    outlierLogPath: o.outlierLogPath,
    stsPort: o.stsPort,
    tokenManagerPlugin: o.tokenManagerPlugin,
    serviceCluster: o.serviceCluster,
    profiling: o.profiling,
  };
  const config = loadAgentConfig({ proxyType, flags, env: process.env });
  for (const w of config.warnings) log.warn(w);
  log.info(`Proxy role: ips=${JSON.stringify(config.node.ipAddresses)} type=${config.proxyType} id=${config.node.id} domain=${config.node.dnsDomain}`);
  log.info(`Effective config: ${toYaml(config.proxyConfig).trimEnd()}`);

  const agent = new Agent(config, { processEnv: process.env });
  const onSignal = (sig: NodeJS.Signals): void => {
    log.info(`Received ${sig}, starting graceful termination`);
    void agent.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await agent.start();
  return agent.done;
}

export function buildProgram(): Command {
  const program = new Command('pilot-agent')
    .description('Istio Pilot agent: runs in the sidecar or gateway container and bootstraps Envoy.')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .showSuggestionAfterError(false)
    .option('--log_output_level <levels>', 'Comma-separated minimum per-scope logging level, as scope:level (default:info)', 'default:info')
    .addOption(new Option('--log_as_json [bool]', 'Whether to format output as JSON').default(false).argParser(goBool))
    .option('--log_target <targets>', 'Comma-separated paths to output logs to (stdout, stderr or files)', 'stdout')
    .option('--log_stacktrace_level <levels>', 'Accepted for compatibility', 'default:none')
    .option('--log_caller <scopes>', 'Accepted for compatibility', '')
    .option('--log_rotate <path>', 'Accepted for compatibility', '')
    .hook('preAction', (_this, action) => setupLogging(action.optsWithGlobals<GlobalOpts>()));

  program
    .command('proxy')
    .argument('[type]', 'sidecar or router', undefined)
    .description('XDS proxy agent')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .option('--domain <domain>', 'DNS domain suffix. If not provided uses ${POD_NAMESPACE}.svc.cluster.local', DEFAULT_PROXY_FLAGS.domain)
    .option('--meshConfig <file>', 'File name for Istio mesh configuration. If not specified, a default mesh will be used.', DEFAULT_PROXY_FLAGS.meshConfig)
    .option('--proxyLogLevel <level>', 'The log level used to start the Envoy proxy (trace, debug, info, warning, error, critical, off); may include component levels, e.g. info,misc:error', DEFAULT_PROXY_FLAGS.proxyLogLevel)
    .option('--proxyComponentLogLevel <levels>', 'The component log level used to start the Envoy proxy. Deprecated, use proxyLogLevel instead', DEFAULT_PROXY_FLAGS.proxyComponentLogLevel)
    .option('--concurrency <n>', 'number of worker threads to run', goInt('concurrency'), DEFAULT_PROXY_FLAGS.concurrency)
    .option('--templateFile <file>', 'Go template bootstrap config', DEFAULT_PROXY_FLAGS.templateFile)
    .option('--outlierLogPath <path>', 'The log path for outlier detection', DEFAULT_PROXY_FLAGS.outlierLogPath)
    .option('--stsPort <port>', 'HTTP Port on which to serve Security Token Service (STS). If zero, STS service will not be provided.', goInt('stsPort'), DEFAULT_PROXY_FLAGS.stsPort)
    .option('--tokenManagerPlugin <name>', 'Token provider specific plugin name.', DEFAULT_PROXY_FLAGS.tokenManagerPlugin)
    .option('--serviceCluster <name>', 'Service cluster (deprecated)', DEFAULT_PROXY_FLAGS.serviceCluster)
    .addOption(new Option('--profiling [bool]', 'Enable profiling via web interface host:port/debug/pprof/.').default(true).argParser(goBool))
    .action(async (type: string | undefined, _opts: unknown, cmd: Command) => {
      process.exitCode = await runProxy(type, cmd);
    });

  program
    .command('wait')
    .description('Waits until the Envoy proxy is ready')
    .allowUnknownOption(true)
    .option('--timeoutSeconds <n>', 'maximum number of seconds to wait for Envoy to be ready', goInt('timeoutSeconds'), 60)
    .option('--requestTimeoutMillis <n>', 'number of milliseconds to wait for response', goInt('requestTimeoutMillis'), 500)
    .option('--periodMillis <n>', 'number of milliseconds to wait between attempts', goInt('periodMillis'), 500)
    .option('--url <url>', 'URL to use in requests', 'http://localhost:15021/healthz/ready')
    .action(async (o: { timeoutSeconds: number; requestTimeoutMillis: number; periodMillis: number; url: string }, cmd: Command) => {
      warnUnknown(splitUnknown(cmd.args).unknown);
      await waitUntilReady(o);
    });

  program
    .command('request')
    .description('Makes an HTTP request to the Envoy admin API')
    .argument('<method>')
    .argument('<path>')
    .argument('[body]', '', '')
    .allowUnknownOption(true)
    .option('--debug-port <port>', 'Set the port to make a local request to. The default points to the Envoy admin API.', goInt('debug-port'), 15000)
    .action(async (method: string, path: string, body: string, o: { debugPort: number }) => {
      const out = await debugRequest({ port: o.debugPort, method, path, body });
      process.stdout.write(out + '\n');
    });

  program
    .command('version')
    .description('Prints out build version information')
    .option('-s, --short', 'Use --short=false to generate full version information', false)
    .addOption(new Option('-o, --output <format>', "One of 'yaml' or 'json'.").choices(['', 'yaml', 'json']).default(''))
    .action((o: { short: boolean; output: string }) => {
      const info = { version: buildInfo.version, istioCompatVersion: buildInfo.istioCompatVersion, nodeVersion: buildInfo.nodeVersion, buildStatus: 'Clean' };
      if (o.output === 'json') process.stdout.write(JSON.stringify({ clientVersion: info }, null, 2) + '\n');
      else if (o.output === 'yaml') process.stdout.write(toYaml({ clientVersion: info }));
      else if (o.short) process.stdout.write(`${buildInfo.version}\n`);
      else process.stdout.write(`client version: version.BuildInfo{Version:"${info.version}", IstioCompatVersion:"${info.istioCompatVersion}", NodeVersion:"${info.nodeVersion}", BuildStatus:"Clean"}\n`);
    });

  return program;
}

export function main(argv: string[]): void {
  buildProgram()
    .parseAsync(argv)
    .then(
      () => process.exit(process.exitCode ?? 0),
      (err: unknown) => {
        if (err instanceof ConfigError) log.error(err.message);
        else log.error(`Error: ${(err as Error).message}`);
        process.exit(1);
      },
    );
}
