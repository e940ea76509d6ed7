// Another process holding an exclusive lock on a SQLite file: the way to make a real SQLite store
// fail on demand (unlinking the file does nothing on Linux, and root ignores permissions).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';

export interface SqliteLock {
  /** Ends the holder; the lock goes with it. Safe to call more than once. */
  release(): Promise<void>;
}

/** Resolves once a child process holds `BEGIN EXCLUSIVE` on `file` (created if missing). */
export async function lockSqlite(file: string): Promise<SqliteLock> {
  const script = `const sqlite3 = require(${JSON.stringify(createRequire(import.meta.url).resolve('sqlite3'))});
const db = new sqlite3.Database(${JSON.stringify(file)});
db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock_holder (x); INSERT INTO lock_holder VALUES (1);', (err) => {
  if (err) { console.error(err.message); process.exit(1); }
  console.log('locked');
});
setInterval(() => {}, 1 << 30);`;
  const child: ChildProcess = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  assert.equal(chunk.toString().trim(), 'locked');
  return {
    async release() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
  };
}
