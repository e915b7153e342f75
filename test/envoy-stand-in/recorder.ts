// What the stand-in tells tests about itself: an in-memory list of admin calls (GET /standin/calls)
// and, with ENVOY_STANDIN_RECORD=<file>, one JSON line per event appended synchronously so the file
// is complete even when the process is killed right after:
//   {"event":"start","argv":[...],"pid":123,"uid":0,"gid":0,"time":"..."}
//   {"event":"admin","method":"POST","path":"/drain_listeners","query":{"inboundonly":"","graceful":""},"status":200,"time":"..."}
//   {"event":"signal","signal":"SIGTERM","time":"..."}
//   {"event":"exit","code":0,"time":"..."}            (or "signal":"SIGABRT" for a simulated crash)
// Other events: "config_error", "live", "drain", "listeners_stopped", "log", and from the xDS clients
// "sds", "sds_nack" (ENVOY_STANDIN_SDS=1), "ads", "ads_stream", "init_fetch_timeout", "ads_withheld", "ads_released" (ENVOY_STANDIN_ADS=1).

import fs from 'node:fs';

export interface AdminCall {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly status: number;
  readonly time: string;
}

export type RecordEvent = { readonly event: string } & Record<string, unknown>;

export class Recorder {
  readonly calls: AdminCall[] = [];
  private failed = false;

  constructor(private readonly file: string | undefined) {}

  record(ev: RecordEvent): void {
    if (!this.file || this.failed) return;
    try {
      fs.appendFileSync(this.file, JSON.stringify({ ...ev, time: new Date().toISOString() }) + '\n');
    } catch (err) {
      this.failed = true; // never let the record file break the process under test
      process.stderr.write(`envoy stand-in: cannot write ENVOY_STANDIN_RECORD ${this.file}: ${(err as Error).message}\n`);
    }
  }

  adminCall(call: Omit<AdminCall, 'time'>): void {
    const full: AdminCall = { ...call, time: new Date().toISOString() };
    this.calls.push(full);
    if (this.calls.length > 10_000) this.calls.shift(); // bounded
    this.record({ event: 'admin', ...full });
  }
}

/** Reads a record file written by the stand-in (for tests). */
export function readRecord(file: string): RecordEvent[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as RecordEvent);
}
