// The rule model: an ordered list of rules per IP family, each an iptables argument vector for
// one table (`-A CHAIN ...` or `-I CHAIN N ...`). From it come the iptables-restore input (one
// transaction per table), the `-C` checks that tell whether the rules are in place, and the
// `-D`/`-F`/`-X` commands that undo them. The text forms follow Istio's rule builder exactly,
// because --dry-run must print what Istio records.

export type Family = 4 | 6;

export interface Rule {
  readonly table: string;
  readonly chain: string;
  /** Starts with `-A <chain>` or `-I <chain> <position>`. */
  readonly params: readonly string[];
}

/** Stands for the family's own address in a rule added for both families (Istio's IPVersionSpecific). */
export const PER_FAMILY_ADDRESS = Symbol('per-family address');
export type Param = string | typeof PER_FAMILY_ADDRESS;

/** Chains and targets iptables defines itself: never created or deleted. */
const BUILT_IN = new Set(['INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING', 'ACCEPT', 'RETURN', 'DROP']);

export function isIstioChain(chain: string): boolean {
  return chain.startsWith('ISTIO_');
}

export class RulePlan {
  private readonly rules: Record<Family, Rule[]> = { 4: [], 6: [] };

  constructor(private readonly ipv6: boolean) {}

  /** The rules of one family, in the order they were added. */
  of(family: Family): readonly Rule[] {
    return this.rules[family];
  }

  append(chain: string, table: string, ...params: string[]): this {
    return this.appendV4(chain, table, ...params).appendV6(chain, table, ...params);
  }

  appendV4(chain: string, table: string, ...params: string[]): this {
    this.rules[4].push({ table, chain, params: ['-A', chain, ...params] });
    return this;
  }

  appendV6(chain: string, table: string, ...params: string[]): this {
    if (this.ipv6) this.rules[6].push({ table, chain, params: ['-A', chain, ...params] });
    return this;
  }

  /** A rule for both families with PER_FAMILY_ADDRESS replaced by `v4` or `v6`. */
  appendPerFamily(v4: string, v6: string, chain: string, table: string, ...params: Param[]): this {
    const fill = (value: string): string[] => params.map((p) => (p === PER_FAMILY_ADDRESS ? value : p));
    return this.appendV4(chain, table, ...fill(v4)).appendV6(chain, table, ...fill(v6));
  }

  insert(chain: string, table: string, position: number, ...params: string[]): this {
    return this.insertV4(chain, table, position, ...params).insertV6(chain, table, position, ...params);
  }

  insertV4(chain: string, table: string, position: number, ...params: string[]): this {
    this.rules[4].push({ table, chain, params: ['-I', chain, String(position), ...params] });
    return this;
  }

  insertV6(chain: string, table: string, position: number, ...params: string[]): this {
    if (this.ipv6) this.rules[6].push({ table, chain, params: ['-I', chain, String(position), ...params] });
    return this;
  }
}

/**
 * iptables-restore input for `iptables-restore --noflush`: per table (filter, mangle, nat, raw
 * order), the chains to create, then the rules, then COMMIT. Chains are created for every
 * non-built-in chain that has a rule, and for every jump target, even if it stays empty.
 */
export function restoreInput(rules: readonly Rule[]): string {
  const lines = new Map<string, string[]>([['filter', []], ['nat', []], ['mangle', []]]);
  const tableLines = (table: string): string[] => {
    let l = lines.get(table);
    if (!l) lines.set(table, (l = []));
    return l;
  };
  const declared = new Set<string>();
  const declare = (chain: string, table: string): void => {
    const key = `${chain}:${table}`;
    if (declared.has(key)) return;
    declared.add(key);
    if (!BUILT_IN.has(chain)) tableLines(table).push(`-N ${chain}`);
  };
  for (const r of rules) declare(r.chain, r.table);
  for (const r of rules) {
    const n = r.params.length;
    if (n >= 2 && r.params[n - 2] === '-j') declare(r.params[n - 1]!, r.table);
  }
  for (const r of rules) tableLines(r.table).push(r.params.join(' '));
  let out = '';
  for (const table of [...lines.keys()].sort()) {
    const body = lines.get(table)!;
    if (body.length === 0) continue;
    out += `* ${table}\n${body.map((l) => `${l}\n`).join('')}COMMIT\n`;
  }
  return out;
}

/** Rewrites `-A c`/`-I c n` into `<op> c` (dropping the position). */
function withOperation(params: readonly string[], op: '-C' | '-D'): string[] {
  const out: string[] = [];
  for (let i = 0; i < params.length; i++) {
    const p = params[i]!;
    if (p === '-A' || p === '--append') out.push(op);
    else if (p === '-I' || p === '--insert') {
      out.push(op, params[i + 1]!);
      i += 2;
    } else out.push(p);
  }
  return out;
}

/** `-t <table> -C ...` for each rule: all succeed exactly when every rule is in place. */
export function checkCommands(rules: readonly Rule[]): string[][] {
  return rules.map((r) => ['-t', r.table, ...withOperation(r.params, '-C')]);
}

function jumpsToIstioChain(params: readonly string[]): boolean {
  const j = params.findIndex((p) => p === '-j' || p === '--jump');
  return j >= 0 && j + 1 < params.length && isIstioChain(params[j + 1]!.replace(/^['"]|['"]$/g, ''));
}

/**
 * Istio's UndoRules: `-D` for each rule outside ISTIO_ chains and for each jump into an ISTIO_
 * chain; other rules inside ISTIO_ chains go with the chain flush.
 */
function undoCommands(rules: readonly Rule[]): string[][] {
  return rules
    .filter((r) => !isIstioChain(r.chain) || jumpsToIstioChain(r.params))
    .map((r) => ['-t', r.table, ...withOperation(r.params, '-D')]);
}

/** Istio's cleanup for a plan: undo the rules newest first, then flush and delete each ISTIO chain that has rules. */
export function cleanupCommands(rules: readonly Rule[]): string[][] {
  const reversed = [...rules].reverse();
  const out = undoCommands(reversed);
  const seen = new Set<string>();
  for (const r of reversed) {
    const key = `${r.chain}:${r.table}`;
    if (seen.has(key) || BUILT_IN.has(r.chain)) continue;
    seen.add(key);
    out.push(['-t', r.table, '-F', r.chain], ['-t', r.table, '-X', r.chain]);
  }
  return out;
}

/**
 * Guardrails held while rules are replaced (--reconcile): TCP and UDP are dropped in INPUT,
 * FORWARD and OUTPUT, so no connection slips past while the capture is half removed.
 */
function guardrailRules(): Rule[] {
  const rules: Rule[] = [];
  for (const chain of ['INPUT', 'FORWARD', 'OUTPUT']) {
    for (const proto of ['tcp', 'udp']) rules.push({ table: 'filter', chain, params: ['-I', chain, '1', '-p', proto, '-j', 'DROP'] });
  }
  return rules;
}

export function guardrailCommands(): string[][] {
  return guardrailRules().map((r) => ['-t', r.table, ...r.params]);
}

export function guardrailRemovalCommands(): string[][] {
  return undoCommands(guardrailRules());
}

/** Table -> chain -> rule lines, as Istio's GetStateFromSave reads save output or restore input. */
export type TableState = Map<string, Map<string, string[]>>;

/**
 * Reads iptables-save output (or restore input): ISTIO chains (declared or with rules) and every
 * chain that has rules, in the four built-in tables. Rules are kept as their text lines.
 */
export function parseState(text: string): TableState {
  const state: TableState = new Map(['filter', 'nat', 'mangle', 'raw'].map((t) => [t, new Map<string, string[]>()]));
  let table = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#') || line === 'COMMIT') continue;
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      continue;
    }
    const chains = state.get(table);
    if (!chains) continue;
    if (line.startsWith(':')) {
      if (line.startsWith(':ISTIO')) {
        const chain = line.split(' ')[0]!.slice(1);
        if (!chains.has(chain)) chains.set(chain, []);
      }
      continue;
    }
    const words = line.split(' ');
    let chain = '';
    let isRule = false;
    for (let i = 0; i + 1 < words.length; i++) {
      const w = words[i];
      const next = words[i + 1]!.replace(/^['"]|['"]$/g, '');
      if (w === '-A' || w === '--append' || w === '-I' || w === '--insert') {
        isRule = true;
        chain = next;
      } else if ((w === '-N' || w === '--new') && next.startsWith('ISTIO')) chain = next;
    }
    if (chain === '') continue;
    if (!chains.has(chain)) chains.set(chain, []);
    if (isRule) chains.get(chain)!.push(line);
  }
  return state;
}

export function isEmptyState(state: TableState): boolean {
  return [...state.values()].every((chains) => chains.size === 0);
}

/**
 * Commands that remove whatever Istio left in a state regardless of the configuration that
 * made it: each jump into an ISTIO_ chain, then every ISTIO_ chain (all flushed before any is
 * deleted, so references between them do not matter).
 */
export function leftoverCleanupCommands(state: TableState): string[][] {
  const undo: string[][] = [];
  const flush: string[][] = [];
  const remove: string[][] = [];
  for (const [table, chains] of state) {
    for (const [chain, lines] of chains) {
      for (const line of lines) {
        const params = line.split(/\s+/).filter(Boolean);
        if (jumpsToIstioChain(params)) undo.push(['-t', table, ...withOperation(params, '-D')]);
      }
      if (isIstioChain(chain)) {
        flush.push(['-t', table, '-F', chain]);
        remove.push(['-t', table, '-X', chain]);
      }
    }
  }
  return [...undo, ...flush, ...remove];
}
