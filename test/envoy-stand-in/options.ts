// Envoy's command line, as Envoy 1.36 parses it (TCLAP with a ' ' delimiter, then OptionsImpl's
// own checks). Error texts and exit paths follow Envoy's so that the agent sees the same failures:
// a TCLAP error prints a "PARSE ERROR" block and the exception text to stderr and exits 1; an
// OptionsImpl check prints just its "error: ..." text and exits 1; --help/--version exit 0.

import os from 'node:os';

export type IpVersion = 'v4' | 'v6';
export type DrainStrategy = 'gradual' | 'immediate';
export type Mode = 'serve' | 'validate' | 'init_only';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warning', 'error', 'critical', 'off'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Envoy's logger ids (ALL_LOGGER_IDS): the components --component-log-level and /logging accept. */
export const LOGGER_COMPONENTS = [
  'admin', 'alternate_protocols_cache', 'assert', 'aws', 'backtrace', 'basic_auth', 'cache_filter', 'client', 'config',
  'connection', 'conn_handler', 'compression', 'credential_injector', 'decompression', 'dns', 'dubbo', 'dynamic_forward_proxy',
  'dynamic_modules', 'envoy_bug', 'ext_authz', 'ext_proc', 'file', 'filter', 'forward_proxy', 'geolocation', 'golang', 'grpc',
  'happy_eyeballs', 'hc', 'health_checker', 'http', 'http2', 'http3', 'hystrix', 'init', 'io', 'io_uring', 'jwt', 'kafka',
  'key_value_store', 'lua', 'main', 'matcher', 'misc', 'mongo', 'multi_connection', 'oauth2', 'pool', 'quic', 'quic_stream',
  'rate_limit_quota', 'rbac', 'rds', 'redis', 'rocketmq', 'router', 'runtime', 'secret', 'stats', 'stateful_session', 'tap',
  'testing', 'thrift', 'tracing', 'udp', 'upstream', 'wasm', 'websocket', 'xds_failover',
] as const;

export interface EnvoyOptions {
  readonly argv: readonly string[];
  readonly programName: string;
  readonly configPath: string;
  readonly configYaml: string;
  readonly concurrency: number;
  readonly baseId: number;
  readonly useDynamicBaseId: boolean;
  readonly baseIdPath: string;
  readonly allowUnknownStaticFields: boolean;
  readonly rejectUnknownDynamicFields: boolean;
  readonly ignoreUnknownDynamicFields: boolean;
  readonly adminAddressPath: string;
  readonly localAddressIpVersion: IpVersion;
  readonly logLevel: LogLevel;
  readonly componentLogLevel: string;
  readonly componentLogLevels: ReadonlyMap<string, LogLevel>;
  readonly logFormat: string;
  readonly logFormatEscaped: boolean;
  readonly enableFineGrainLogging: boolean;
  readonly logPath: string;
  readonly restartEpoch: number;
  readonly serviceCluster: string;
  readonly serviceNode: string;
  readonly serviceZone: string;
  readonly fileFlushIntervalMsec: number;
  readonly fileFlushMinSizeKb: number | undefined;
  readonly drainTimeS: number;
  readonly drainStrategy: DrainStrategy;
  readonly parentShutdownTimeS: number;
  readonly mode: Mode;
  readonly disableHotRestart: boolean;
  readonly enableMutexTracing: boolean;
  readonly cpusetThreads: boolean;
  readonly disabledExtensions: readonly string[];
  readonly socketPath: string;
  readonly socketMode: number;
  readonly enableCoreDump: boolean;
  readonly skipDeprecatedLogs: boolean;
  readonly statsTags: readonly string[];
}

/** What parsing decided: run with options, or stop now with output and an exit code. */
export type ParseOutcome =
  | { readonly kind: 'run'; readonly options: EnvoyOptions }
  | { readonly kind: 'exit'; readonly code: number; readonly stdout: string; readonly stderr: string };

type ArgKind = 'switch' | 'string' | 'uint32' | 'multi';

interface ArgSpec {
  readonly name: string;
  readonly short?: string;
  readonly kind: ArgKind;
  readonly description: string;
}

// Order as Envoy registers them (TCLAP prints usage in reverse registration order).
const SPECS: readonly ArgSpec[] = [
  { name: 'base-id', kind: 'uint32', description: 'base ID so that multiple envoys can run on the same host if needed' },
  { name: 'use-dynamic-base-id', kind: 'switch', description: 'the server chooses a base ID dynamically' },
  { name: 'skip-hot-restart-on-no-parent', kind: 'switch', description: 'skip hot restart when no parent is found' },
  { name: 'skip-hot-restart-parent-stats', kind: 'switch', description: 'skip hot restart parent stats' },
  { name: 'base-id-path', kind: 'string', description: 'path to which the base ID is written' },
  { name: 'concurrency', kind: 'uint32', description: '# of worker threads to run' },
  { name: 'config-path', short: 'c', kind: 'string', description: 'Path to configuration file' },
  { name: 'config-yaml', kind: 'string', description: 'Inline YAML configuration, merges with the contents of --config-path' },
  { name: 'allow-unknown-fields', kind: 'switch', description: 'allow unknown fields in static configuration (DEPRECATED)' },
  { name: 'allow-unknown-static-fields', kind: 'switch', description: 'allow unknown fields in static configuration' },
  { name: 'reject-unknown-dynamic-fields', kind: 'switch', description: 'reject unknown fields in dynamic configuration' },
  { name: 'ignore-unknown-dynamic-fields', kind: 'switch', description: 'ignore unknown fields in dynamic configuration' },
  { name: 'skip-deprecated-logs', kind: 'switch', description: 'skips the logging of deprecated field warnings during Protobuf message validation' },
  { name: 'admin-address-path', kind: 'string', description: 'Admin address path' },
  { name: 'local-address-ip-version', kind: 'string', description: 'The local IP address version (v4 or v6).' },
  { name: 'log-level', short: 'l', kind: 'string', description: 'Log levels: [trace][debug][info][warning|warn][error][critical][off]' },
  { name: 'component-log-level', kind: 'string', description: 'Comma separated list of component log levels. For example upstream:debug,config:trace' },
  { name: 'log-format', kind: 'string', description: 'Log message format in spdlog syntax' },
  { name: 'log-format-escaped', kind: 'switch', description: 'Escape c-style escape sequences in the application logs' },
  { name: 'enable-fine-grain-logging', kind: 'switch', description: 'Logger mode: enable file level log control (Fine-Grain Logger) or not' },
  { name: 'log-path', kind: 'string', description: 'Path to logfile' },
  { name: 'restart-epoch', kind: 'uint32', description: 'hot restart epoch #' },
  { name: 'hot-restart-version', kind: 'switch', description: 'hot restart compatibility version' },
  { name: 'service-cluster', kind: 'string', description: 'Cluster name' },
  { name: 'service-node', kind: 'string', description: 'Node name' },
  { name: 'service-zone', kind: 'string', description: 'Zone name' },
  { name: 'file-flush-interval-msec', kind: 'uint32', description: 'Interval for log flushing in msec' },
  { name: 'file-flush-min-size-kb', kind: 'uint32', description: 'Minimum size of the log buffer before flushing, in KB' },
  { name: 'drain-time-s', kind: 'uint32', description: 'Hot restart and LDS removal drain time in seconds' },
  { name: 'drain-strategy', kind: 'string', description: "Hot restart drain sequence behaviour, one of 'gradual' (default) or 'immediate'." },
  { name: 'parent-shutdown-time-s', kind: 'uint32', description: 'Hot restart parent shutdown time in seconds' },
  { name: 'mode', kind: 'string', description: "One of 'serve' (default; validate configs and then serve traffic normally) or 'validate' (validate configs and exit)." },
  { name: 'disable-hot-restart', kind: 'switch', description: 'Disable hot restart functionality' },
  { name: 'enable-mutex-tracing', kind: 'switch', description: 'Enable mutex contention tracing functionality' },
  { name: 'cpuset-threads', kind: 'switch', description: 'Get the default # of worker threads from cpuset size' },
  { name: 'disable-extensions', kind: 'string', description: 'Comma-separated list of extensions to disable' },
  { name: 'socket-path', kind: 'string', description: 'Path to hot restart socket file' },
  { name: 'socket-mode', kind: 'string', description: 'Socket file permission' },
  { name: 'enable-core-dump', kind: 'switch', description: 'Enable core dumps' },
  { name: 'stats-tag', kind: 'multi', description: 'universal tag for all stats generated by Envoy, as tag:value' },
  { name: 'version', kind: 'switch', description: 'Displays version information and exits.' },
  { name: 'help', short: 'h', kind: 'switch', description: 'Displays usage information and exits.' },
];

class TclapError extends Error {
  constructor(
    readonly argId: string,
    readonly errorText: string,
  ) {
    super(`${argId} -- ${errorText}`);
  }
}

class MalformedArgv extends Error {}

function argLabel(spec: ArgSpec): string {
  return spec.short ? `-${spec.short} (--${spec.name})` : `--${spec.name}`;
}

function shortUsage(program: string): string {
  const parts = [...SPECS].reverse().map((s) => {
    const flag = s.short ? `-${s.short}` : `--${s.name}`;
    if (s.kind === 'switch') return `[${flag}]`;
    const type = s.kind === 'uint32' ? 'uint32_t' : 'string';
    return s.kind === 'multi' ? `[${flag} <${type}>] ...` : `[${flag} <${type}>]`;
  });
  return `   ${program}  ${parts.join(' ')}\n`;
}

function usage(program: string): string {
  let out = `\nUSAGE: \n\n${shortUsage(program)}\n\nWhere: \n\n`;
  for (const s of [...SPECS].reverse()) {
    const type = s.kind === 'switch' ? '' : ` <${s.kind === 'uint32' ? 'uint32_t' : 'string'}>`;
    out += `   ${s.short ? `-${s.short} <${s.kind === 'switch' ? '' : 'string'}>,  ` : ''}--${s.name}${type}\n     ${s.description}\n\n`;
  }
  return `${out}\n   envoy\n\n`;
}

function tclapFailure(program: string, e: TclapError): ParseOutcome {
  const stderr =
    `PARSE ERROR: Argument: ${e.argId}\n             ${e.errorText}\n\n` +
    `Brief USAGE: \n${shortUsage(program)}\nFor complete USAGE and HELP type: \n   ${program} --help\n\n` +
    `${e.message}\n`;
  return { kind: 'exit', code: 1, stdout: '', stderr };
}

export function normalizeLogLevel(level: string): LogLevel | undefined {
  if (level === 'warn') return 'warning';
  return (LOG_LEVELS as readonly string[]).includes(level) ? (level as LogLevel) : undefined;
}

function parseLogLevel(level: string): LogLevel {
  const l = normalizeLogLevel(level);
  if (!l) throw new MalformedArgv(`error: invalid log level specified '${level}'`);
  return l;
}

export interface ParseContext {
  /** argv[0] as Envoy would see it (used in usage and --version output). */
  readonly programName: string;
  /** Reported by --version and /server_info. */
  readonly version: string;
}

/** Parses Envoy's argv (without argv[0]). */
export function parseEnvoyArgs(args: readonly string[], ctx: ParseContext): ParseOutcome {
  const program = ctx.programName;
  const values = new Map<string, string>();
  const multi = new Map<string, string[]>();
  const switches = new Set<string>();
  const byFlag = new Map<string, ArgSpec>();
  for (const s of SPECS) {
    byFlag.set(`--${s.name}`, s);
    if (s.short) byFlag.set(`-${s.short}`, s);
  }
  try {
    for (let i = 0; i < args.length; i++) {
      const arg = args[i]!;
      if (arg === '--') break; // TCLAP's ignore-rest marker
      const spec = byFlag.get(arg);
      if (!spec) throw new TclapError(arg, "Couldn't find match for argument");
      if (spec.kind === 'switch') {
        if (switches.has(spec.name)) throw new TclapError(argLabel(spec), 'Argument already set!');
        switches.add(spec.name);
        continue;
      }
      if (i + 1 >= args.length) throw new TclapError(argLabel(spec), 'Missing a value for this argument!');
      const value = args[++i]!;
      if (spec.kind === 'multi') {
        const list = multi.get(spec.name) ?? [];
        list.push(value);
        multi.set(spec.name, list);
        continue;
      }
      if (values.has(spec.name)) throw new TclapError(argLabel(spec), 'Argument already set!');
      if (spec.kind === 'uint32' && (!/^\d+$/.test(value) || Number(value) > 0xffffffff)) {
        throw new TclapError(argLabel(spec), `Couldn't read argument value from string '${value}'`);
      }
      values.set(spec.name, value);
    }
  } catch (err) {
    if (err instanceof TclapError) return tclapFailure(program, err);
    throw err;
  }

  if (switches.has('help')) return { kind: 'exit', code: 0, stdout: usage(program), stderr: '' };
  if (switches.has('version')) return { kind: 'exit', code: 0, stdout: `\n${program}  version: ${ctx.version}\n\n`, stderr: '' };

  const str = (name: string, def: string) => values.get(name) ?? def;
  const num = (name: string, def: number) => (values.has(name) ? Number(values.get(name)) : def);
  try {
    const logLevel = values.has('log-level') ? parseLogLevel(values.get('log-level')!) : 'info';
    const componentLogLevel = str('component-log-level', '');
    const componentLogLevels = new Map<string, LogLevel>();
    if (componentLogLevel) {
      for (const item of componentLogLevel.split(',')) {
        const parts = item.split(':');
        if (parts.length !== 2) throw new MalformedArgv(`error: component log level not correctly specified '${item}'`);
        const level = parseLogLevel(parts[1]!);
        if (!(LOGGER_COMPONENTS as readonly string[]).includes(parts[0]!)) throw new MalformedArgv(`error: invalid component specified '${parts[0]}'`);
        componentLogLevels.set(parts[0]!, level);
      }
    }
    const modeValue = str('mode', 'serve');
    if (modeValue !== 'serve' && modeValue !== 'validate' && modeValue !== 'init_only') throw new MalformedArgv(`error: unknown mode '${modeValue}'`);
    const ipVersion = str('local-address-ip-version', 'v4');
    if (ipVersion !== 'v4' && ipVersion !== 'v6') throw new MalformedArgv(`error: unknown IP address version '${ipVersion}'`);
    const useDynamicBaseId = switches.has('use-dynamic-base-id');
    const restartEpoch = num('restart-epoch', 0);
    if (useDynamicBaseId && restartEpoch > 0) throw new MalformedArgv(`error: cannot use --restart-epoch=${restartEpoch} with --use-dynamic-base-id`);
    const concurrencyDefault = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    const socketPath = str('socket-path', '@envoy_domain_socket');
    let socketMode = 0;
    if (!socketPath.startsWith('@')) {
      const raw = str('socket-mode', '600');
      if (!/^[0-7]+$/.test(raw)) throw new MalformedArgv(`error: invalid socket-mode '${raw}'`);
      socketMode = parseInt(raw, 8);
    }
    const drain = str('drain-strategy', 'gradual');
    // Envoy's message names the --mode value here, not the drain strategy (an upstream quirk kept as is).
    if (drain !== 'gradual' && drain !== 'immediate') throw new MalformedArgv(`error: unknown drain-strategy '${modeValue}'`);
    if (switches.has('hot-restart-version')) {
      return { kind: 'exit', code: 0, stdout: '', stderr: switches.has('disable-hot-restart') ? 'disabled' : '11.104' };
    }
    const statsTags = multi.get('stats-tag') ?? [];
    for (const pair of statsTags) {
      const idx = pair.indexOf(':');
      if (idx < 0) throw new MalformedArgv(`error: misformatted stats-tag '${pair}'`);
      const name = pair.slice(0, idx);
      const value = pair.slice(idx + 1);
      if (!/^[A-Za-z0-9_]+$/.test(name)) throw new MalformedArgv(`error: misformatted stats-tag '${pair}' contains invalid char in '${name}'`);
      if (value.includes('.')) throw new MalformedArgv(`error: misformatted stats-tag '${pair}' contains invalid char in '${value}'`);
    }
    const options: EnvoyOptions = {
      argv: [...args],
      programName: program,
      configPath: str('config-path', ''),
      configYaml: str('config-yaml', ''),
      concurrency: Math.max(1, num('concurrency', concurrencyDefault)),
      baseId: num('base-id', 0),
      useDynamicBaseId,
      baseIdPath: str('base-id-path', ''),
      allowUnknownStaticFields: switches.has('allow-unknown-static-fields') || switches.has('allow-unknown-fields'),
      rejectUnknownDynamicFields: switches.has('reject-unknown-dynamic-fields'),
      ignoreUnknownDynamicFields: switches.has('ignore-unknown-dynamic-fields'),
      adminAddressPath: str('admin-address-path', ''),
      localAddressIpVersion: ipVersion,
      logLevel,
      componentLogLevel,
      componentLogLevels,
      logFormat: str('log-format', '[%Y-%m-%d %T.%e][%t][%l][%n] [%g:%#] %v'),
      logFormatEscaped: switches.has('log-format-escaped'),
      enableFineGrainLogging: switches.has('enable-fine-grain-logging'),
      logPath: str('log-path', ''),
      restartEpoch,
      serviceCluster: str('service-cluster', ''),
      serviceNode: str('service-node', ''),
      serviceZone: str('service-zone', ''),
      fileFlushIntervalMsec: num('file-flush-interval-msec', 10000),
      fileFlushMinSizeKb: values.has('file-flush-min-size-kb') ? num('file-flush-min-size-kb', 64) : undefined,
      drainTimeS: num('drain-time-s', 600),
      drainStrategy: drain,
      parentShutdownTimeS: num('parent-shutdown-time-s', 900),
      mode: modeValue,
      disableHotRestart: switches.has('disable-hot-restart'),
      enableMutexTracing: switches.has('enable-mutex-tracing'),
      cpusetThreads: switches.has('cpuset-threads'),
      disabledExtensions: values.has('disable-extensions') ? values.get('disable-extensions')!.split(',') : [],
      socketPath,
      socketMode,
      enableCoreDump: switches.has('enable-core-dump'),
      skipDeprecatedLogs: switches.has('skip-deprecated-logs'),
      statsTags,
    };
    return { kind: 'run', options };
  } catch (err) {
    if (err instanceof MalformedArgv) return { kind: 'exit', code: 1, stdout: '', stderr: `${err.message}\n` };
    throw err;
  }
}

function durationJson(seconds: number): string {
  return `${seconds}s`;
}

/** envoy.admin.v3.CommandLineOptions as /server_info reports it (proto JSON, proto field names). */
export function commandLineOptionsJson(o: EnvoyOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {
    base_id: String(o.baseId),
    use_dynamic_base_id: o.useDynamicBaseId,
    base_id_path: o.baseIdPath,
    concurrency: o.concurrency,
    config_path: o.configPath,
    config_yaml: o.configYaml,
    allow_unknown_static_fields: o.allowUnknownStaticFields,
    reject_unknown_dynamic_fields: o.rejectUnknownDynamicFields,
    ignore_unknown_dynamic_fields: o.ignoreUnknownDynamicFields,
    skip_deprecated_logs: o.skipDeprecatedLogs,
    admin_address_path: o.adminAddressPath,
    local_address_ip_version: o.localAddressIpVersion,
    log_level: o.logLevel,
    component_log_level: o.componentLogLevel,
    log_format: o.logFormat,
    log_format_escaped: o.logFormatEscaped,
    log_path: o.logPath,
    service_cluster: o.serviceCluster,
    service_node: o.serviceNode,
    service_zone: o.serviceZone,
    file_flush_interval: `${(o.fileFlushIntervalMsec / 1000).toFixed(3).replace(/\.?0+$/, '')}s`,
    drain_time: durationJson(o.drainTimeS),
    drain_strategy: o.drainStrategy === 'immediate' ? 'Immediate' : 'Gradual',
    parent_shutdown_time: durationJson(o.parentShutdownTimeS),
    mode: o.mode === 'serve' ? 'Serve' : o.mode === 'validate' ? 'Validate' : 'InitOnly',
    disable_hot_restart: o.disableHotRestart,
    enable_mutex_tracing: o.enableMutexTracing,
    restart_epoch: o.restartEpoch,
    cpuset_threads: o.cpusetThreads,
    disabled_extensions: o.disabledExtensions,
    enable_fine_grain_logging: o.enableFineGrainLogging,
    socket_path: o.socketPath,
    socket_mode: o.socketMode,
    enable_core_dump: o.enableCoreDump,
    stats_tag: o.statsTags,
  };
  if (o.fileFlushMinSizeKb !== undefined) out.file_flush_min_size = o.fileFlushMinSizeKb;
  return out;
}
