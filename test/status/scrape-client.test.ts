// The metrics sources' HTTP/1.1 client against raw TCP servers that write exact bytes, split at
// awkward places: chunked (extensions, trailers), Content-Length, close-delimited, errors.

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ScrapeSource } from '../../src/status/scrape-client.js';

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});
function track(s: net.Socket): void {
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
}

/** A server answering every connection with `parts`, written one by one with a pause between. */
async function raw(parts: (string | Buffer)[], opts: { end?: boolean; onRequest?: (req: string) => void } = {}): Promise<string> {
  const server = net.createServer((sock) => {
    track(sock);
    let req = '';
    sock.on('data', async (d: Buffer) => {
      req += d.toString('latin1');
      if (!req.includes('\r\n\r\n')) return;
      opts.onRequest?.(req);
      for (const p of parts) {
        sock.write(p);
        await new Promise((r) => setTimeout(r, 2));
      }
      if (opts.end !== false) sock.end();
      else sock.destroy();
    });
    sock.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/stats/prometheus?usedonly`;
}

async function body(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; src: ScrapeSource }> {
  const src = await ScrapeSource.open(url, headers, AbortSignal.timeout(5000));
  let out = '';
  for (;;) {
    const s = await src.read();
    if (!s) break;
    out += s.data.toString('latin1');
    s.release();
  }
  return { status: src.status, body: out, src };
}

/** Splits a string into pieces of 1..3 characters. */
const shred = (s: string): string[] => {
  const out: string[] = [];
  for (let i = 0; i < s.length; ) {
    const n = 1 + (i % 3);
    out.push(s.slice(i, i + n));
    i += n;
  }
  return out;
};

describe('ScrapeSource', () => {
  it('sends a GET with the given headers and Connection: close', async () => {
    let seen = '';
    const url = await raw(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'], { onRequest: (r) => (seen = r) });
    expect((await body(url, { Accept: 'text/plain;version=0.0.4', 'user-agent': 'Prometheus/3\r\nX-Evil: 1' })).body).toBe('ok');
    expect(seen).toMatch(/^GET \/stats\/prometheus\?usedonly HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/);
    expect(seen).toContain('Accept: text/plain;version=0.0.4\r\n');
    expect(seen).toContain('user-agent: Prometheus/3  X-Evil: 1\r\n'); // no header injection
    expect(seen.endsWith('Connection: close\r\n\r\n')).toBe(true);
  });

  it('decodes chunked bodies split anywhere, with extensions and trailers', async () => {
    const wire = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '4;ext=1\r\na 1\n\r\n' + '10\r\nb 2\nc 3\nd 4\ne 5\n\r\n' + '0\r\nX-Trailer: t\r\n\r\n';
    const whole = await body(await raw([wire]));
    expect(whole.body).toBe('a 1\nb 2\nc 3\nd 4\ne 5\n');
    expect(whole.src.contentType).toBe('text/plain; version=0.0.4');
    expect((await body(await raw(shred(wire)))).body).toBe('a 1\nb 2\nc 3\nd 4\ne 5\n');
  });

  it('reads Content-Length bodies (ignoring extra bytes) and close-delimited ones', async () => {
    expect((await body(await raw(shred('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello, and more')))).body).toBe('hello');
    expect((await body(await raw(['HTTP/1.0 200 OK\r\n\r\n', 'until ', 'close\n'])))).toMatchObject({ body: 'until close\n', status: 200 });
    const empty = await body(await raw(['HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n']));
    expect(empty.body).toBe('');
  });

  it('passes a large body through in few buffers', async () => {
    const big = 'x'.repeat(999) + '\n';
    const payload = big.repeat(5000); // 5 MB
    const url = await raw([`HTTP/1.1 200 OK\r\nContent-Length: ${payload.length}\r\n\r\n`, payload]);
    const src = await ScrapeSource.open(url, {}, AbortSignal.timeout(10_000));
    let bytes = 0;
    let slices = 0;
    for (;;) {
      const s = await src.read();
      if (!s) break;
      bytes += s.data.length;
      slices++;
      s.release();
    }
    expect(bytes).toBe(payload.length);
    expect(slices).toBeLessThan(500);
  });

  it('reports the status of non-200 answers and the header values', async () => {
    const src = await ScrapeSource.open(await raw(['HTTP/1.1 503 Service Unavailable\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 4\r\n\r\ndown']), {}, AbortSignal.timeout(5000));
    expect(src.status).toBe(503);
    expect(src.headers.get('x-a')).toBe('1, 2');
    src.destroy();
  });

  it('fails clearly on broken answers', async () => {
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort']))).rejects.toThrow('connection closed before the end of the body');
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc']))).rejects.toThrow('connection closed before the end of the body');
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n']))).rejects.toThrow('malformed chunk size');
    await expect(body(await raw(['SSH-2.0-OpenSSH\r\n\r\n']))).rejects.toThrow('malformed HTTP response');
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n']))).rejects.toThrow('unsupported Content-Encoding "gzip"');
    await expect(body(await raw(['HTTP/1.1 200 OK\r\n'], { end: false }))).rejects.toThrow();
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nX: ' + 'y'.repeat(70_000)]))).rejects.toThrow('response headers larger than');
    const closed = await new Promise<number>((r) => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => r(port));
      });
    });
    await expect(ScrapeSource.open(`http://127.0.0.1:${closed}/`, {}, AbortSignal.timeout(5000))).rejects.toThrow(/ECONNREFUSED/);
  });

  it('stops on abort', async () => {
    let closed = false;
    const server = net.createServer((s) => {
      track(s);
      s.resume(); // read (and drop) the request, so the client's close is seen
      s.on('error', () => undefined);
      s.on('close', () => (closed = true));
    }); // never answers
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const t0 = Date.now();
    await expect(ScrapeSource.open(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, {}, AbortSignal.timeout(200))).rejects.toThrow('timeout');
    expect(Date.now() - t0).toBeLessThan(2000);
    await new Promise<void>((r) => {
      const t = setInterval(() => closed && (clearInterval(t), r()), 10);
    });
  });
});
