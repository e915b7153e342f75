// What Istio's capture test records for the cases of run_test.go that have no golden in
// ../shared/istio-testdata/iptables: written out by hand from capture/run.go and the rule
// builder (chains declared first in order of first use, tables in filter/mangle/nat/raw order,
// one COMMIT each; the state reads before and after). All of these are IPv4-only cases with the
// test's base configuration (ports 15001/15006/15008, uid and gid 1337, mark 1337).

const HEAD = ['iptables-save', 'ip6tables-save'];
const TAIL = ['iptables-save'];

interface NatOptions {
  /** rules before the common chains: excluded or virtual interfaces */
  readonly first?: readonly string[];
  /** inbound capture rules (PREROUTING -> ISTIO_INBOUND) */
  readonly inbound?: readonly string[];
  /** after the proxy's own uid/gid rules: owner-group filters */
  readonly ownerGroups?: readonly string[];
  /** after the loopback return: outbound capture */
  readonly outbound?: readonly string[];
  readonly loopback?: string;
}

function nat(o: NatOptions = {}): string[] {
  const lo = o.loopback ?? '127.0.0.1/32';
  const proxyOwner = (owner: string): string[] => [
    `-A ISTIO_OUTPUT -o lo ! -d ${lo} -p tcp ! --dport 15008 -m owner ${owner} 1337 -j ISTIO_IN_REDIRECT`,
    `-A ISTIO_OUTPUT -o lo -m owner ! ${owner} 1337 -j RETURN`,
    `-A ISTIO_OUTPUT -m owner ${owner} 1337 -j RETURN`,
  ];
  return [
    '* nat',
    '-N ISTIO_INBOUND',
    '-N ISTIO_REDIRECT',
    '-N ISTIO_IN_REDIRECT',
    '-N ISTIO_OUTPUT',
    ...(o.first ?? []),
    '-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN',
    '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
    '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
    ...(o.inbound ?? []),
    '-A OUTPUT -j ISTIO_OUTPUT',
    '-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN',
    ...proxyOwner('--uid-owner'),
    ...proxyOwner('--gid-owner'),
    ...(o.ownerGroups ?? []),
    `-A ISTIO_OUTPUT -d ${lo} -j RETURN`,
    ...(o.outbound ?? []),
    'COMMIT',
  ];
}

/** TPROXY inbound capture in mangle for the given ISTIO_INBOUND rules. */
function tproxyMangle(inbound: readonly string[]): string[] {
  return [
    '* mangle',
    '-N ISTIO_DIVERT',
    '-N ISTIO_TPROXY',
    '-N ISTIO_INBOUND',
    '-A ISTIO_DIVERT -j MARK --set-mark 1337',
    '-A ISTIO_DIVERT -j ACCEPT',
    '-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006',
    '-A PREROUTING -p tcp -j ISTIO_INBOUND',
    ...inbound,
    '-A PREROUTING -p tcp -m mark --mark 1337 -j CONNMARK --save-mark',
    '-A OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN',
    '-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --uid-owner 1337 -j MARK --set-mark 1338',
    '-A OUTPUT ! -d 127.0.0.1/32 -p tcp -o lo -m owner --gid-owner 1337 -j MARK --set-mark 1338',
    '-A OUTPUT -p tcp -m connmark --mark 1337 -j CONNMARK --restore-mark',
    '-I ISTIO_INBOUND 1 -p tcp -m mark --mark 1337 -j RETURN',
    '-I ISTIO_INBOUND 2 -p tcp -s 127.0.0.6/32 -i lo -j RETURN',
    '-I ISTIO_INBOUND 3 -p tcp -i lo -m mark ! --mark 1338 -j RETURN',
    'COMMIT',
  ];
}

const run = (...tables: string[][]): string[] => [...HEAD, ...tables.flat(), ...TAIL];
const virtReturn = ['-I PREROUTING 1 -i eth1 -j RETURN', '-I PREROUTING 1 -i eth2 -j RETURN'];

export const EXPECTED_DRY_RUNS: Readonly<Record<string, readonly string[]>> = {
  empty: run(nat()),
  'kube-virt-interfaces': run(nat({
    first: virtReturn,
    outbound: ['-A ISTIO_OUTPUT -j ISTIO_REDIRECT', '-I PREROUTING 1 -i eth1 -j ISTIO_REDIRECT', '-I PREROUTING 1 -i eth2 -j ISTIO_REDIRECT'],
  })),
  ipnets: run(nat({ outbound: ['-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT'] })),
  'ipnets-with-kube-virt-interfaces': run(nat({
    first: virtReturn,
    outbound: [
      '-I PREROUTING 1 -i eth1 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-I PREROUTING 1 -i eth2 -d 10.0.0.0/8 -j ISTIO_REDIRECT',
      '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j ISTIO_REDIRECT',
    ],
  })),
  'inbound-ports-include': run(nat({
    inbound: ['-A PREROUTING -p tcp -j ISTIO_INBOUND', '-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_IN_REDIRECT', '-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_IN_REDIRECT'],
  })),
  'inbound-ports-wildcard': run(nat({ inbound: ['-A PREROUTING -p tcp -j ISTIO_INBOUND', '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT'] })),
  'inbound-ports-tproxy': run(tproxyMangle([
    '-A ISTIO_INBOUND -p tcp --dport 32000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
    '-A ISTIO_INBOUND -p tcp --dport 32000 -j ISTIO_TPROXY',
    '-A ISTIO_INBOUND -p tcp --dport 31000 -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
    '-A ISTIO_INBOUND -p tcp --dport 31000 -j ISTIO_TPROXY',
  ]), nat()),
  'inbound-ports-wildcard-tproxy': run(tproxyMangle([
    '-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT',
    '-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY',
  ]), nat()),
  'outbound-owner-groups': run(nat({ ownerGroups: ['-A ISTIO_OUTPUT -m owner ! --gid-owner java -m owner ! --gid-owner 202 -j RETURN'] })),
  'outbound-owner-groups-exclude': run(nat({ ownerGroups: ['-A ISTIO_OUTPUT -m owner --gid-owner 888 -j RETURN', '-A ISTIO_OUTPUT -m owner --gid-owner ftp -j RETURN'] })),
  'outbound-ports-include': run(nat({ outbound: ['-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT', '-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT'] })),
  'basic-exclude-nic': run(nat({ first: ['-A PREROUTING -i not-istio-nic -j RETURN', '-A OUTPUT -o not-istio-nic -j RETURN'] })),
  'drop-invalid': run(['* mangle', '-N ISTIO_DROP', '-A PREROUTING -m conntrack --ctstate INVALID -j ISTIO_DROP', '-A ISTIO_DROP -j DROP', 'COMMIT'], nat()),
  'host-ipv4-loopback-cidr': run(nat({ loopback: '127.0.0.1/8' })),
};
