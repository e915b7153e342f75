// The HTTP/2 error codes the agent uses are written out (grpc/status.ts loads before node:http2
// does); they must be the codes node:http2 (nghttp2) sends and reports.

import http2 from 'node:http2';
import { describe, expect, it } from 'vitest';
import { H2Error, Status, statusFromReset } from './status.js';

describe('H2Error', () => {
  it("equals node:http2's constant of the same name, every one", () => {
    const c = http2.constants as unknown as Record<string, number>;
    for (const [name, code] of Object.entries(H2Error)) expect(code, name).toBe(c[`NGHTTP2_${name}`]);
  });
});

describe('statusFromReset', () => {
  it("maps node:http2's reset codes as gRPC's PROTOCOL-HTTP2 says, anything else to INTERNAL", () => {
    const c = http2.constants;
    expect(statusFromReset(c.NGHTTP2_CANCEL)).toBe(Status.CANCELLED);
    expect(statusFromReset(c.NGHTTP2_REFUSED_STREAM)).toBe(Status.UNAVAILABLE);
    expect(statusFromReset(c.NGHTTP2_ENHANCE_YOUR_CALM)).toBe(Status.RESOURCE_EXHAUSTED);
    expect(statusFromReset(c.NGHTTP2_INADEQUATE_SECURITY)).toBe(Status.PERMISSION_DENIED);
    for (const code of [c.NGHTTP2_NO_ERROR, c.NGHTTP2_PROTOCOL_ERROR, c.NGHTTP2_INTERNAL_ERROR, c.NGHTTP2_FLOW_CONTROL_ERROR, c.NGHTTP2_STREAM_CLOSED, c.NGHTTP2_COMPRESSION_ERROR, c.NGHTTP2_HTTP_1_1_REQUIRED, undefined]) {
      expect(statusFromReset(code)).toBe(Status.INTERNAL);
    }
  });
});
