import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downwardApiText, injectedProxy } from '../../test/support/hello-pod.js';
import { ConfigError } from './errors.js';
import { loadAgentConfig, type LoadInput } from './load.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pa-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const HOST = ['10.244.1.17', '192.168.0.5'];

function load(over: Partial<LoadInput> & { env?: Record<string, string> }): ReturnType<typeof loadAgentConfig> {
  return loadAgentConfig({ cwd: dir, hostAddresses: HOST, env: {}, ...over });
}

function writePodFile(name: 'labels' | 'annotations', text: string): void {
  mkdirSync(join(dir, 'etc/istio/pod'), { recursive: true });
  writeFileSync(join(dir, 'etc/istio/pod', name), text);
}

function issuesOf(fn: () => unknown): ConfigError['issues'] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}

describe('loadAgentConfig', () => {
  it("applies Istio's defaults when nothing is configured", () => {
    const c = load({ env: { POD_NAME: 'p', POD_NAMESPACE: 'ns' } });
    expect(c.proxyConfig).toMatchObject({
      configPath: './etc/istio/proxy',
      binaryPath: '/usr/local/bin/envoy',
      serviceCluster: 'istio-proxy',
      drainDuration: '45s',
      terminationDrainDuration: '5s',
      proxyAdminPort: 15000,
      controlPlaneAuthPolicy: 'MUTUAL_TLS',
      discoveryAddress: 'istiod.istio-system.svc:15012',
      statNameLength: 189,
      statusPort: 15020,
    });
    expect(c.proxyConfig.concurrency).toBeUndefined();
    expect(c.env.SECRET_TTL).toBe(24 * 3600 * 1000);
    expect(c.env.ISTIO_DELTA_XDS).toBe(true);
    expect(c.node.id).toBe('p.ns');
    expect(c.node.dnsDomain).toBe('ns.svc.cluster.local');
    expect(c.paths.xdsSocket).toBe(join(dir, 'etc/istio/proxy/XDS'));
    expect(c.paths.sdsSocket).toBe(join(dir, 'var/run/secrets/workload-spiffe-uds/socket'));
    expect(c.envoy.drainDurationSeconds).toBe(45);
  });

  it('takes the hello pod injection as a real cluster gives it', () => {
    const pod = injectedProxy('hello.yaml.injected');
    writePodFile('labels', downwardApiText(pod.labels));
    writePodFile('annotations', downwardApiText(pod.annotations));
    const c = load({ env: pod.env, flags: { domain: 'default.svc.cluster.local' } });
    expect(c.node.ipAddresses[0]).toBe('10.244.1.17');
    expect(c.node.ipAddresses).toEqual(['10.244.1.17', '192.168.0.5']); // INSTANCE_IP not repeated
    expect(c.node.serviceNode).toBe('sidecar~10.244.1.17~hello-7d9f8c6b5-x2x4z.default~default.svc.cluster.local');
    expect(c.proxyConfig.concurrency).toBe(2); // from ISTIO_CPU_LIMIT
    expect(c.metaEnv.ISTIO_META_WORKLOAD_NAME).toBe('hello');
    expect(c.podLabels.app).toBe('hello');
    expect(c.podAnnotations['sidecar.istio.io/status']).toContain('istio-proxy');
  });

  it('GRPC_XDS_BOOTSTRAP: the default path when unset, a given path resolved, and none when set empty (Istio writes none then)', () => {
    expect(load({}).paths.grpcBootstrap).toBe(join(dir, 'etc/istio/proxy/grpc-bootstrap.json'));
    expect(load({ env: { GRPC_XDS_BOOTSTRAP: 'b/grpc.json' } }).paths.grpcBootstrap).toBe(join(dir, 'b/grpc.json'));
    expect(load({ env: { GRPC_XDS_BOOTSTRAP: '' } }).paths.grpcBootstrap).toBe('');
  });

  it("proxyHeaders: a later layer keeps the earlier one's forwardedClientCert, requestId, attemptCount, server and envoyDebugHeaders it leaves unset (Istio's correctProxyHeaders)", () => {
    mkdirSync(join(dir, 'etc/istio/config'), { recursive: true });
    writeFileSync(join(dir, 'etc/istio/config/mesh'), 'defaultConfig:\n  proxyHeaders:\n    forwardedClientCert: SANITIZE\n    requestId:\n      disabled: true\n    preserveHttp1HeaderCase: true\n');
    writePodFile('annotations', downwardApiText({ 'proxy.istio.io/config': 'proxyHeaders:\n  server:\n    disabled: true\n' }));
    const c = load({});
    // the five members survive; any other (preserveHttp1HeaderCase) goes with the overlay, as in Istio
    expect(c.proxyConfig.proxyHeaders).toEqual({ server: { disabled: true }, forwardedClientCert: 'SANITIZE', requestId: { disabled: true } });
    const overridden = load({ env: { PROXY_CONFIG: '{"proxyHeaders":{"forwardedClientCert":"FORWARD_ONLY"}}' } });
    expect(overridden.proxyConfig.proxyHeaders).toMatchObject({ forwardedClientCert: 'FORWARD_ONLY', server: { disabled: true }, requestId: { disabled: true } });
  });

  it('reads the annotation and the mesh file as Istio does (yaml.v2): YAML 1.1 booleans, a repeated key\'s last value, the first document', () => {
    mkdirSync(join(dir, 'etc/istio/config'), { recursive: true });
    writeFileSync(join(dir, 'etc/istio/config/mesh'), 'defaultConfig:\n  holdApplicationUntilProxyStarts: on\n  drainDuration: 10s\ndefaultConfig:\n  drainDuration: 12s\n');
    writePodFile('annotations', downwardApiText({ 'proxy.istio.io/config': 'holdApplicationUntilProxyStarts: yes\nconcurrency: 2\nconcurrency: 3\n---\n' }));
    const c = load({});
    expect(c.proxyConfig.holdApplicationUntilProxyStarts).toBe(true);
    expect(c.proxyConfig.concurrency).toBe(3);
    // the mesh file's second defaultConfig replaced the first, as yaml.v2 does
    expect(c.proxyConfig.drainDuration).toBe('12s');
    expect(c.warnings.filter((w) => w.includes('a key is given more than once; the last value is used, as Istio does'))).toHaveLength(2);
  });

  it('refuses a non-string proxyMetadata value, as Istio does, rather than pass on what YAML made of it', () => {
    writePodFile('annotations', downwardApiText({ 'proxy.istio.io/config': 'proxyMetadata:\n  FEATURE: on\n  MODE: 0755\n  OK: "on"\n' }));
    const issues = issuesOf(() => load({}));
    expect(issues.map((i) => [i.field, i.value])).toEqual([
      ['proxyMetadata.FEATURE', 'true'],
      ['proxyMetadata.MODE', '493'],
    ]);
    expect(issues[0]!.message).toBe('expected a string value, not a boolean (YAML reads true/false, yes/no, on/off, y/n and numbers as such: quote the value); Istio refuses it too');
  });

  it('layers mesh file < PROXY_CONFIG < annotation, replacing fields and merging proxyMetadata', () => {
    mkdirSync(join(dir, 'etc/istio/config'), { recursive: true });
    writeFileSync(
      join(dir, 'etc/istio/config/mesh'),
      'defaultConfig:\n  discoveryAddress: mesh-istiod:15012\n  drainDuration: 10s\n  extraStatTags: [a, b]\n  proxyMetadata:\n    FROM_MESH: m\n    SHARED: mesh\n',
    );
    writePodFile(
      'annotations',
      downwardApiText({ 'proxy.istio.io/config': 'drain_duration: 20s\nproxyMetadata:\n  SHARED: annotation\n' }),
    );
    const c = load({ env: { PROXY_CONFIG: '{"extraStatTags":["c"],"proxyMetadata":{"FROM_ENV":"e","SHARED":"env"},"drainDuration":"15s"}' } });
    expect(c.proxyConfig.discoveryAddress).toBe('mesh-istiod:15012');
    expect(c.proxyConfig.extraStatTags).toEqual(['c']);
    expect(c.proxyConfig.drainDuration).toBe('20s');
    expect(c.proxyConfig.proxyMetadata).toEqual({ FROM_MESH: 'm', FROM_ENV: 'e', SHARED: 'annotation' });
  });

  it('resolves concurrency as Istio: ProxyConfig, else ISTIO_CPU_LIMIT, and the legacy flag over both', () => {
    expect(load({ env: { ISTIO_CPU_LIMIT: '3' } }).proxyConfig.concurrency).toBe(3);
    expect(load({ env: { ISTIO_CPU_LIMIT: '3', PROXY_CONFIG: 'concurrency: 1' } }).proxyConfig.concurrency).toBe(1);
    const c = load({ env: { ISTIO_CPU_LIMIT: '3', PROXY_CONFIG: 'concurrency: 1' }, flags: { concurrency: 6 } });
    expect(c.proxyConfig.concurrency).toBe(6);
    expect(c.envoy.concurrency).toBe(6);
    expect(c.warnings.join()).toContain('legacy --concurrency=6');
  });

  it('applies the discoveryAddress and status port annotations last', () => {
    writePodFile('annotations', downwardApiText({ 'sidecar.istio.io/discoveryAddress': 'other:15012', 'status.sidecar.istio.io/port': ' 15999 ' }));
    const c = load({ env: { PROXY_CONFIG: 'discoveryAddress: env:15012' } });
    expect(c.proxyConfig.discoveryAddress).toBe('other:15012');
    expect(c.proxyConfig.statusPort).toBe(15999);
  });

  it('accepts snake_case keys, numbers in strings and Go durations, normalising to proto3 JSON', () => {
    const c = load({ env: { PROXY_CONFIG: 'proxy_admin_port: "15005"\ntermination_drain_duration: 1m30s\ncontrol_plane_auth_policy: 0\n' } });
    expect(c.proxyConfig.proxyAdminPort).toBe(15005);
    expect(c.proxyConfig.terminationDrainDuration).toBe('90s');
    expect(c.proxyConfig.controlPlaneAuthPolicy).toBe('NONE');
    expect(c.envoy.terminationDrainMs).toBe(90_000);
  });

  it('takes a negative terminationDrainDuration or MINIMUM_DRAIN_DURATION as Istio does (a drain of 0 s), where other negative durations are warned about and replaced by the default', () => {
    const c = load({ env: { PROXY_CONFIG: '{"terminationDrainDuration":"-5s"}', MINIMUM_DRAIN_DURATION: '-1s' } });
    expect(c.proxyConfig.terminationDrainDuration).toBe('-5s');
    expect(c.envoy.terminationDrainMs).toBe(-5000);
    expect(c.env.MINIMUM_DRAIN_DURATION).toBe(0);
    expect(issuesOf(() => load({ env: { PROXY_CONFIG: '{"drainDuration":"-5s"}' } })).map((i) => i.message).join()).toMatch(/negative/);
    const ttl = load({ env: { SECRET_TTL: '-1h' } });
    expect(ttl.env.SECRET_TTL).toBe(24 * 3_600_000);
    expect(ttl.warnings.join('\n')).toContain('env SECRET_TTL: duration must not be negative (value: "-1h"); using the default, 24h0m0s');
  });

  it('warns about ProxyConfig values Istio does not check and that cannot mean anything, and goes on', () => {
    const c = load({ env: { PROXY_CONFIG: '{"concurrency":-1,"statNameLength":-5,"tracing":{"sampling":150}}' }, flags: { concurrency: -3 } });
    // no --concurrency for Envoy: it picks its own, as under Istio
    expect(c.envoy.concurrency).toBe(-1);
    const text = c.warnings.join('\n');
    expect(text).toContain('ProxyConfig (effective): concurrency: negative: Envoy gets no --concurrency and picks its own (value: -1)');
    expect(text).toContain('statNameLength: negative: has no effect (value: -5)');
    expect(text).toContain('tracing.sampling: outside 0.0..100.0 (value: 150)');
  });

  it("drops unknown ProxyConfig fields with a warning naming them, as Istio's lenient decoding does", () => {
    const c = load({ env: { PROXY_CONFIG: '{"futureField":{"x":1},"concurrency":3}' } });
    expect(c.proxyConfig.futureField).toBeUndefined();
    expect(c.proxyConfig.concurrency).toBe(3);
    expect(c.warnings.join('\n')).toContain('unknown ProxyConfig field "futureField" ignored');
  });

  it('refuses a structure nested deeper than any ProxyConfig has, naming the field', () => {
    const deep = (n: number): string => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    expect(load({ env: { PROXY_CONFIG: `{"proxyHeaders":${deep(10)}}` } }).proxyConfig.proxyHeaders).toBeDefined();
    expect(() => load({ env: { PROXY_CONFIG: `{"proxyHeaders":${deep(5000)}}` } })).toThrow(/env PROXY_CONFIG.*proxyHeaders.*nested deeper than 32 levels/s);
    // an unknown field is dropped however deep it is
    expect(load({ env: { PROXY_CONFIG: `{"futureField":${deep(5000)}}` } }).proxyConfig.futureField).toBeUndefined();
  });

  it('returns a deeply frozen configuration', () => {
    const c = load({ env: { PROXY_CONFIG: 'proxyMetadata: {A: b}' } });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.proxyConfig)).toBe(true);
    expect(Object.isFrozen(c.proxyConfig.proxyMetadata)).toBe(true);
    expect(() => {
      (c.proxyConfig as Record<string, unknown>).statusPort = 1;
    }).toThrow();
  });

  it('reports every bad value at once, naming source, field and value', () => {
    writePodFile('annotations', 'good="x"\nbroken line without equals\n');
    writePodFile('labels', 'app="unterminated\n');
    const issues = issuesOf(() =>
      load({
        env: {
          PROXY_CONFIG: '{"drainDuration":"forever","controlPlaneAuthPolicy":"SOMETIMES","proxyAdminPort":70000,"tracing":{"zipkin":{"address":"no-port"}}}',
          ISTIO_META_DNS_CAPTURE: 'yes',
          GOMEMLIMIT: '1 gig',
        },
        flags: { concurrency: 2.5 },
      }),
    );
    const find = (source: string, field = ''): ConfigError['issues'][number] | undefined =>
      issues.find((i) => i.source === source && (field === '' || i.field === field));
    expect(find('env PROXY_CONFIG', 'drainDuration')?.value).toBe('forever');
    expect(find('env PROXY_CONFIG', 'controlPlaneAuthPolicy')?.message).toContain('MUTUAL_TLS');
    expect(find('env PROXY_CONFIG', 'proxyAdminPort')?.value).toBe('70000');
    expect(find('ProxyConfig (effective)', 'tracing.zipkin.address')?.value).toBe('no-port');
    // where Istio's agent fails to start too: typed node metadata, the Go runtime's GOMEMLIMIT
    expect(find('env ISTIO_META_DNS_CAPTURE')?.message).toBe('expected a boolean (true/false/1/0) (typed node metadata: Istio fails to start on it too)');
    expect(find('env GOMEMLIMIT')?.value).toBe('1 gig');
    expect(find('flag --concurrency')?.value).toBe('2.5');
    expect(issues.find((i) => i.source.endsWith('etc/istio/pod/annotations'))?.field).toBe('line 2');
    expect(issues.find((i) => i.source.endsWith('etc/istio/pod/labels'))?.value).toBe('app="unterminated');
    expect(issues.length).toBeGreaterThanOrEqual(9);
  });

  it('warns about an env value that does not parse and uses the default, as istio/pkg/env does', () => {
    const cfg = load({
      env: {
        SECRET_TTL: 'a day',
        MINIMUM_DRAIN_DURATION: '10',
        ISTIO_DELTA_XDS: 'maybe',
        EXIT_ON_ZERO_ACTIVE_CONNECTIONS: 'yes',
        ECC_CURVE: 'P521',
        WORKLOAD_RSA_KEY_SIZE: '1024',
        ENVOY_STATUS_PORT: '99999',
        HTTPS_PROXY: 'socks5://proxy:1080',
      },
    });
    expect(cfg.env.SECRET_TTL).toBe(24 * 3_600_000);
    expect(cfg.env.MINIMUM_DRAIN_DURATION).toBe(5000);
    expect(cfg.env.ISTIO_DELTA_XDS).toBe(true);
    expect(cfg.env.EXIT_ON_ZERO_ACTIVE_CONNECTIONS).toBe(false);
    expect(cfg.env.ECC_CURVE).toBe('P256');
    expect(cfg.env.WORKLOAD_RSA_KEY_SIZE).toBe(2048);
    expect(cfg.env.ENVOY_STATUS_PORT).toBe(15021);
    expect(cfg.env.HTTPS_PROXY).toBe('');
    const about = (name: string): string | undefined => cfg.warnings.find((w) => w.includes(`env ${name}:`));
    expect(about('SECRET_TTL')).toBe('invalid environment variable value: env SECRET_TTL: expected a duration such as "5s", "100ms" or "1h30m" (value: "a day"); using the default, 24h0m0s');
    expect(about('EXIT_ON_ZERO_ACTIVE_CONNECTIONS')).toContain('(value: "yes"); using the default, false');
    expect(about('ECC_CURVE')).toContain('(value: "P521"); using the default, "P256"');
    expect(about('HTTPS_PROXY')).toContain('proxy scheme socks5 is not supported');
    for (const name of ['MINIMUM_DRAIN_DURATION', 'ISTIO_DELTA_XDS', 'WORKLOAD_RSA_KEY_SIZE', 'ENVOY_STATUS_PORT']) expect(about(name), name).toBeDefined();
  });

  it('reports unparsable PROXY_CONFIG, a bad annotation ProxyConfig and a bad mesh file', () => {
    mkdirSync(join(dir, 'etc/istio/config'), { recursive: true });
    writeFileSync(join(dir, 'etc/istio/config/mesh'), 'defaultConfig: [1, 2\n');
    writePodFile('annotations', downwardApiText({ 'proxy.istio.io/config': 'statusPort: {nested: true}' }));
    const issues = issuesOf(() => load({ env: { PROXY_CONFIG: '{"drainDuration": ' } }));
    expect(issues.find((i) => i.source === 'env PROXY_CONFIG')?.message).toMatch(/not valid YAML or JSON/);
    expect(issues.find((i) => i.source === 'annotation proxy.istio.io/config')?.field).toBe('statusPort');
    expect(issues.find((i) => i.source.startsWith('file ./etc/istio/config/mesh'))?.message).toMatch(/not valid YAML/);
  });

  it('rejects an invalid proxy type and a bad status port annotation', () => {
    writePodFile('annotations', downwardApiText({ 'status.sidecar.istio.io/port': 'fifteen' }));
    const issues = issuesOf(() => load({ proxyType: 'waypointish' }));
    expect(issues.map((i) => i.source)).toEqual(expect.arrayContaining(['argument', 'annotation status.sidecar.istio.io/port']));
  });

  it('rejects drain durations below second precision and both members of the cluster-name oneof', () => {
    const issues = issuesOf(() => load({ env: { PROXY_CONFIG: 'drainDuration: 1.5s\nserviceCluster: a\ntracingServiceName: CANONICAL_NAME_ONLY' } }));
    expect(issues.find((i) => i.field === 'drainDuration')?.message).toContain('seconds precision');
    expect(issues.some((i) => i.message.includes('only one of serviceCluster, tracingServiceName'))).toBe(true);
  });

  it('marks an all-IPv6 node and dual stack', () => {
    expect(load({ env: { INSTANCE_IP: 'fd00::5' }, hostAddresses: ['fd00::6'] }).node.ipv6).toBe(true);
    const dual = load({ env: { INSTANCE_IP: '10.0.0.1' }, hostAddresses: ['fd00::6'] }).node;
    expect(dual.ipv6).toBe(false);
    expect(dual.dualStack).toBe(true);
  });

  it('collects prefixed variables: metadata, JSON metadata and extra headers', () => {
    const c = load({
      env: { ISTIO_META_FOO: 'bar', ISTIO_METAJSON_LABELS: '{"a":"b"}', XDS_HEADER_X_TENANT: 't1', CA_HEADER_Y: 'y', PROXY_CONFIG: 'proxyMetadata: {ISTIO_META_FROM_PC: pc, ISTIO_META_FOO: loses, OTHER: x}' },
    });
    expect(c.metaEnv).toEqual({ ISTIO_META_FOO: 'bar', ISTIO_META_FROM_PC: 'pc' });
    expect(c.metaJsonEnv).toEqual({ ISTIO_METAJSON_LABELS: '{"a":"b"}' });
    expect(c.xdsHeaders).toEqual({ X_TENANT: 't1' });
    expect(c.caHeaders).toEqual({ Y: 'y' });
  });
});
