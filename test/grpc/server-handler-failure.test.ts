// A request handler that throws, on the agent's gRPC server: the stream it was handling ends with
// INTERNAL and the reason, the failure is reported with its stack, and the server (and the
// process) go on serving. A real grpc-js client on a real unix socket.

import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GrpcUnixServer, type ServerStream } from '../../src/grpc/server.js';

const METHOD = '/test.Echo/Stream';
const identity = (b: Buffer): Buffer => b;

describe('a request handler that throws', () => {
  let dir: string;
  let server: GrpcUnixServer;
  let client: grpc.Client;
  const reported: string[] = [];
  let gone: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pa-grpc-handler-'));
    const path = join(dir, 'sock');
    server = new GrpcUnixServer(
      path,
      new Map([
        [
          METHOD,
          (call: ServerStream) =>
            call.attach({
              onRequest: (msg) => {
                if (msg.toString() === 'boom') throw new Error('the handler cannot take this');
                call.writeMessage(Buffer.concat([Buffer.from('echo:'), msg]), () => undefined);
              },
              onGone: (kind, reason) => {
                gone.push(`${kind}: ${reason}`);
                if (kind === 'end') call.finish(); // the client is done: end ours with OK
              },
            }),
        ],
      ]),
      { name: 'test', logError: (m) => reported.push(m) },
    );
    await server.start();
    client = new grpc.Client(`unix:${path}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes `messages` on one stream; resolves with what came back and the status it ended with. */
  function exchange(messages: string[]): Promise<{ answers: string[]; status: grpc.StatusObject }> {
    const call = client.makeBidiStreamRequest(METHOD, identity, identity);
    const answers: string[] = [];
    call.on('data', (b: Buffer) => {
      answers.push(b.toString());
      if (answers.length === messages.length) call.end();
    });
    call.on('error', () => undefined);
    for (const m of messages) call.write(Buffer.from(m));
    return new Promise((resolve) => call.on('status', (status: grpc.StatusObject) => resolve({ answers, status })));
  }

  it('ends that stream with INTERNAL and the reason, reports the stack, and tells the handler the client is gone', async () => {
    gone = [];
    const { answers, status } = await exchange(['a', 'boom', 'c']);
    expect(answers).toEqual(['echo:a']);
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toBe(`handling a 4-byte request on ${METHOD} failed: the handler cannot take this`);
    expect(reported).toHaveLength(1);
    expect(reported[0]).toContain('the handler cannot take this');
    expect(reported[0]).toMatch(/\n\s+at /); // the stack, to find the bug
    expect(gone).toEqual([`error: handling a 4-byte request on ${METHOD} failed: the handler cannot take this`]);
    gone = [];
  });

  it('goes on serving other streams', async () => {
    const { answers, status } = await exchange(['x', 'y']);
    expect(answers).toEqual(['echo:x', 'echo:y']);
    expect(status.code).toBe(grpc.status.OK);
    expect(gone).toEqual(['end: the client half-closed the stream']);
    expect(reported).toHaveLength(1);
  });
});
