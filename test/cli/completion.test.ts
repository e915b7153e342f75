// `pilot-agent completion <shell>` (cobra's command, which Istio's pilot-agent has): the printed
// scripts loaded into real bash, zsh and fish (Debian's), asked to complete as a user's Tab would.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.js';
import { agentBin, tempDir } from '../support/processes.js';

const work = tempDir('pa-completion-');
afterAll(() => work.cleanup());

function script(shell: string, ...flags: string[]): string {
  const r = spawnSync(process.execPath, [agentBin, 'completion', shell, ...flags], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const file = join(work.path, `${shell}${flags.join('')}.completion`);
  writeFileSync(file, r.stdout);
  return file;
}

function run(shell: string, code: string): string[] {
  const r = spawnSync(shell, ['-c', code], { encoding: 'utf8' });
  expect(r.status, `${shell}: ${r.stderr}`).toBe(0);
  return r.stdout.split('\n').filter(Boolean);
}

/** What bash's Tab offers after `words` (the last one being completed). */
function bashComplete(file: string, words: string[]): string[] {
  const array = words.map((w) => `'${w}'`).join(' ');
  return run('bash', `source '${file}'; COMP_WORDS=(${array}); COMP_CWORD=${words.length - 1}; __pilot_agent_complete; printf '%s\\n' "\${COMPREPLY[@]}"`);
}

describe('pilot-agent completion', () => {
  it('bash: subcommands, then the flags of the command typed, global flags anywhere', () => {
    const file = script('bash');
    expect(bashComplete(file, ['pilot-agent', 'pr'])).toEqual(['proxy']);
    expect(bashComplete(file, ['pilot-agent', 'proxy', '--conc'])).toEqual(['--concurrency']);
    expect(bashComplete(file, ['pilot-agent', '--log_as_json', 'istio-iptables', '--dry'])).toEqual(['--dry-run']);
    expect(bashComplete(file, ['pilot-agent', 'wait', '--log_out'])).toEqual(['--log_output_level']);
    expect(bashComplete(file, ['pilot-agent', 'completion', ''])).toEqual(expect.arrayContaining(['bash', 'zsh', 'fish', 'powershell']));
    // a global flag's value is not the command, whether given as `--flag value` or `--flag=value` (bash splits at '=')
    expect(bashComplete(file, ['pilot-agent', '--log_output_level', 'debug', 'pro'])).toEqual(['proxy']);
    expect(bashComplete(file, ['pilot-agent', '--log_output_level', '=', 'debug', 'pro'])).toEqual(['proxy']);
    // a flag's value is left to bash's file name completion (nothing offered: `complete -o default`)
    expect(bashComplete(file, ['pilot-agent', 'proxy', '--meshConfig', ''])).toEqual([]);
    expect(bashComplete(file, ['pilot-agent', 'proxy', '--meshConfig', '=', ''])).toEqual([]);
    // every command of the CLI is offered at the top
    const top = bashComplete(file, ['pilot-agent', '']);
    for (const c of buildProgram().commands) expect(top).toContain(c.name());
  });

  it('zsh (through bashcompinit): the words of the command typed, which zsh then matches', () => {
    const file = script('zsh');
    const words = run('zsh', `autoload -U compinit && compinit -u; source '${file}'; setopt ksharrays; COMP_WORDS=(pilot-agent proxy --conc); COMP_CWORD=2; __pilot_agent_complete; print -l -- "\${COMPREPLY[@]}"`);
    expect(words).toContain('--concurrency');
    expect(words).not.toContain('--dry-run');
  });

  it('fish: with descriptions, and without them on --no-descriptions', () => {
    expect(run('fish', `source '${script('fish')}'; complete -C 'pilot-agent pr'`)).toEqual(['proxy\tXDS proxy agent']);
    expect(run('fish', `source '${script('fish', '--no-descriptions')}'; complete -C 'pilot-agent proxy --conc'`)).toEqual(['--concurrency']);
    // a flag's value: file names
    writeFileSync(join(work.path, 'mesh.yaml'), '');
    expect(run('fish', `cd '${work.path}'; source '${script('fish')}'; complete -C 'pilot-agent proxy --meshConfig me'`)).toEqual(['mesh.yaml']);
  });

  it('powershell: a native argument completer naming every command', () => {
    const text = spawnSync(process.execPath, [agentBin, 'completion', 'powershell'], { encoding: 'utf8' }).stdout;
    expect(text).toContain("Register-ArgumentCompleter -Native -CommandName 'pilot-agent'");
    for (const c of buildProgram().commands) expect(text).toContain(`'${c.name()}' = @(`);
  });

  it('without a shell prints its help and succeeds, as cobra does; an unknown shell fails', () => {
    const help = spawnSync(process.execPath, [agentBin, 'completion'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout + help.stderr).toContain('Generate the autocompletion script for bash');
    expect(spawnSync(process.execPath, [agentBin, 'completion', 'tcsh'], { encoding: 'utf8' }).status).not.toBe(0);
  });
});
