// Running the iptables binaries: which variant to use (legacy or nf_tables, as Istio's
// DetectIptablesVersion picks it), the lock flags legacy iptables needs, xtables error
// messages, and the dry-run recorder that stands in for all of it and records what would run.

import { spawnSync } from 'node:child_process';
import type { Family } from './rules.js';
import { logger } from '../util/logger.js';

const log = logger('default');

export type XtablesCommand = 'iptables' | 'save' | 'restore';

export interface XtablesVariant {
  readonly iptables: string;
  readonly save: string;
  readonly restore: string;
  /** legacy (x_tables) rather than nf_tables: needs the xtables lock. */
  readonly legacy: boolean;
  readonly version: readonly number[];
  /** the variant already holds rules in this network namespace */
  readonly existingRules: boolean;
}

export interface XtablesResult {
  readonly ok: boolean;
  readonly stdout: string;
  /** xtables' own error text, made explicit (e.g. "xtables parameter problem: ..."). */
  readonly error: string;
}

/** Runs iptables commands; the dry-run implementation only records them. */
export interface Xtables {
  detect(family: Family): XtablesVariant;
  run(variant: XtablesVariant, command: XtablesCommand, args: readonly string[], stdin?: string): XtablesResult;
}

/** Plain binary names, as Istio's dependency stub reports them. */
function plainVariant(family: Family): XtablesVariant {
  const base = family === 4 ? 'iptables' : 'ip6tables';
  return { iptables: base, save: `${base}-save`, restore: `${base}-restore`, legacy: false, version: [], existingRules: false };
}

/**
 * Records each command as Istio's capture test does: a command line, or for a restore the
 * lines of its input. Nothing runs; every command succeeds with empty output.
 */
export class DryRunXtables implements Xtables {
  readonly recorded: string[] = [];

  detect(family: Family): XtablesVariant {
    return plainVariant(family);
  }

  run(variant: XtablesVariant, command: XtablesCommand, args: readonly string[], stdin?: string): XtablesResult {
    if (stdin !== undefined) {
      // line by line, as a line scanner reads it: no empty line for the final newline
      const lines = stdin.split('\n');
      if (lines.at(-1) === '') lines.pop();
      this.recorded.push(...lines);
    } else this.recorded.push([variant[command], ...args].join(' '));
    return { ok: true, stdout: '', error: '' };
  }
}

/** iptables-restore and -w locking arrived in legacy iptables 1.6.2; XTABLES_LOCKFILE in 1.8.6. */
const RESTORE_LOCKING = [1, 6, 2];
const LOCKFILE_ENV = [1, 8, 6];

function versionAtLeast(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    const a = v[i] ?? 0;
    if (a !== min[i]) return a > min[i]!;
  }
  return true;
}

const XTABLES_EXIT_TYPES: Record<number, string> = { 1: 'xtables other problem', 2: 'xtables parameter problem', 3: 'xtables version problem', 4: 'xtables resource problem' };

export class XtablesDetectionError extends Error {
  readonly code = 'IPTABLES_DETECTION';
}

export interface RealXtablesOptions {
  /** legacy or nft: use that variant or fail (--force-iptables-binary) */
  readonly forceBinary: string;
  /** CNI mode: lock per pod network namespace instead of the node-wide xtables lock */
  readonly podScopedLockFile?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export class RealXtables implements Xtables {
  constructor(private readonly options: RealXtablesOptions) {}

  /**
   * Istio's choice: legacy when its binaries work and already hold rules here (the node or an
   * older component chose legacy), else nf_tables when usable, else the plain `iptables`.
   * Matching the variant that holds rules matters: the two keep separate tables in the kernel.
   */
  detect(family: Family): XtablesVariant {
    const base = family === 4 ? 'iptables' : 'ip6tables';
    const forced = this.options.forceBinary;
    if (forced === 'legacy' || forced === 'nft') return this.probe(`${base}-${forced}`);
    const failures: string[] = [];
    const attempt = (bin: string): XtablesVariant | undefined => {
      try {
        return this.probe(bin);
      } catch (err) {
        const message = (err as Error).message;
        failures.push(message);
        // a binary not installed, or a kernel without that backend, is routine; the xtables lock held
        // past the probe's wait is not: the rules would go to another backend than the pod's (Istio
        // logs it at debug only), so an operator must be able to see it
        if (/xtables lock|Resource temporarily unavailable/i.test(message)) log.warn(`cannot use ${bin}, trying the next iptables backend: ${message}`);
        else log.debug(`cannot use ${bin}: ${message}`);
        return undefined;
      }
    };
    const legacy = attempt(`${base}-legacy`);
    if (legacy?.existingRules) return legacy;
    const nft = attempt(`${base}-nft`);
    if (nft) return nft;
    const plain = attempt(base);
    if (plain) return plain;
    throw new XtablesDetectionError(`no usable ${base} binary: ${failures.join('; ')}`);
  }

  /** Istio's shouldUseBinaryForCurrentContext: save works, version parses, a no-op rule can be added. */
  private probe(bin: string): XtablesVariant {
    const save = `${bin}-save`;
    const dump = spawnSync(save, [], { encoding: 'utf8', env: this.childEnv() });
    if (dump.error || dump.status !== 0) throw new XtablesDetectionError(`failed to execute ${save}: ${dump.error?.message ?? dump.stderr.trim()}`);
    const ver = spawnSync(save, ['--version'], { encoding: 'utf8', env: this.childEnv() });
    let version = [0, 0, 0];
    let legacy = true;
    if (!ver.error && ver.status === 0 && !ver.stderr.includes('unrecognized option')) {
      const m = /v(\d+(?:\.\d+)+)/.exec(ver.stdout);
      if (!m) throw new XtablesDetectionError(`no iptables version found in ${JSON.stringify(ver.stdout.trim())}`);
      version = m[1]!.split('.').map(Number);
      legacy = !ver.stdout.includes('nf_tables');
    }
    // protocol 255 never matches: the rule only proves the kernel supports this variant
    const test = ['-t', 'nat', '-A', 'INPUT', '-p', '255', '-j', 'RETURN'];
    if (legacy && versionAtLeast(version, RESTORE_LOCKING)) test.push('--wait=30');
    const add = spawnSync(bin, test, { encoding: 'utf8', env: this.childEnv() });
    if (add.error || add.status !== 0 || add.stderr.includes('does not exist')) {
      throw new XtablesDetectionError(`${bin} has no loaded kernel support and cannot be used: ${add.error?.message ?? add.stderr.trim()}`);
    }
    test[2] = '-D';
    spawnSync(bin, test, { env: this.childEnv() });
    // Istio counts 3+ lines of save output as "rules exist"; an empty table also prints 3+ lines
    // once anything touched it (this very probe loads the legacy nat table), which made a second
    // run switch to legacy. Rule lines are what the heuristic means.
    const existingRules = /^-A /m.test(dump.stdout);
    return { iptables: bin, save, restore: `${bin}-restore`, legacy, version, existingRules };
  }

  private childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...this.options.env, ...extra };
  }

  run(variant: XtablesVariant, command: XtablesCommand, args: readonly string[], stdin?: string): XtablesResult {
    const bin = variant[command];
    const needLock = command !== 'save' && variant.legacy && versionAtLeast(variant.version, RESTORE_LOCKING);
    const fullArgs = needLock ? [...args, '--wait=30'] : [...args];
    const extraEnv: Record<string, string> = {};
    if (needLock && this.options.podScopedLockFile && versionAtLeast(variant.version, LOCKFILE_ENV)) extraEnv.XTABLES_LOCKFILE = this.options.podScopedLockFile;
    log.debug(`Running command: ${bin} ${fullArgs.join(' ')}`);
    const r = spawnSync(bin, fullArgs, { input: stdin, encoding: 'utf8', env: this.childEnv(extraEnv) });
    if (r.error) return { ok: false, stdout: '', error: `${bin}: ${r.error.message}` };
    if (r.status === 0) return { ok: true, stdout: r.stdout, error: '' };
    const type = XTABLES_EXIT_TYPES[r.status ?? 0];
    const stderr = r.stderr.trim();
    // "iptables-restore v1.8.9 (nf_tables): <problem>" -> "<type>: <problem>"
    const problem = stderr.includes(':') ? stderr.slice(stderr.indexOf(':') + 1).trim() : stderr;
    return { ok: false, stdout: r.stdout, error: type ? `${type}: ${problem}` : stderr || `${bin} exited with ${r.status ?? r.signal}` };
  }
}
