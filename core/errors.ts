// Every failure Switchyard reports has a stable code from this one table, so users can grep logs,
// alert on codes and read them in docs/errors.md; request-time failures carry an HTTP status too.

export interface ErrorSpec {
  readonly code: string;
  readonly status: number;
  readonly message: string;
}

function spec(code: string, status: number, message: string): ErrorSpec {
  return { code, status, message };
}

export const Errors = {
  SY_ERR_NO_ROUTE: spec('SY_ERR_NO_ROUTE', 404, 'no route matches this request'),
  SY_ERR_NO_HEALTHY_UPSTREAM: spec('SY_ERR_NO_HEALTHY_UPSTREAM', 503, 'no healthy upstream for this route'),
  SY_ERR_UPSTREAM_UNREACHABLE: spec('SY_ERR_UPSTREAM_UNREACHABLE', 502, 'the upstream refused, reset or closed the connection'),
  SY_ERR_UPSTREAM_TLS: spec('SY_ERR_UPSTREAM_TLS', 502, 'the upstream\'s TLS certificate is not trusted (see upstreams[].tls)'),
  SY_ERR_UPSTREAM_BAD_RESPONSE: spec('SY_ERR_UPSTREAM_BAD_RESPONSE', 502, 'the upstream sent an invalid response'),
  SY_ERR_UPSTREAM_ERROR_STATUS: spec('SY_ERR_UPSTREAM_ERROR_STATUS', 502, 'the upstream answered with a server error (5xx)'),
  SY_ERR_UPSTREAM_CONNECT_TIMEOUT: spec('SY_ERR_UPSTREAM_CONNECT_TIMEOUT', 504, 'connecting to the upstream timed out'),
  SY_ERR_UPSTREAM_TIMEOUT: spec('SY_ERR_UPSTREAM_TIMEOUT', 504, 'the upstream did not answer in time'),
  SY_ERR_UPSTREAM_IDLE_TIMEOUT: spec('SY_ERR_UPSTREAM_IDLE_TIMEOUT', 504, 'the upstream stopped sending data'),
  SY_ERR_BODY_TOO_LARGE: spec('SY_ERR_BODY_TOO_LARGE', 413, 'the request body is larger than allowed'),
  SY_ERR_CLIENT_ABORTED: spec('SY_ERR_CLIENT_ABORTED', 499, 'the client closed the connection before the response was complete'),
  SY_ERR_PLUGIN_FAILED: spec('SY_ERR_PLUGIN_FAILED', 500, 'a plugin failed while handling this request'),
  SY_ERR_INTERNAL: spec('SY_ERR_INTERNAL', 500, 'internal error'),
  SY_ERR_NOT_READY: spec('SY_ERR_NOT_READY', 503, 'the proxy is still starting; an in-process request (api.inject) made during setup has nothing to run on'),
  SY_ERR_ADMIN_UNAUTHORIZED: spec('SY_ERR_ADMIN_UNAUTHORIZED', 401, 'this admin route needs the admin key (X-API-Key header or Authorization: Bearer)'),
  SY_ERR_ADMIN_KEY_NOT_SET: spec('SY_ERR_ADMIN_KEY_NOT_SET', 403, 'this admin route is disabled because no admin key is configured; set server.admin.key (for example from ${ADMIN_KEY})'),
  SY_ERR_ADMIN_NOT_FOUND: spec('SY_ERR_ADMIN_NOT_FOUND', 404, 'no admin route at this path'),
  SY_ERR_TLS_RELOAD_FAILED: spec('SY_ERR_TLS_RELOAD_FAILED', 500, 'the TLS certificate or key could not be loaded; the previous one stays in use'),
  SY_ERR_BAD_REQUEST: spec('SY_ERR_BAD_REQUEST', 400, 'the request is malformed'),
  SY_ERR_HEADERS_TOO_LARGE: spec('SY_ERR_HEADERS_TOO_LARGE', 431, 'the request head is larger than server.limits.maxHeaderSize'),
  SY_ERR_REQUEST_TIMEOUT: spec('SY_ERR_REQUEST_TIMEOUT', 408, 'the request was not received in time (server.limits)'),
  SY_ERR_CONFIG_INVALID: spec('SY_ERR_CONFIG_INVALID', 0, 'the configuration is invalid'),
  SY_ERR_CONFIG_UNREADABLE: spec('SY_ERR_CONFIG_UNREADABLE', 0, 'the configuration file cannot be read or parsed'),
  SY_ERR_PLUGIN_NOT_FOUND: spec('SY_ERR_PLUGIN_NOT_FOUND', 0, 'a configured plugin does not exist'),
  SY_ERR_PLUGIN_INVALID: spec('SY_ERR_PLUGIN_INVALID', 0, 'a plugin module does not export a plugin made with definePlugin()'),
  SY_ERR_PRESET_NOT_FOUND: spec('SY_ERR_PRESET_NOT_FOUND', 0, 'the named preset does not exist'),
  SY_ERR_STORE_UNSUPPORTED: spec('SY_ERR_STORE_UNSUPPORTED', 0, 'the store URL scheme is not supported'),
} as const satisfies Record<string, ErrorSpec>;

/** A core code; a plugin's declared code is typed as a string where it is used. */
export type ErrorCode = keyof typeof Errors | (string & {});
type CoreCode = keyof typeof Errors;

/** What a plugin declares for each code it answers with: `definePlugin({ errors: { CODE: … } })`. */
export interface DeclaredError {
  readonly status: number;
  readonly message: string;
}

/** Codes declared by plugins, by code; each names the plugin that declared it. */
const declared = new Map<string, { plugin: string; spec: ErrorSpec }>();

/**
 * Adds a plugin's codes to the ones `ctx.refuse()` and SwitchyardError know. A code is one
 * plugin's: the core's codes and another plugin's are refused, so a code in a log always means
 * the same thing. A plugin module loaded again (a reload) may declare its codes again.
 */
export function declareErrors(plugin: string, errors: Readonly<Record<string, DeclaredError>>): void {
  for (const [code, { status, message }] of Object.entries(errors)) {
    const owner = Object.hasOwn(Errors, code) ? 'the core' : declared.get(code)?.plugin;
    if (owner !== undefined && owner !== plugin) throw new Error(`plugin "${plugin}" declares error code ${code}, which belongs to ${owner}`);
    declared.set(code, { plugin, spec: { code, status, message } });
  }
}

/** The spec of a core code or a plugin-declared one; undefined for a code nobody declared. */
export function errorSpec(code: string): ErrorSpec | undefined {
  return Object.hasOwn(Errors, code) ? Errors[code as CoreCode] : declared.get(code)?.spec;
}

/** An error with a stable `code` and, for request-time errors, the HTTP status to answer with. */
export class SwitchyardError extends Error {
  /** A core code (the table above) or one a plugin declared. */
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra facts for logs and JSON bodies (never secrets). */
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown>; status?: number }) {
    const spec = errorSpec(code);
    if (spec === undefined) throw new Error(`error code ${code} is neither the core's nor declared by a plugin (definePlugin({ errors }))`);
    super(message ?? spec.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwitchyardError';
    this.code = code;
    this.status = options?.status ?? spec.status;
    this.details = options?.details;
  }
}

/** Whatever a plugin throws is wrapped so the log says which plugin and which stage failed. */
export class PluginError extends SwitchyardError {
  readonly plugin: string;
  readonly stage: string;

  constructor(plugin: string, stage: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('SY_ERR_PLUGIN_FAILED', `plugin "${plugin}" failed in stage "${stage}": ${reason}`, { cause, details: { plugin, stage } });
    this.plugin = plugin;
    this.stage = stage;
  }
}

/** A configuration problem: one line per problem, each naming the file, the JSON path and what is wrong. */
export class ConfigError extends SwitchyardError {
  readonly file: string;
  readonly problems: readonly string[];

  constructor(file: string, problems: readonly string[], code: ErrorCode = 'SY_ERR_CONFIG_INVALID') {
    super(code, problems.map((problem) => `${file}: ${problem}`).join('\n'));
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}
