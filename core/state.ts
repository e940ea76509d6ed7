// State that outlives a config reload: per-plugin objects in memory, upstream health, and the
// persistent key-value store (keyv over SQLite by default, or Redis) opened on first use.
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Keyv from 'keyv';
import { SwitchyardError } from './errors.js';
import type { Upstream } from './types.js';

/** The persistent store as plugins see it: a keyv instance namespaced to the plugin. */
export type PluginStore = Keyv;

/**
 * Messages between the processes sharing `server.store`, one channel per plugin: Redis pub/sub
 * on a Redis store; within the process on SQLite and memory:// (which no two processes share
 * live). Delivery is at most once: a process that is not connected when a message goes out
 * never sees it.
 */
export interface StoreChannel {
  /** Resolves once the store has passed the message on to every subscribed process (this one included). */
  publish(message: string): Promise<void>;
  /** `listener` gets every message published from now on; the returned function stops that. */
  subscribe(listener: (message: string) => void): () => void;
  /** Whether this process receives messages yet (a Redis subscription takes a round trip to set up). */
  readonly listening: boolean;
}

/** The value under `key`, made by `init` and kept on first use. */
export function getOrCreate<K, V>(map: Map<K, V>, key: K, init: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = init();
    map.set(key, value);
  }
  return value;
}

/** In-memory state keyed by plugin, route and key; reloads hand back the same objects. */
export class StateRegistry {
  private readonly entries = new Map<string, object>();

  get<T extends object>(plugin: string, route: string | undefined, key: string, init: () => T): T {
    return getOrCreate(this.entries, `${plugin}\u0000${route ?? '*'}\u0000${key}`, init) as T;
  }

}

export interface HealthStatus {
  healthy: boolean;
  /** Why it is down: "<plugin>: <reason>" for each plugin holding it down (never a secret). */
  reason?: string;
  /** Epoch ms of the last change. */
  since: number;
}

type HealthListener = (upstream: Upstream, status: HealthStatus) => void;

/** Upstream health as one plugin sees it: its marks are its own. */
export interface HealthView {
  isHealthy(upstream: Upstream): boolean;
  get(upstream: Upstream): HealthStatus;
  /**
   * Marks the upstream down on this plugin's behalf (`false`, with a reason), or takes this
   * plugin's mark back (`true`). It is healthy again only when no plugin holds it down, so a
   * health check that sees it recover cannot undo an open circuit breaker.
   */
  set(upstream: Upstream, healthy: boolean, reason?: string): void;
  /** `change` fires once per transition of the combined flag, never per request. */
  on(event: 'change', listener: HealthListener): void;
  off(event: 'change', listener: HealthListener): void;
}

/**
 * Which upstreams are healthy. Health checks and breakers write it, each plugin keeping its own
 * marks; selection reads the combined flag. Emits `change` once per transition.
 */
export class UpstreamHealth extends EventEmitter<{ change: [Upstream, HealthStatus] }> {
  /** upstream id → plugin → reason it holds the upstream down */
  private readonly holds = new Map<string, Map<string, string>>();
  private readonly status = new Map<string, HealthStatus>();
  /** How many upstreams are down now: while none is, every request's checks answer without a lookup. */
  private downCount = 0;

  constructor() {
    super();
    this.setMaxListeners(0); // one listener per plugin instance that follows health
  }

  isHealthy(upstream: Upstream): boolean {
    if (this.downCount === 0) return true;
    return this.status.get(upstream.id)?.healthy ?? true;
  }

  get(upstream: Upstream): HealthStatus {
    return this.status.get(upstream.id) ?? { healthy: true, since: 0 };
  }

  /** Marks `upstream` down for `source` (healthy = false) or takes that mark back. */
  set(upstream: Upstream, healthy: boolean, reason = 'marked down', source = 'core'): void {
    let held = this.holds.get(upstream.id);
    if (healthy) {
      if (!held?.delete(source)) return;
    } else {
      if (!held) this.holds.set(upstream.id, (held = new Map()));
      held.set(source, reason);
    }
    const down = held !== undefined && held.size > 0;
    const current = this.status.get(upstream.id);
    const next: HealthStatus = down
      ? { healthy: false, reason: [...held!].map(([by, why]) => `${by}: ${why}`).join('; '), since: current && !current.healthy ? current.since : Date.now() }
      : { healthy: true, since: Date.now() };
    this.status.set(upstream.id, next);
    if ((current?.healthy ?? true) === next.healthy) return;
    this.downCount += next.healthy ? -1 : 1;
    this.emit('change', upstream, next);
  }

  /** The view a plugin gets as `api.health`: its marks carry its name. */
  viewFor(source: string): HealthView {
    return {
      isHealthy: (upstream) => this.isHealthy(upstream),
      get: (upstream) => this.get(upstream),
      set: (upstream, healthy, reason) => this.set(upstream, healthy, reason, source),
      on: (event, listener) => this.on(event, listener),
      off: (event, listener) => this.off(event, listener),
    };
  }
}

/** How long closing the stores may take at shutdown (ms). */
const STORE_CLOSE_TIMEOUT = 2000;

/** How long a Redis store waits for a connection before the call fails (ms). */
const REDIS_CONNECT_TIMEOUT = 2000;

/**
 * Opens keyv stores for a `sqlite://path`, `redis://…` (or `rediss://`) or `memory://` URL, one
 * namespace per plugin.
 */
export class StoreFactory {
  private readonly opened = new Map<string, Keyv>();
  private readonly channels = new Map<string, LocalChannel | RedisChannel>();

  private constructor(private readonly url: string, private readonly baseDir: string, private readonly adapters: StoreAdapters, private readonly setting: string) {}

  /**
   * Only the adapter the URL names is loaded: the Redis client alone is about 8 MiB of RSS that a
   * process on SQLite or memory:// has no use for.
   */
  /** `setting`: what a person changes to move the store, named when its directory cannot be made. */
  static async create(url: string, baseDir: string, setting = 'server.store'): Promise<StoreFactory> {
    if (!/^(sqlite|memory|rediss?):\/\//.test(url)) {
      throw new SwitchyardError('SY_ERR_STORE_UNSUPPORTED', `store "${url.replace(/\/\/[^@/]*@/, '//***@')}" is not supported: use sqlite://<path>, redis://host:port or memory://`);
    }
    const adapters: StoreAdapters = {};
    if (url.startsWith('redis')) adapters.redis = await import('@keyv/redis');
    if (url.startsWith('sqlite')) adapters.sqlite = (await import('@keyv/sqlite')).default;
    return new StoreFactory(url, baseDir, adapters, setting);
  }

  /** The namespace's store; the same instance every time, so reloads reuse connections. */
  open(namespace: string): Keyv {
    let keyv = this.opened.get(namespace);
    if (keyv) return keyv;
    if (this.url.startsWith('memory://')) {
      keyv = new Keyv({ namespace });
    } else if (this.adapters.redis) {
      const { createKeyv: createRedisKeyv, defaultReconnectStrategy } = this.adapters.redis;
      // A Redis that is down must fail calls at once rather than queue them until it returns
      // (the offline queue would hold requests up); the client keeps reconnecting in the background.
      keyv = createRedisKeyv(
        { url: this.url, disableOfflineQueue: true, socket: { connectTimeout: REDIS_CONNECT_TIMEOUT, reconnectStrategy: defaultReconnectStrategy } },
        { namespace, throwOnErrors: true, connectionTimeout: REDIS_CONNECT_TIMEOUT },
      );
      connectOnce(keyv.store as RedisAdapter);
    } else {
      const file = resolve(this.baseDir, this.url.slice('sqlite://'.length));
      try {
        mkdirSync(dirname(file), { recursive: true });
      } catch (err) {
        const { code, path = dirname(file) } = err as NodeJS.ErrnoException;
        const failed = new Error(`cannot create the store's directory ${path} (${code}); this user cannot write there: set ${this.setting} to a directory it can write`, { cause: err });
        throw Object.assign(failed, { code, path });
      }
      // A short busy timeout: each waiting call holds one of libuv's four threads, and a file locked
      // by another process would otherwise stall DNS, file and zlib work for the whole process.
      const KeyvSqlite = this.adapters.sqlite!;
      const sqlite = new KeyvSqlite({ uri: `sqlite://${file}`, table: 'switchyard', busyTimeout: 250 });
      // WAL: a write commits without the rollback journal's fsyncs (a counter update 0.92 → 0.10 ms
      // on this disk), so --workers sharing the file hold its lock ~9× shorter and readers never wait
      // for a writer; on a slow disk the rollback journal let 60 concurrent updates from two workers
      // outwait the busy timeout. NORMAL survives a crash of the process; a power cut may lose the
      // last commits, which for caches and counters is a few hits. The mode is kept in the file, so
      // a switch that lost the race to another worker's is harmless.
      for (const pragma of ['PRAGMA journal_mode=WAL', 'PRAGMA synchronous=NORMAL']) sqlite.query(pragma).catch(() => {});
      keyv = new Keyv({ store: sqlite, namespace });
    }
    // Failures surface through the call that failed; without a listener keyv's 'error' event would crash.
    keyv.on('error', () => {});
    this.opened.set(namespace, keyv);
    return keyv;
  }

  /** The namespace's channel to the other processes on this store; the same instance every time. */
  channel(namespace: string): StoreChannel {
    return getOrCreate(this.channels, namespace, () =>
      this.adapters.redis ? new RedisChannel(this.open(namespace).store as RedisAdapter, `switchyard:${namespace}`) : new LocalChannel());
  }

  /** Disconnects every store; a connection stuck reconnecting to a store that is gone cannot hold up a shutdown. */
  async close(): Promise<void> {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
    let timer: NodeJS.Timeout | undefined;
    const giveUp = new Promise<void>((resolve) => { timer = setTimeout(resolve, STORE_CLOSE_TIMEOUT); });
    await Promise.race([Promise.allSettled([...this.opened.values()].map((keyv) => keyv.disconnect())), giveUp]);
    clearTimeout(timer);
    this.opened.clear();
  }
}

interface StoreAdapters {
  redis?: typeof import('@keyv/redis');
  sqlite?: typeof import('@keyv/sqlite').default;
}

interface RedisAdapter {
  getClient(): Promise<unknown>;
}

/** The part of a node-redis client a channel uses. */
interface RedisPubSubClient {
  duplicate(): RedisPubSubClient;
  connect(): Promise<unknown>;
  publish(channel: string, message: string): Promise<unknown>;
  subscribe(channel: string, listener: (message: string) => void): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  destroy(): void;
}

/** Listeners of one channel, called with each message in turn. */
class Listeners {
  private readonly all = new Set<(message: string) => void>();

  add(listener: (message: string) => void): () => void {
    this.all.add(listener);
    return () => {
      this.all.delete(listener);
    };
  }

  deliver(message: string): void {
    for (const listener of this.all) listener(message);
  }
}

/** A channel within this process: SQLite and memory:// have no live link between processes. */
class LocalChannel implements StoreChannel {
  private readonly listeners = new Listeners();
  readonly listening = true;

  publish(message: string): Promise<void> {
    this.listeners.deliver(message);
    return Promise.resolve();
  }

  subscribe(listener: (message: string) => void): () => void {
    return this.listeners.add(listener);
  }

  close(): void {}
}

/**
 * Redis pub/sub: messages go out on the store's own connection, and arrive on a second one (a
 * subscribed connection can do nothing else), opened at the first subscribe. node-redis
 * subscribes again by itself after a reconnect; a first connection that fails is tried again at
 * the next publish.
 */
class RedisChannel implements StoreChannel {
  private readonly listeners = new Listeners();
  private subscriber: Promise<RedisPubSubClient | undefined> | undefined;
  private wanted = false;
  private closed = false;
  listening = false;

  constructor(private readonly adapter: RedisAdapter, private readonly name: string) {}

  async publish(message: string): Promise<void> {
    if (this.wanted) this.subscriber ??= this.listen();
    const client = (await this.adapter.getClient()) as RedisPubSubClient;
    await client.publish(this.name, message);
  }

  subscribe(listener: (message: string) => void): () => void {
    this.wanted = true;
    this.subscriber ??= this.listen();
    return this.listeners.add(listener);
  }

  private async listen(): Promise<RedisPubSubClient | undefined> {
    let connection: RedisPubSubClient | undefined;
    try {
      connection = ((await this.adapter.getClient()) as RedisPubSubClient).duplicate();
      // Errors surface as reconnects; without a listener the client's 'error' event would crash.
      connection.on('error', () => {});
      await connection.connect();
      await connection.subscribe(this.name, (message) => this.listeners.deliver(message));
      if (this.closed) throw new Error('closed');
      this.listening = true;
      return connection;
    } catch {
      connection?.destroy();
      this.subscriber = undefined;
      return undefined;
    }
  }

  close(): void {
    this.closed = true;
    this.listening = false;
    void this.subscriber?.then((connection) => connection?.destroy());
  }
}

/**
 * Without the offline queue, calls that race the first connection each try to connect, and all
 * but one fail ("Socket already opened"). Calls made while a connection attempt runs share it.
 */
function connectOnce(adapter: RedisAdapter): void {
  const getClient = adapter.getClient.bind(adapter);
  let connecting: Promise<unknown> | undefined;
  adapter.getClient = () => {
    connecting ??= getClient().finally(() => {
      connecting = undefined;
    });
    return connecting;
  };
}
