import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ipFamily } from './ip.js';

const cases = [
  '10.0.0.1', '0.0.0.0', '255.255.255.255', '256.0.0.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', ' 1.2.3.4', '1.2.3.4 ', '',
  '::', '::1', 'fd00::2', 'FE80::1', 'fe80::1%eth0', 'fe80::1%', '2001:db8::8a2e:370:7334', '2001:0db8:0000:0000:0000:ff00:0042:8329',
  '::ffff:1.2.3.4', '::ffff:1.2.3', '::ffff:01.2.3.4', '1::2::3', ':::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::', '::1:2:3:4:5:6:7',
  '12345::', 'g::1', '[::1]', '::1]', 'localhost', 'istiod.istio-system.svc', '1.2.3.4:80', '::1/128', 'fe80::1%eth0.1', '1:2:3:4:5:6:1.2.3.4',
];

describe('ipFamily', () => {
  it('answers as net.isIP does', () => {
    for (const c of cases) expect(ipFamily(c), JSON.stringify(c)).toBe(isIP(c));
  });

  it('agrees with net.isIP on random strings of address characters', () => {
    const alphabet = '0123456789abcdef:.%Z';
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 20000; i++) {
      const len = 1 + Math.floor(rnd() * 24);
      let s = '';
      for (let j = 0; j < len; j++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      expect(ipFamily(s), JSON.stringify(s)).toBe(isIP(s));
    }
  });

  it('agrees with net.isIP on generated IPv6-like addresses (groups, "::", embedded IPv4, zones)', () => {
    let seed = 11;
    const rnd = (n: number): number => Math.floor(((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff) * n);
    const group = (): string => ['0', '1', 'ff', 'ffff', 'fffff', '0db8', 'g1', ''][rnd(8)]!;
    let valid = 0;
    for (let i = 0; i < 20000; i++) {
      const groups = Array.from({ length: 1 + rnd(9) }, group);
      if (rnd(3) === 0) groups.splice(rnd(groups.length + 1), 0, '');
      let s = groups.join(':');
      if (rnd(5) === 0) s += `:${rnd(300)}.${rnd(300)}.${rnd(10)}.${rnd(10)}`;
      if (rnd(8) === 0) s += '%eth0';
      if (isIP(s) === 6) valid++;
      expect(ipFamily(s), JSON.stringify(s)).toBe(isIP(s));
    }
    expect(valid).toBeGreaterThan(500); // the generator does produce valid addresses
  });
});
