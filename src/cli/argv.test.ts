import { describe, expect, it } from 'vitest';
import { pflagArgs } from './argv.js';
import { buildProgram } from './main.js';

const rewrite = (...args: string[]): string[] => pflagArgs(buildProgram(), args);

describe('pflagArgs: the command line as pflag reads it', () => {
  it('a boolean flag never takes the next word', () => {
    expect(rewrite('--log_as_json', 'proxy', 'router')).toEqual(['--log_as_json=true', 'proxy', 'router']);
    expect(rewrite('proxy', '--profiling', 'router', '--log_as_json')).toEqual(['proxy', '--profiling=true', 'router', '--log_as_json=true']);
    expect(rewrite('istio-iptables', '-n', '--dry-run', 'false')).toEqual(['istio-iptables', '--dry-run=true', '--dry-run=true', 'false']);
  });

  it('a boolean written with = keeps its value; a value flag takes the next word, whatever it looks like', () => {
    expect(rewrite('proxy', '--profiling=false', '--domain', '--odd')).toEqual(['proxy', '--profiling=false', '--domain', '--odd']);
    expect(rewrite('--log_target', 'stderr', 'wait', '--url', 'http://x')).toEqual(['--log_target', 'stderr', 'wait', '--url', 'http://x']);
  });

  it('a shorthand may carry its value after =, or right after the letter', () => {
    expect(rewrite('istio-iptables', '-p=15001', '-n=true', '-z15006', '-u', '1337')).toEqual(['istio-iptables', '--envoy-port=15001', '--dry-run=true', '--inbound-capture-port=15006', '-u', '1337']);
    expect(rewrite('version', '-o=json', '-s=false')).toEqual(['version', '--output=json', '--short=false']);
  });

  it('leaves unknown flags, operands and everything after -- as they are', () => {
    expect(rewrite('proxy', 'sidecar', '--future-flag', 'x', '-q')).toEqual(['proxy', 'sidecar', '--future-flag', 'x', '-q']);
    expect(rewrite('proxy', '--', '--profiling')).toEqual(['proxy', '--', '--profiling']);
  });

  it('flags of another subcommand are not in scope', () => {
    expect(rewrite('wait', '-n')).toEqual(['wait', '-n']);
  });
});
