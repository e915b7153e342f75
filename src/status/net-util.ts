// Small network helpers shared by the status server: loopback checks (Istio's
// IsRequestFromLocalhost), URL host formatting and a bounded HTTP GET for the Envoy admin API.

import http from 'node:http';
import { ipFamily } from '../util/ip.js';

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z), as Go's IP.IsLoopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.replace(/%.*$/, '').toLowerCase();
  if (a === '::1' || a === '0:0:0:0:0:0:0:1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return ipFamily(v4) === 4 && v4.startsWith('127.');
}

/** `host:port` with IPv6 literals bracketed, as net.JoinHostPort. */
export function joinHostPort(host: string, port: number | string): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export class HttpGetError extends Error {
  readonly code = 'STATUS_HTTP_GET';
}

/**
 * GET `url` and return the body as text, failing on a status other than 200, on a body larger than
 * `maxBytes`, or after `timeoutMs` (whole exchange). No keep-alive: sockets never linger.
 */
export function httpGetText(url: string, opts: { timeoutMs: number; maxBytes?: number; signal?: AbortSignal }): Promise<string> {
  const maxBytes = opts.maxBytes ?? 1024 * 1024;
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) {
          res.destroy();
          reject(new HttpGetError(`GET ${url}: response larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('error', (err) => reject(new HttpGetError(`GET ${url}: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new HttpGetError(`GET ${url}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`));
        else resolve(body);
      });
    });
    req.on('error', (err) => {
      const msg = timeout.aborted ? `timed out after ${opts.timeoutMs} ms` : err.message;
      reject(new HttpGetError(`GET ${url}: ${msg}`, { cause: err }));
    });
  });
}
