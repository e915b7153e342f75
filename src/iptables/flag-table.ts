// The flag table of `pilot-agent istio-iptables` (Istio's tools/istio-iptables/pkg/cmd): names,
// shorthands, kinds and env fallbacks. Plain data with no imports, so the CLI can register the
// command without loading the capture code; flags.ts parses and validates the values.

/** The CaptureConfig field a flag sets. */
export type CaptureField =
  | 'proxyPort' | 'inboundCapturePort' | 'inboundTunnelPort' | 'proxyUID' | 'proxyGID' | 'inboundInterceptionMode' | 'inboundPortsInclude'
  | 'inboundPortsExclude' | 'excludeInterfaces' | 'outboundIPRangesInclude' | 'outboundIPRangesExclude' | 'outboundPortsInclude'
  | 'outboundPortsExclude' | 'rerouteVirtualInterfaces' | 'inboundTProxyMark' | 'inboundTProxyRouteTable' | 'dryRun' | 'iptablesProbePort'
  | 'probeTimeoutMs' | 'skipRuleApply' | 'runValidation' | 'redirectDNS' | 'dropInvalid' | 'dualStack' | 'captureAllDNS' | 'networkNamespace'
  | 'cniMode' | 'reconcile' | 'cleanupOnly' | 'forceApply' | 'nativeNftables' | 'forceIptablesBinary';

export type FlagKind = 'string' | 'bool' | 'port' | 'duration';

export interface CaptureFlag {
  readonly long: string;
  readonly short?: string;
  readonly kind: FlagKind;
  readonly field: CaptureField;
  /** env vars that set the flag, later ones overriding earlier ones */
  readonly env: readonly string[];
  readonly description: string;
}

const flag = (long: string, short: string | undefined, kind: FlagKind, field: CaptureField, description: string, extraEnv: string[] = []): CaptureFlag => ({
  long, ...(short ? { short } : {}), kind, field, description, env: [long.toUpperCase().replaceAll('-', '_'), ...extraEnv],
});

export const CAPTURE_FLAGS: readonly CaptureFlag[] = [
  // envoy-port alone has no env fallback in Istio
  { ...flag('envoy-port', 'p', 'string', 'proxyPort', 'Specify the envoy port to which redirect all TCP traffic.'), env: [] },
  flag('inbound-capture-port', 'z', 'string', 'inboundCapturePort', 'Port to which all inbound TCP traffic to the pod/VM should be redirected to.'),
  flag('inbound-tunnel-port', 'e', 'string', 'inboundTunnelPort', 'Specify the istio tunnel port for inbound tcp traffic.'),
  flag('proxy-uid', 'u', 'string', 'proxyUID', 'Specify the UID of the user for which the redirection is not applied. Typically, this is the UID of the proxy container.'),
  flag('proxy-gid', 'g', 'string', 'proxyGID', 'Specify the GID of the user for which the redirection is not applied (same default value as -u param).'),
  flag('istio-inbound-interception-mode', 'm', 'string', 'inboundInterceptionMode', 'The mode used to redirect inbound connections to Envoy, either "REDIRECT" or "TPROXY".'),
  flag('istio-inbound-ports', 'b', 'string', 'inboundPortsInclude', 'Comma separated list of inbound ports for which traffic is to be redirected to Envoy (optional). The wildcard character "*" can be used to configure redirection for all ports. An empty list will disable.'),
  flag('istio-local-exclude-ports', 'd', 'string', 'inboundPortsExclude', 'Comma separated list of inbound ports to be excluded from redirection to Envoy (optional). Only applies when all inbound traffic (i.e. "*") is being redirected.'),
  flag('istio-exclude-interfaces', 'c', 'string', 'excludeInterfaces', 'Comma separated list of NIC (optional). Neither inbound nor outbound traffic will be captured.'),
  flag('istio-service-cidr', 'i', 'string', 'outboundIPRangesInclude', 'Comma separated list of IP ranges in CIDR form to redirect to envoy (optional). The wildcard character "*" can be used to redirect all outbound traffic. An empty list will disable all outbound.'),
  flag('istio-service-exclude-cidr', 'x', 'string', 'outboundIPRangesExclude', 'Comma separated list of IP ranges in CIDR form to be excluded from redirection. Only applies when all  outbound traffic (i.e. "*") is being redirected.'),
  flag('istio-outbound-ports', 'q', 'string', 'outboundPortsInclude', 'Comma separated list of outbound ports to be explicitly included for redirection to Envoy.'),
  flag('istio-local-outbound-ports-exclude', 'o', 'string', 'outboundPortsExclude', 'Comma separated list of outbound ports to be excluded from redirection to Envoy.'),
  flag('kube-virt-interfaces', 'k', 'string', 'rerouteVirtualInterfaces', 'Comma separated list of virtual interfaces whose inbound traffic (from VM) will be treated as outbound.'),
  flag('istio-inbound-tproxy-mark', 't', 'string', 'inboundTProxyMark', 'The packet mark of inbound traffic in TPROXY mode.'),
  flag('istio-inbound-tproxy-route-table', 'r', 'string', 'inboundTProxyRouteTable', 'The routing table that sends marked inbound traffic to loopback in TPROXY mode.'),
  flag('dry-run', 'n', 'bool', 'dryRun', 'Do not call any external dependencies like iptables; print what would be run.'),
  flag('iptables-probe-port', undefined, 'port', 'iptablesProbePort', 'Set listen port for failure detection.'),
  flag('probe-timeout', undefined, 'duration', 'probeTimeoutMs', 'Failure detection timeout.'),
  flag('skip-rule-apply', undefined, 'bool', 'skipRuleApply', 'Skip iptables apply.'),
  flag('run-validation', undefined, 'bool', 'runValidation', 'Validate iptables.'),
  flag('redirect-dns', undefined, 'bool', 'redirectDNS', 'Enable capture of dns traffic by istio-agent.', ['ISTIO_META_DNS_CAPTURE']),
  flag('drop-invalid', undefined, 'bool', 'dropInvalid', 'Enable invalid drop in the iptables rules.', ['INVALID_DROP']),
  flag('dual-stack', undefined, 'bool', 'dualStack', 'Enable ipv4/ipv6 redirects for dual-stack.', ['ISTIO_DUAL_STACK']),
  flag('capture-all-dns', undefined, 'bool', 'captureAllDNS', 'Instead of only capturing DNS traffic to DNS server IP, capture all DNS traffic at port 53. This setting is only effective when redirect dns is enabled.'),
  flag('network-namespace', undefined, 'string', 'networkNamespace', 'The network namespace that iptables rules should be applied to (with --cni-mode: the per-pod xtables lock file).'),
  flag('cni-mode', undefined, 'bool', 'cniMode', 'Whether to run as CNI plugin.'),
  flag('reconcile', undefined, 'bool', 'reconcile', 'Reconcile pre-existing and incompatible iptables rules instead of failing if drift is detected.'),
  flag('cleanup-only', undefined, 'bool', 'cleanupOnly', 'Perform a forced cleanup without creating new iptables chains or rules.'),
  flag('force-apply', undefined, 'bool', 'forceApply', 'Apply iptables changes even if they appear to already be in place.'),
  flag('native-nftables', undefined, 'bool', 'nativeNftables', 'Use native nftables instead of iptables rules (not supported by this implementation).'),
  flag('force-iptables-binary', undefined, 'string', 'forceIptablesBinary', 'Break glass option to choose which iptables binary to use (legacy or nft).'),
];

export function flagLabel(f: CaptureFlag): string {
  return f.short ? `-${f.short}/--${f.long}` : `--${f.long}`;
}
