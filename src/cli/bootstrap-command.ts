// `pilot-agent bootstrap [sidecar|router|waypoint]`: prints the Envoy bootstrap the agent would start Envoy
// with (or, with --grpc, the gRPC xDS bootstrap for proxyless apps), from the same flags, env,
// mesh config and pod files as `proxy`. Istio has no such command; it is for debugging a pod:
//
//   kubectl exec deploy/app -c istio-proxy -- pilot-agent bootstrap > envoy.json
//
// (on stdout: the container's root filesystem is read-only, and /tmp is not a volume).
//
// Nothing else of the agent starts and nothing of the running agent is touched (files the bootstrap
// refers to, such as the Lightstep token, are only mentioned). Warnings go to stderr so that
// stdout is the document alone.

import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { addProxyFlags, goBool, proxyFlagsOf } from './flags.js';
import type { BootstrapOptions } from '../bootstrap/options.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';

export interface BootstrapCommandIo {
  /** Environment the configuration is read from (process.env by default). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory Istio's relative paths resolve against (the process cwd by default). */
  readonly cwd?: string;
  /** Host addresses, for tests; read from the OS by default. */
  readonly hostAddresses?: readonly string[];
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

interface BootstrapCommandOpts {
  output?: string;
  grpc: boolean;
}

/** Adds `bootstrap` to the program. `io` is for tests; the defaults are the process's. */
export function registerBootstrapCommand(program: Command, io: Partial<BootstrapCommandIo> = {}): Command {
  const out: BootstrapCommandIo = {
    env: io.env ?? process.env,
    cwd: io.cwd,
    hostAddresses: io.hostAddresses,
    stdout: io.stdout ?? ((t) => void process.stdout.write(t)),
    stderr: io.stderr ?? ((t) => void process.stderr.write(t)),
  };
  const cmd = program
    .command('bootstrap')
    .argument('[type]', 'sidecar, router or waypoint', undefined)
    .description('Prints the Envoy bootstrap the agent would generate (debugging aid; not in Istio)')
    .allowUnknownOption(true)
    .allowExcessArguments(true);
  return addProxyFlags(cmd)
    .option('-o, --output <file>', 'Write the bootstrap to this file (atomically) instead of stdout')
    .addOption(new Option('--grpc [bool]', 'The gRPC xDS bootstrap for proxyless apps instead of Envoy\'s').default(false).argParser(goBool))
    .action(async (type: string | undefined, o: BootstrapCommandOpts, cmd: Command) => {
      // loaded here, not with the CLI: the other commands never need the configuration loader or
      // the template engine
      const [{ loadAgentConfig, withResolvedAddresses }, { renderEnvoyBootstrap }, { renderGrpcBootstrap }] = await Promise.all([
        import('../config/load.js'),
        import('../bootstrap/envoy-bootstrap.js'),
        import('../bootstrap/grpc-bootstrap.js'),
      ]);
      const globals = cmd.optsWithGlobals<{ log_as_json?: boolean }>();
      const flags = proxyFlagsOf(cmd);
      const proxyType = type ?? cmd.args.find((a) => !a.startsWith('-'));
      const config = await withResolvedAddresses(loadAgentConfig({ proxyType, flags, env: out.env, cwd: out.cwd, hostAddresses: out.hostAddresses }));
      for (const w of config.warnings) out.stderr(`warning: ${w}\n`);
      const options: BootstrapOptions = {
        logAsJson: globals.log_as_json === true,
        warn: (m) => out.stderr(`warning: ${m}\n`),
      };
      const target = o.output !== undefined ? resolve(out.cwd ?? process.cwd(), o.output) : undefined;
      const emit = (text: string): void => {
        const body = text.endsWith('\n') ? text : `${text}\n`;
        if (target) writeFileAtomicSync(target, body);
        else out.stdout(body);
      };

      if (o.grpc) {
        emit(renderGrpcBootstrap(config, options));
        return;
      }
      const custom = config.proxyConfig.customConfigFile;
      if (typeof custom === 'string' && custom !== '') {
        // the agent hands a customConfigFile to Envoy as it is
        out.stderr(`note: ProxyConfig customConfigFile is set; Envoy is started with ${custom} unchanged\n`);
        emit(readFileSync(resolve(config.paths.cwd, custom), 'utf8'));
        return;
      }
      const rendered = renderEnvoyBootstrap(config, options);
      for (const f of rendered.sideFiles) out.stderr(`note: the agent would also write ${f.path}\n`);
      emit(rendered.text);
    });
}
