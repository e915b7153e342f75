// statsdUdpAddress resolved as Istio's ResolveAddr resolves it: the first IPv4 address, else the
// last other one; IPv4-mapped addresses unwrapped; IP literals as they are; a name that does not
// resolve removes the sink (logged), an unparsable port gives no address.

import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from './load.js';
import { resolveAddr, withResolvedStatsd, type AddressLookup } from './statsd-address.js';

const answering =
  (addresses: readonly string[]): AddressLookup =>
  async () => addresses;
const failing: AddressLookup = async () => {
  throw Object.assign(new Error('getaddrinfo ENOTFOUND statsd.monitoring'), { code: 'ENOTFOUND' });
};

describe('resolveAddr', () => {
  it('takes the first IPv4 address, else the last one; unwraps IPv4-mapped ones; keeps IP literals', async () => {
    expect(await resolveAddr('statsd:8125', answering(['fd00::9', '10.0.0.9', '10.0.0.10']))).toBe('10.0.0.9:8125');
    expect(await resolveAddr('statsd:8125', answering(['fd00::9', 'fd00::10']))).toBe('[fd00::10]:8125');
    expect(await resolveAddr('statsd:8125', answering(['::ffff:10.1.2.3']))).toBe('10.1.2.3:8125');
    expect(await resolveAddr('10.0.0.1:8125', failing)).toBe('10.0.0.1:8125');
    expect(await resolveAddr('[::1]:8125', failing)).toBe('[::1]:8125');
    expect(await resolveAddr('statsd:port', answering(['10.0.0.9']))).toBe('');
  });

  it('fails for a name that does not resolve, and for an address without a port', async () => {
    await expect(resolveAddr('statsd.monitoring:8125', failing)).rejects.toThrow('lookup failed for IP address: getaddrinfo ENOTFOUND statsd.monitoring');
    await expect(resolveAddr('statsd', failing)).rejects.toThrow('missing port in address');
  });

  it('resolves through the system resolver (localhost)', async () => {
    expect(await resolveAddr('localhost:8125')).toMatch(/^(127\.0\.0\.1|\[::1\]):8125$/);
  });
});

describe('withResolvedStatsd', () => {
  const load = (statsdUdpAddress: string) => loadAgentConfig({ cwd: '/', hostAddresses: ['10.0.0.1'], env: { POD_NAME: 'p', POD_NAMESPACE: 'ns', PROXY_CONFIG: JSON.stringify({ statsdUdpAddress }) } });

  it('puts the IP in the effective ProxyConfig, and leaves the sink out when the name does not resolve', async () => {
    expect((await withResolvedStatsd(load('statsd.monitoring:9125'), answering(['10.0.0.9']))).proxyConfig.statsdUdpAddress).toBe('10.0.0.9:9125');
    const unresolved = await withResolvedStatsd(load('statsd.monitoring:9125'), failing);
    expect(unresolved.proxyConfig).not.toHaveProperty('statsdUdpAddress');
    expect(Object.isFrozen(unresolved.proxyConfig)).toBe(true);
  });
});
