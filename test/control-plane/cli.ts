// Command line of the development control plane (main.ts runs it). Kept apart from main.ts so that
// tests can run it in-process.

import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { startControlPlane, DEFAULT_SERVING_SANS, type ControlPlane } from './control-plane.js';
import type { KeyAlgorithm } from './ca.js';

export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export type CliOutcome = { readonly exitCode: number } | { readonly controlPlane: ControlPlane };

const UNITS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/** Parses `24h`, `1h30m`, `90s`, `500ms` or a number of seconds; returns seconds. */
export function parseDurationSeconds(text: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * UNITS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== t.length) throw new Error(`invalid duration ${JSON.stringify(text)} (e.g. 24h, 1h30m, 90s, or seconds)`);
  return total;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function timestamp(): string {
  return new Date().toISOString();
}

interface Opts {
  listen: string;
  plaintext: boolean;
  requestClientCerts: boolean;
  rootCertOut?: string;
  resources?: string;
  token?: string;
  caRootCert?: string;
  caRootKey?: string;
  caKeyType: KeyAlgorithm;
  trustDomain: string;
  certTtl: string;
  intermediate: boolean;
  servingSan: string[];
  quiet: boolean;
}

export function buildProgram(io: CliIo): Command {
  return new Command('control-plane')
    .description(
      'Development xDS control plane and Istio CA: a stand-in for istiod for tests, benchmarks and demos (not for production). ' +
        'Serves envoy.service.discovery.v3.AggregatedDiscoveryService (SotW and Delta) and istio.v1.auth.IstioCertificateService ' +
        'on one gRPC port, and prints "listening on <host:port> (TLS|plaintext)" on stdout once ready. SIGINT/SIGTERM stop it.',
    )
    .option('--listen <host:port>', 'address to listen on; port 0 picks a free port', '127.0.0.1:15012')
    .option('--plaintext', 'serve without TLS', false)
    .option('--request-client-certs', "ask TLS clients for a certificate, as istiod does: optional, but one presented must chain to the CA root (its SPIFFE ID is logged)", false)
    .option('--root-cert-out <file>', 'write the CA root certificate (PEM; trust anchor of the serving and workload certificates) to this file')
    .option('--resources <dir>', 'serve the proto3-JSON/YAML resources in this directory (each file: one resource or a list, each with "@type"); watched for changes')
    .option('--token <value>', 'require "authorization: Bearer <value>" on ADS streams and CA calls (UNAUTHENTICATED otherwise)')
    .option('--ca-root-cert <file>', 'sign with this root certificate (PEM; needs --ca-root-key) instead of a generated one')
    .option('--ca-root-key <file>', 'private key (PEM: PKCS#8, PKCS#1 or SEC1) of --ca-root-cert')
    .addOption(new Option('--ca-key-type <type>', 'key type of a generated root').choices(['rsa', 'ecdsa', 'ecdsa-p384']).default('rsa'))
    .option('--trust-domain <domain>', 'organization of a generated root', 'cluster.local')
    .option('--cert-ttl <duration>', 'maximum (and default) workload certificate lifetime, e.g. 24h, 90m, 3600', '24h')
    .option('--intermediate', 'sign workload certificates with an intermediate CA (chain: leaf, intermediate, root)', false)
    .option('--serving-san <name>', `extra SAN (DNS name or IP) for the serving certificate, repeatable (always: ${DEFAULT_SERVING_SANS.join(', ')})`, collect, [])
    .option('--quiet', 'log only errors (default: log connections, pushes, ACKs/NACKs and CA calls to stderr)', false)
    .helpOption('-h, --help', 'show this help')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  control-plane --listen 127.0.0.1:0 --root-cert-out /tmp/root-cert.pem --resources ./xds --token dev\n' +
        '  control-plane --plaintext --listen 127.0.0.1:15010 --resources ./xds\n' +
        '  control-plane --ca-root-cert ca-cert.pem --ca-root-key ca-key.pem --intermediate --cert-ttl 1h\n' +
        '\nResource files: *.json / *.yaml, one resource or a list, each with "@type", e.g.\n' +
        '  {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": "a", "connect_timeout": "1s"}\n' +
        'Unknown fields are rejected; a bad file is reported and its previous resources stay served.\n',
    )
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .exitOverride();
}

/** Parses argv (without node and script) and starts the control plane, or prints help/errors. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<CliOutcome> {
  const program = buildProgram(io);
  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return { exitCode: err.exitCode };
    throw err;
  }
  const o = program.opts<Opts>();
  let maxTtl: number;
  try {
    maxTtl = parseDurationSeconds(o.certTtl);
    if (!(maxTtl > 0)) throw new Error('--cert-ttl must be positive');
  } catch (err) {
    io.stderr(`control-plane: ${(err as Error).message}\n`);
    return { exitCode: 2 };
  }
  if (!!o.caRootCert !== !!o.caRootKey) {
    io.stderr('control-plane: --ca-root-cert and --ca-root-key go together\n');
    return { exitCode: 2 };
  }
  const log = (msg: string) => {
    if (!o.quiet || /rejected|refused|NACK|error|failed/i.test(msg)) io.stderr(`${timestamp()}\t${msg}\n`);
  };
  let cp: ControlPlane;
  try {
    cp = await startControlPlane({
      listen: o.listen,
      plaintext: o.plaintext,
      requestClientCertificates: o.requestClientCerts,
      rootCertOut: o.rootCertOut,
      resourcesDir: o.resources,
      token: o.token,
      servingSans: [...DEFAULT_SERVING_SANS, ...o.servingSan],
      ca: {
        rootCertPem: o.caRootCert ? fs.readFileSync(o.caRootCert, 'utf8') : undefined,
        rootKeyPem: o.caRootKey ? fs.readFileSync(o.caRootKey, 'utf8') : undefined,
        keyAlgorithm: o.caKeyType,
        trustDomain: o.trustDomain,
        maxCertTtlSeconds: maxTtl,
        intermediate: o.intermediate,
      },
      log,
    });
  } catch (err) {
    io.stderr(`control-plane: ${(err as Error).message}\n`);
    return { exitCode: 1 };
  }
  io.stdout(`listening on ${cp.address} (${cp.tls ? 'TLS' : 'plaintext'})\n`);
  if (o.rootCertOut) io.stdout(`root certificate written to ${o.rootCertOut}\n`);
  for (const e of cp.resourceErrors()) io.stderr(`${timestamp()}\tresource file rejected: ${e.message}\n`);
  return { controlPlane: cp };
}
