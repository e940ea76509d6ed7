// Reads a config file (YAML or JSON), fills in `${ENV}` values, lays it over a preset, validates it
// with ajv (the core schema and every plugin's own), and loads the plugins it names. Every problem
// becomes one line naming the file, the path inside it and what is wrong.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import YAML from 'yaml';
import { checkRange } from '../client-ip.js';
import { dnsServerProblem } from '../dns.js';
import { ConfigError } from '../errors.js';
import { isPluginDefinition, type PluginDefinition } from '../plugin.js';
import { configSchema, type PluginRef, type SwitchyardConfig } from './schema.js';
import { didYouMean } from './suggest.js';
import { discoveryOf } from '../router.js';

/** Built-in plugins by name, imported only when a config names them. */
export type PluginCatalog = Readonly<Record<string, () => Promise<PluginDefinition<never>>>>;

export interface Preset {
  /** One line for `switchyard presets`. */
  readonly description: string;
  /** Turns environment variables into a config; the config file's keys are laid over it. */
  build(env: NodeJS.ProcessEnv): Record<string, unknown>;
  /** The variables messages should name: where the preset reads the admin key and the store from. */
  readonly variables?: { readonly adminKey?: string; readonly store?: string };
}
export type PresetCatalog = Readonly<Record<string, Preset>>;

export interface ConfigSource {
  /** The config file; optional when a preset is given. */
  file?: string;
  preset?: string;
  /** Command-line overrides: they win over the environment and the file. */
  port?: number;
  host?: string;
}

export interface Catalogs {
  plugins: PluginCatalog;
  presets: PresetCatalog;
}

export interface LoadedPlugin {
  readonly definition: PluginDefinition<unknown>;
  readonly options: unknown;
  /** The custom plugin file, when loaded from a path. */
  readonly file?: string;
}

export interface LoadedConfig {
  /** What error messages call the source: the file path, or `(command line)` for a bare preset. */
  readonly label: string;
  readonly file: string | undefined;
  /** Relative paths in the config (plugin files, sqlite store) resolve against this. */
  readonly baseDir: string;
  readonly config: SwitchyardConfig & { server: Required<NonNullable<SwitchyardConfig['server']>>; routes: NonNullable<SwitchyardConfig['routes']> };
  readonly globalPlugins: readonly LoadedPlugin[];
  /** Plugins of each route, by the route's index in `config.routes`. */
  readonly routePlugins: readonly (readonly LoadedPlugin[])[];
  /** The config file and every custom plugin file: what the watcher watches. */
  readonly files: readonly string[];
  /** Changes when the config or a plugin file changes; an equal fingerprint means nothing to do. */
  readonly fingerprint: string;
  /** Values that came from secret-looking environment variables; redacted wherever shown. */
  readonly secrets: ReadonlySet<string>;
  /** What a message tells a person to set: the admin key's variable, the store's setting. */
  readonly hints: { readonly adminKey: string; readonly store: string };
}

const SECRET_NAME = /(key|token|secret|password|passwd|pass|auth|credential|cookie)/i;

// coerceTypes: `${PORT}` interpolates to the string "8080"; where the schema wants a number it becomes one.
// verbose: an error carries its schema, whose property names the "did you mean" hint picks from.
const ajv = new Ajv({ allErrors: true, useDefaults: true, coerceTypes: true, strict: false, verbose: true });
(addFormatsModule as unknown as (a: Ajv) => void)(ajv);
const validateCore = ajv.compile(configSchema);
const pluginValidators = new WeakMap<object, ValidateFunction>();

export async function loadConfig(source: ConfigSource, catalogs: Catalogs, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const file = source.file === undefined ? undefined : resolve(source.file);
  const label = source.file ?? '(command line)';
  const text = file === undefined ? '' : readConfigText(file, label);
  const parsed = file === undefined ? {} : parseConfigText(text, label);
  const problems: string[] = [];
  const secrets = new Set<string>();
  const fromFile = interpolate(parsed, env, '', problems, secrets) as Record<string, unknown>;

  const presetName = source.preset ?? (typeof fromFile.preset === 'string' ? fromFile.preset : undefined);
  let merged = fromFile;
  let variables: Preset['variables'];
  if (presetName !== undefined) {
    const preset = catalogs.presets[presetName];
    if (!preset) {
      const problem = `preset: there is no preset "${presetName}" (presets: ${Object.keys(catalogs.presets).join(', ') || 'none'})`;
      throw new ConfigError(label, [redactString(problem, secrets)], 'SY_ERR_PRESET_NOT_FOUND');
    }
    const built = presetConfig(preset, presetName, env, label);
    variables = preset.variables;
    // A preset reads its secrets straight from the environment: mask them as `${VAR}` values are.
    const text = JSON.stringify(built);
    for (const [name, value] of Object.entries(env)) {
      if (value && value.length >= 4 && SECRET_NAME.test(name) && text.includes(value)) secrets.add(value);
    }
    merged = deepMerge(built, fromFile);
    merged.preset = presetName;
  }
  applyListenOverrides(merged, source, env, problems);
  if (problems.length > 0) throw new ConfigError(label, problems.map((problem) => redactString(problem, secrets)));

  if (!validateCore(merged)) {
    // Unknown plugin names are reported in the same pass: one run of validate shows every problem.
    const unknown = unknownPluginNames(merged, catalogs.plugins);
    throw new ConfigError(label, [...formatAjvErrors(validateCore.errors ?? [], ''), ...unknown]);
  }
  const config = merged as unknown as LoadedConfig['config'];
  const baseDir = file === undefined ? process.cwd() : dirname(file);
  checkSemantics(config, baseDir, problems);

  const files = file === undefined ? [] : [file];
  const hash = createHash('sha256').update(text).update(JSON.stringify(merged));
  const load = async (ref: PluginRef, where: string) => {
    const plugin = await loadPlugin(ref, where, baseDir, catalogs.plugins, problems);
    if (plugin?.file) {
      files.push(plugin.file);
      hash.update(plugin.fingerprint);
    }
    return plugin;
  };
  const globalPlugins = await loadAll(config.plugins ?? [], '/plugins', load);
  const routePlugins: LoadedPlugin[][] = [];
  for (const [index, route] of config.routes.entries()) {
    routePlugins.push(await loadAll(route.plugins ?? [], `/routes/${index}/plugins`, load));
  }
  if (problems.length > 0) throw new ConfigError(label, problems.map((problem) => redactString(problem, secrets)));
  const hints = {
    adminKey: variables?.adminKey ?? 'ADMIN_KEY',
    store: variables?.store === undefined ? 'server.store' : `${variables.store} (or server.store)`,
  };
  return { label, file, baseDir, config, globalPlugins, routePlugins, files, fingerprint: hash.digest('hex'), secrets, hints };
}

function readConfigText(file: string, label: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(label, [`cannot read the file: ${(err as Error).message}`], 'SY_ERR_CONFIG_UNREADABLE');
  }
}

function parseConfigText(text: string, label: string): Record<string, unknown> {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = text.split(/\r?\n/);
    throw new ConfigError(label, doc.errors.map((e) => yamlProblem(e, lines)), 'SY_ERR_CONFIG_UNREADABLE');
  }
  const value: unknown = doc.toJS();
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError(label, ['the file must hold a mapping (server:, routes:, plugins:) at its top level'], 'SY_ERR_CONFIG_UNREADABLE');
  }
  return value as Record<string, unknown>;
}

/** `line 3, column 1: <what is wrong>: the line reads " routes: ["`, so the line can be found and fixed. */
function yamlProblem(error: YAML.YAMLError, lines: readonly string[]): string {
  const what = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const at = error.linePos?.[0];
  if (at === undefined) return what;
  const source = lines[at.line - 1];
  return `line ${at.line}, column ${at.col}: ${what}${source === undefined || source.trim() === '' ? '' : `; the line reads ${JSON.stringify(source)}`}`;
}

/** Replaces `${NAME}` and `${NAME:-default}` in every string value (not in keys). */
function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: string, problems: string[], secrets: Set<string>): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_, name: string, fallback: string | undefined) => {
      const found = env[name];
      const result = found !== undefined && found !== '' ? found : fallback;
      if (result === undefined) {
        problems.push(`${displayPath(path)}: environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
        return '';
      }
      if (SECRET_NAME.test(name) && result !== '') secrets.add(result);
      return result;
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolate(item, env, `${path}/${i}`, problems, secrets));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, `${path}/${k}`, problems, secrets)]));
  }
  return value;
}

function presetConfig(preset: Preset, name: string, env: NodeJS.ProcessEnv, label: string): Record<string, unknown> {
  try {
    return preset.build(env);
  } catch (err) {
    // Presets report bad environment variables by throwing; the message names the variable.
    throw new ConfigError(label, [`preset ${name}: ${(err as Error).message}`]);
  }
}

/** Objects merge key by key; arrays and scalars from `over` replace those in `base`. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const existing = out[key];
    out[key] = isPlainObject(existing) && isPlainObject(value) ? deepMerge(existing, value) : value;
  }
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function applyListenOverrides(config: Record<string, unknown>, source: ConfigSource, env: NodeJS.ProcessEnv, problems: string[]): void {
  const server = (isPlainObject(config.server) ? config.server : {}) as Record<string, unknown>;
  if (source.port !== undefined) server.port = source.port;
  else if (env.PORT) {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push(`environment variable PORT: "${env.PORT}" is not a port number (0-65535)`);
    else server.port = port;
  }
  if (source.host !== undefined) server.host = source.host;
  else if (env.HOST) server.host = env.HOST;
  config.server = server;
}

/** Checks the schema cannot express: unique names, parseable URLs, address ranges, files. */
function checkSemantics(config: LoadedConfig['config'], baseDir: string, problems: string[]): void {
  for (const [index, entry] of (config.server.trustedProxies ?? []).entries()) {
    const problem = checkRange(entry);
    if (problem) problems.push(`${displayPath(`/server/trustedProxies/${index}`)}: ${problem}`);
  }
  const checkFile = (path: string | undefined, where: string) => {
    if (path !== undefined && !existsSync(resolve(baseDir, path))) problems.push(`${displayPath(where)}: file ${resolve(baseDir, path)} does not exist`);
  };
  const { headersTimeout = 0, requestTimeout = 0 } = config.server.limits;
  if (requestTimeout > 0 && headersTimeout > requestTimeout) {
    problems.push(`${displayPath('/server/limits/headersTimeout')}: ${headersTimeout} is longer than server.limits.requestTimeout (${requestTimeout}); the head is part of the request`);
  }
  for (const [index, entry] of (config.server.dns?.servers ?? []).entries()) {
    const problem = dnsServerProblem(entry);
    if (problem) problems.push(`${displayPath(`/server/dns/servers/${index}`)}: ${problem}`);
  }
  checkFile(config.server.tls?.cert, '/server/tls/cert');
  checkFile(config.server.tls?.key, '/server/tls/key');
  const seen = new Set<string>();
  for (const [index, route] of config.routes.entries()) {
    if (seen.has(route.name)) problems.push(`${displayPath(`/routes/${index}/name`)}: route name "${route.name}" is used twice`);
    seen.add(route.name);
    for (const [u, upstream] of route.upstreams.entries()) {
      checkFile(upstream.tls?.ca, `/routes/${index}/upstreams/${u}/tls/ca`);
      const { url, discover } = discoveryOf(upstream);
      try {
        new URL(url);
      } catch {
        problems.push(`${displayPath(`/routes/${index}/upstreams/${u}/url`)}: "${upstream.url}" is not a valid URL`);
      }
      if (upstream.discover !== undefined && discover !== upstream.discover) {
        problems.push(`${displayPath(`/routes/${index}/upstreams/${u}/discover`)}: "${upstream.discover}" contradicts the URL's scheme, which says ${discover}`);
      }
    }
  }
}

async function loadAll(refs: readonly PluginRef[], where: string, load: (ref: PluginRef, where: string) => Promise<(LoadedPlugin & { fingerprint: string }) | undefined>): Promise<LoadedPlugin[]> {
  const out: LoadedPlugin[] = [];
  for (const [index, ref] of refs.entries()) {
    if (ref.enabled === false) continue;
    const plugin = await load(ref, `${where}/${index}`);
    if (plugin) out.push(plugin);
  }
  return out;
}

async function loadPlugin(ref: PluginRef, where: string, baseDir: string, catalog: PluginCatalog, problems: string[]): Promise<(LoadedPlugin & { fingerprint: string }) | undefined> {
  let definition: unknown;
  let file: string | undefined;
  let fingerprint = '';
  if (ref.path !== undefined) {
    file = resolve(baseDir, ref.path);
    let source: string;
    try {
      source = readFileSync(file, 'utf8');
    } catch (err) {
      problems.push(`${displayPath(`${where}/path`)}: cannot read plugin file ${file}: ${(err as Error).message}`);
      return undefined;
    }
    fingerprint = createHash('sha256').update(source).digest('hex');
    try {
      // The query makes Node import the file afresh whenever its content changed (hot reload).
      definition = (await import(`${pathToFileURL(file).href}?v=${fingerprint.slice(0, 16)}`)).default;
    } catch (err) {
      problems.push(`${displayPath(`${where}/path`)}: plugin file ${file}${syntaxErrorAt(err, file)} failed to load: ${(err as Error).message}`);
      return undefined;
    }
  } else {
    const importer = catalog[ref.name!];
    if (!importer) {
      problems.push(unknownPluginProblem(ref.name!, `${where}/name`, catalog));
      return undefined;
    }
    definition = await importer();
  }
  if (!isPluginDefinition(definition)) {
    problems.push(`${displayPath(where)}: ${file ?? ref.name} does not export a plugin made with definePlugin() as its default export`);
    return undefined;
  }
  if (ref.name !== undefined && ref.path !== undefined && ref.name !== definition.name) {
    problems.push(`${displayPath(`${where}/name`)}: the file defines plugin "${definition.name}", not "${ref.name}"`);
  }
  const options = structuredClone(ref.options ?? {});
  let validate = pluginValidators.get(definition.schema as object);
  if (!validate) {
    try {
      validate = ajv.compile(definition.schema as object);
    } catch (err) {
      problems.push(`${displayPath(where)}: plugin "${definition.name}" has an invalid options schema: ${(err as Error).message}`);
      return undefined;
    }
    pluginValidators.set(definition.schema as object, validate);
  }
  if (!validate(options)) {
    problems.push(...formatAjvErrors(validate.errors ?? [], `${where}/options`));
    return undefined;
  }
  return { definition: definition as PluginDefinition<unknown>, options, file, fingerprint };
}

/**
 * `:3:13` for a syntax error at line 3, column 13 of `file`. Node's error for an ES module that does
 * not parse has no position; `node --check` prints it (the line, then a caret under the column).
 * Run only on this failure path, so loading a good plugin costs nothing more.
 */
function syntaxErrorAt(err: unknown, file: string): string {
  if (!(err instanceof SyntaxError)) return '';
  const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
  const [where, , caret] = (check.stderr ?? '').split('\n');
  const line = where?.startsWith(`${file}:`) ? Number(where.slice(file.length + 1)) : NaN;
  if (!Number.isInteger(line)) return '';
  const column = caret?.indexOf('^') ?? -1;
  return column === -1 ? `:${line}` : `:${line}:${column + 1}`;
}

function unknownPluginProblem(name: string, where: string, catalog: PluginCatalog): string {
  const names = Object.keys(catalog);
  return `${displayPath(where)}: there is no built-in plugin "${name}"${didYouMean(name, names)} (built-in: ${names.join(', ') || 'none'}; a custom plugin is given by path)`;
}

/** Plugin references by a name no built-in plugin has, in a config that may not fit the schema. */
function unknownPluginNames(config: Record<string, unknown>, catalog: PluginCatalog): string[] {
  const problems: string[] = [];
  const check = (refs: unknown, where: string) => {
    if (!Array.isArray(refs)) return;
    for (const [index, ref] of refs.entries()) {
      if (!isPlainObject(ref) || typeof ref.name !== 'string' || ref.path !== undefined || ref.enabled === false) continue;
      if (!Object.hasOwn(catalog, ref.name)) problems.push(unknownPluginProblem(ref.name, `${where}/${index}/name`, catalog));
    }
  };
  check(config.plugins, '/plugins');
  if (Array.isArray(config.routes)) for (const [index, route] of config.routes.entries()) if (isPlainObject(route)) check(route.plugins, `/routes/${index}/plugins`);
  return problems;
}

/** `/routes/0/upstreams/1/url` → `routes[0].upstreams[1].url`, the way people read paths. */
function displayPath(pointer: string): string {
  if (pointer === '') return '(top level)';
  return pointer.slice(1).split('/').map((part) => (/^\d+$/.test(part) ? `[${part}]` : `.${part}`)).join('').replace(/^\./, '');
}

function formatAjvErrors(errors: readonly ErrorObject[], base: string): string[] {
  const lines = new Set<string>();
  for (const error of errors) {
    // A plugin reference's oneOf produces a `required` error per branch; say it once, plainly.
    if (error.schemaPath.includes('/oneOf/')) continue;
    const path = displayPath(base + error.instancePath);
    if (error.keyword === 'oneOf') lines.add(`${path}: give either "name" (a built-in plugin) or "path" (a plugin file), not both`);
    else if (error.keyword === 'additionalProperties') {
      const key = String(error.params.additionalProperty);
      const known = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      lines.add(`${path}: unknown key "${key}"${didYouMean(key, known)}`);
    }
    else if (error.keyword === 'enum') lines.add(`${path}: must be one of ${(error.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`);
    else lines.add(`${path}: ${error.message ?? 'is invalid'}`);
  }
  return [...lines];
}

/** A copy of the config fit to show: secret-looking keys and env-provided secrets become `***`. */
export function redactConfig(value: unknown, secrets: ReadonlySet<string>, key = ''): unknown {
  if (typeof value === 'string') {
    if (key && SECRET_NAME.test(key) && !/^(path|name)$/i.test(key)) return '***';
    return redactString(value, secrets);
  }
  if (Array.isArray(value)) return value.map((item) => redactConfig(item, secrets));
  if (isPlainObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactConfig(v, secrets, k)]));
  return value;
}

/** Hides env-provided secrets, URL passwords and key-like query values inside a string. */
export function redactString(value: string, secrets: ReadonlySet<string>): string {
  let out = value;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('***');
  // Most request paths have neither a URL password (`@`) nor a query: no pattern to look for.
  // The user name may be empty: Redis URLs are written redis://:password@host.
  if (out.includes('@')) out = out.replace(/(\/\/[^:/@\s]*:)[^@/\s]+@/g, '$1***@');
  // A test first: a global replace costs several times a test even when nothing matches.
  if ((out.includes('?') || out.includes('&')) && QUERY_CREDENTIAL.test(out)) out = out.replace(QUERY_CREDENTIALS, '$1***');
  return out;
}

/** Query parameters that carry credentials, whatever the upstream. */
const CREDENTIAL_PARAMS = 'api_key|apikey|key|token|access_token|password|secret|sig|signature';
const QUERY_CREDENTIAL = new RegExp(`[?&](?:${CREDENTIAL_PARAMS})=`, 'i');
const QUERY_CREDENTIALS = new RegExp(`([?&](?:${CREDENTIAL_PARAMS})=)[^&#\\s]*`, 'gi');

