import { afterEach, describe, expect, it } from 'vitest';
import { configureLogging, logger, parseOutputLevels } from './logger.js';

const lines: string[] = [];
afterEach(() => {
  lines.length = 0;
  configureLogging({ outputLevels: new Map([['default', 'info']]), asJson: false, write: (l) => process.stdout.write(l) });
});

describe('logger', () => {
  it("writes Istio's tab-separated line, omitting the default scope", () => {
    configureLogging({ outputLevels: parseOutputLevels('default:info'), asJson: false, write: (l) => lines.push(l) });
    logger().info('hello');
    logger('ads').warn('slow', { type: 'cds' });
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\tinfo\thello\n$/);
    expect(lines[1]).toMatch(/\twarn\tads\tslow\ttype=cds\n$/);
  });

  it("takes Istio's `all` scope as every scope, in order with the others", () => {
    configureLogging({ outputLevels: parseOutputLevels('xdsproxy:error,all:debug,ads:warn'), asJson: false, write: (l) => lines.push(l) });
    logger('xdsproxy').debug('a');
    logger('sds').debug('b');
    logger().debug('c');
    logger('ads').info('dropped');
    expect(lines.map((l) => l.trim().split('\t').pop())).toEqual(['a', 'b', 'c']);
    expect(parseOutputLevels('all:warn')).toEqual(new Map([['*', 'warn'], ['default', 'warn']]));
    // Istio's order: all first, then default on its own
    lines.length = 0;
    configureLogging({ outputLevels: parseOutputLevels('all:debug,default:info'), asJson: false, write: (l) => void lines.push(l) });
    logger('xdsproxy').debug('d');
    logger().debug('dropped');
    logger().info('i');
    expect(lines.map((l) => l.trim().split('\t').pop())).toEqual(['d', 'i']);
  });

  it("keeps each scope's own level, as Istio: default:warn quiets the default scope only", () => {
    configureLogging({ outputLevels: parseOutputLevels('default:warn'), asJson: false, write: (l) => void lines.push(l) });
    logger().info('dropped');
    logger('xdsproxy').info('kept');
    logger('xdsproxy').debug('dropped too');
    expect(lines.map((l) => l.trim().split('\t').pop())).toEqual(['kept']);
  });

  it('honours per-scope levels and JSON output', () => {
    configureLogging({ outputLevels: parseOutputLevels('ads:debug,default:warn'), asJson: true, write: (l) => lines.push(l) });
    logger().info('dropped');
    logger('ads').debug('kept');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'debug', scope: 'ads', msg: 'kept' });
  });

  it('rejects an unknown level naming it', () => {
    expect(() => parseOutputLevels('ads:loud')).toThrow(/invalid level "loud" for scope "ads"/);
  });
});
