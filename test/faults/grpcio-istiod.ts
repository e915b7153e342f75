// Runs test/faults/grpcio_istiod.py: an istiod stand-in on gRPC C-core (Debian's python3-grpcio),
// a gRPC server nobody here wrote, for GOAWAY after a maximum connection age and ping-policy
// enforcement as istiod's grpc-go applies them. Resources are served from a JSON file the test
// rewrites (atomically: the server polls it).

import { spawn, type ChildProcess } from 'node:child_process';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toStoredResource } from '../control-plane/index.js';
import { repoRoot } from '../support/paths.js';

export interface GrpcioIstiodOptions {
  readonly resourcesFile: string;
  readonly port?: number;
  readonly maxConnectionAgeMs?: number;
  readonly maxConnectionAgeGraceMs?: number;
  readonly minPingIntervalMs?: number;
  readonly maxPingStrikes?: number;
}

export interface GrpcioIstiod {
  readonly address: string;
  readonly port: number;
  /** Every line the server printed (stream open/closed, responses). */
  readonly lines: string[];
  /** Peers of the ADS streams opened so far, in order. */
  streamsOpened(): string[];
  stop(): Promise<void>;
}

export async function startGrpcioIstiod(o: GrpcioIstiodOptions): Promise<GrpcioIstiod> {
  const args = [join(repoRoot, 'test/faults/grpcio_istiod.py'), '--resources', o.resourcesFile, '--port', String(o.port ?? 0)];
  if (o.maxConnectionAgeMs) args.push('--max-connection-age-ms', String(o.maxConnectionAgeMs), '--max-connection-age-grace-ms', String(o.maxConnectionAgeGraceMs ?? 0));
  if (o.minPingIntervalMs) args.push('--min-ping-interval-ms', String(o.minPingIntervalMs));
  if (o.maxPingStrikes !== undefined) args.push('--max-ping-strikes', String(o.maxPingStrikes));
  const child: ChildProcess = spawn('/usr/bin/python3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        const m = /^listening (\d+)$/.exec(line);
        if (m) resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`grpcio istiod exited ${code}: ${err}`)));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    address: `127.0.0.1:${port}`,
    port,
    lines,
    streamsOpened: () => lines.filter((l) => l.startsWith('stream open ')).map((l) => l.slice('stream open '.length)),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Writes the server's resource file: per type URL, a version and resources given as proto3 JSON. */
export function writeGrpcioResources(file: string, byType: Record<string, { version: string; resources: Record<string, unknown>[] }>): void {
  const out: Record<string, { version: string; resources: string[] }> = {};
  for (const [typeUrl, { version, resources }] of Object.entries(byType)) {
    out[typeUrl] = { version, resources: resources.map((json) => Buffer.from(toStoredResource(typeUrl, { json: { '@type': typeUrl, ...json } }).binary).toString('base64')) };
  }
  writeFileSync(`${file}.tmp`, JSON.stringify(out));
  renameSync(`${file}.tmp`, file);
}
