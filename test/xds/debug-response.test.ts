// The debug port's pieces that follow Go's standard library: url.ParseQuery (what makes a 400) and
// the two JSON forms of Istio's tap handler (proto3 JSON without resources, encoding/json with).

import { describe, expect, it } from 'vitest';
import { parseGoQuery } from '../../src/xds/debug-port.js';
import { debugResponseJson, encodeDebugResponse, readDebugResponse } from '../../src/xds/debug-response.js';

describe('parseGoQuery (Go url.ParseQuery)', () => {
  it('decodes + and %XX, keeps the first value, and reports the first error while parsing on', () => {
    expect(parseGoQuery('resourceName=a+b%2Fc&resourceName=second&x').values).toEqual(new Map([['resourceName', 'a b/c'], ['x', '']]));
    expect(parseGoQuery('a=1;b=2')).toEqual({ values: new Map(), error: 'invalid semicolon separator in query' });
    expect(parseGoQuery('a=%zz&resourceName=ok')).toEqual({ values: new Map([['resourceName', 'ok']]), error: 'invalid URL escape "%zz"' });
    expect(parseGoQuery('a=%4').error).toBe('invalid URL escape "%4"');
  });
});

describe("Istio's tap handler JSON", () => {
  const base = { versionInfo: '2026-08-22T15:00:18Z/7', typeUrl: 'istio.io/debug/syncz', nonce: 'n<1>&' };

  it('is proto3 JSON, two-space indented, without resources (nothing to resolve)', () => {
    const { body, warning } = debugResponseJson({ ...base, resources: [], controlPlane: '{"Component":"istiod"}' });
    expect(warning).toBeUndefined();
    expect(body).toBe(
      '{\n  "versionInfo": "2026-08-22T15:00:18Z/7",\n  "typeUrl": "istio.io/debug/syncz",\n  "nonce": "n\\u003c1\\u003e\\u0026",\n  "controlPlane": {\n    "identifier": "{\\"Component\\":\\"istiod\\"}"\n  }\n}',
    );
  });

  it("is Go's encoding/json of the message with resources (their types are not in Istio's agent), with Istio's warning", () => {
    const value = Uint8Array.from([0, 1, 2, 250]);
    const { body, warning } = debugResponseJson({ ...base, resources: [{ typeUrl: 'type.googleapis.com/envoy.service.status.v3.ClientConfig', value }] });
    expect(body).toBe('{"version_info":"2026-08-22T15:00:18Z/7","resources":[{"type_url":"type.googleapis.com/envoy.service.status.v3.ClientConfig","value":"AAEC+g=="}],"type_url":"istio.io/debug/syncz","nonce":"n\\u003c1\\u003e\\u0026"}');
    expect(warning).toBe('could not marshal istiod response as pb: unable to resolve "type.googleapis.com/envoy.service.status.v3.ClientConfig": proto: not found');
  });

  it('reads back what it encodes (a Delta answer is relayed to a gRPC tap as this SotW message)', () => {
    const r = { ...base, resources: [{ typeUrl: 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', value: new Uint8Array() }], controlPlane: 'cp' };
    expect(readDebugResponse({ message: Buffer.from(encodeDebugResponse(r)), protocol: 'sotw' })).toEqual(r);
  });
});
