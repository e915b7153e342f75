// DNS messages on the wire, through the `dns-packet` library: parsing client queries (with miekg/dns'
// acceptance rules, which Istio's proxy inherits), assembling table answers, and adjusting
// upstream responses without re-encoding them.
//
// Upstream responses keep their bytes: the ID is restored, an OPT record the agent added is
// removed, and UDP answers are cut to the client's size at a record boundary (records are only
// dropped from the end, so the upstream's name compression stays valid: pointers always point
// backwards). Istio instead re-packs the parsed message, uncompressed whenever it fits.

import dnsPacket from 'dns-packet';

/** The parts of dns-packet's API that its type definitions leave out. */
interface SubCodec<T> {
  decode(buf: Buffer, offset?: number): T;
  encode(value: T, buf?: Buffer, offset?: number): Buffer;
  encodingLength(value: T): number;
  bytes: number;
}
interface DecodedRecord {
  name: string;
  type: string;
  udpPayloadSize?: number;
}
interface PacketCodecs {
    readonly answer: { decode: SubCodec<DecodedRecord>['decode'] & { bytes: number }; encode: (rr: unknown) => Buffer };
  readonly question: { decode: ((buf: Buffer, offset?: number) => { name: string }) & { bytes: number } };
}
const codecs = dnsPacket as unknown as PacketCodecs;

export const HEADER_BYTES = 12;
/** Largest UDP answer without EDNS (RFC 1035), and the floor for EDNS sizes (RFC 6891). */
export const MIN_UDP_SIZE = 512;
/** Largest message over TCP. */
export const MAX_MSG_SIZE = 65535;
/** The EDNS UDP size the agent advertises, and asks upstreams for (DNS flag day 2020). */
export const AGENT_EDNS_SIZE = 1232;

export const QTYPE = { A: 1, CNAME: 5, OPT: 41, AAAA: 28 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;
const OPCODE_MASK = 0x7800;
const OPCODE_QUERY = 0;
const OPCODE_NOTIFY = 4;

/** A client query that passed the acceptance checks. */
export interface Query {
  readonly raw: Buffer;
  readonly id: number;
  readonly flags: number;
  /** The question name as sent (no trailing dot; "." for the root). */
  readonly name: string;
  /** Lower-cased fully qualified name, with the trailing dot: the lookup key. */
  readonly fqdn: string;
  readonly qtype: number;
  readonly qclass: number;
  /** End of the question section: raw[12, questionEnd) is echoed in answers. */
  readonly questionEnd: number;
  /** The client's EDNS UDP size, or undefined without an OPT record. */
  readonly ednsSize: number | undefined;
  /**
   * A label holds a byte miekg/dns writes escaped (a dot inside a label, a space, a non-ASCII
   * byte...): Istio's lookup key is that escaped text, which no table name is, so such a name is
   * forwarded. The decoded name cannot tell `a\.b` from `a.b`.
   */
  readonly escaped: boolean;
  readonly arcount: number;
}

export type ParseOutcome =
  | { readonly kind: 'query'; readonly query: Query }
  /** Answer with this header-only error response (FORMERR, NOTIMP). */
  | { readonly kind: 'reject'; readonly response: Buffer }
  /** Send nothing: not a DNS message, or a response (answering could amplify or loop). */
  | { readonly kind: 'ignore' };

/** A header-only reply echoing the ID and opcode, as miekg/dns answers messages it rejects. */
function headerReply(msg: Buffer, rcode: number, keepOpcode: boolean): Buffer {
  const out = Buffer.alloc(HEADER_BYTES);
  out.writeUInt16BE(msg.readUInt16BE(0), 0);
  const flags = msg.readUInt16BE(2);
  out.writeUInt16BE(QR | (keepOpcode ? flags & OPCODE_MASK : 0) | (flags & RD) | (flags & CD) | rcode, 2);
  return out;
}

/**
 * miekg/dns' default acceptance: responses are ignored; opcodes other than QUERY/NOTIFY get
 * NOTIMP; anything but one question, at most one answer/authority record and two additional
 * records gets FORMERR, as does a message that does not decode. Shorter than a header: no reply.
 */
export function parseQuery(msg: Buffer): ParseOutcome {
  if (msg.length < HEADER_BYTES) return { kind: 'ignore' };
  const flags = msg.readUInt16BE(2);
  if (flags & QR) return { kind: 'ignore' };
  const opcode = (flags & OPCODE_MASK) >> 11;
  if (opcode !== OPCODE_QUERY && opcode !== OPCODE_NOTIFY) return { kind: 'reject', response: headerReply(msg, RCODE.NOTIMP, true) };
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  const nscount = msg.readUInt16BE(8);
  const arcount = msg.readUInt16BE(10);
  if (qdcount !== 1 || ancount > 1 || nscount > 1 || arcount > 2) return { kind: 'reject', response: headerReply(msg, RCODE.FORMERR, false) };
  try {
    const question = codecs.question.decode(msg, HEADER_BYTES);
    const questionEnd = HEADER_BYTES + codecs.question.decode.bytes;
    if (questionEnd > msg.length) throw new RangeError('question past the end');
    const qtype = msg.readUInt16BE(questionEnd - 4);
    const qclass = msg.readUInt16BE(questionEnd - 2);
    let off = questionEnd;
    let ednsSize: number | undefined;
    const records = ancount + nscount + arcount;
    for (let i = 0; i < records; i++) {
      const rr = codecs.answer.decode(msg, off);
      off += codecs.answer.decode.bytes;
      if (off > msg.length) throw new RangeError('record past the end');
      if (rr.type === 'OPT' && i >= ancount + nscount) ednsSize = rr.udpPayloadSize ?? 0;
    }
    const name = question.name;
    const fqdn = name === '.' ? '.' : `${name.toLowerCase()}.`;
    const escaped = hasEscapedByte(msg, HEADER_BYTES, questionEnd - 4);
    return { kind: 'query', query: { raw: msg, id: msg.readUInt16BE(0), flags, name, fqdn, qtype, qclass, questionEnd, ednsSize, arcount, escaped } };
  } catch {
    return { kind: 'reject', response: headerReply(msg, RCODE.FORMERR, false) };
  }
}

/** miekg/dns's escapeLabel set: what it writes as \X or \DDD in a name's text form. */
function escapedByte(b: number): boolean {
  return b < 0x21 || b > 0x7e || b === 0x2e || b === 0x22 || b === 0x28 || b === 0x29 || b === 0x3b || b === 0x40 || b === 0x5c || b === 0x27;
}

/** Whether the uncompressed labels in msg[start, end) hold a byte miekg escapes. */
function hasEscapedByte(msg: Buffer, start: number, end: number): boolean {
  let off = start;
  while (off < end) {
    const len = msg[off]!;
    if (len === 0 || len >= 0xc0) return false; // the end, or a pointer (nothing precedes a query's question)
    for (let i = off + 1; i <= off + len && i < end; i++) if (escapedByte(msg[i]!)) return true;
    off += len + 1;
  }
  return false;
}

/**
 * Key for the answer cache: set only for the plainest query (one question and nothing else, no
 * EDNS, opcode QUERY), whose whole answer follows from its question bytes and its RD/CD bits.
 * Case is kept: the answer echoes the question as sent.
 */
export function answerCacheKey(msg: Buffer): string | undefined {
  if (msg.length <= HEADER_BYTES + 4 || msg.readUInt32BE(4) !== 0x00010000 || msg.readUInt32BE(8) !== 0) return undefined;
  const flags = msg.readUInt16BE(2);
  if (flags & (QR | OPCODE_MASK)) return undefined;
  return String.fromCharCode(flags & (RD | CD)) + msg.toString('latin1', HEADER_BYTES);
}

/** Whether a parsed query's answer may be cached under answerCacheKey (it was all question). */
export function cacheable(q: Query): boolean {
  return q.questionEnd === q.raw.length && q.ednsSize === undefined && q.arcount === 0 && (q.flags & OPCODE_MASK) === 0;
}

/** A cached answer for a new query: the same bytes with the query's ID. */
export function withId(answer: Buffer, query: Buffer): Buffer {
  const out = Buffer.from(answer);
  out[0] = query[0]!;
  out[1] = query[1]!;
  return out;
}

/** Size limit for an answer: the EDNS size on UDP (at least 512), 64 KiB on TCP (miekg's `size`). */
export function answerSizeLimit(q: Query, protocol: 'udp' | 'tcp'): number {
  if (protocol === 'tcp') return MAX_MSG_SIZE;
  const size = q.ednsSize ?? 0;
  return size < MIN_UDP_SIZE ? MIN_UDP_SIZE : size;
}

/** An OPT record advertising `size` (root owner, no options). */
export function optRecord(size: number): Buffer {
  return codecs.answer.encode({ name: '.', type: 'OPT', udpPayloadSize: size, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] });
}

const AGENT_OPT = optRecord(AGENT_EDNS_SIZE);

/** The part of a resource record after its owner name: type, class, TTL, RDLENGTH, RDATA. */
export function recordTail(rr: { type: 'A' | 'AAAA' | 'CNAME'; ttl: number; data: string }): Buffer {
  return codecs.answer.encode({ name: '.', class: 'IN', ...rr }).subarray(1);
}

function replyFlags(q: Query, rcode: number, authoritative: boolean): number {
  const rd = q.flags & RD;
  // RA: the agent answers recursive queries (it forwards what it does not know). Istio's
  // miekg-based replies leave RA clear, which makes dig warn "recursion requested but not available".
  return QR | (q.flags & OPCODE_MASK) | (authoritative ? AA : 0) | rd | (rd ? RA : 0) | (q.flags & CD) | rcode;
}

/** The reply header plus the question, echoed as the client sent it. */
function replyPrefix(q: Query, flags: number, ancount: number, arcount: number): Buffer {
  const prefix = Buffer.allocUnsafe(q.questionEnd);
  prefix.writeUInt16BE(q.id, 0);
  prefix.writeUInt16BE(flags, 2);
  prefix.writeUInt16BE(1, 4);
  prefix.writeUInt16BE(ancount, 6);
  prefix.writeUInt16BE(0, 8);
  prefix.writeUInt16BE(arcount, 10);
  q.raw.copy(prefix, HEADER_BYTES, HEADER_BYTES, q.questionEnd);
  return prefix;
}

/** A reply without records: SERVFAIL before the table arrives or when every upstream failed. */
export function emptyReply(q: Query, rcode: number, authoritative = false): Buffer {
  const withOpt = q.ednsSize !== undefined;
  const prefix = replyPrefix(q, replyFlags(q, rcode, authoritative), 0, withOpt ? 1 : 0);
  return withOpt ? Buffer.concat([prefix, AGENT_OPT]) : prefix;
}

/** A name-table answer: an optional CNAME from the question to a target, then address records. */
export interface TableAnswer {
  /** Record tail (type..RDATA) of the CNAME whose owner is the question. */
  readonly cname?: Buffer;
  /** Record tails of the address records; their owner is the question, or the CNAME target. */
  readonly addresses: readonly Buffer[];
}

const pointer = (offset: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(0xc000 | offset, 0);
  return b;
};
const QUESTION_POINTER = pointer(HEADER_BYTES);
/** From a record's owner to its RDATA: 2-byte owner pointer, type, class, TTL, RDLENGTH. */
const OWNER_POINTER_TO_RDATA = 12;

/**
 * Assembles an authoritative NOERROR answer. Owner names are compression pointers, to the
 * question name or to the CNAME target, as miekg's compressed packing produces. Records that do
 * not fit in `limit` are left out and TC is set (miekg's Truncate).
 */
export function tableReply(q: Query, answer: TableAnswer, limit: number): Buffer {
  const optLen = q.ednsSize !== undefined ? AGENT_OPT.length : 0;
  const parts: Buffer[] = [];
  let used = q.questionEnd + optLen;
  let count = 0;
  let addressOwner = QUESTION_POINTER;
  const total = (answer.cname ? 1 : 0) + answer.addresses.length;
  if (answer.cname) {
    const len = 2 + answer.cname.length;
    if (used + len <= limit) {
      parts.push(QUESTION_POINTER, answer.cname);
      addressOwner = pointer(q.questionEnd + OWNER_POINTER_TO_RDATA);
      used += len;
      count++;
    }
  }
  if (count > 0 || !answer.cname) {
    for (const tail of answer.addresses) {
      const len = 2 + tail.length;
      if (used + len > limit) break;
      parts.push(addressOwner, tail);
      used += len;
      count++;
    }
  }
  const flags = replyFlags(q, RCODE.NOERROR, true) | (count < total ? TC : 0);
  const prefix = replyPrefix(q, flags, count, optLen ? 1 : 0);
  if (optLen) parts.push(AGENT_OPT);
  return Buffer.concat([prefix, ...parts], used);
}

/** The query sent upstream: a fresh ID; on UDP, an OPT record when the client sent none. */
export function upstreamQuery(q: Query, id: number, protocol: 'udp' | 'tcp', withoutOpt = false): { bytes: Buffer; addedOpt: boolean } {
  // Only when the additional section is empty: appending after a TSIG record would break it.
  const addOpt = !withoutOpt && protocol === 'udp' && q.ednsSize === undefined && q.arcount === 0;
  const bytes = addOpt ? Buffer.concat([q.raw, AGENT_OPT]) : Buffer.from(q.raw);
  bytes.writeUInt16BE(id, 0);
  if (addOpt) bytes.writeUInt16BE(1, 10);
  return { bytes, addedOpt: addOpt };
}

interface RecordSpan {
  readonly start: number;
  readonly end: number;
  readonly section: 0 | 1 | 2;
  readonly opt: boolean;
}

/** Splits a message into its records (offsets only); throws if it does not decode. */
function recordSpans(msg: Buffer): { questionEnd: number; spans: RecordSpan[] } {
  if (msg.length < HEADER_BYTES) throw new RangeError('shorter than a DNS header');
  const qd = msg.readUInt16BE(4);
  const counts = [msg.readUInt16BE(6), msg.readUInt16BE(8), msg.readUInt16BE(10)] as const;
  let off = HEADER_BYTES;
  for (let i = 0; i < qd; i++) {
    codecs.question.decode(msg, off);
    off += codecs.question.decode.bytes;
  }
  if (off > msg.length) throw new RangeError('question past the end');
  const questionEnd = off;
  const spans: RecordSpan[] = [];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s as 0 | 1 | 2]; i++) {
      const rr = codecs.answer.decode(msg, off);
      const end = off + codecs.answer.decode.bytes;
      if (end > msg.length) throw new RangeError('record past the end');
      spans.push({ start: off, end, section: s as 0 | 1 | 2, opt: rr.type === 'OPT' });
      off = end;
    }
  }
  return { questionEnd, spans };
}

/** RCODE of a message (header bits only). */
export function rcodeOf(msg: Buffer): number {
  return msg.length >= HEADER_BYTES ? msg.readUInt16BE(2) & 0xf : -1;
}

/** Checks that an upstream message answers this query: a response, same ID and question. */
export function matchesQuery(msg: Buffer, id: number, q: Query): boolean {
  if (msg.length < HEADER_BYTES || msg.readUInt16BE(0) !== id || !(msg.readUInt16BE(2) & QR)) return false;
  if (msg.readUInt16BE(4) !== 1) return msg.readUInt16BE(4) === 0; // some servers omit the question on errors
  try {
    const question = codecs.question.decode(msg, HEADER_BYTES);
    const end = HEADER_BYTES + codecs.question.decode.bytes;
    if (end > msg.length) return false;
    return question.name.toLowerCase() === q.name.toLowerCase() && msg.readUInt16BE(end - 4) === q.qtype && msg.readUInt16BE(end - 2) === q.qclass;
  } catch {
    return false;
  }
}

/**
 * An upstream response made ready for the client: the client's ID, no OPT if the client sent none
 * (the agent added it), and at most `limit` bytes, cutting whole records from the end and setting
 * TC (miekg's Truncate, which keeps the OPT record). Throws if the response does not decode.
 */
export function adaptUpstreamResponse(msg: Buffer, clientId: number, stripOpt: boolean, limit: number): Buffer {
  const { questionEnd, spans } = recordSpans(msg);
  const optIdx = spans.findIndex((s) => s.opt);
  const opt = optIdx >= 0 ? spans[optIdx]! : undefined;
  const optLast = opt === undefined || optIdx === spans.length - 1;
  if (!optLast) return adaptByReencoding(msg, clientId, stripOpt, limit);
  const body = opt ? spans.slice(0, -1) : spans;
  const keepOpt = opt !== undefined && !stripOpt;
  const optBytes = keepOpt ? msg.subarray(opt.start, opt.end) : undefined;
  const bodyEnd = body.length ? body[body.length - 1]!.end : questionEnd;
  let kept = body.length;
  const budget = limit - (optBytes?.length ?? 0);
  if (bodyEnd > budget) {
    kept = 0;
    while (kept < body.length && body[kept]!.end <= budget) kept++;
  }
  const keptEnd = kept ? body[kept - 1]!.end : questionEnd;
  if (kept === body.length && !opt) {
    const out = Buffer.from(msg.subarray(0, keptEnd));
    out.writeUInt16BE(clientId, 0);
    return out;
  }
  const counts = [0, 0, 0];
  for (let i = 0; i < kept; i++) counts[body[i]!.section]!++;
  if (keepOpt) counts[2]!++;
  const out = Buffer.allocUnsafe(keptEnd + (optBytes?.length ?? 0));
  msg.copy(out, 0, 0, keptEnd);
  if (optBytes) optBytes.copy(out, keptEnd);
  out.writeUInt16BE(clientId, 0);
  if (kept < body.length) out.writeUInt16BE(out.readUInt16BE(2) | TC, 2);
  out.writeUInt16BE(counts[0]!, 6);
  out.writeUInt16BE(counts[1]!, 8);
  out.writeUInt16BE(counts[2]!, 10);
  return out;
}

/** Rare path (OPT not the last record): decode and re-encode with dns-packet, OPT last. */
function adaptByReencoding(msg: Buffer, clientId: number, stripOpt: boolean, limit: number): Buffer {
  const pkt = dnsPacket.decode(msg);
  const additionals = pkt.additionals ?? [];
  const opt = additionals.find((r) => r.type === 'OPT');
  pkt.additionals = [...additionals.filter((r) => r.type !== 'OPT'), ...(opt && !stripOpt ? [opt] : [])];
  pkt.id = clientId;
  const reencoded = dnsPacket.encode(pkt);
  return adaptUpstreamResponse(reencoded, clientId, false, limit);
}
