// Produces the Envoy bootstrap file Envoy is started with (envoy-rev.json), as Istio's
// pkg/bootstrap does: pick the template, build the template data from the AgentConfig, render,
// write atomically.
//
// Template selection (Istio's GetEffectiveTemplatePath): ProxyConfig customConfigFile, else
// proxyBootstrapTemplatePath (also set by --templateFile), else this project's
// bootstrap-templates/envoy_bootstrap.json; the ISTIO_BOOTSTRAP env var overrides all three.
// The agent itself never renders a customConfigFile: it is handed to Envoy as it is
// (writeEnvoyBootstrap), so selection only matters for the template paths and ISTIO_BOOTSTRAP.
// A template named *.yaml or *.yaml.tmpl yields envoy-rev.yaml.

import { existsSync, readFileSync } from 'node:fs';
import { makeDirSync } from '../util/make-dir.js';
import { isAbsolute, join, resolve } from 'node:path';
import type { AgentConfig } from '../config/load.js';
import { writeFileAtomicSync } from '../util/atomic-write.js';
import { logger } from '../util/logger.js';
import { PACKAGE_ROOT } from '../util/package-root.js';
import { BootstrapTemplateError } from './errors.js';
import type { BootstrapOptions } from './options.js';
import { istioBootstrapFuncs, parseParseCache, parseTemplate, templateFromTrees, templateTextKey, treesFromEntry, TemplateError, type Template } from './template/index.js';
import type { Tree } from './template/ast.js';
import { buildTemplateData, type BootstrapInputs, type SideFile } from './template-data.js';

const log = logger('default');

/** The default template shipped with this project, under the package root. */
export const DEFAULT_TEMPLATE_PATH = join(PACKAGE_ROOT, 'bootstrap-templates', 'envoy_bootstrap.json');

/** Where the credential-fetcher SDS socket lives (Istio's security.CredentialNameSocketPath). */
const CREDENTIAL_SOCKET = './var/run/secrets/credential-uds/socket';

export interface RenderOptions extends BootstrapOptions {
  /** Template to render instead of the effective one (tests, `pilot-agent bootstrap`). */
  readonly templatePath?: string;
}

export interface RenderedBootstrap {
  /** The rendered bootstrap text. */
  readonly text: string;
  /** The template it came from. */
  readonly templatePath: string;
  /** Where it goes: `<configPath>/envoy-rev.json` (or `.yaml`). */
  readonly outputPath: string;
  /** Files the bootstrap refers to (the Lightstep token), absolute paths. */
  readonly sideFiles: readonly SideFile[];
  /** The template data and node, for callers that inspect them. */
  readonly inputs: BootstrapInputs;
}

function at(config: AgentConfig, p: string): string {
  return isAbsolute(p) ? p : resolve(config.paths.cwd, p);
}

/** The template Istio would render for this config (customConfigFile counts, as in Istio). */
export function effectiveTemplatePath(config: AgentConfig): string {
  const pc = config.proxyConfig;
  let path = DEFAULT_TEMPLATE_PATH;
  if (typeof pc.customConfigFile === 'string' && pc.customConfigFile !== '') path = at(config, pc.customConfigFile);
  else if (typeof pc.proxyBootstrapTemplatePath === 'string' && pc.proxyBootstrapTemplatePath !== '') path = at(config, pc.proxyBootstrapTemplatePath);
  if (config.env.ISTIO_BOOTSTRAP !== '') path = at(config, config.env.ISTIO_BOOTSTRAP);
  return path;
}

/** `<configDir>/envoy-rev.json`, or `.yaml` for a YAML template (Envoy goes by the extension). */
export function bootstrapOutputPath(config: AgentConfig, templatePath: string): string {
  const yaml = templatePath.endsWith('.yaml.tmpl') || templatePath.endsWith('.yaml');
  return join(config.paths.configDir, `envoy-rev.${yaml ? 'yaml' : 'json'}`);
}

const templateCache = new Map<string, { text: string; template: Template }>();

/**
 * Where the build saves the parse trees of the shipped templates (scripts/bundle.mjs), beside the
 * bundle so that the Docker image carries it. Absent (a build without it, a source checkout) or
 * unreadable, templates are parsed as usual.
 */
export const PARSE_CACHE_PATH = join(PACKAGE_ROOT, 'dist', 'bundle', 'template-parse-cache.json');

let parseCache: Record<string, unknown> | undefined;

function savedTrees(path: string, text: string): Map<string, Tree> | undefined {
  if (parseCache === undefined) {
    parseCache = {};
    try {
      parseCache = parseParseCache(readFileSync(PARSE_CACHE_PATH, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.debug(`template parse cache ${PARSE_CACHE_PATH} not used: ${(err as Error).message}`);
    }
  }
  return treesFromEntry(parseCache[templateTextKey(text)], path, text);
}

/** Reads and parses a template file; errors name the file, line and column. */
export function loadBootstrapTemplate(path: string): Template {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BootstrapTemplateError(`cannot read bootstrap template ${path}: ${(err as Error).message}`, { cause: err });
  }
  const cached = templateCache.get(path);
  if (cached && cached.text === text) return cached.template;
  try {
    const trees = savedTrees(path, text);
    const template = trees ? templateFromTrees(path, trees, istioBootstrapFuncs()) : parseTemplate(path, text, istioBootstrapFuncs());
    templateCache.set(path, { text, template });
    return template;
  } catch (err) {
    throw templateError(path, err);
  }
}

function templateError(path: string, err: unknown): BootstrapTemplateError {
  if (err instanceof TemplateError) {
    const where = err.line > 0 ? `${path}:${err.line}:${err.column + 1}` : path;
    return new BootstrapTemplateError(`bootstrap template ${where}: ${err.phase === 'parse' ? 'parse error' : 'execution error'}: ${err.reason}`, { cause: err });
  }
  return new BootstrapTemplateError(`bootstrap template ${path}: ${(err as Error).message}`, { cause: err });
}

/** Renders the bootstrap for `config` without writing anything. */
export function renderEnvoyBootstrap(config: AgentConfig, options: RenderOptions = {}): RenderedBootstrap {
  const templatePath = options.templatePath !== undefined ? at(config, options.templatePath) : effectiveTemplatePath(config);
  const template = loadBootstrapTemplate(templatePath);
  const credentialSocketExists = options.credentialSocketExists ?? existsSync(at(config, CREDENTIAL_SOCKET));
  const inputs = buildTemplateData(config, { ...options, credentialSocketExists });
  let text: string;
  try {
    text = template.execute(inputs.data);
  } catch (err) {
    throw templateError(templatePath, err);
  }
  return {
    text,
    templatePath,
    outputPath: bootstrapOutputPath(config, templatePath),
    sideFiles: inputs.sideFiles.map((f) => ({ ...f, path: at(config, f.path) })),
    inputs,
  };
}

/**
 * Renders the effective template and writes the bootstrap (and the files it refers to)
 * atomically: Istio's bootstrap.Instance.CreateFile. Returns the bootstrap's path.
 */
export function generateEnvoyBootstrap(config: AgentConfig, options: RenderOptions = {}): RenderedBootstrap {
  const rendered = renderEnvoyBootstrap(config, options);
  makeDirSync(config.paths.configDir, { mode: 0o700 });
  // rewritten at every start: no fsync (util/atomic-write.ts)
  for (const f of rendered.sideFiles) writeFileAtomicSync(f.path, f.content, f.mode, { durable: false });
  if (rendered.outputPath.endsWith('.json')) {
    try {
      JSON.parse(rendered.text);
    } catch (err) {
      log.warn(`bootstrap rendered from ${rendered.templatePath} is not valid JSON: ${(err as Error).message}`);
    }
  }
  writeFileAtomicSync(rendered.outputPath, rendered.text, 0o644, { durable: false });
  return rendered;
}

/**
 * The agent's entry point: writes the bootstrap and returns the path Envoy is started with. A
 * `customConfigFile` is used as it is: nothing is generated (Istio's behaviour).
 */
export function writeEnvoyBootstrap(config: AgentConfig, options: RenderOptions = {}): { path: string; generated: boolean } {
  const custom = config.proxyConfig.customConfigFile;
  if (typeof custom === 'string' && custom !== '') return { path: at(config, custom), generated: false };
  return { path: generateEnvoyBootstrap(config, options).outputPath, generated: true };
}
