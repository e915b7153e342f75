// Reads what the proxy needs from a DiscoveryResponse or DeltaDiscoveryResponse while its bytes
// stream past, without assembling it: the version, type URL and nonce (small top-level fields,
// kept), the number of resources, and the type URL of the first resource (from its first few
// bytes). The top-level type URL comes after the resources on the wire (field 4 after field 2), so
// it is known only at the end; the first resource's own type tells the proxy early whether a
// large push can be streamed on or must be held for the agent (see xds-proxy.ts).
//
// Both messages share the field numbers used here: 1 version (system_version_info in Delta),
// 2 resources, 4 type_url, 5 nonce. SotW resources are Any (type_url = 1); Delta resources are
// Resource, whose field 2 is the Any.

import { XdsField, type ResponseSummary } from './wire.js';

const F_VERSION = XdsField.DiscoveryResponse.version_info; // DeltaDiscoveryResponse.system_version_info
const F_RESOURCES = XdsField.DiscoveryResponse.resources;
const F_TYPE_URL = XdsField.DiscoveryResponse.type_url;
const F_NONCE = XdsField.DiscoveryResponse.nonce;
/** The one-byte tag of a resource (field 2, length-delimited). */
const RESOURCES_TAG = (F_RESOURCES << 3) | 2;
/** Enough of the first resource to find its type URL, which an encoder writes first. */
const FIRST_RESOURCE_PREFIX_BYTES = 4096;
/** Cap on one kept string field: a larger "type URL" or nonce is malformed. */
const MAX_KEPT_FIELD_BYTES = 64 * 1024;

const enum State {
  Tag,
  Length,
  SkipVarint,
  Skip,
  Keep,
}

const utf8 = new TextDecoder();

export class ResponseScanner {
  private state = State.Tag;
  private varint = 0;
  private varintScale = 1;
  private varintBytes = 0;
  private field = 0;
  private remaining = 0;
  private kept: Buffer[] = [];
  private keptBytes = 0;
  /** Bytes of the first resource still to keep as its prefix. */
  private prefixLeft = 0;
  private prefix: Buffer[] = [];
  private version = '';
  private typeUrl = '';
  private nonce = '';
  private resources = 0;
  private firstType: string | undefined | null = null;
  /** Set when the bytes are not a valid message; scanning stops. */
  error: string | undefined;

  constructor(private readonly kind: 'sotw' | 'delta') {}

  /**
   * The first resource's type URL: a string once known, undefined once known to be unknowable
   * (no resources, or a malformed first resource), null while not yet seen.
   */
  get firstResourceType(): string | undefined | null {
    return this.firstType;
  }

  push(chunk: Buffer): void {
    let i = 0;
    while (i < chunk.length && this.error === undefined) {
      // Fast path: a field's tag (and length) lying whole in this chunk is read in one go; the
      // byte-by-byte state machine below is for varints cut by a chunk boundary.
      if ((this.state === State.Tag || this.state === State.Length) && this.varintBytes === 0) {
        if (this.state === State.Tag && this.resources > 0) {
          i = this.skipResources(chunk, i);
          if (i >= chunk.length || this.state !== State.Tag) continue;
        }
        const end = varintEnd(chunk, i);
        if (end !== -1) {
          const value = varintValue(chunk, i, end);
          i = end;
          if (this.state === State.Tag) this.onTag(value);
          else this.onLength(value);
          continue;
        }
      }
      switch (this.state) {
        case State.Tag:
        case State.Length:
        case State.SkipVarint: {
          const b = chunk[i++]!;
          if (++this.varintBytes > 10) return this.fail('varint longer than 10 bytes');
          this.varint += (b & 0x7f) * this.varintScale;
          this.varintScale *= 128;
          if (b & 0x80) continue;
          const value = this.varint;
          this.varint = 0;
          this.varintScale = 1;
          this.varintBytes = 0;
          if (this.state === State.Tag) this.onTag(value);
          else if (this.state === State.Length) this.onLength(value);
          else this.state = State.Tag;
          break;
        }
        case State.Skip:
        case State.Keep: {
          // skipped bytes are never sliced: a push has thousands of resources
          const n = Math.min(this.remaining, chunk.length - i);
          if (this.state === State.Keep) {
            this.kept.push(chunk.subarray(i, i + n));
            this.keptBytes += n;
          } else if (this.prefixLeft > 0) {
            const p = chunk.subarray(i, i + Math.min(n, this.prefixLeft));
            this.prefix.push(p);
            this.prefixLeft -= p.length;
            if (this.prefixLeft === 0) this.resolveFirstType();
          }
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.endField();
          break;
        }
      }
    }
  }

  /**
   * Skips the resources after the first one in a tight loop (a push is thousands of them, each a
   * tag byte, a length and a body nobody here reads), from `i` where a field starts. Returns where
   * it stopped: at another field, a field header cut by the chunk's end, or the chunk's end (in the
   * middle of a resource: then in the Skip state). What it does is what the general path would.
   */
  private skipResources(chunk: Buffer, i: number): number {
    const len = chunk.length;
    while (i < len && chunk[i] === RESOURCES_TAG) {
      // the length; cut by the chunk's end (or too long), the general path reads it
      const end = varintEnd(chunk, i + 1);
      if (end === -1) return i;
      const size = varintValue(chunk, i + 1, end);
      this.field = F_RESOURCES;
      this.resources++;
      if (end + size <= len) {
        i = end + size;
        continue;
      }
      this.remaining = size - (len - end);
      this.state = State.Skip;
      return len;
    }
    return i;
  }

  /** The summary, once the whole message has been pushed; throws if it was not a valid message. */
  finish(): ResponseSummary {
    // a tag whose varint the message's end cut short is a field cut short too
    if (this.error === undefined && (this.state !== State.Tag || this.varintBytes !== 0)) this.fail('message ends inside a field');
    if (this.error !== undefined) throw new Error(`malformed xDS response: ${this.error}`);
    if (this.firstType === null) this.firstType = undefined;
    return { typeUrl: this.typeUrl, nonce: this.nonce, version: this.version, resourceCount: this.resources };
  }

  private onTag(tag: number): void {
    this.field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (this.field === 0) return this.fail('field number 0');
    if (wire === 0) this.state = State.SkipVarint;
    else if (wire === 1 || wire === 5) this.startSkip(wire === 1 ? 8 : 4);
    else if (wire === 2) this.state = State.Length;
    else this.fail(`unsupported wire type ${wire} for field ${this.field}`);
  }

  private onLength(length: number): void {
    const f = this.field;
    if (f === F_RESOURCES) {
      this.resources++;
      if (this.resources === 1) {
        this.prefixLeft = Math.min(length, FIRST_RESOURCE_PREFIX_BYTES);
        if (this.prefixLeft === 0) this.resolveFirstType();
      }
    } else if (f === F_VERSION || f === F_TYPE_URL || f === F_NONCE) {
      if (length > MAX_KEPT_FIELD_BYTES) return this.fail(`field ${f} is ${length} bytes long`);
      this.kept = [];
      this.keptBytes = 0;
      this.remaining = length;
      this.state = State.Keep;
      if (length === 0) this.endField();
      return;
    }
    this.startSkip(length);
  }

  private startSkip(n: number): void {
    this.remaining = n;
    this.state = State.Skip;
    if (n === 0) this.endField();
  }

  private endField(): void {
    if (this.state === State.Keep) {
      const text = utf8.decode(this.kept.length === 1 ? this.kept[0] : Buffer.concat(this.kept, this.keptBytes));
      this.kept = [];
      if (this.field === F_VERSION) this.version = text;
      else if (this.field === F_TYPE_URL) this.typeUrl = text;
      else this.nonce = text;
    }
    this.state = State.Tag;
  }

  private resolveFirstType(): void {
    const bytes = this.prefix.length === 1 ? this.prefix[0]! : Buffer.concat(this.prefix);
    this.prefix = [];
    this.prefixLeft = 0;
    const any = this.kind === 'sotw' ? bytes : findLengthDelimited(bytes, 2, true);
    const typeUrl = any && findLengthDelimited(any, 1, false);
    this.firstType = typeUrl ? utf8.decode(typeUrl) : undefined;
  }

  private fail(reason: string): void {
    this.error = reason;
  }
}

/** Where the varint at `i` ends (the index after its last byte), or -1 if it runs past `b` or 10 bytes. */
function varintEnd(b: Uint8Array, i: number): number {
  const last = Math.min(b.length, i + 10);
  for (let j = i; j < last; j++) if (b[j]! < 0x80) return j + 1;
  return -1;
}

/** The value of the varint in `b[i, end)`, computed as the byte-wise path does (exact up to 2^53). */
function varintValue(b: Uint8Array, i: number, end: number): number {
  let v = 0;
  let scale = 1;
  for (let j = i; j < end; j++) {
    v += (b[j]! & 0x7f) * scale;
    scale *= 128;
  }
  return v;
}

/**
 * Finds top-level field `field` (length-delimited) in `buf`, which may be a truncated prefix of a
 * message. With `allowTruncated`, the field's bytes may be cut short by the end of `buf`.
 */
function findLengthDelimited(b: Uint8Array, field: number, allowTruncated: boolean): Uint8Array | undefined {
  let i = 0;
  const varint = (): number | undefined => {
    let v = 0;
    let scale = 1;
    for (let n = 0; n < 10 && i < b.length; n++) {
      const byte = b[i++]!;
      v += (byte & 0x7f) * scale;
      if (!(byte & 0x80)) return v;
      scale *= 128;
    }
    return undefined;
  };
  while (i < b.length) {
    const tag = varint();
    if (tag === undefined) return undefined;
    const wire = tag % 8;
    let len: number | undefined;
    if (wire === 0) len = varint() === undefined ? undefined : 0;
    else if (wire === 1) len = 8;
    else if (wire === 5) len = 4;
    else if (wire === 2) len = varint();
    if (len === undefined) return undefined;
    if (wire === 2 && Math.floor(tag / 8) === field) {
      if (i + len > b.length && !allowTruncated) return undefined;
      return b.subarray(i, Math.min(i + len, b.length));
    }
    i += len;
  }
  return undefined;
}
