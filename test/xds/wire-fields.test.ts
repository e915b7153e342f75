// The xDS proxy reads and writes the discovery messages on the wire with field numbers of its own
// (src/xds/wire.ts), so as not to build Envoy's schemas at start-up; they must be the numbers of
// the vendored Envoy API, field by field.

import type { DescMessage } from '@bufbuild/protobuf';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import {
  DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponseSchema,
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
  ResourceSchema,
} from '../../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import { StatusSchema } from '../../src/gen/google/rpc/status_pb.js';
import { XdsField } from '../../src/xds/wire.js';

const schemas: Record<keyof typeof XdsField, DescMessage> = {
  DiscoveryRequest: DiscoveryRequestSchema,
  DiscoveryResponse: DiscoveryResponseSchema,
  DeltaDiscoveryRequest: DeltaDiscoveryRequestSchema,
  DeltaDiscoveryResponse: DeltaDiscoveryResponseSchema,
  Any: AnySchema,
  Resource: ResourceSchema,
  Status: StatusSchema,
};

describe('xDS wire field numbers', () => {
  for (const [message, fields] of Object.entries(XdsField) as [keyof typeof XdsField, Record<string, number>][]) {
    it(`${message}: every number is the schema's`, () => {
      const schema = schemas[message];
      const byName = Object.fromEntries(schema.fields.map((f) => [f.name, f.number]));
      expect(Object.keys(fields).length).toBeGreaterThan(0);
      for (const [name, number] of Object.entries(fields)) expect(byName[name], `${schema.typeName}.${name}`).toBe(number);
    });
  }
});
