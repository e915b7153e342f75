// The last-known-good xDS store and its per-stream halves: what is saved (only what the client
// ACKed), what is served (only a whole, untampered file written for this node), the size bound,
// Delta merging, and no spool left behind.

import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import protobuf from 'protobufjs/minimal.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LastKnownGood, LkgSpool, withNonce } from '../../src/xds/last-known-good.js';
import { AckRecorder, CacheResponder } from '../../src/xds/lkg-session.js';
import { configureLogging } from '../../src/util/logger.js';
import { summarizeDeltaRequest, summarizeDeltaResponse, summarizeSotwRequest, summarizeSotwResponse, deltaResources, encodeDeltaRequest, encodeSotwRequest } from '../../src/xds/wire.js';

const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
const NODE = 'sidecar~10.0.0.1~a.default~default.svc.cluster.local';
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pa-lkg-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function sotwResponse(version: string, names: string[], nonce = 'n1'): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(version);
  for (const n of names) w.uint32((2 << 3) | 2).fork().uint32((1 << 3) | 2).string(CDS).uint32((2 << 3) | 2).fork().uint32((1 << 3) | 2).string(n).ldelim().ldelim();
  w.uint32((4 << 3) | 2).string(CDS);
  w.uint32((5 << 3) | 2).string(nonce);
  return Buffer.from(w.finish());
}

function deltaResponse(version: string, add: string[], remove: string[] = [], typeUrl = CDS): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).string(version);
  for (const n of add) {
    w.uint32((2 << 3) | 2).fork();
    w.uint32((1 << 3) | 2).string(`${n}@${version}`); // resource version
    w.uint32((2 << 3) | 2).fork().uint32((1 << 3) | 2).string(typeUrl).uint32((2 << 3) | 2).fork().uint32((1 << 3) | 2).string(n).ldelim().ldelim();
    w.uint32((3 << 3) | 2).string(n);
    w.ldelim();
  }
  w.uint32((4 << 3) | 2).string(typeUrl);
  w.uint32((5 << 3) | 2).string('nonce-x');
  for (const n of remove) w.uint32((6 << 3) | 2).string(n);
  return Buffer.from(w.finish());
}

const store = (over: Partial<{ nodeId: string; maxBytes: number }> = {}): LastKnownGood => new LastKnownGood({ dir, nodeId: NODE, maxBytes: 1024 * 1024, ...over });

describe('LastKnownGood store', () => {
  it('saves and loads a SotW response; serving gives it a fresh nonce', () => {
    const s = store();
    s.saveSotw(CDS, 'v1', sotwResponse('v1', ['a', 'b']));
    const entry = store().load('sotw').get(CDS)!;
    expect(entry.version).toBe('v1');
    const served = summarizeSotwResponse(withNonce(entry.payload, 'lkg-7'));
    expect(served).toMatchObject({ typeUrl: CDS, version: 'v1', nonce: 'lkg-7', resourceCount: 2 });
    const file = join(s.directory, readdirSync(s.directory)[0]!);
    expect(readFileSync(file).subarray(0, 200).toString()).toContain(NODE);
  });

  it('never serves a file written for another node, a truncated or altered one, or garbage', () => {
    const other = store({ nodeId: 'sidecar~10.0.0.9~b.default~default.svc.cluster.local' });
    other.saveSotw(CDS, 'v1', sotwResponse('v1', ['a']));
    const mine = store();
    // another pod's file copied under this node's directory (name and all)
    mkdirSync(mine.directory, { recursive: true });
    cpSync(other.directory, mine.directory, { recursive: true });
    expect(mine.load('sotw').size).toBe(0);

    rmSync(mine.directory, { recursive: true });
    mine.saveSotw(CDS, 'v1', sotwResponse('v1', ['a', 'b', 'c']));
    const file = join(mine.directory, readdirSync(mine.directory)[0]!);
    const whole = readFileSync(file);
    writeFileSync(file, whole.subarray(0, whole.length - 3)); // truncated
    expect(store().load('sotw').size).toBe(0);
    const altered = Buffer.from(whole);
    altered[altered.length - 1] ^= 0xff; // same length, other bytes
    writeFileSync(file, altered);
    expect(store().load('sotw').size).toBe(0);
    writeFileSync(file, 'not a store file');
    expect(store().load('sotw').size).toBe(0);
    // JSON headers that are not headers: loading them threw, and the agent exited at every start
    for (const header of ['null', '42', '"text"', '{}', JSON.stringify({ ...JSON.parse(whole.subarray(0, whole.indexOf(0x0a)).toString()), typeUrl: 7 })]) {
      writeFileSync(file, `${header}\npayload`);
      expect(store().load('sotw').size, header).toBe(0);
    }
    // larger than the whole store's bound: refused before it is read
    writeFileSync(file, whole);
    expect(store({ maxBytes: whole.length - 1 }).load('sotw').size).toBe(0);
    writeFileSync(file, whole);
    expect(store().load('sotw').get(CDS)?.version).toBe('v1');
  });

  it('keeps within its size bound: a write that would exceed it is skipped, the previous state kept', () => {
    const s = store({ maxBytes: 1000 });
    s.saveSotw(CDS, 'v1', sotwResponse('v1', ['a']));
    s.saveSotw(CDS, 'v2', sotwResponse('v2', Array.from({ length: 50 }, (_, i) => `cluster-${i}`)));
    expect(store().load('sotw').get(CDS)?.version).toBe('v1');
  });

  it('Delta: merges ACKed responses into the held state (adds, updates, removals); a named subscription gets its names', () => {
    const s = store();
    s.applyDelta(CDS, deltaResponse('1', ['a', 'b']));
    s.applyDelta(CDS, deltaResponse('2', ['c', 'b'], ['a']));
    const entry = store().load('delta').get(CDS)!;
    expect(entry.version).toBe('2');
    const held = deltaResources(entry.payload);
    expect(held.map((r) => `${r.name}=${r.version}`).sort()).toEqual(['b=b@2', 'c=c@2']);
    // a new store object (a restarted agent) continues from the file
    store().applyDelta(CDS, deltaResponse('3', ['d']));
    expect(deltaResources(store().load('delta').get(CDS)!.payload).map((r) => r.name).sort()).toEqual(['b', 'c', 'd']);
  });
});

describe('spools', () => {
  it('a spool that cannot be created (no room, or the directory replaced by a file) loses the save, never the push', () => {
    const s = store();
    mkdirSync(dir, { recursive: true });
    writeFileSync(s.directory, 'a file where the store directory goes');
    const spool = new LkgSpool(s.directory, 'x');
    spool.append(Buffer.from('bytes of a push'));
    expect(spool.take()).toBeUndefined();
    spool.discard();
  });

  it('spools a killed agent left behind are removed when the store opens', () => {
    const s = store();
    mkdirSync(s.directory, { recursive: true });
    writeFileSync(join(s.directory, '.spool-1-1-1.tmp'), Buffer.alloc(1000));
    s.saveSotw(CDS, 'v1', sotwResponse('v1', ['a']));
    store();
    expect(readdirSync(s.directory).filter((f) => f.startsWith('.spool-'))).toEqual([]);
    expect(store().load('sotw').get(CDS)?.version).toBe('v1');
  });
});

describe('failed saves', () => {
  it('are logged when saving a type starts failing and when it works again, not at every push', () => {
    const lines: string[] = [];
    configureLogging({ write: (l) => void lines.push(l) });
    try {
      const s = store();
      s.saveSotw(CDS, 'v1', sotwResponse('v1', ['a']));
      const file = join(s.directory, readdirSync(s.directory)[0]!);
      rmSync(file);
      mkdirSync(join(file, 'x'), { recursive: true }); // the file's place taken by a directory: each save fails
      for (const v of ['v2', 'v3', 'v4']) s.saveSotw(CDS, v, sotwResponse(v, ['a']));
      expect(lines.filter((l) => l.includes(`cannot save ${CDS}`))).toHaveLength(1);
      expect(lines.find((l) => l.includes(`cannot save ${CDS}`))).toContain('the store keeps its previous version until a save works');
      rmSync(file, { recursive: true });
      s.saveSotw(CDS, 'v5', sotwResponse('v5', ['a']));
      expect(lines.filter((l) => l.includes(`${CDS} is saved again`))).toHaveLength(1);
      expect(store().load('sotw').get(CDS)?.version).toBe('v5');
    } finally {
      configureLogging({ write: (line) => process.stdout.write(line) });
    }
  });
});

describe('AckRecorder', () => {
  it('saves only what the client ACKs: not a NACKed response, not one superseded before its ACK, and leaves no spool', () => {
    const s = store();
    const rec = new AckRecorder(s, 'sotw', 1);
    rec.sent(CDS, 'n1', 'v1', { bytes: sotwResponse('v1', ['a'], 'n1') });
    rec.request(summarizeSotwRequest(encodeSotwRequest({ typeUrl: CDS, responseNonce: 'n1', versionInfo: '', error: { code: 13, message: 'bad' } })));
    expect(s.load('sotw').size).toBe(0);
    const spool = rec.spool();
    spool.append(sotwResponse('v2', ['b'], 'n2'));
    rec.sent(CDS, 'n2', 'v2', { spool });
    rec.sent(CDS, 'n3', 'v3', { bytes: sotwResponse('v3', ['c'], 'n3') }); // supersedes v2 unACKed
    rec.request(summarizeSotwRequest(encodeSotwRequest({ typeUrl: CDS, responseNonce: 'n2', versionInfo: 'v2' })));
    expect(s.load('sotw').size).toBe(0);
    rec.request(summarizeSotwRequest(encodeSotwRequest({ typeUrl: CDS, responseNonce: 'n3', versionInfo: 'v3' })));
    expect(s.load('sotw').get(CDS)?.version).toBe('v3');
    const spool2 = rec.spool();
    spool2.append(sotwResponse('v4', ['d'], 'n4'));
    rec.sent(CDS, 'n4', 'v4', { spool: spool2 });
    rec.request(summarizeSotwRequest(encodeSotwRequest({ typeUrl: CDS, responseNonce: 'n4', versionInfo: 'v4' })));
    expect(s.load('sotw').get(CDS)?.version).toBe('v4');
    rec.close();
    expect(readdirSync(s.directory).filter((f) => f.includes('spool'))).toEqual([]);
  });
});

describe('CacheResponder', () => {
  it('SotW: answers each subscription once with a fresh nonce, not the ACKs of its answers', () => {
    const s = store();
    s.saveSotw(CDS, 'v1', sotwResponse('v1', ['a']));
    const r = new CacheResponder(s.load('sotw'), 'sotw');
    const sub = encodeSotwRequest({ typeUrl: CDS, responseNonce: '' });
    const [a] = r.answer(summarizeSotwRequest(sub), sub);
    expect(summarizeSotwResponse(a!.message).nonce).toBe(a!.nonce);
    const ack = encodeSotwRequest({ typeUrl: CDS, responseNonce: a!.nonce, versionInfo: 'v1' });
    expect(r.answer(summarizeSotwRequest(ack), ack)).toEqual([]);
    const other = encodeSotwRequest({ typeUrl: EDS, responseNonce: '' });
    expect(r.answer(summarizeSotwRequest(other), other)).toEqual([]); // nothing saved for it
  });

  it('Delta: a named subscription gets only its names; an ACK gets nothing', () => {
    const s = store();
    s.applyDelta(EDS, deltaResponse('1', ['x', 'y', 'z'], [], EDS));
    const r = new CacheResponder(s.load('delta'), 'delta');
    const sub = encodeDeltaRequest({ typeUrl: EDS, responseNonce: '', subscribe: ['y'] });
    const [a] = r.answer(summarizeDeltaRequest(sub), sub);
    expect(deltaResources(a!.message).map((x) => x.name)).toEqual(['y']);
    expect(summarizeDeltaResponse(a!.message).nonce).toBe(a!.nonce);
    const ack = encodeDeltaRequest({ typeUrl: EDS, responseNonce: a!.nonce });
    expect(r.answer(summarizeDeltaRequest(ack), ack)).toEqual([]);
  });
});
