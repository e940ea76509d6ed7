// Counters kept in the shared store (api.store, keyv), so several Switchyard instances enforce
// one limit. keyv has no atomic increment, so where the store underneath offers one we use it.
import type { PluginStore } from '../../core/index.js';
import type { Counters } from './limiter.js';

type Query = (sql: string, ...params: unknown[]) => Promise<Array<Record<string, unknown>>>;

interface RedisLike {
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  pExpire?: unknown;
}

/**
 * The best counters the store allows: SQLite and Redis count atomically (one statement, one
 * script), so instances never lose each other's hits; any other keyv store falls back to
 * get-then-set, exact inside one process and approximate across processes.
 */
export function storeCounters(store: PluginStore, now: () => number = Date.now): Counters {
  const adapter = store.store as { query?: unknown; opts?: { dialect?: string }; getClient?: () => Promise<RedisLike> } | undefined;
  const namespace = `${store.namespace ?? 'rate-limit'}:`;
  if (adapter && typeof adapter.query === 'function' && adapter.opts?.dialect === 'sqlite') {
    return new SqliteCounters(adapter.query.bind(adapter) as Query, namespace, now);
  }
  if (adapter && typeof adapter.getClient === 'function') {
    return new RedisCounters(() => adapter.getClient!(), namespace);
  }
  return new KeyvCounters(store, now);
}

const TABLE = 'switchyard_counters';

/** One row per counter; an upsert with RETURNING is a single atomic statement in SQLite. */
class SqliteCounters implements Counters {
  private ready: Promise<unknown> | undefined;
  private writes = 0;

  constructor(private readonly query: Query, private readonly namespace: string, private readonly now: () => number) {}

  async increment(key: string, ttlMs: number): Promise<number> {
    await this.table();
    const now = this.now();
    if (++this.writes % 1000 === 0) void this.query(`DELETE FROM ${TABLE} WHERE expires <= ?`, now).catch(() => {});
    // SET expressions see the row as it was, so both CASEs test the old expiry.
    const rows = await this.query(
      `INSERT INTO ${TABLE} (key, value, expires) VALUES (?, 1, ?)
       ON CONFLICT(key) DO UPDATE SET
         value = CASE WHEN expires <= ? THEN 1 ELSE value + 1 END,
         expires = CASE WHEN expires <= ? THEN excluded.expires ELSE expires END
       RETURNING value`,
      this.namespace + key, now + ttlMs, now, now,
    );
    return Number(rows[0]?.value ?? 1);
  }

  async get(key: string): Promise<number> {
    await this.table();
    const rows = await this.query(`SELECT value FROM ${TABLE} WHERE key = ? AND expires > ?`, this.namespace + key, this.now());
    return Number(rows[0]?.value ?? 0);
  }

  async set(key: string, value: number, ttlMs: number): Promise<void> {
    await this.table();
    await this.query(
      `INSERT INTO ${TABLE} (key, value, expires) VALUES (?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
      this.namespace + key, value, this.now() + ttlMs,
    );
  }

  private table(): Promise<unknown> {
    this.ready ??= this.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires INTEGER NOT NULL)`)
      .catch((err: unknown) => {
        this.ready = undefined;
        throw err;
      });
    return this.ready;
  }
}

const INCREMENT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

/** INCR and PEXPIRE in one script: atomic on the server, whatever the number of instances. */
class RedisCounters implements Counters {
  private connecting: Promise<RedisLike> | undefined;

  constructor(private readonly connect: () => Promise<RedisLike>, private readonly namespace: string) {}

  // @keyv/redis's getClient() connects when the client is closed, and two calls racing there make
  // the second connect() fail ("Socket already opened"): one connection attempt at a time.
  private client(): Promise<RedisLike> {
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  async increment(key: string, ttlMs: number): Promise<number> {
    const client = await this.client();
    return Number(await client.eval(INCREMENT, { keys: [this.namespace + key], arguments: [String(ttlMs)] }));
  }

  async get(key: string): Promise<number> {
    const client = await this.client();
    return Number(await client.eval(`return redis.call('GET', KEYS[1])`, { keys: [this.namespace + key], arguments: [] }) ?? 0);
  }

  async set(key: string, value: number, ttlMs: number): Promise<void> {
    const client = await this.client();
    await client.eval(`redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])`, { keys: [this.namespace + key], arguments: [String(value), String(ttlMs)] });
  }
}

/** Any keyv store: read, add one, write back, serialised per key inside this process. */
class KeyvCounters implements Counters {
  private readonly pending = new Map<string, Promise<unknown>>();

  constructor(private readonly store: PluginStore, private readonly now: () => number) {}

  increment(key: string, ttlMs: number): Promise<number> {
    return this.serial(key, async () => {
      const now = this.now();
      const entry = await this.store.get<{ value: number; expires: number }>(key);
      const next = entry && entry.expires > now ? { value: entry.value + 1, expires: entry.expires } : { value: 1, expires: now + ttlMs };
      await this.store.set(key, next, next.expires - now);
      return next.value;
    });
  }

  async get(key: string): Promise<number> {
    const entry = await this.store.get<{ value: number; expires: number }>(key);
    return entry && entry.expires > this.now() ? entry.value : 0;
  }

  async set(key: string, value: number, ttlMs: number): Promise<void> {
    await this.serial(key, () => this.store.set(key, { value, expires: this.now() + ttlMs }, ttlMs));
  }

  private serial<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.pending.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => {});
    this.pending.set(key, settled);
    void settled.then(() => {
      if (this.pending.get(key) === settled) this.pending.delete(key);
    });
    return next;
  }
}
