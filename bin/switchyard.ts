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
import { argumentProblem } from './args.js';
import { startBanner } from './banner.js';
import { healthCommand, writeHealthFile } from './health.js';
import { PROBE_USAGE, probeCommand, ProbeUsageError } from './probe.js';
import { STATUS_USAGE, statusCommand } from './status.js';

const catalogs: Catalogs = { plugins: builtinPlugins, presets };
const DEFAULT_CONFIG_FILES = ['switchyard.yaml', 'switchyard.yml', 'switchyard.json'];

const PRESET_NAMES = Object.keys(presets).join(', ');

const HELP = {
  start: `Usage: switchyard start [--preset NAME] [--config FILE] [--port N] [--host H] [--no-watch]
                        [--workers N|auto] [--env-file FILE] [--pretty]

Starts the proxy from a preset, a config file, or ./switchyard.yaml in the current directory.
  --preset NAME     one of: ${PRESET_NAMES} (settings from environment variables)
  --config FILE     a YAML or JSON config; with --preset, its keys are laid over the preset's
  --port N, --host H  where to listen (win over PORT, HOST and the config)
  --no-watch        do not reload when the config or a plugin file changes (SIGHUP still does)
  --workers N|auto  N processes sharing the port (auto: one per CPU); see docs/scaling.md
  --env-file FILE   read variables from FILE (default ./.env when it exists); variables already set win
  --pretty          human-readable log lines and a start banner (default on a terminal; LOG_FORMAT=json|pretty)
Examples:
  BACKEND_SERVERS=http://10.0.0.1:8080,http://10.0.0.2:8080 switchyard start --preset balancer
  switchyard start --config ./switchyard.yaml
Environment: PORT, HOST, WORKERS, LOG_LEVEL (info), LOG_FORMAT, and whatever the preset reads.`,
  validate: `Usage: switchyard validate FILE [--preset NAME] [--env-file FILE]

Checks a config file as start would (the schema, every plugin's options, the plugin files) without
starting anything. Prints one line per problem and exits 2, or a summary and exits 0.`,
  probe: `Usage: ${PROBE_USAGE}

Measures upstreams (availability, errors by kind, latency percentiles) with bounded concurrent
requests at a fixed rate, recommends an order and weights, and with --write sets the weights in a
config file (a running switchyard picks them up). Ctrl-C stops early and prints what was measured.`,
  health: `Usage: switchyard health [URL]

Asks a running switchyard's /health and exits 0 when it answers 200, 1 otherwise: a container's
health check. Without URL it asks the one that start wrote to the file SWITCHYARD_HEALTH_FILE
names (its own port, admin port and prefix, http or https); else http://127.0.0.1:$PORT/health.`,
  presets: `Usage: switchyard presets

Lists the presets with the environment variables each reads.`,
  status: `Usage: ${STATUS_USAGE}

The overview and upstream table of a running switchyard, read from its admin API (the console's
data): once, or refreshing with --watch. The admin key from --key, SWITCHYARD_ADMIN_KEY or ADMIN_KEY.`,
  import: `Usage: switchyard import speedmimi FILE

Prints a Switchyard config equivalent to another proxy's config file, with a comment line per
setting it could not carry over: switchyard import speedmimi configs/config.yaml > switchyard.yaml`,
} as const;

const USAGE = `Usage:
  switchyard start [--preset NAME] [--config FILE] [--port N] [--host H] [--no-watch] [--workers N|auto] [--pretty]
  switchyard validate FILE [--preset NAME]
  switchyard presets
  switchyard health [URL]
  switchyard import speedmimi FILE
  ${PROBE_USAGE}
  ${STATUS_USAGE}
  switchyard --version
Every command takes --env-file FILE (default: ./.env when it exists) and --help.
Presets: ${PRESET_NAMES}. Docs: README.md and docs/, shipped in the package.`;

class UsageError extends Error {}

/** The command being run, so that bad usage prints that command's help rather than all of it. */
let command: string | undefined;


async function main(argv: string[]): Promise<number> {
  const rest = loadEnvFile(argv);
  command = rest.shift();
  if (command !== undefined && Object.hasOwn(HELP, command) && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(HELP[command as keyof typeof HELP]);
    return 0;
  }
  switch (command) {
    case '--version':
    case '-v':
    case 'version':
      console.log(packageVersion());
      return 0;
    case 'start':
      return start(rest);
    case 'validate':
      return validate(rest);
    case 'probe':
      return probeCommand(rest, catalogs);
    case 'import':
      return importConfig(rest);
    case 'health':
      return healthCommand(rest);
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

/** The version of the installed package, from its package.json (two levels above dist/bin/). */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
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
        pretty: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError(argumentProblem(err));
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
  // A person at a terminal gets readable lines; a pipe (a log collector, a container's log) JSON.
  if (values.pretty) process.env.LOG_FORMAT = 'pretty';
  process.env.LOG_FORMAT ??= process.stdout.isTTY ? 'pretty' : 'json';
  if (process.env.LOG_FORMAT !== 'pretty' && process.env.LOG_FORMAT !== 'json') throw new UsageError(`LOG_FORMAT=${process.env.LOG_FORMAT}: use json or pretty`);
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
  if (process.env.LOG_FORMAT === 'pretty' && cluster.isPrimary) process.stdout.write(startBanner(yard.summary()));
  if (process.env.SWITCHYARD_HEALTH_FILE && cluster.isPrimary) writeHealthFile(process.env.SWITCHYARD_HEALTH_FILE, yard.summary());
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
  console.log(`${file}: valid (${count(loaded.config.routes.length, 'route')}, ${count(plugins, 'plugin')})`);
  return 0;
}

/**
 * One sentence for the failures a person can fix without reading a stack trace: a port taken, a
 * directory that cannot be written. Undefined for anything else (a bug: the stack helps then).
 */
function runtimeProblem(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.code === 'EADDRINUSE') {
    return `port ${e.port} on ${e.address} is already in use (another switchyard, or another program, listens there): stop it, or listen elsewhere with --port N or PORT=N`;
  }
  if (e?.code === 'EADDRNOTAVAIL') return `cannot listen on ${e.address}: no network interface has that address; set --host or HOST`;
  if ((e?.code === 'EACCES' || e?.code === 'EPERM') && e.syscall === 'listen') {
    return `not allowed to listen on port ${e.port} (ports below 1024 need privileges): use a port above 1023 with --port N or PORT=N`;
  }
  // The store's directory (core/state.ts) and the like: their message already names path and setting.
  if (e?.code === 'EACCES' || e?.code === 'EPERM' || e?.code === 'EROFS') return e.message;
  return undefined;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError || err instanceof ProbeUsageError) {
      const help = command !== undefined && Object.hasOwn(HELP, command) ? HELP[command as keyof typeof HELP] : USAGE;
      console.error(`switchyard: ${err.message}\n\n${help}`);
      process.exitCode = 2;
    } else if (err instanceof ConfigError) {
      console.error(`switchyard: invalid configuration (${err.code})\n${err.message}`);
      process.exitCode = 2;
    } else if (runtimeProblem(err) !== undefined) {
      console.error(`switchyard: ${runtimeProblem(err)}`);
      process.exitCode = 1;
    } else {
      console.error(`switchyard: ${(err as Error).stack ?? String(err)}`);
      process.exitCode = 1;
    }
  },
);
