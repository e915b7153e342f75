// The command line as Go's pflag reads it, rewritten into the forms commander reads the same way.
// Scripts and hand-written gateway args are written for Istio's pflag; where commander differs,
// the same words would mean something else here:
// - a boolean flag never takes the next word: `--log_as_json router` is the flag, then `router`
//   (commander's optional value `[bool]` would take `router` as the value and fail);
// - a shorthand may carry its value after `=`: `-p=15001`, `-n=true` (commander reads `=15001`).
// Only flags the command declares are rewritten; anything else is passed on as it is.

import type { Command, Option } from 'commander';

/** Go boolean flags are declared `[bool]` (an optional value, parsed with goBool). */
function isBoolean(opt: Option): boolean {
  return opt.optional;
}

function findOption(cmds: readonly Command[], match: (o: Option) => boolean): Option | undefined {
  for (const c of cmds) {
    const o = c.options.find(match);
    if (o) return o;
  }
  return undefined;
}

/**
 * Rewrites `args` (the words after the program name) so that commander parses them as pflag
 * would: boolean flags written bare become `--flag=true`, shorthands with `=` become the long
 * form with `=`. The flags in scope are the root's and, once its name is seen, the subcommand's.
 */
export function pflagArgs(program: Command, args: readonly string[]): string[] {
  const out: string[] = [];
  const scope: Command[] = [program];
  let current = program;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const long = eq < 0 ? a : a.slice(0, eq);
      const opt = findOption(scope, (o) => o.long === long);
      if (!opt || eq >= 0) {
        out.push(a);
        continue;
      }
      if (isBoolean(opt)) {
        out.push(`${long}=true`);
        continue;
      }
      out.push(a);
      if (i + 1 < args.length) out.push(args[++i]!); // its value, whatever it looks like
      continue;
    }
    if (a.startsWith('-') && a.length >= 2 && a !== '-') {
      const short = a.slice(0, 2);
      const opt = findOption(scope, (o) => o.short === short);
      if (!opt || !opt.long) {
        out.push(a);
        continue;
      }
      if (a.length === 2) {
        if (isBoolean(opt)) out.push(`${opt.long}=true`);
        else {
          out.push(a);
          if (i + 1 < args.length) out.push(args[++i]!);
        }
        continue;
      }
      // -p=15001 (pflag) and -p15001 (both): the value follows the letter
      out.push(`${opt.long}=${a[2] === '=' ? a.slice(3) : a.slice(2)}`);
      continue;
    }
    // an operand: a subcommand's name brings its flags into scope
    const sub = current.commands.find((c) => c.name() === a || c.aliases().includes(a));
    if (sub) {
      current = sub;
      scope.unshift(sub);
    }
    out.push(a);
  }
  return out;
}
