// `switchyard-proxy/server`: what a program that embeds the proxy imports: start and stop a
// Switchyard from a config file or a preset, with the built-in plugins and presets as catalogues.
// Plugin authors need only `switchyard-proxy` (api/plugin.ts).
export { Switchyard, createLogger, type ReloadResult, type RunningSummary, type StartOptions } from '../core/server.js';
export { loadConfig, type Catalogs, type ConfigSource, type LoadedConfig, type PluginCatalog, type Preset, type PresetCatalog } from '../core/config/load.js';
export type { SwitchyardConfig, RouteConfig, UpstreamConfig } from '../core/config/schema.js';
export { ConfigError, Errors, SwitchyardError, type ErrorCode } from '../core/errors.js';
export { builtinPlugins } from '../plugins/index.js';
export { presets } from '../presets/index.js';
