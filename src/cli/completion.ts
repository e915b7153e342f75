// `pilot-agent completion <shell>`: the shell completion scripts Istio's pilot-agent prints (cobra
// adds the command to every CLI with subcommands). Cobra's scripts call the binary back
// (`__complete`) at every Tab; these are static, generated from the command tree at the time they
// are printed: the agent's commands and flags change only with its version, and a Tab should not
// start a Node process. Subcommands, then each command's flags, with descriptions unless
// --no-descriptions.

import type { Command } from 'commander';

export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish', 'powershell'] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

interface Word {
  readonly word: string;
  readonly description: string;
  /** A flag followed by a value (`--meshConfig <path>`): what follows it is not a command, and is completed as a file name. */
  readonly takesValue?: boolean;
}

interface CommandWords {
  readonly name: string;
  /** Subcommands and flags offered after this command's name. */
  readonly words: readonly Word[];
}

function flagWords(cmd: Command): Word[] {
  return cmd.options.flatMap((o) => {
    const takesValue = o.required === true;
    return [...(o.long ? [{ word: o.long, description: o.description, takesValue }] : []), ...(o.short ? [{ word: o.short, description: o.description, takesValue }] : [])];
  });
}

/** Every flag (of any command) that takes a value, space-separated with spaces around, for a shell `case`. */
function valuedFlags(cmds: readonly CommandWords[]): string {
  return ` ${[...new Set(cmds.flatMap((c) => c.words.filter((w) => w.takesValue).map((w) => w.word)))].join(' ')} `;
}

/** What each command offers: the root its subcommands and global flags, each subcommand its own flags. */
function commandWords(program: Command): CommandWords[] {
  const visible = program.commands.filter((c) => c.name() !== 'help');
  const root: CommandWords = {
    name: '',
    words: [...visible.map((c) => ({ word: c.name(), description: c.description() })), { word: 'help', description: 'Help about any command' }, ...flagWords(program)],
  };
  return [root, ...visible.map((c) => ({ name: c.name(), words: [...c.commands.map((s) => ({ word: s.name(), description: s.description() })), ...flagWords(c), ...flagWords(program)] }))];
}

const singleQuoted = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const firstLine = (s: string): string => s.split('\n')[0]!.trim();

function bash(name: string, cmds: readonly CommandWords[]): string {
  const fn = `__${name.replace(/[^A-Za-z0-9_]/g, '_')}_complete`;
  const cases = cmds.map((c) => `    ${c.name === '' ? '""' : singleQuoted(c.name)}) words=${singleQuoted(c.words.map((w) => w.word).join(' '))} ;;`).join('\n');
  // bash splits `--flag=value` into three words at '=' (COMP_WORDBREAKS): '=' and the value are skipped
  return `# bash completion for ${name}
# Load it in the current shell with: source <(${name} completion bash)
# or for every new shell: ${name} completion bash > /etc/bash_completion.d/${name}
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" i w words skip=0
  local valued=${singleQuoted(valuedFlags(cmds))}
  (( COMP_CWORD > 0 )) && prev="\${COMP_WORDS[COMP_CWORD-1]}"
  (( COMP_CWORD > 1 )) && [[ "$prev" == "=" ]] && prev="\${COMP_WORDS[COMP_CWORD-2]}"
  if [[ "$cur" == "=" ]]; then cur=""; prev="\${COMP_WORDS[COMP_CWORD-1]}"; fi
  # the value of a flag that takes one: a file name (complete -o default)
  if [[ "$valued" == *" $prev "* ]]; then COMPREPLY=(); return; fi
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if ((skip)); then skip=0; continue; fi
    case "$w" in
      =) skip=1 ;;
      -*) [[ "$valued" == *" $w "* && "\${COMP_WORDS[i+1]}" != "=" ]] && skip=1 ;;
      *) cmd="$w"; break ;;
    esac
  done
  case "$cmd" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F ${fn} ${name}
`;
}

function zsh(name: string, cmds: readonly CommandWords[]): string {
  // zsh runs the bash function through bashcompinit, which ships with zsh
  return `#compdef ${name}
# zsh completion for ${name}
# Load it in the current shell with: source <(${name} completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(name, cmds).split('\n').filter((l) => !l.startsWith('#')).join('\n')}`;
}

function fish(name: string, cmds: readonly CommandWords[], descriptions: boolean): string {
  const lines = [`# fish completion for ${name}`, `# Load it in the current shell with: ${name} completion fish | source`, `complete -c ${name} -f`];
  const subcommands = cmds.slice(1).map((c) => c.name);
  for (const c of cmds) {
    const when = c.name === '' ? `not __fish_seen_subcommand_from ${subcommands.join(' ')}` : `__fish_seen_subcommand_from ${c.name}`;
    for (const w of c.words) {
      const flag = w.word.startsWith('--') ? `-l ${w.word.slice(2)}` : w.word.startsWith('-') ? `-s ${w.word.slice(1)}` : undefined;
      // a flag's value is a file name (-r: it takes one; -F: files, though the command offers none)
      const what = flag ? `${flag}${w.takesValue ? ' -r -F' : ''}` : `-a ${singleQuoted(w.word)}`;
      lines.push(`complete -c ${name} -n ${singleQuoted(when)} ${what}${descriptions && w.description ? ` -d ${singleQuoted(firstLine(w.description))}` : ''}`);
    }
  }
  return lines.join('\n') + '\n';
}

function powershell(name: string, cmds: readonly CommandWords[], descriptions: boolean): string {
  const quoted = (s: string): string => `'${s.replace(/'/g, "''")}'`;
  const table = cmds
    .map((c) => `    ${quoted(c.name)} = @(${c.words.map((w) => `@(${quoted(w.word)}, ${quoted(descriptions && w.description ? firstLine(w.description) : w.word)})`).join(', ')})`)
    .join('\n');
  return `# powershell completion for ${name}
# Load it in the current shell with: ${name} completion powershell | Out-String | Invoke-Expression
Register-ArgumentCompleter -Native -CommandName '${name}' -ScriptBlock {
  param($wordToComplete, $commandAst, $cursorPosition)
  $words = @{
${table}
  }
  $cmd = ''
  foreach ($e in $commandAst.CommandElements | Select-Object -Skip 1) {
    $t = $e.ToString()
    if ($t -eq $wordToComplete) { break }
    if (-not $t.StartsWith('-')) { $cmd = $t; break }
  }
  foreach ($w in $words[$cmd]) {
    if ($w[0] -like "$wordToComplete*") {
      [System.Management.Automation.CompletionResult]::new($w[0], $w[0], 'ParameterValue', $w[1])
    }
  }
}
`;
}

/** The completion script for `shell`, for the commands and flags of `program`. */
export function completionScript(program: Command, shell: CompletionShell, descriptions = true): string {
  const name = program.name();
  const cmds = commandWords(program);
  switch (shell) {
    case 'bash':
      return bash(name, cmds);
    case 'zsh':
      return zsh(name, cmds);
    case 'fish':
      return fish(name, cmds, descriptions);
    case 'powershell':
      return powershell(name, cmds, descriptions);
  }
}
