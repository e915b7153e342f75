// Security settings derived from the AgentConfig, with Istio's rules
// (pilot/cmd/pilot-agent/options/security.go, pkg/istio-agent/agent.go, plugins.go):
//   - the CA is CA_ADDR, else the discovery address (and then ISTIOD_SAN names it);
//   - TLS to the CA unless the address ends in :15010 (Istio's "secure network" special case) or,
//     an extension of ours, CA_ADDR is unset and the discovery connection itself is plaintext
//     (controlPlaneAuthPolicy NONE: the same server cannot speak TLS on the same port);
//   - the CA's root (FindRootCAForCA): CA_ROOT_CA ("SYSTEM" = the OS bundle), else
//     ./etc/certs/root-cert.pem when PILOT_CERT_PROVIDER=custom, else PROV_CERT/root-cert.pem, else
//     ./var/run/secrets/istio/root-cert.pem (PILOT_CERT_PROVIDER=none: an error);
//   - certificates mounted in ./var/run/secrets/workload-spiffe-credentials/ (all three files) or
//     FILE_MOUNTED_CERTS=true mean no CA client: default/ROOTCA come from files.
// validateSecurityConfig rejects the values this agent does not support, at start-up.

import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { discoveryServerName } from '../config/istiod-address.js';
import type { BackoffOptions } from '../util/backoff.js';
import { CA_CRL_PATH } from './ca-crl.js';
import { checkCompliancePolicy, tlsRestrictions, type TlsRestrictions } from './compliance-policy.js';
import { MINIMUM_RSA_KEY_SIZE, type KeySpec } from './keys.js';

/** Resource names of the SDS API (pkg/security). */
export const WORKLOAD_RESOURCE = 'default';
export const ROOT_RESOURCE = 'ROOTCA';
export const FILE_ROOT_SYSTEM = 'file-root:system';
export const FILE_CERT_PREFIX = 'file-cert:';
export const FILE_ROOT_PREFIX = 'file-root:';

export const SYSTEM_ROOT_CERTS = 'SYSTEM';

/** Where Istio looks for the OS CA bundle (security.GetOSRootFilePath), first existing wins. */
export const OS_ROOT_BUNDLES: readonly string[] = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/pki/tls/cacert.pem',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/usr/local/etc/ssl/cert.pem',
  '/etc/ssl/certs/ca-certificates',
];

export function findOsRootBundle(candidates: readonly string[] = OS_ROOT_BUNDLES): string {
  return candidates.find((p) => existsSync(p)) ?? '';
}

export const SUPPORTED_CA_PROVIDERS: readonly string[] = ['Citadel'];
const PILOT_CERT_PROVIDERS: readonly string[] = ['istiod', 'kubernetes', 'custom', 'none'];

export interface CaClientOptions {
  /** host:port of the CA. */
  readonly address: string;
  /** undefined: plaintext. */
  readonly tls?: {
    /** PEM bundle file trusted for the CA's serving certificate; null: the OS bundle. */
    readonly rootCaPath: string | null;
    /** The OS bundle file used when rootCaPath is null ('' = Node's built-in roots). */
    readonly osRootBundle: string;
    /** SNI and the name verified in the CA's certificate. */
    readonly serverName: string;
    /** Client certificate files (PROV_CERT), used when both exist. */
    readonly clientCert?: { readonly certChainPath: string; readonly keyPath: string };
    /** COMPLIANCE_POLICY's versions, ciphers and curves. */
    readonly restrictions?: TlsRestrictions;
  };
  /** Bearer token file, read for every call; missing or empty = no authorization header. */
  readonly tokenPath: string;
  /** Sent as the ClusterID metadata. */
  readonly clusterId: string;
  /** CA_HEADER_* metadata. */
  readonly headers: Readonly<Record<string, string>>;
  /** ISTIO_META_CERT_SIGNER: the request's CertSigner metadata field. */
  readonly certSigner: string;
  /** Deadline of one attempt. Default 2 min (Istio: none). */
  readonly callTimeoutMs?: number;
  /** Attempts of one CSR (Istio: 5), and the first retry wait (Istio: 100 ms, doubling, 10 % jitter). */
  readonly maxAttempts?: number;
  readonly retryBaseMs?: number;
}

export interface MountedCertPaths {
  readonly certChain: string;
  readonly key: string;
  readonly root: string;
}

export interface SecretManagerOptions {
  /** Directory relative resource paths (file-cert:, file-root:) resolve against. */
  readonly cwd: string;
  /** spiffe://<trust domain>/ns/<namespace>/sa/<service account> */
  readonly spiffeId: string;
  readonly keySpec: KeySpec;
  /** Requested certificate lifetime (SECRET_TTL). */
  readonly secretTtlMs: number;
  readonly graceRatio: number;
  readonly graceRatioJitter: number;
  /** FILE_DEBOUNCE_DURATION */
  readonly fileDebounceMs: number;
  /** OUTPUT_CERTS as an absolute directory, '' when unset. */
  readonly outputDir: string;
  /** Mode of the OUTPUT_CERTS files (default 0600). */
  readonly outputFileMode?: number;
  /** Certificates that, when present, are served as `default` / `ROOTCA`. */
  readonly mounted: MountedCertPaths;
  /** No CA client: `default` and `ROOTCA` only ever come from the mounted files. */
  readonly fileMountedCerts: boolean;
  /** The OS CA bundle served as file-root:system ('' when none was found). */
  readonly osRootBundle: string;
  /** The CA client; undefined with fileMountedCerts. */
  readonly ca?: CaClientOptions;
  /** Retry pacing after a failed CSR (Istio's defaults: 500 ms .. 60 s). */
  readonly backoff?: BackoffOptions;
  /** Safety-net rescans of watched files, in ms (default 10 s; 0 = none). */
  readonly filePollMs?: number;
  /** PROXY_XDS_LAST_KNOWN_GOOD: where issued certificates are saved for a CA outage at start. */
  readonly lastKnownGoodDir?: string;
  /**
   * Another SDS server owns the workload socket (this path): `default` and `ROOTCA` are its to
   * serve, no CA is asked, and only file certificates are served here (Istio's ServeOnlyFiles).
   */
  readonly externalWorkloadSds?: string;
  /** PILOT_ENABLE_CA_CRL: the CA's revocation list, added to root secrets when the file is there. */
  readonly caCrlPath?: string;
}

export class SecurityConfigError extends Error {
  override readonly name = 'SecurityConfigError';
  readonly code = 'SECURITY_CONFIG';
  constructor(readonly problems: readonly string[]) {
    super(`invalid security configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const at = (config: AgentConfig, p: string): string => resolve(config.paths.cwd, p);

function caAddressOf(config: AgentConfig): string {
  return config.env.CA_ADDR || String(config.proxyConfig.discoveryAddress ?? '');
}

/** True when istiod (the discovery address) is also the CA: it trusts the certificates it signs. */
export function caIsIstiod(config: AgentConfig): boolean {
  return caAddressOf(config) === String(config.proxyConfig.discoveryAddress ?? '');
}

function caIsPlaintext(config: AgentConfig): boolean {
  const address = caAddressOf(config);
  if (address.endsWith(':15010')) return true;
  return !config.env.CA_ADDR && config.proxyConfig.controlPlaneAuthPolicy === 'NONE';
}

/** Istio's CheckWorkloadCertificate: all three files exist. */
function workloadCredentialsMounted(dir: string): MountedCertPaths | undefined {
  const paths = { certChain: resolve(dir, 'cert-chain.pem'), key: resolve(dir, 'key.pem'), root: resolve(dir, 'root-cert.pem') };
  return existsSync(paths.certChain) && existsSync(paths.key) && existsSync(paths.root) ? paths : undefined;
}

/**
 * Root CA for the CA connection, as Istio's FindRootCAForCA picks it; null means the OS bundle.
 * Throws a SecurityConfigError for PILOT_CERT_PROVIDER=none without CA_ROOT_CA.
 */
export function caRootCaPath(config: AgentConfig): string | null {
  const explicit = config.env.CA_ROOT_CA;
  if (explicit === SYSTEM_ROOT_CERTS) return null;
  if (explicit) return at(config, explicit);
  if (config.env.PILOT_CERT_PROVIDER === 'custom') return at(config, './etc/certs/root-cert.pem');
  if (config.env.PROV_CERT) return resolve(at(config, config.env.PROV_CERT), 'root-cert.pem');
  if (config.env.PILOT_CERT_PROVIDER === 'none') {
    throw new SecurityConfigError(['root CA file for CA required but configured provider as none (set CA_ROOT_CA, or PILOT_CERT_PROVIDER)']);
  }
  return at(config, './var/run/secrets/istio/root-cert.pem');
}

/** How the workload certificate is served, once the workload socket has been looked at. */
export interface WorkloadSdsMode {
  /** The workload socket belongs to another SDS server (its path): no CA is used. */
  readonly externalWorkloadSds?: string;
}

/**
 * Checks the settings this agent does not support or that contradict each other; throws them all
 * at once. Returns what is worth a warning (an unknown COMPLIANCE_POLICY, ...).
 */
export function validateSecurityConfig(config: AgentConfig, mode: WorkloadSdsMode = {}): readonly string[] {
  const problems: string[] = [];
  const env = config.env;
  const compliance = checkCompliancePolicy(env.COMPLIANCE_POLICY);
  problems.push(...compliance.problems);
  const warnings = [...compliance.warnings];
  // Istio reads the projected token whatever the policy says; only the deprecated value is worth a word
  if (env.JWT_POLICY === 'first-party-jwt') warnings.push("Using deprecated JWT policy 'first-party-jwt'; treating as 'third-party-jwt'");
  let provider = env.CA_PROVIDER;
  if (caAddressOf(config).includes('googleapis.com')) provider = 'GoogleCA'; // Istio's defaulting
  if (!SUPPORTED_CA_PROVIDERS.includes(provider)) {
    problems.push(`CA_PROVIDER=${JSON.stringify(provider)} is not supported: this agent implements ${SUPPORTED_CA_PROVIDERS.join(', ')} (the Istio CA API, istio.v1.auth.IstioCertificateService)`);
  }
  const pcp = env.PILOT_CERT_PROVIDER;
  // Istio takes any other value as istiod (its default branch); so does this agent, saying so
  if (!PILOT_CERT_PROVIDERS.includes(pcp) && !pcp.startsWith('k8s.io/')) {
    warnings.push(`PILOT_CERT_PROVIDER=${JSON.stringify(pcp)} is not one of istiod, kubernetes, k8s.io/<signer>, custom or none: treated as istiod, as Istio does`);
  }
  if (env.CREDENTIAL_FETCHER_TYPE !== 'JWT') {
    problems.push(`CREDENTIAL_FETCHER_TYPE=${JSON.stringify(env.CREDENTIAL_FETCHER_TYPE)} is not supported (only JWT: the token file ./var/run/secrets/tokens/istio-token)`);
  }
  if (env.WORKLOAD_IDENTITY_SOCKET_FILE !== basename(env.WORKLOAD_IDENTITY_SOCKET_FILE) || env.WORKLOAD_IDENTITY_SOCKET_FILE === '..') {
    problems.push(`WORKLOAD_IDENTITY_SOCKET_FILE=${JSON.stringify(env.WORKLOAD_IDENTITY_SOCKET_FILE)}: workload identity socket file override must be a filename, not a path`);
  }
  if (env.PROV_CERT && env.FILE_MOUNTED_CERTS) problems.push('invalid options: PROV_CERT and FILE_MOUNTED_CERTS are mutually exclusive');
  // Istio clamps the jittered ratio to [0, 1] when it schedules a rotation; so does rotationDelay
  for (const name of ['SECRET_GRACE_PERIOD_RATIO', 'SECRET_GRACE_PERIOD_RATIO_JITTER'] as const) {
    if (!(env[name] >= 0 && env[name] <= 1)) warnings.push(`${name}=${env[name]} is outside [0, 1]: the rotation ratio is clamped to [0, 1], as Istio does`);
  }
  if (env.WORKLOAD_RSA_KEY_SIZE < MINIMUM_RSA_KEY_SIZE) problems.push(`WORKLOAD_RSA_KEY_SIZE=${env.WORKLOAD_RSA_KEY_SIZE}: below the minimum of ${MINIMUM_RSA_KEY_SIZE}`);
  const usesCa = !env.FILE_MOUNTED_CERTS && !mode.externalWorkloadSds && !workloadCredentialsMounted(at(config, './var/run/secrets/workload-spiffe-credentials'));
  if (usesCa) {
    if (!caAddressOf(config)) problems.push('no CA address: set CA_ADDR or ProxyConfig discoveryAddress');
    if (!caIsPlaintext(config)) {
      try {
        caRootCaPath(config);
      } catch (err) {
        if (err instanceof SecurityConfigError) problems.push(...err.problems);
        else throw err;
      }
    }
  }
  if (problems.length > 0) throw new SecurityConfigError(problems);
  return warnings;
}

export function keySpecFrom(config: AgentConfig): KeySpec {
  const env = config.env;
  if (env.ECC_SIGNATURE_ALGORITHM === 'ECDSA') return { type: 'ecdsa', curve: env.ECC_CURVE === 'P384' ? 'P384' : 'P256', pkcs8: env.PKCS8_KEY };
  return { type: 'rsa', bits: env.WORKLOAD_RSA_KEY_SIZE, pkcs8: env.PKCS8_KEY };
}

export function spiffeIdOf(config: AgentConfig): string {
  return `spiffe://${config.env.TRUST_DOMAIN}/ns/${config.env.POD_NAMESPACE}/sa/${config.env.SERVICE_ACCOUNT}`;
}

export function caClientOptionsFrom(config: AgentConfig, osRootBundle = findOsRootBundle()): CaClientOptions {
  const env = config.env;
  const address = caAddressOf(config);
  let tls: CaClientOptions['tls'];
  if (!caIsPlaintext(config)) {
    const provCert = env.PROV_CERT ? at(config, env.PROV_CERT) : '';
    const clientCert = provCert ? { certChainPath: resolve(provCert, 'cert-chain.pem'), keyPath: resolve(provCert, 'key.pem') } : undefined;
    tls = {
      rootCaPath: caRootCaPath(config),
      osRootBundle,
      // ISTIOD_SAN only names the discovery address (CAEndpointSAN is set only when CA_ADDR is not)
      serverName: discoveryServerName(address, env.CA_ADDR ? '' : env.ISTIOD_SAN),
      ...(clientCert ? { clientCert } : {}),
      restrictions: tlsRestrictions(env.COMPLIANCE_POLICY),
    };
  }
  return {
    address,
    ...(tls ? { tls } : {}),
    tokenPath: config.paths.token,
    clusterId: env.ISTIO_META_CLUSTER_ID,
    headers: config.caHeaders,
    certSigner: env.ISTIO_META_CERT_SIGNER,
  };
}

/** The secret manager's settings for this agent (call validateSecurityConfig first). */
export function secretManagerOptionsFrom(config: AgentConfig, mode: WorkloadSdsMode = {}): SecretManagerOptions {
  const env = config.env;
  const credentials = workloadCredentialsMounted(at(config, './var/run/secrets/workload-spiffe-credentials'));
  const mounted: MountedCertPaths = credentials ?? {
    certChain: at(config, './etc/certs/cert-chain.pem'),
    key: at(config, './etc/certs/key.pem'),
    root: at(config, './etc/certs/root-cert.pem'),
  };
  const fileMountedCerts = credentials !== undefined || env.FILE_MOUNTED_CERTS;
  const osRootBundle = findOsRootBundle();
  return {
    cwd: config.paths.cwd,
    spiffeId: spiffeIdOf(config),
    keySpec: keySpecFrom(config),
    secretTtlMs: env.SECRET_TTL,
    graceRatio: env.SECRET_GRACE_PERIOD_RATIO,
    graceRatioJitter: env.SECRET_GRACE_PERIOD_RATIO_JITTER,
    fileDebounceMs: env.FILE_DEBOUNCE_DURATION,
    outputDir: env.OUTPUT_CERTS ? at(config, env.OUTPUT_CERTS) : '',
    // Istio's OutputKeyCertToDir: in a pod, other containers (running as other users, e.g. a
    // Prometheus scraping over mTLS with these certificates) must be able to read them
    outputFileMode: env.KUBERNETES_SERVICE_HOST ? 0o644 : 0o600,
    mounted,
    fileMountedCerts,
    osRootBundle,
    // Istio's createCaClient: !FileMountedCerts && !ServeOnlyFiles
    ...(fileMountedCerts || mode.externalWorkloadSds ? {} : { ca: caClientOptionsFrom(config, osRootBundle) }),
    ...(mode.externalWorkloadSds ? { externalWorkloadSds: mode.externalWorkloadSds } : {}),
    ...(env.PILOT_ENABLE_CA_CRL ? { caCrlPath: at(config, CA_CRL_PATH) } : {}),
    ...(env.PROXY_XDS_LAST_KNOWN_GOOD ? { lastKnownGoodDir: at(config, './var/lib/istio/data/workload') } : {}),
  };
}
