// Flag parsing shared by the commands that take `proxy`'s flags (proxy, bootstrap): Go-style
// booleans and integers (pflag accepts `--flag`, `--flag=true`, `--n=3`) and the proxy flag set
// with Istio's names, defaults and help.

import { Option, type Command } from 'commander';
import { DEFAULT_PROXY_FLAGS, type ProxyFlags } from '../config/proxy-flags.js';

/** Go's strconv.ParseBool for flag values; a bare `--flag` is true. */
export function goBool(v: string | undefined): boolean {
  if (v === undefined) return true;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  throw new Error(`invalid boolean value ${JSON.stringify(v)}`);
}

export function goInt(name: string): (v: string) => number {
  return (v) => {
    if (!/^[+-]?\d+$/.test(v)) throw new Error(`invalid argument ${JSON.stringify(v)} for "--${name}" flag: expected an integer`);
    return Number(v);
  };
}

/** Adds the flags of `pilot-agent proxy` to a command. */
export function addProxyFlags(cmd: Command): Command {
  const d = DEFAULT_PROXY_FLAGS;
  return cmd
    .option('--domain <domain>', 'DNS domain suffix. If not provided uses ${POD_NAMESPACE}.svc.cluster.local', d.domain)
    .option('--meshConfig <file>', 'File name for Istio mesh configuration. If not specified, a default mesh will be used.', d.meshConfig)
    .option('--proxyLogLevel <level>', 'The log level used to start the Envoy proxy (trace, debug, info, warning, error, critical, off); may include component levels, e.g. info,misc:error', d.proxyLogLevel)
    .option('--proxyComponentLogLevel <levels>', 'The component log level used to start the Envoy proxy. Deprecated, use proxyLogLevel instead', d.proxyComponentLogLevel)
    .option('--concurrency <n>', 'number of worker threads to run', goInt('concurrency'), d.concurrency)
    .option('--templateFile <file>', 'Go template bootstrap config', d.templateFile)
    .option('--outlierLogPath <path>', 'The log path for outlier detection', d.outlierLogPath)
    .option('--stsPort <port>', 'HTTP Port on which to serve Security Token Service (STS). If zero, STS service will not be provided.', goInt('stsPort'), d.stsPort)
    .option('--tokenManagerPlugin <name>', 'Token provider specific plugin name.', d.tokenManagerPlugin)
    .option('--serviceCluster <name>', 'Service cluster (deprecated)', d.serviceCluster)
    .addOption(new Option('--profiling [bool]', 'Enable profiling via web interface host:port/debug/pprof/.').default(d.profiling).argParser(goBool));
}

/** The ProxyFlags of a command set up with addProxyFlags. */
export function proxyFlagsOf(cmd: Command): ProxyFlags {
  const o = cmd.opts<ProxyFlags>();
  return {
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
}
