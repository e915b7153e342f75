// Shared benchmark plumbing: repeated timing with medians, RSS readings, and the output contract
// (a readable table, and with --json one final line holding a JSON object of the figures).

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface BenchResult {
  /** Rows of the readable table: label -> value. */
  readonly rows: readonly [string, string][];
  /** Figures for the JSON line: ratios against the in-run baseline, plus raw medians. */
  readonly figures: Readonly<Record<string, number>>;
}

export interface BenchOptions {
  /** --runs: samples per measured figure, for benches that repeat. */
  readonly runs: number;
  /** Bench-specific options given after the bench name (e.g. `--minutes 0.5`), with their values. */
  readonly options: ReadonlyMap<string, string>;
}

export type Bench = (opts: BenchOptions) => Promise<BenchResult>;

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Wall time of a command run to completion, in milliseconds. */
export async function timeCommand(cmd: string, args: readonly string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.once('error', reject);
    c.once('exit', () => resolve());
  });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** Resident set size of a live process, in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

/** Peak resident set size (VmHWM) of a live process, in MiB. */
export function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) / 1024;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function printResult(name: string, result: BenchResult, json: boolean): void {
  const width = Math.max(...result.rows.map(([k]) => k.length));
  process.stdout.write(`\nbench ${name}\n${'-'.repeat(width + 20)}\n`);
  for (const [k, v] of result.rows) process.stdout.write(`${k.padEnd(width)}  ${v}\n`);
  if (json) process.stdout.write(JSON.stringify({ bench: name, ...result.figures }) + '\n');
}
