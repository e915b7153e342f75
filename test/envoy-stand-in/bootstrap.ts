// Loads the bootstrap the way Envoy's InstanceUtil::loadBootstrapConfig does: the -c file (JSON,
// or YAML for .yaml/.yml), then --config-yaml parsed on its own and proto-merged on top (scalars
// replaced, messages merged, repeated fields appended). Parsing is strict proto3 JSON through
// test/support/envoy-protos.ts.
//
// Unknown fields: real Envoy started with --allow-unknown-static-fields (pilot-agent always passes
// it) only warns and counts them in server.static_unknown_fields. The stand-in rejects them by
// default so tests catch bootstrap bugs; pass `lenientUnknownFields` to get Envoy's behaviour.

import fs from 'node:fs';
import YAML from 'yaml';
import { BOOTSTRAP_TYPE, EnvoyJsonError, mergeEnvoyMessages, parseBootstrap, toCanonicalJson } from '../support/envoy-protos.js';
import type { Message } from '@bufbuild/protobuf';

export class BootstrapError extends Error {
  readonly code = 'BOOTSTRAP_INVALID';
}

export interface LoadedBootstrap {
  readonly message: Message;
  /** Canonical proto3 JSON with proto field names. */
  readonly json: Record<string, unknown>;
  /** Unknown-field warnings accepted in lenient mode (Envoy's "Unknown field: ..." lines). */
  readonly unknownFieldWarnings: readonly string[];
}

export interface BootstrapSources {
  readonly configPath: string;
  readonly configYaml: string;
  readonly allowUnknownStaticFields: boolean;
  /** Honour --allow-unknown-static-fields like Envoy (warn instead of failing). */
  readonly lenientUnknownFields: boolean;
}

function parseStrictOrLenient(json: unknown, rawForMessage: string, src: BootstrapSources, warnings: string[]): Message {
  try {
    return parseBootstrap(json);
  } catch (err) {
    if (!(err instanceof EnvoyJsonError)) throw err;
    let lenient: Message | undefined;
    try {
      lenient = parseBootstrap(json, { ignoreUnknownFields: true });
    } catch {
      lenient = undefined;
    }
    if (lenient) {
      const description = `type ${BOOTSTRAP_TYPE} reason INVALID_ARGUMENT: ${err.message}`;
      if (src.allowUnknownStaticFields && src.lenientUnknownFields) {
        warnings.push(`Unknown field: ${description}`);
        return lenient;
      }
      throw new BootstrapError(`Protobuf message (${description}) has unknown fields`, { cause: err });
    }
    throw new BootstrapError(`Unable to parse JSON as proto (INVALID_ARGUMENT: ${err.message}): ${rawForMessage}`, { cause: err });
  }
}

function yamlToJson(text: string): unknown {
  try {
    return YAML.parse(text, { uniqueKeys: true }) as unknown;
  } catch (err) {
    throw new BootstrapError(`Unable to convert YAML as JSON: ${text}`, { cause: err });
  }
}

function readConfigFile(path: string): { value: unknown; raw: string } {
  let raw: string;
  try {
    raw = fs.readFileSync(path, 'utf8');
  } catch (err) {
    throw new BootstrapError(`unable to read file: ${path}`, { cause: err });
  }
  const lower = path.toLowerCase();
  if (lower.endsWith('.yaml') || lower.endsWith('.yml')) return { value: yamlToJson(raw), raw };
  if (lower.endsWith('.pb') || lower.endsWith('.pb_text')) {
    throw new BootstrapError(`the Envoy stand-in reads JSON and YAML bootstraps only, not ${path}`);
  }
  return { value: raw, raw }; // JSON text: parsed by the strict reader, which also rejects duplicate keys
}

export function loadBootstrap(src: BootstrapSources): LoadedBootstrap {
  if (!src.configPath && !src.configYaml) {
    throw new BootstrapError('At least one of --config-path or --config-yaml or Options::configProto() should be non-empty');
  }
  const warnings: string[] = [];
  let message: Message | undefined;
  if (src.configPath) {
    const { value, raw } = readConfigFile(src.configPath);
    message = parseStrictOrLenient(value, raw, src, warnings);
  }
  if (src.configYaml) {
    const overlay = parseStrictOrLenient(yamlToJson(src.configYaml), src.configYaml, src, warnings);
    message = message ? mergeEnvoyMessages(BOOTSTRAP_TYPE, message, overlay) : overlay;
  }
  const json = toCanonicalJson(BOOTSTRAP_TYPE, message!) as Record<string, unknown>;
  return { message: message!, json, unknownFieldWarnings: warnings };
}
