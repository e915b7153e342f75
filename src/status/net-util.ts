// Small network helpers shared by the status server: loopback checks (Istio's
// IsRequestFromLocalhost).

import { ipFamily } from '../util/ip.js';

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z), as Go's IP.IsLoopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.replace(/%.*$/, '').toLowerCase();
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return ipFamily(v4) === 4 && v4.startsWith('127.');
}
