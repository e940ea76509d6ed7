// Numeric fields grouped under keys (one key per usage bucket), kept in the shared store so that
// every instance using it adds to the same figures. keyv has no increment, so where the store
// underneath offers one it is used: a Lua script on Redis (HINCRBYFLOAT on a hash), one upsert
// statement on SQLite. No instance ever reads a value, adds and writes it back, so two instances
// flushing at the same moment both count. Same approach as rate-limit's counters.
import type { PluginStore } from '../../core/index.js';

/** What one flush does to one key: fields to add to, fields to raise to at least a value. */
export interface FieldChange {
  key: string;
  add: Record<string, number>;
  max: Record<string, number>;
  /** Lifetime of the key from this write on; undefined: kept for good. */
  ttlMs?: number;
}

export interface SharedCounters {
  /** Applies every change; all or nothing where the store allows it, so a retry after a failure does not count twice. */
  apply(changes: FieldChange[]): Promise<void>;
  /** The fields under each key that exists. */
  read(keys: string[]): Promise<Map<string, Record<string, number>>>;
}

type Query = (sql: string, ...params: unknown[]) => Promise<Array<Record<string, unknown>>>;

interface RedisLike {
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** The best counters `store` allows; `name` keeps them apart from the plugin's other keys. */
export function sharedCounters(store: PluginStore, name: string): SharedCounters {
  const adapter = store.store as { query?: unknown; opts?: { dialect?: string }; getClient?: () => Promise<RedisLike> } | undefined;
  // Beside keyv, so the keys carry the plugin's namespace themselves; through keyv, keyv adds it.
  const prefix = `${store.namespace ?? 'shared'}:${name}:`;
  if (adapter && typeof adapter.query === 'function' && adapter.opts?.dialect === 'sqlite') {
    return new SqliteCounters(adapter.query.bind(adapter) as Query, prefix);
  }
  if (adapter && typeof adapter.getClient === 'function') return new RedisCounters(() => adapter.getClient!(), prefix);
  return new KeyvCounters(store, `${name}:`);
}

// One script for the whole flush: Redis runs it atomically, so either every key got its deltas or
// none did. Values travel as strings (exact decimal text from JS), compared with tonumber.
const APPLY = `local changes = cjson.decode(ARGV[1])
for i, key in ipairs(KEYS) do
  local change = changes[i]
  for field, value in pairs(change.add) do redis.call('HINCRBYFLOAT', key, field, value) end
  for field, value in pairs(change.max) do
    local current = tonumber(redis.call('HGET', key, field))
    if current == nil or current < tonumber(value) then redis.call('HSET', key, field, value) end
  end
  if change.ttl > 0 then redis.call('PEXPIRE', key, change.ttl) end
end
return #KEYS`;

const READ = `local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out`;

/** A hash per key. (The client reconnects on its own; core/state.ts makes concurrent connects share one attempt.) */
class RedisCounters implements SharedCounters {
  constructor(private readonly client: () => Promise<RedisLike>, private readonly prefix: string) {}

  async apply(changes: FieldChange[]): Promise<void> {
    if (changes.length === 0) return;
    const payload = changes.map((c) => ({ add: strings(c.add), max: strings(c.max), ttl: c.ttlMs ?? 0 }));
    await (await this.client()).eval(APPLY, { keys: changes.map((c) => this.prefix + c.key), arguments: [JSON.stringify(payload)] });
  }

  async read(keys: string[]): Promise<Map<string, Record<string, number>>> {
    const result = new Map<string, Record<string, number>>();
    if (keys.length === 0) return result;
    const hashes = (await (await this.client()).eval(READ, { keys: keys.map((k) => this.prefix + k), arguments: [] })) as string[][];
    keys.forEach((key, i) => {
      const flat = hashes[i] ?? [];
      if (flat.length === 0) return;
      const fields: Record<string, number> = {};
      for (let j = 0; j + 1 < flat.length; j += 2) fields[flat[j]!] = Number(flat[j + 1]);
      result.set(key, fields);
    });
    return result;
  }
}

/** Values as the exact decimal text JS prints, so nothing is rounded on the way into the script. */
function strings(fields: Record<string, number>): Record<string, string> {
  return Object.fromEntries(Object.entries(fields).map(([field, value]) => [field, String(value)]));
}

const TABLE = 'switchyard_shared_counters';

/**
 * One row per key and field. The whole flush is one INSERT … ON CONFLICT statement over a JSON
 * list of rows, which SQLite runs atomically, also between processes sharing the file (--workers).
 */
class SqliteCounters implements SharedCounters {
  private ready: Promise<unknown> | undefined;
  private writes = 0;

  constructor(private readonly query: Query, private readonly prefix: string) {}

  async apply(changes: FieldChange[]): Promise<void> {
    const rows: [string, string, number, number, number | null][] = [];
    const now = Date.now();
    for (const change of changes) {
      const expires = change.ttlMs === undefined ? null : now + change.ttlMs;
      for (const [field, value] of Object.entries(change.add)) rows.push([this.prefix + change.key, field, value, 0, expires]);
      for (const [field, value] of Object.entries(change.max)) rows.push([this.prefix + change.key, field, value, 1, expires]);
    }
    if (rows.length === 0) return;
    await this.table();
    // Expired buckets are dropped now and then, not on every flush.
    if (++this.writes % 1000 === 0) void this.query(`DELETE FROM ${TABLE} WHERE expires IS NOT NULL AND expires <= ?`, now).catch(() => {});
    // "WHERE true" tells SQLite's parser the ON CONFLICT belongs to the INSERT, not to a join.
    await this.query(
      `INSERT INTO ${TABLE} (key, field, value, keep_max, expires)
       SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]')
       FROM json_each(?) AS j WHERE true
       ON CONFLICT (key, field) DO UPDATE SET
         value = CASE WHEN excluded.keep_max THEN max(value, excluded.value) ELSE value + excluded.value END,
         expires = excluded.expires`,
      JSON.stringify(rows),
    );
  }

  async read(keys: string[]): Promise<Map<string, Record<string, number>>> {
    const result = new Map<string, Record<string, number>>();
    if (keys.length === 0) return result;
    await this.table();
    const rows = await this.query(
      `SELECT key, field, value FROM ${TABLE}
       WHERE key IN (SELECT j.value FROM json_each(?) AS j) AND (expires IS NULL OR expires > ?)`,
      JSON.stringify(keys.map((k) => this.prefix + k)), Date.now(),
    );
    for (const row of rows) {
      const key = String(row.key).slice(this.prefix.length);
      let fields = result.get(key);
      if (!fields) result.set(key, (fields = {}));
      fields[String(row.field)] = Number(row.value);
    }
    return result;
  }

  private table(): Promise<unknown> {
    this.ready ??= this.query(
      `CREATE TABLE IF NOT EXISTS ${TABLE} (key TEXT NOT NULL, field TEXT NOT NULL, value REAL NOT NULL, keep_max INTEGER NOT NULL, expires INTEGER, PRIMARY KEY (key, field))`,
    ).catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

/** Changes in flight per keyv store, so that instances in one process never interleave their read-add-write. */
const queues = new WeakMap<PluginStore, Promise<unknown>>();

/**
 * Any other keyv store (`memory://`): read, add, write back, one change at a time per store.
 * Exact inside one process, which is all a memory store is shared by.
 */
class KeyvCounters implements SharedCounters {
  constructor(private readonly store: PluginStore, private readonly prefix: string) {}

  apply(changes: FieldChange[]): Promise<void> {
    const work = async () => {
      for (const change of changes) {
        const fields = { ...((await this.store.get<Record<string, number>>(this.prefix + change.key)) ?? {}) };
        for (const [field, value] of Object.entries(change.add)) fields[field] = (fields[field] ?? 0) + value;
        for (const [field, value] of Object.entries(change.max)) fields[field] = Math.max(fields[field] ?? value, value);
        await this.store.set(this.prefix + change.key, fields, change.ttlMs);
      }
    };
    const next = (queues.get(this.store) ?? Promise.resolve()).catch(() => {}).then(work);
    queues.set(this.store, next);
    return next;
  }

  async read(keys: string[]): Promise<Map<string, Record<string, number>>> {
    const result = new Map<string, Record<string, number>>();
    if (keys.length === 0) return result;
    const values = await this.store.getMany<Record<string, number>>(keys.map((k) => this.prefix + k));
    keys.forEach((key, i) => {
      const value = values[i];
      if (value && typeof value === 'object') result.set(key, value);
    });
    return result;
  }
}
