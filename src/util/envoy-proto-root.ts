// Loads Envoy API .proto files into a protobufjs Root from the copies pinned inside
// @grpc/grpc-js-xds (deps/: envoy-api, xds, googleapis, protoc-gen-validate), resolving imports
// the way protoc would with those include directories. Shared by the components that encode or
// decode Envoy messages themselves (SDS secrets, ECDS rewrites); each loads only what it needs,
// on first use, so an agent that never needs them never pays for them.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type protobuf from 'protobufjs';

/** The directory of the package that contains `entry` (the nearest package.json above it). */
export function packageRoot(entry: string): string {
  let dir = dirname(entry);
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${entry}`);
    dir = up;
  }
  return dir;
}

/** The include directories of the pinned Envoy API protos. */
export function envoyIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const deps = join(packageRoot(require.resolve('@grpc/grpc-js-xds')), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

/** Loads `files` (paths relative to the include dirs, e.g. envoy/service/discovery/v3/discovery.proto). */
export function loadEnvoyProtoRoot(files: readonly string[]): protobuf.Root {
  const require = createRequire(import.meta.url);
  // loaded synchronously here, so agents that never need it never load protobufjs' full build
  const pb = require('protobufjs') as typeof import('protobufjs');
  const includeDirs = envoyIncludeDirs();
  const descriptorProto = join(packageRoot(require.resolve('protobufjs')), 'google', 'protobuf', 'descriptor.proto');
  const root = new pb.Root();
  root.resolvePath = (_origin, target) => {
    if (target === 'google/protobuf/descriptor.proto') return descriptorProto;
    // any, duration, struct, wrappers, ...: protobufjs' bundled definitions, keyed by this name
    if (target.startsWith('google/protobuf/')) return target;
    for (const dir of includeDirs) {
      const candidate = join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  root.loadSync([...files], { keepCase: true });
  return root;
}
