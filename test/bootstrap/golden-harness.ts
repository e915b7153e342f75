// Reproduces Istio's bootstrap golden test (pkg/bootstrap TestGolden) from the description in
// ../shared/istio-testdata/bootstrap/cases.json: for each case, a temporary pod directory with the
// downward-API annotations file, the env (ISTIO_METAJSON_*, the case's env), the case's
// ProxyConfig with the harness overrides, and the inputs Istio's test passes to GetNodeMetaData
// (node ID, version, instance IPs, pilot SAN, outlier log path, ports, SDS socket name).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentConfig, type AgentConfig } from '../../src/config/load.js';
import { IssueList } from '../../src/config/errors.js';
import { parseProxyConfigOverlay } from '../../src/config/proxy-config.js';
import { DEFAULT_TEMPLATE_PATH, generateEnvoyBootstrap, type RenderOptions, type RenderedBootstrap } from '../../src/bootstrap/envoy-bootstrap.js';
import { downwardApiText } from '../support/hello-pod.js';
import { istioTestdata } from '../support/paths.js';

export const goldenDir = process.env.BOOTSTRAP_GOLDEN_DIR ? path.resolve(process.env.BOOTSTRAP_GOLDEN_DIR) : path.join(istioTestdata, 'bootstrap');

export interface GoldenCommon {
  nodeId: string;
  istioVersion: string;
  instanceIps: string[];
  pilotSubjectAltNames: string[];
  outlierLogPath: string;
  envoyPrometheusPort: number;
  envoyStatusPort: number;
  workloadIdentitySocketFile: string;
}

export interface GoldenCase {
  name: string;
  golden: string;
  /**
   * The ProxyConfig (Istio's `<base>.proxycfg`). A case with `proxyCfgBase` may leave it out and
   * take the one of the case of that name, as Istio's test loads `<proxyCfgBase>.proxycfg`.
   */
  proxyConfig?: Record<string, unknown>;
  /**
   * Istio's `proxyCfgBase`: the ProxyConfig file to load and the leaf of `configPath`
   * (`<out>/bootstrap/<proxyCfgBase>`), when they are not the case's own name (`secure_metrics`
   * uses `default`).
   */
  proxyCfgBase?: string;
  env?: Record<string, string>;
  annotations?: Record<string, string>;
  checkLocality?: boolean;
  compliancePolicy?: string;
  secureMetricsPort?: number;
  secureMergedMetricsPort?: number;
  stsPort?: number;
  expectLightstepAccessToken?: boolean;
  platformMeta?: Record<string, string>;
  stats?: { prefixes?: string; suffixes?: string; regexps?: string };
}

export interface GoldenCases {
  common: GoldenCommon;
  cases: GoldenCase[];
}

export function readGoldenCases(): GoldenCases {
  return JSON.parse(fs.readFileSync(path.join(goldenDir, 'cases.json'), 'utf8')) as GoldenCases;
}

export interface PreparedCase {
  /** The temporary directory standing for Istio's `out` (normalised to /tmp). */
  readonly out: string;
  readonly config: AgentConfig;
  readonly options: RenderOptions;
}

/**
 * The case's ProxyConfig and its `configPath` leaf: Istio's loadProxyConfig(proxyCfgBase or name).
 * `cases` resolves a `proxyCfgBase` the case does not carry the ProxyConfig of.
 */
export function proxyConfigBase(c: GoldenCase, cases: readonly GoldenCase[]): { leaf: string; proxyConfig: Record<string, unknown> } {
  const leaf = c.proxyCfgBase || c.name;
  const proxyConfig = c.proxyConfig ?? cases.find((x) => x.name === leaf)?.proxyConfig;
  if (!proxyConfig) throw new Error(`case ${c.name}: no ProxyConfig (neither its own nor one of a case named ${JSON.stringify(leaf)})`);
  return { leaf, proxyConfig };
}

/** Builds the AgentConfig and options for one case, in a fresh temporary directory. */
export function prepareCase(common: GoldenCommon, c: GoldenCase, cases: readonly GoldenCase[], templatePath = DEFAULT_TEMPLATE_PATH): PreparedCase {
  const base = proxyConfigBase(c, cases);
  const out = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), `bootstrap-${c.name}-`)));
  const podRoot = path.join(out, 'pod');
  fs.mkdirSync(path.join(podRoot, 'etc/istio/pod'), { recursive: true });
  fs.writeFileSync(path.join(podRoot, 'etc/istio/pod/annotations'), c.annotations ? downwardApiText(c.annotations) : '');

  const proxyConfig: Record<string, unknown> = {
    ...base.proxyConfig,
    configPath: path.join(out, 'bootstrap', base.leaf),
    customConfigFile: templatePath,
  };
  if (!proxyConfig.statusPort) proxyConfig.statusPort = 15020;

  const env: Record<string, string> = { ISTIO_METAJSON_LABELS: '{}' };
  if (c.annotations) env.ISTIO_METAJSON_ANNOTATIONS = JSON.stringify(c.annotations);
  Object.assign(env, c.env ?? {});
  env.PROXY_CONFIG = JSON.stringify(proxyConfig);

  const loaded = loadAgentConfig({
    proxyType: 'sidecar',
    env,
    cwd: podRoot,
    flags: { outlierLogPath: common.outlierLogPath, meshConfig: path.join(out, 'no-mesh-config') },
    hostAddresses: common.instanceIps,
  });
  // Istio's test hands GetNodeMetaData the case's ProxyConfig itself, not merged over the mesh
  // defaults the agent starts from, so the same is done here (normalised as PROXY_CONFIG is).
  const issues = new IssueList();
  const exact = parseProxyConfigOverlay(JSON.stringify(proxyConfig), `case ${c.name}`, issues, () => {});
  issues.throwIfAny();
  const config: AgentConfig = { ...loaded, proxyConfig: exact };

  const options: RenderOptions = {
    nodeId: common.nodeId,
    istioVersion: common.istioVersion,
    instanceIps: common.instanceIps,
    pilotSubjectAltNames: common.pilotSubjectAltNames,
    outlierLogPath: common.outlierLogPath,
    envoyPrometheusPort: common.envoyPrometheusPort,
    envoyStatusPort: common.envoyStatusPort,
    envoySecureMetricsPort: c.secureMetricsPort ?? 0,
    envoySecureMergedMetricsPort: c.secureMergedMetricsPort ?? 0,
    workloadIdentitySocketFile: common.workloadIdentitySocketFile,
    stsPort: c.stsPort ?? 0,
    compliancePolicy: c.compliancePolicy ?? '',
    platformMetadata: c.platformMeta ?? {},
    platformLocality: { region: '', zone: '', subZone: '' },
    // MetadataOptions fields Istio's test leaves at their zero value
    exitOnZeroActiveConnections: false,
    envoySkipDeprecatedLogs: false,
    metadataDiscovery: undefined,
    dnsProxyAddr: undefined,
    credentialSocketExists: false,
    customCredentialsFileExists: false,
    xdsRootCert: '',
    deltaXds: true,
    logAsJson: false,
  };
  return { out, config, options };
}

/** Renders and writes the case's bootstrap the way Istio's CreateFile does. */
export function generateCase(p: PreparedCase): RenderedBootstrap {
  return generateEnvoyBootstrap(p.config, p.options);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The README's normalisations of a generated bootstrap (Istio's correctForEnvDifference). */
export function normalizeGenerated(text: string, out: string, checkLocality: boolean): string {
  let s = text
    .replace(/("access_token_file": ").*(lightstep_access_token.txt")/g, '$1/test-path/$2')
    .replace(/("customConfigFile":").*(envoy_bootstrap.json")/g, '"customConfigFile":"envoy_bootstrap.json"')
    .replace(new RegExp(escapeRegExp(out), 'g'), '/tmp')
    .replace(/("path": ".*\/XDS")/g, '"path": "/tmp/XDS"');
  if (!checkLocality) s = s.replace(/"zone": ".+"/g, '"zone": ""').replace(/"region": ".+"/g, '"region": ""');
  return s;
}
