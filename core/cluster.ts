// Switchyard on every core: a primary process supervises N workers (node:cluster) that share the
// listening sockets. The primary serves nothing itself: it validates a config change once and has
// every worker apply it (or none), does the same with renewed TLS certificates, restarts a crashed
// worker with backoff, replaces the workers one at a time on demand, and drains all on SIGTERM.
import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { loadConfig, redactString, type Catalogs, type ConfigSource, type LoadedConfig } from './config/load.js';
import { ConfigWatcher } from './config/watch.js';
import { checkTlsPair, readTlsPair, type TlsPair, type TlsReloadResult } from './listener.js';
import { createLogger, type ReloadResult, type Switchyard } from './server.js';

/** What the primary tells a worker over the cluster IPC channel. */
type ToWorker =
  | { type: 'switchyard:reload'; id: number; trigger: string }
  | { type: 'switchyard:tls'; id: number; trigger: string; pair: TlsPair }
  | { type: 'switchyard:tls-reloaded'; id: number; result: TlsReloadResult }
  | { type: 'switchyard:stop' };
/** What a worker tells the primary. */
type ToPrimary =
  | { type: 'switchyard:ready'; port: number; adminPort?: number }
  | { type: 'switchyard:reloaded'; id: number; result: ReloadResult }
  | { type: 'switchyard:tls-applied'; id: number; result: TlsReloadResult }
  | { type: 'switchyard:reload-tls'; id: number; trigger: string }
  | { type: 'switchyard:roll'; trigger: string };

/** First restart delay after a crash; it doubles per crash in a row, up to RESTART_MAX_MS. */
const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 15_000;
/** A worker that stayed up this long counts as healthy: its next crash restarts it at once. */
const STABLE_AFTER_MS = 30_000;
/**
 * A draining worker goes on serving this long (each answer with Connection: close) before it
 * closes its idle keep-alive connections: a client that sends on one just as it closes would fail.
 */
const KEEP_ALIVE_GRACE_MS = 500;
/** Beyond server.shutdownTimeout, how long the primary waits for a draining worker before killing it. */
const STOP_GRACE_MS = 5_000;

/** `--workers` / WORKERS: a positive integer, or `auto` for one worker per CPU the process may use. */
export function parseWorkers(value: string): number {
  if (value === 'auto') return availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`workers must be a positive integer or "auto", not "${value}"`);
  return n;
}

export interface ClusterOptions {
  source: ConfigSource;
  catalogs: Catalogs;
  workers: number;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
  /** The primary watches the config and plugin files and reloads every worker on change. Default true when a file is given. */
  watch?: boolean;
}

/** How a rolling restart went: `replaced` workers were, one at a time. */
export interface RollResult {
  ok: boolean;
  replaced: number;
  error?: string;
}

/** The outcome of a cluster-wide reload: `workers` is how many applied it. */
export interface ClusterReloadResult extends ReloadResult {
  workers: number;
}

interface Slot {
  worker: Worker | undefined;
  /** Crashes in a row, for the backoff. */
  crashes: number;
  startedAt: number;
  restartTimer?: NodeJS.Timeout;
}

/**
 * The primary. `start()` validates the config, forks the workers and resolves once all listen.
 * Emits `reload` after every cluster-wide reload attempt.
 */
export class ClusterPrimary extends EventEmitter<{ reload: [ClusterReloadResult]; tls: [TlsReloadResult & { trigger: string }]; roll: [RollResult] }> {
  private readonly logger: Logger;
  private readonly env: NodeJS.ProcessEnv;
  private readonly slots: Slot[] = [];
  private loaded!: LoadedConfig;
  private watcher: ConfigWatcher | undefined;
  private tlsWatcher: ConfigWatcher | undefined;
  /** Config reloads, TLS reloads and rolling restarts run one at a time, in the order asked. */
  private queue: Promise<unknown> = Promise.resolve();
  private nextReloadId = 1;
  private stopping: Promise<number> | undefined;

  constructor(private readonly options: ClusterOptions) {
    super();
    this.env = options.env ?? process.env;
    this.logger = (options.logger ?? createLogger(this.env)).child({ role: 'primary' });
  }

  /** Throws ConfigError for an invalid config (before any worker starts), Error when a worker fails to start. */
  async start(): Promise<void> {
    this.loaded = await loadConfig(this.options.source, this.options.catalogs, this.env);
    const ready = Array.from({ length: this.options.workers }, (_, index) => {
      const slot: Slot = { worker: undefined, crashes: 0, startedAt: 0 };
      this.slots.push(slot);
      return this.fork(slot, index);
    });
    let ports: { port: number; adminPort?: number }[];
    try {
      ports = await Promise.all(ready);
    } catch (err) {
      await this.stop();
      throw err;
    }
    if (this.options.watch ?? this.loaded.file !== undefined) {
      this.watcher = new ConfigWatcher(this.loaded.files, (file) => void this.reload(`file changed: ${file}`));
      await this.watcher.ready();
      const files = this.tlsFiles();
      if (files) {
        this.tlsWatcher = new ConfigWatcher([files.cert, files.key], (file) => void this.reloadTls(`file changed: ${file}`));
        await this.tlsWatcher.ready();
      }
    }
    this.logger.info({ port: ports[0]!.port, adminPort: ports[0]!.adminPort, workers: this.pids }, 'cluster listening');
  }

  /** The workers' process ids, in slot order (a slot being restarted is left out). */
  get pids(): number[] {
    return this.slots.flatMap((slot) => (slot.worker?.process.pid === undefined ? [] : [slot.worker.process.pid]));
  }

  /**
   * Validates the config once, here; when valid, every worker reloads it. An invalid one is
   * rejected before any worker sees it, so none reloads. Reloads run one at a time.
   */
  reload(trigger = 'manual'): Promise<ClusterReloadResult> {
    return this.serially(async () => {
      const result = await this.reloadNow(trigger);
      this.emit('reload', result);
      return result;
    });
  }

  /**
   * Reads the certificate and key once, here, and checks that they match; only then does every
   * worker switch to that same pair (sent over IPC, so a file replaced meanwhile cannot split the
   * workers). A pair that does not load leaves every worker on the previous one.
   */
  reloadTls(trigger = 'manual'): Promise<TlsReloadResult> {
    return this.serially(async () => {
      const result = await this.reloadTlsNow(trigger);
      this.emit('tls', { ...result, trigger });
      return result;
    });
  }

  /**
   * Replaces the workers one at a time: a new one is started and listening before the old one is
   * told to drain (it stops accepting, its requests and long-lived connections get up to
   * server.shutdownTimeout, then it closes the rest and exits). So one worker fewer never serves.
   * A new worker that cannot start (say, the config on disk became invalid) stops the roll; the
   * old workers keep serving. Config and TLS reloads wait until the roll is over.
   */
  roll(trigger = 'manual'): Promise<RollResult> {
    return this.serially(async () => {
      const result = await this.rollNow(trigger);
      this.emit('roll', result);
      return result;
    });
  }

  private async rollNow(trigger: string): Promise<RollResult> {
    this.logger.info({ trigger, workers: this.slots.length }, 'rolling restart: replacing the workers one at a time');
    let replaced = 0;
    for (const [index, slot] of this.slots.entries()) {
      if (this.stopping) return { ok: false, replaced, error: 'shutting down' };
      const old = slot.worker;
      try {
        await this.fork(slot, index);
      } catch (err) {
        // Its exit scheduled a restart of the slot: the old worker keeps it instead.
        clearTimeout(slot.restartTimer);
        slot.restartTimer = undefined;
        if (old && old.process.exitCode === null) slot.worker = old;
        const error = (err as Error).message;
        this.logger.error({ trigger, worker: index, error }, 'rolling restart stopped: a new worker did not start; the others keep serving');
        return { ok: false, replaced, error };
      }
      if (old) {
        const clean = await this.drain(old);
        this.logger.info({ worker: index, pid: slot.worker?.process.pid, replacedPid: old.process.pid, clean }, 'rolling restart: worker replaced');
      }
      replaced++;
    }
    this.logger.info({ trigger, replaced, workers: this.pids }, 'rolling restart done');
    return { ok: true, replaced };
  }

  /** Asks the worker to drain and resolves once it exited: true when cleanly, false when it had to be killed. */
  private drain(worker: Worker): Promise<boolean> {
    if (worker.process.exitCode !== null || worker.process.signalCode !== null) return Promise.resolve(true);
    const grace = (this.loaded?.config.server.shutdownTimeout ?? 10_000) + STOP_GRACE_MS;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn({ pid: worker.process.pid }, 'worker did not drain in time: killing it');
        worker.process.kill('SIGKILL');
      }, grace);
      worker.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code === 0);
      });
      send(worker, { type: 'switchyard:stop' });
    });
  }

  private serially<T>(run: () => Promise<T>): Promise<T> {
    const next = this.queue.then(run);
    this.queue = next.catch(() => {});
    return next;
  }

  private tlsFiles(): { cert: string; key: string } | undefined {
    const tls = this.loaded.config.server.tls;
    return tls && { cert: resolve(this.loaded.baseDir, tls.cert), key: resolve(this.loaded.baseDir, tls.key) };
  }

  private async reloadTlsNow(trigger: string): Promise<TlsReloadResult> {
    if (this.stopping) return { ok: false, error: 'shutting down', workers: 0 };
    const files = this.tlsFiles();
    if (!files) return { ok: false, error: 'the config serves no TLS (server.tls)', workers: 0 };
    let pair: TlsPair;
    let serial: string;
    try {
      pair = readTlsPair(files.cert, files.key);
      serial = checkTlsPair(pair);
    } catch (err) {
      const error = (err as Error).message;
      this.logger.error({ trigger, cert: files.cert, error }, 'TLS reload rejected by the primary: no worker reloads, the previous certificate keeps serving');
      return { ok: false, error, workers: 0 };
    }
    const workers = this.liveWorkers();
    const results = await Promise.all(workers.map((worker) => this.ask<TlsReloadResult>(worker, 'switchyard:tls-applied', (id) => ({ type: 'switchyard:tls', id, trigger, pair }))));
    const failed = results.flatMap((result, i) => (result.ok ? [] : [{ pid: workers[i]!.process.pid, error: result.error }]));
    if (failed.length > 0) {
      this.logger.error({ trigger, failed }, 'TLS reload failed in some workers');
      return { ok: false, error: failed.map((f) => `worker ${f.pid}: ${f.error}`).join('; '), workers: results.length - failed.length };
    }
    this.logger.info({ trigger, serial, workers: results.length }, 'TLS certificate reloaded by every worker');
    return { ok: true, serial, workers: results.length };
  }

  private liveWorkers(): Worker[] {
    return this.slots.flatMap((slot) => (slot.worker ? [slot.worker] : []));
  }

  private async reloadNow(trigger: string): Promise<ClusterReloadResult> {
    if (this.stopping) return { ok: false, error: 'shutting down', workers: 0 };
    let next: LoadedConfig;
    try {
      next = await loadConfig(this.options.source, this.options.catalogs, this.env);
    } catch (err) {
      const error = redactString((err as Error).message, this.loaded.secrets);
      this.logger.error({ trigger, error, code: (err as { code?: string }).code }, 'config reload rejected by the primary: no worker reloads, the previous config keeps serving');
      return { ok: false, error, workers: 0 };
    }
    this.loaded = next;
    this.watcher?.update(next.files);
    const workers = this.liveWorkers();
    const results = await Promise.all(workers.map((worker) => this.ask<ReloadResult>(worker, 'switchyard:reloaded', (id) => ({ type: 'switchyard:reload', id, trigger }))));
    const failed = results.flatMap((result, i) => (result.ok ? [] : [{ pid: workers[i]!.process.pid, error: result.error }]));
    if (failed.length > 0) {
      // The config passed validation here, so this is a plugin's setup failing in a worker (a store
      // it could not open…): those workers keep the previous config until their next reload.
      this.logger.error({ trigger, failed }, 'config reload failed in some workers; they keep the previous config');
      return { ok: false, error: failed.map((f) => `worker ${f.pid}: ${f.error}`).join('; '), workers: results.length - failed.length };
    }
    const unchanged = results.every((result) => result.unchanged);
    this.logger.info({ trigger, workers: results.length, unchanged }, 'config reloaded by every worker');
    return { ok: true, workers: results.length, ...(unchanged ? { unchanged } : {}) };
  }

  /** Sends the worker a request and resolves with its answer (a failure if it exits first). */
  private ask<R extends { ok: boolean; error?: string }>(worker: Worker, answer: 'switchyard:reloaded' | 'switchyard:tls-applied', message: (id: number) => ToWorker): Promise<R> {
    const id = this.nextReloadId++;
    return new Promise((resolve) => {
      const onMessage = (reply: ToPrimary) => {
        if (reply.type === answer && reply.id === id) done(reply.result as R);
      };
      const onExit = () => done({ ok: false, error: 'the worker exited meanwhile' } as R);
      const done = (result: R) => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(result);
      };
      worker.on('message', onMessage);
      worker.once('exit', onExit);
      send(worker, message(id));
    });
  }

  /** Forks the slot's worker; resolves with its ports once it listens, rejects if it exits first. */
  private fork(slot: Slot, index: number): Promise<{ port: number; adminPort?: number }> {
    const worker = cluster.fork();
    slot.worker = worker;
    slot.startedAt = Date.now();
    const ready = new Promise<{ port: number; adminPort?: number }>((resolve, reject) => {
      const onMessage = (message: ToPrimary) => {
        if (message.type !== 'switchyard:ready') return;
        worker.off('message', onMessage);
        resolve({ port: message.port, adminPort: message.adminPort });
      };
      worker.on('message', onMessage);
      worker.once('exit', (code, signal) => reject(new Error(`worker ${index} exited before listening (code ${code}, signal ${signal})`)));
    });
    ready.catch(() => {}); // a restart's readiness is only logged; the first start awaits it
    // A worker's `POST /config/reload-tls` reloads every worker, and its `POST /workers/roll`
    // replaces them all, through here.
    worker.on('message', (message: ToPrimary) => {
      if (message.type === 'switchyard:reload-tls') {
        void this.reloadTls(message.trigger).then((result) => send(worker, { type: 'switchyard:tls-reloaded', id: message.id, result }));
      } else if (message.type === 'switchyard:roll') {
        void this.roll(message.trigger);
      }
    });
    worker.once('exit', (code, signal) => this.onExit(slot, index, worker, code, signal));
    return ready;
  }

  private onExit(slot: Slot, index: number, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    if (this.stopping) return;
    if (Date.now() - slot.startedAt >= STABLE_AFTER_MS) slot.crashes = 0;
    const delayMs = slot.crashes === 0 ? 0 : Math.min(RESTART_BASE_MS * 2 ** (slot.crashes - 1), RESTART_MAX_MS);
    slot.crashes++;
    this.logger.error({ worker: index, pid: worker.process.pid, code, signal, restartInMs: delayMs }, 'worker exited; restarting it');
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping) return;
      this.fork(slot, index).then(
        () => this.logger.info({ worker: index, pid: slot.worker?.process.pid }, 'worker restarted'),
        () => {}, // its exit is handled (and logged) by onExit
      );
    }, delayMs);
  }

  /**
   * Tells every worker to drain (each stops accepting, finishes its in-flight requests within
   * server.shutdownTimeout, closes its store) and resolves with the exit code once all are gone:
   * 0 when each exited cleanly.
   */
  stop(): Promise<number> {
    this.stopping ??= this.stopNow();
    return this.stopping;
  }

  private async stopNow(): Promise<number> {
    await this.watcher?.close();
    await this.tlsWatcher?.close();
    const exits = this.slots.map((slot) => {
      clearTimeout(slot.restartTimer);
      return slot.worker ? this.drain(slot.worker) : Promise.resolve(true);
    });
    const clean = (await Promise.all(exits)).every(Boolean);
    this.logger.info({ clean }, 'all workers stopped');
    return clean ? 0 : 1;
  }

  /**
   * SIGTERM/SIGINT drain the workers and exit; a second SIGINT kills them; SIGHUP reloads the
   * config and the certificate files in every worker; SIGUSR2 replaces the workers one at a time.
   */
  handleSignals(): void {
    const shutdown = (signal: string) => {
      if (this.stopping) {
        // A repeated SIGTERM is ignored: `timeout`, systemd and docker signal the primary and then
        // its whole group, and they escalate to SIGKILL on their own once their timeout passes.
        if (signal === 'SIGTERM') return;
        this.logger.warn({ signal }, 'second signal: killing the workers');
        for (const slot of this.slots) slot.worker?.process.kill('SIGKILL');
        process.exit(1);
      }
      this.logger.info({ signal }, 'shutting down: draining every worker');
      void this.stop().then((code) => process.exit(code));
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGHUP', () => {
      void this.reload('SIGHUP');
      if (this.tlsFiles()) void this.reloadTls('SIGHUP');
    });
    process.on('SIGUSR2', () => void this.roll('SIGUSR2'));
  }
}

function send(worker: Worker, message: ToWorker): void {
  // A worker that is exiting may have closed its channel already; its exit is handled elsewhere.
  if (worker.isConnected()) worker.send(message, (err: Error | null) => void err);
}

/**
 * The worker's side: reloads when the primary says so (its own watcher is off, and SIGHUP is the
 * primary's), and calls `shutdown` when the primary asks it to drain.
 */
export function serveAsWorker(yard: Switchyard, shutdown: (reason: string) => void): void {
  // The worker's own lines go out before the primary hears from it, so that the shared log reads in
  // the order things happened (a worker's 'config reloaded' before the primary's summary of all).
  const toPrimary = (message: ToPrimary) => {
    yard.logger.flush();
    process.send?.(message);
  };
  const tlsAnswers = new Map<number, (result: TlsReloadResult) => void>();
  let nextTlsId = 1;
  yard.setKeepAliveGrace(KEEP_ALIVE_GRACE_MS);
  yard.routeRolls((trigger) => toPrimary({ type: 'switchyard:roll', trigger }));
  yard.routeTlsReloads((trigger) => new Promise((resolve) => {
    const id = nextTlsId++;
    tlsAnswers.set(id, resolve);
    toPrimary({ type: 'switchyard:reload-tls', id, trigger });
  }));
  process.on('message', (message: ToWorker) => {
    if (message.type === 'switchyard:reload') {
      void yard.reload(message.trigger).then((result) => toPrimary({ type: 'switchyard:reloaded', id: message.id, result }));
    } else if (message.type === 'switchyard:tls') {
      toPrimary({ type: 'switchyard:tls-applied', id: message.id, result: yard.applyTls(message.pair, message.trigger) });
    } else if (message.type === 'switchyard:tls-reloaded') {
      tlsAnswers.get(message.id)?.(message.result);
      tlsAnswers.delete(message.id);
    } else if (message.type === 'switchyard:stop') {
      shutdown('stop from the primary');
    }
  });
  // A terminal hangup reaches the whole process group; the primary turns it into one reload of all.
  process.on('SIGHUP', () => {});
  // SIGUSR2 to the whole group is the primary's (a rolling restart); by default it would end the worker.
  process.on('SIGUSR2', () => {});
  toPrimary({ type: 'switchyard:ready', port: yard.port, adminPort: yard.adminPort });
}
