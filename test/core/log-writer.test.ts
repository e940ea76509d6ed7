// The main log's writer: lines of one event-loop turn leave in one write, none is lost at exit,
// and a log nobody reads any more does not take the process down.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const CORE = fileURLToPath(new URL('../../core/index.js', import.meta.url));

/** Runs a script in a child node process with `createLogger` in scope; resolves with its stdout and exit. */
async function runScript(body: string, options: { closeStdout?: boolean } = {}): Promise<{ stdout: string; stderr: string; code: number | null }> {
  const script = `
    import fs from 'node:fs';
    import { syncBuiltinESMExports } from 'node:module';
    // Counts the writes to stdout: the writer imports writeSync, and this swaps what it gets.
    const writeSync = fs.writeSync;
    let writes = 0;
    fs.writeSync = (fd, ...rest) => { if (fd === 1) writes++; return writeSync(fd, ...rest); };
    syncBuiltinESMExports();
    const { createLogger } = await import(${JSON.stringify(CORE)});
    const logger = createLogger({ LOG_LEVEL: 'info' });
    ${body}
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  if (options.closeStdout) child.stdout.destroy();
  const [code] = await once(child, 'exit') as [number | null];
  return { stdout, stderr, code };
}

test('lines logged in one turn of the event loop go out in one write, in order', async () => {
  const { stdout, stderr, code } = await runScript(`
    for (let i = 0; i < 50; i++) logger.info({ i }, 'request');
    setImmediate(() => setImmediate(() => {
      for (let i = 50; i < 60; i++) logger.info({ i }, 'request');
      setImmediate(() => setImmediate(() => process.stderr.write('writes=' + writes)));
    }));
  `);
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split('\n').map((line) => JSON.parse(line) as { i: number; msg: string; level: number });
  assert.deepEqual(lines.map((l) => l.i), Array.from({ length: 60 }, (_, i) => i));
  assert.ok(lines.every((l) => l.msg === 'request' && l.level === 30));
  assert.equal(stderr, 'writes=2', 'one write for the first turn\'s 50 lines, one for the next 10');
});

test('lines logged right before process.exit() are written', async () => {
  const { stdout, code } = await runScript(`
    logger.info('first');
    logger.error('last words');
    process.exit(3);
  `);
  assert.equal(code, 3);
  assert.deepEqual(stdout.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg), ['first', 'last words']);
});

test('lines logged right before an uncaught exception are written', async () => {
  const { stdout, stderr, code } = await runScript(`
    logger.warn('about to fail');
    throw new Error('boom');
  `);
  assert.equal(code, 1);
  assert.match(stderr, /boom/);
  assert.equal((JSON.parse(stdout.trim()) as { msg: string }).msg, 'about to fail');
});

test('logger.flush() writes at once and calls back', async () => {
  const { stderr, code } = await runScript(`
    logger.info('now');
    logger.flush(() => process.stderr.write('flushed writes=' + writes));
  `);
  assert.equal(code, 0);
  assert.equal(stderr.slice(0, 'flushed writes=1'.length), 'flushed writes=1');
});

test('a log whose reader has gone away (EPIPE) does not stop the process', async () => {
  const { stderr, code } = await runScript(`
    let logged = 0;
    const tick = () => {
      logger.info({ logged }, 'into a closed pipe');
      if (++logged < 20) setTimeout(tick, 5);
      else process.stderr.write('still running after ' + logged + ' lines');
    };
    tick();
  `, { closeStdout: true });
  assert.equal(code, 0, stderr);
  assert.equal(stderr, 'still running after 20 lines');
});
