// docs/istio-compat.md is what an operator reads before switching; it must list every variable and
// flag the agent reads, and must not claim a variable is honoured that the agent never reads.
// The tables' rows are `| names | Istio default | state | notes |`, names in backticks.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV, ENV_PREFIXES } from '../../src/config/env-vars.js';
import { DEFAULT_PROXY_FLAGS } from '../../src/config/proxy-flags.js';
import { CAPTURE_FLAGS } from '../../src/iptables/flag-table.js';
import { CAPTURE_ENV } from '../../src/iptables/flags.js';
import { repoRoot } from '../support/paths.js';

const STATES = ['honoured', 'partial', 'not', 'n/a', 'ours'] as const;

interface Row {
  readonly line: number;
  /** Env var names (`ISTIO_META_*` for a prefix) and flags (`--name`) in the first cell. */
  readonly names: readonly string[];
  readonly state: string;
}

function rows(markdown: string): Row[] {
  const out: Row[] = [];
  markdown.split('\n').forEach((text, i) => {
    if (!text.startsWith('| `')) return;
    const cells = text.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    // names: upper-case env vars (or a PREFIX_*), the lower-case proxy variables Go also reads, flags
    const names = [...cells[0]!.matchAll(/`([^`]+)`/g)].flatMap((m) => m[1]!.split(/\s+/)).filter((n) => /^([A-Z][A-Z0-9_]*(_\*)?|(https?|no)_proxy|--[A-Za-z_-]+)$/.test(n));
    out.push({ line: i + 1, names, state: cells[2] ?? '' });
  });
  return out;
}

const table = rows(readFileSync(join(repoRoot, 'docs/istio-compat.md'), 'utf8'));
const listed = new Set(table.flatMap((r) => r.names));

/** Every env var the agent declares, and the prefixes it forwards (as `PREFIX_*`). */
const declaredEnv = new Set<string>([...Object.keys(ENV), ...CAPTURE_FLAGS.flatMap((f) => f.env), ...Object.values(CAPTURE_ENV)]);
const declaredPrefixes = new Set(Object.values(ENV_PREFIXES).map((p) => `${p}*`));

describe('docs/istio-compat.md', () => {
  it('is parsed: rows found, each with a known state', () => {
    expect(table.length).toBeGreaterThan(100);
    for (const r of table) expect(STATES, `line ${r.line}: state "${r.state}"`).toContain(r.state);
  });

  it('lists every env var declared in src/config/env-vars.ts', () => {
    const missing = Object.keys(ENV).filter((n) => !listed.has(n));
    expect(missing, 'declared in src/config/env-vars.ts but not in docs/istio-compat.md').toEqual([]);
  });

  it("lists istio-iptables' env vars and the forwarded prefixes", () => {
    expect([...declaredEnv].filter((n) => !listed.has(n))).toEqual([]);
    expect([...declaredPrefixes].filter((n) => !listed.has(n))).toEqual([]);
  });

  it('says honoured or partial only for variables the agent declares', () => {
    const claimed = table.filter((r) => r.state === 'honoured' || r.state === 'partial').flatMap((r) => r.names.filter((n) => !n.startsWith('--')).map((n) => ({ n, line: r.line })));
    const undeclared = claimed.filter(({ n }) => (n.endsWith('*') ? !declaredPrefixes.has(n) : !declaredEnv.has(n)));
    expect(undeclared, 'rows claiming a variable the agent never reads').toEqual([]);
  });

  it("lists every flag of `pilot-agent proxy`", () => {
    expect(Object.keys(DEFAULT_PROXY_FLAGS).map((f) => `--${f}`).filter((f) => !listed.has(f))).toEqual([]);
  });
});
