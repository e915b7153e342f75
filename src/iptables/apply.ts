// Putting a rule plan in place, idempotently (Istio #50328): read the current state with
// iptables-save, compare it with the plan, and only then restore, reconcile or clean up. The
// sequence of commands is Istio's (IptablesConfigurator.executeCommands and
// VerifyIptablesState), so a dry run records the same lines Istio's capture test does.

import type { CaptureConfig } from './config.js';
import {
  checkCommands, cleanupCommands, guardrailCommands, guardrailRemovalCommands, isEmptyState, isIstioChain, leftoverCleanupCommands, parseState,
  restoreInput, type Family, type RulePlan, type TableState,
} from './rules.js';
import type { Xtables, XtablesVariant } from './xtables.js';
import { logger } from '../util/logger.js';

const log = logger('default');

export class IptablesApplyError extends Error {
  readonly code = 'IPTABLES_APPLY';
}

interface FamilyState {
  readonly family: Family;
  /** undefined when this family's binaries are unusable (allowed only without IPv6) */
  readonly variant: XtablesVariant | undefined;
  residue: boolean;
  delta: boolean;
  planned: boolean;
  /** what iptables-save showed before anything was changed */
  current: TableState | undefined;
}

/**
 * Istio's comparison: the state matches when every planned ISTIO_ chain exists with the same
 * number of rules, no other ISTIO_ chain exists, and every planned rule passes `iptables -C`
 * (the kernel's own comparison; iptables-save's text may differ from what was restored).
 */
function verifyFamily(xt: Xtables, fs: FamilyState, plan: RulePlan): void {
  const rules = plan.of(fs.family);
  const expected = parseState(restoreInput(rules));
  fs.planned = !isEmptyState(expected);
  if (!fs.variant) return;
  const saved = xt.run(fs.variant, 'save', []);
  if (!saved.ok) {
    log.warn(`[IPv${fs.family}] iptables-save failed, assuming a clean state: ${saved.error}`);
    fs.delta = fs.planned;
    return;
  }
  const current = parseState(saved.stdout);
  fs.current = current;
  fs.residue = !isEmptyState(current);
  if (!fs.residue) {
    fs.delta = fs.planned;
    return;
  }
  fs.delta = chainsDiffer(expected, current) || checkCommands(rules).some((args) => !xt.run(fs.variant!, 'iptables', args).ok);
}

function chainsDiffer(expected: TableState, current: TableState): boolean {
  for (const [table, chains] of expected) {
    const now = current.get(table);
    if (!now) return true;
    for (const [chain, rules] of chains) {
      const nowRules = now.get(chain);
      if (!nowRules || (isIstioChain(chain) && nowRules.length !== rules.length)) {
        log.debug(`chain ${chain} (table ${table}) differs from the plan`);
        return true;
      }
    }
  }
  for (const [table, chains] of current) {
    for (const chain of chains.keys()) {
      if (isIstioChain(chain) && !expected.get(table)?.has(chain)) {
        log.debug(`chain ${chain} (table ${table}) is not in the plan`);
        return true;
      }
    }
  }
  return false;
}

/**
 * Removes what a failed apply had put in place: a restore is one transaction per table, but the
 * plan spans tables (mangle and nat for TPROXY) and families (IPv4, then IPv6), so a failure
 * part-way leaves a capture half applied. Istio leaves it, and every retry of istio-init then
 * fails on "Chain already exists" for good; here the retry starts from a clean state. Only called
 * when the run started clean, so nothing it did not add is removed (a dry run never fails).
 */
function rollBack(xt: Xtables, plan: RulePlan, active: readonly FamilyState[]): boolean {
  log.warn('restore failed part-way: removing the rules this run applied');
  for (const fs of active) for (const args of cleanupCommands(plan.of(fs.family))) xt.run(fs.variant!, 'iptables', args);
  return true;
}

export function applyPlan(cfg: CaptureConfig, plan: RulePlan, xt: Xtables): void {
  const v4 = xt.detect(4);
  let v6: XtablesVariant | undefined;
  try {
    v6 = xt.detect(6);
  } catch (err) {
    if (cfg.enableIPv6) throw err;
    log.warn(`Failed to detect a working ip6tables binary; continuing because IPv6 support is disabled: ${(err as Error).message}`);
  }
  try {
    applyWithVariants(cfg, plan, xt, v4, v6);
  } finally {
    // the final state, for the log (and, in a dry run, the last recorded reads)
    const v4State = xt.run(v4, 'save', []);
    if (v4State.ok) log.info(`Final iptables state (IPv4):\n${v4State.stdout}`);
    if (cfg.enableIPv6 && v6) {
      const v6State = xt.run(v6, 'save', []);
      if (v6State.ok) log.info(`Final iptables state (IPv6):\n${v6State.stdout}`);
    }
  }
}

function applyWithVariants(cfg: CaptureConfig, plan: RulePlan, xt: Xtables, v4: XtablesVariant, v6: XtablesVariant | undefined): void {
  const families: FamilyState[] = [
    { family: 4, variant: v4, residue: false, delta: false, planned: false, current: undefined },
    { family: 6, variant: v6, residue: false, delta: false, planned: false, current: undefined },
  ];
  for (const fs of families) verifyFamily(xt, fs, plan);
  const active = families.filter((fs) => fs.family === 4 || cfg.enableIPv6);
  const delta = families.some((fs) => fs.delta);
  const residue = families.some((fs) => {
    if (fs.residue && !fs.planned) log.info(`Ignoring residues because no rules are planned for IPv${fs.family}`);
    return fs.residue && fs.planned;
  });
  if (!residue) log.info('Clean-state detected, new iptables are needed');
  else if (delta) log.info('Found residues of old iptables rules/chains, reconciliation is recommended');
  else log.info('Found compatible residues of old iptables rules/chains, reconciliation not needed');
  const needApply = !residue || delta;

  if (residue && needApply && !cfg.reconcile) {
    log.info('reconcile is recommended but no-reconcile flag is set. Unexpected behavior may occur due to preexisting iptables rules');
  }
  let guardrails = false;
  try {
    if ((residue && needApply && cfg.reconcile) || cfg.cleanupOnly) {
      if (!cfg.cleanupOnly) {
        log.info('Setting up guardrails');
        for (const fs of active) {
          for (const args of guardrailRemovalCommands()) xt.run(fs.variant!, 'iptables', args);
          for (const args of guardrailCommands()) {
            const r = xt.run(fs.variant!, 'iptables', args);
            if (!r.ok) throw new IptablesApplyError(`setting up guardrails failed: ${r.error}`);
          }
          guardrails = true;
        }
      }
      log.info('Performing cleanup of existing iptables');
      for (const fs of active) {
        for (const args of cleanupCommands(plan.of(fs.family))) xt.run(fs.variant!, 'iptables', args);
        // whatever an earlier run with another configuration left (nothing in a dry run: no state)
        if (fs.current) for (const args of leftoverCleanupCommands(fs.current)) xt.run(fs.variant!, 'iptables', args);
      }
    }
    if ((needApply || cfg.forceApply) && !cfg.cleanupOnly) {
      log.info('Applying iptables chains and rules');
      // what was there before this run is left alone on failure unless it was cleaned first
      const startedClean = !residue || cfg.reconcile;
      for (const fs of active) {
        const input = restoreInput(plan.of(fs.family));
        log.info(`Running iptables restore with: ${fs.variant!.restore} and the following input:\n${input.trim()}`);
        // --noflush: only the ISTIO chains and jumps change; one transaction per table
        const r = xt.run(fs.variant!, 'restore', ['--noflush'], input);
        if (!r.ok) {
          const rolledBack = startedClean && rollBack(xt, plan, active);
          throw new IptablesApplyError(`${fs.variant!.restore} failed: ${r.error}${rolledBack ? ' (the rules this run had applied were removed, so that the next run starts clean)' : ''}`);
        }
      }
    }
  } finally {
    if (guardrails) {
      log.info('Removing guardrails');
      for (const fs of active) for (const args of guardrailRemovalCommands()) xt.run(fs.variant!, 'iptables', args);
    }
  }
  if (!needApply && cfg.forceApply) {
    log.warn('The forced apply of iptables changes succeeded despite the presence of conflicting rules or chains.');
  }
}
