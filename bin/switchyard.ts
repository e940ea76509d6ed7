#!/usr/bin/env node
// The `switchyard` command: start a proxy, validate a config, list presets.
// Exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config.
import cluster from 'node:cluster';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs, parseEnv } from 'node:util';
import { ClusterPrimary, parseWorkers, serveAsWorker } from '../core/cluster.js';
import { ConfigError, loadConfig, Switchyard, type Catalogs, type ConfigSource } from '../core/index.js';
import { builtinPlugins } from '../plugins/index.js';
import { presets } from '../presets/index.js';
import { importedYaml, ImportError, importSpeedMimi } from '../presets/speedmimi.js';
import { PROBE_USAGE, probeCommand, ProbeUsageError } from './probe.js';
import { STATUS_USAGE, statusCommand } from './status.js';

const catalogs: Catalogs = { plugins: builtinPlugins, presets };
const DEFAULT_CONFIG_FILES = ['switchyard.yaml', 'switchyard.yml', 'switchyard.json'];

const USAGE = `Usage:
  switchyard start [--preset NAME] [--config FILE] [--port N] [--host H] [--no-watch] [--workers N|auto] [--env-file FILE]
  switchyard validate FILE [--preset NAME]
  switchyard presets
  switchyard import speedmimi FILE
  ${PROBE_USAGE}
  ${STATUS_USAGE}

start needs a preset, a config file, or ./switchyard.yaml in the current directory:
  switchyard start --preset balancer            (BACKEND_SERVERS=http://10.0.0.1:8080,http://10.0.0.2:8080)
  switchyard start --config ./switchyard.yaml
import prints a Switchyard config equivalent to another proxy's config file, with a comment line per
setting it could not carry over: switchyard import speedmimi configs/config.yaml > switchyard.yaml
--workers runs N processes sharing the port (auto: one per CPU); see docs/scaling.md.
Environment: PORT, HOST (override the config), WORKERS, LOG_LEVEL (info), and whatever the preset reads.
./.env is read first when it exists (--env-file FILE reads another); variables already set win.
Presets: ${Object.keys(presets).join(', ')}. Docs: README.md`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = loadEnvFile(argv);
  switch (command) {
    case 'start':
      return start(rest);
    case 'validate':
      return validate(rest);
    case 'probe':
      return probeCommand(rest, catalogs);
    case 'import':
      return importConfig(rest);
    case 'status':
      return statusCommand(rest);
    case 'presets':
      for (const [name, preset] of Object.entries(presets)) console.log(`${name.padEnd(12)} ${preset.description}`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/**
 * Reads `--env-file FILE` (any command), or else ./.env when there is one, into process.env, as
 * the proxies people migrate from did at start. A variable already set in the environment wins.
 * Returns the arguments without --env-file.
 */
function loadEnvFile(argv: string[]): string[] {
  const args = [...argv];
  let file: string | undefined;
  const at = args.findIndex((arg) => arg === '--env-file' || arg.startsWith('--env-file='));
  if (at !== -1) {
    const [flag] = args.splice(at, 1);
    file = flag!.includes('=') ? flag!.slice('--env-file='.length) : args.splice(at, 1)[0];
    if (!file) throw new UsageError('--env-file needs a file: --env-file ./production.env');
  }
  const path = file ?? '.env';
  if (file === undefined && !existsSync(path)) return args;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--env-file ${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  for (const [name, value] of Object.entries(parseEnv(text))) {
    if (process.env[name] === undefined) process.env[name] = value;
  }
  return args;
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        preset: { type: 'string' },
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        'no-watch': { type: 'boolean' },
        workers: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function sourceFrom(values: ReturnType<typeof parse>['values'], file: string | undefined): ConfigSource {
  let port: number | undefined;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port ${values.port} is not a port number`);
  }
  return { file, preset: values.preset, port, host: values.host };
}

async function start(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  let file = values.config;
  if (file === undefined && values.preset === undefined) {
    file = DEFAULT_CONFIG_FILES.find((name) => existsSync(name));
    if (file === undefined) {
      console.error(`switchyard: nothing to start: no --preset, no --config, and no ./switchyard.yaml here.\n\n${USAGE}`);
      return 2;
    }
  }
  const workers = values.workers ?? process.env.WORKERS;
  if (workers !== undefined && cluster.isPrimary) return startCluster(workers, sourceFrom(values, file), values['no-watch'] ? false : undefined);
  // A cluster worker never watches: the primary validates changes once and tells every worker.
  const watch = values['no-watch'] || cluster.isWorker ? false : undefined;
  const yard = await Switchyard.start({ source: sourceFrom(values, file), catalogs, watch });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      if (cluster.isWorker) return; // the primary decides when draining has taken too long
      yard.logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    yard.logger.info({ signal }, 'shutting down: draining in-flight requests');
    yard.stop().then(() => process.exit(0), (err: unknown) => {
      yard.logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  if (cluster.isWorker) serveAsWorker(yard, shutdown);
  else process.on('SIGHUP', () => void yard.reload('SIGHUP'));
  process.on('unhandledRejection', (err) => yard.logger.error({ err }, 'unhandled promise rejection'));
  return -1; // keep running
}

async function startCluster(workers: string, source: ConfigSource, watch: boolean | undefined): Promise<number> {
  let count: number;
  try {
    count = parseWorkers(workers);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const primary = new ClusterPrimary({ source, catalogs, workers: count, watch });
  await primary.start();
  primary.handleSignals();
  return -1; // keep running
}

const IMPORTERS = ['speedmimi'];

function importConfig(args: string[]): number {
  const [kind, file, ...extra] = args;
  if (kind === undefined || !IMPORTERS.includes(kind)) throw new UsageError(`import needs the kind of config: switchyard import ${IMPORTERS.join('|')} FILE`);
  if (file === undefined) throw new UsageError(`import ${kind} needs the file: switchyard import ${kind} FILE`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    console.error(`switchyard: cannot read ${file}: ${(err as Error).message}`);
    return 2;
  }
  try {
    process.stdout.write(importedYaml(importSpeedMimi(text, file), file));
  } catch (err) {
    if (!(err instanceof ImportError)) throw err;
    console.error(`switchyard: cannot import ${err.message}`);
    return 2;
  }
  return 0;
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  const file = positionals[0] ?? values.config;
  if (file === undefined) throw new UsageError('validate needs a config file: switchyard validate FILE');
  const loaded = await loadConfig(sourceFrom(values, file), catalogs);
  const plugins = loaded.globalPlugins.length + loaded.routePlugins.reduce((n, list) => n + list.length, 0);
  console.log(`${file}: valid (${loaded.config.routes.length} routes, ${plugins} plugins)`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || err instanceof ProbeUsageError) {
      console.error(`switchyard: ${err.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      console.error(`switchyard: invalid configuration (${err.code})\n${err.message}`);
      process.exitCode = 2;
    } else {
      console.error(`switchyard: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    }
  },
);
