// The metrics sources' HTTP/1.1 client against raw TCP servers that write exact bytes, split at
// awkward places: chunked (extensions, trailers), Content-Length, close-delimited, errors.

import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ScrapeSource, type ScrapeLimits } from '../../src/status/scrape-client.js';

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

/**
 * A server answering every connection with `head`, then writing `filler` for as long as the client
 * reads (a source whose response never ends); resolves `closed` when the client drops it.
 */
async function endless(head: string, filler: string): Promise<{ url: string; closed: Promise<void>; sent: () => number }> {
  let sent = 0;
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  const chunk = Buffer.from(filler.repeat(Math.ceil(16_384 / filler.length)));
  const server = net.createServer((sock) => {
    track(sock);
    sock.on('error', () => undefined);
    sock.on('close', onClosed);
    sock.once('data', () => {
      sock.write(head);
      const pump = (): void => {
        while (!sock.destroyed) {
          sent += chunk.length;
          if (!sock.write(chunk)) return void sock.once('drain', pump);
        }
      };
      pump();
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/metrics`, closed, sent: () => sent };
}

async function body(url: string, headers: Record<string, string> = {}, limits?: Partial<ScrapeLimits>): Promise<{ status: number; body: string; src: ScrapeSource }> {
  const src = await ScrapeSource.open(url, headers, AbortSignal.timeout(5000), limits);
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

  it('passes a body sent in tiny chunks on in few slices (no object per chunk)', async () => {
    const chunks = 200_000;
    const url = await raw(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '2\r\na\n\r\n'.repeat(chunks) + '0\r\n\r\n']);
    const src = await ScrapeSource.open(url, {}, AbortSignal.timeout(10_000));
    let body = '';
    let slices = 0;
    for (;;) {
      const s = await src.read();
      if (!s) break;
      body += s.data.toString('latin1');
      slices++;
      s.release();
    }
    expect(body).toBe('a\n'.repeat(chunks));
    expect(slices).toBeLessThan(100);
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

  it('fails a source whose chunked trailer never ends, once past the trailer cap, and drops it', async () => {
    const src = await endless('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n\r\n0\r\nX-Trailer: ', 'x');
    const err = await body(src.url, {}, { maxTrailerBytes: 4096 }).catch((e: Error) => e);
    expect(String(err)).toContain('response trailers larger than 4096 bytes');
    await src.closed;
  });

  it('caps every other part of the response that could grow: status line, headers, chunk-size line', async () => {
    const statusLine = await endless('HTTP/1.1 200 ', 'O');
    expect(String(await body(statusLine.url, {}, { maxHeaderBytes: 2048 }).catch((e: Error) => e))).toContain('response headers larger than 2048 bytes');
    await statusLine.closed;
    const header = await endless('HTTP/1.1 200 OK\r\nX-Long: ', 'y');
    expect(String(await body(header.url, {}, { maxHeaderBytes: 2048 }).catch((e: Error) => e))).toContain('response headers larger than 2048 bytes');
    await header.closed;
    const sizeLine = await endless('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=', 'e');
    expect(String(await body(sizeLine.url, {}, { maxChunkLineBytes: 512 }).catch((e: Error) => e))).toContain('chunk-size line longer than 512 bytes');
    await sizeLine.closed;
    // junk after a chunk's data, where only CRLF may be
    const junk = await endless('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\na 1\n', 'j');
    expect(String(await body(junk.url).catch((e: Error) => e))).toContain('malformed chunked encoding: expected CRLF after the chunk data');
    await junk.closed;
    await expect(body(await raw(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + 'f'.repeat(20) + '\r\n']))).rejects.toThrow('chunk size ffffffffffffffffffff too large');
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
