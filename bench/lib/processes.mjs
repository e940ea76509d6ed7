// Child-process bookkeeping: spawn in own process groups, pin to a core,
// handshake, readiness polling, and guaranteed cleanup.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

/** Every child we started and have not yet seen exit. */
const liveChildren = new Set();

/** Absolute path of an executable on PATH (or an absolute path), or null. */
export function findExecutable(name) {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH ?? '').split(':').filter(Boolean).map((dir) => path.join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here, keep looking
    }
  }
  return null;
}

const TASKSET = findExecutable('taskset');

/**
 * Spawn `command args` in its own process group (so the whole tree can be
 * killed at once), optionally pinned to one CPU core via `taskset -c`.
 * taskset exec()s the command, so child.pid is the command's own pid.
 */
export function spawnTracked(name, command, args, { core = null, env = process.env, cwd, stdoutFile } = {}) {
  const [file, argv] =
    core !== null && TASKSET ? [TASKSET, ['-c', String(core), command, ...args]] : [command, args];
  // A file, as a service's log would be, for a child that logs per request: read through a pipe
  // by this runner, the log made the proxy's CPU per request depend on how this runner keeps up.
  const stdoutFd = stdoutFile ? openSync(stdoutFile, 'a') : 'pipe';
  const child = spawn(file, argv, {
    cwd,
    env,
    detached: true, // new process group: kill(-pid) reaches grandchildren too
    stdio: ['pipe', stdoutFd, 'pipe'], // stdin pipe lets our own servers notice we died
  });
  if (stdoutFile) closeSync(stdoutFd);
  child.benchName = name;
  child.stdoutFile = stdoutFile;
  child.stdoutLines = [];
  child.stderrTail = '';
  collectOutput(child);
  liveChildren.add(child);
  child.on('exit', () => liveChildren.delete(child));
  child.on('error', () => liveChildren.delete(child));
  return child;
}

/**
 * Keep draining the child's output (a full pipe would block it) while
 * remembering stdout lines for handshakes and a stderr tail for diagnostics.
 */
function collectOutput(child) {
  let partial = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      if (child.stdoutLines.length < 200) child.stdoutLines.push(line);
      child.emit('line', line);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    child.stderrTail = (child.stderrTail + chunk).slice(-4000);
  });
}

/** Short description of why a child failed, for error messages. */
export function describeChildOutput(child) {
  const lines = child.stdoutFile ? readFileSync(child.stdoutFile, 'utf8').split('\n').filter(Boolean) : child.stdoutLines;
  const stdout = lines.slice(-10).join('\n');
  return [stdout && `stdout:\n${stdout}`, child.stderrTail && `stderr:\n${child.stderrTail}`]
    .filter(Boolean)
    .join('\n');
}

/** Resolves with the exit code/signal; rejects if it didn't exit in time. */
function waitForExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${child.benchName} did not exit`)), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** SIGTERM the child's process group, then SIGKILL if it lingers. */
export async function stopChild(child, graceMs = 3000) {
  if (!child) return;
  killGroup(child, 'SIGTERM');
  try {
    await waitForExit(child, graceMs);
  } catch {
    killGroup(child, 'SIGKILL');
    await waitForExit(child, graceMs).catch(() => {});
  }
  // The group may still hold grandchildren (e.g. nginx workers) after the
  // leader exited; make sure nothing survives.
  killGroup(child, 'SIGKILL');
  liveChildren.delete(child);
}

/** Synchronous last-resort cleanup, safe to call from 'exit' handlers. */
export function killAllChildrenSync() {
  for (const child of liveChildren) killGroup(child, 'SIGKILL');
  liveChildren.clear();
}

/** Install cleanup for normal exit, Ctrl-C and crashes. */
export function installCleanupHandlers() {
  process.on('exit', killAllChildrenSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      console.error(`\nbench: received ${signal}, stopping all child processes`);
      killAllChildrenSync();
      process.exit(130);
    });
  }
}

/**
 * Wait for the first stdout line that `parse` accepts (returns non-null).
 * Rejects if the child exits first or nothing arrives within timeoutMs.
 */
export function waitForLine(child, parse, timeoutMs) {
  return new Promise((resolve, reject) => {
    const done = (fn, value) => {
      clearTimeout(timer);
      child.off('line', onLine);
      child.off('exit', onExit);
      fn(value);
    };
    const onLine = (line) => {
      const value = parse(line);
      if (value != null) done(resolve, value);
    };
    const onExit = (code, signal) =>
      done(
        reject,
        new Error(`${child.benchName} exited (${signal ?? code}) before it was ready\n${describeChildOutput(child)}`),
      );
    const timer = setTimeout(
      () => done(reject, new Error(`${child.benchName}: no handshake within ${timeoutMs} ms\n${describeChildOutput(child)}`)),
      timeoutMs,
    );
    child.on('line', onLine);
    child.on('exit', onExit);
    for (const line of child.stdoutLines) onLine(line);
  });
}

/** Parses the bench servers' handshake line `{"port":N}`. */
export function parsePortHandshake(line) {
  try {
    const port = JSON.parse(line).port;
    return Number.isInteger(port) ? port : null;
  } catch {
    return null;
  }
}

/** One GET; resolves { status, body } or rejects. Never reuses sockets. */
export function httpGet(url, timeoutMs = 1000, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll `getUrl()` until it answers 200. Bounded by timeoutMs; aborts early
 * if `child` exits (no point waiting for a dead server).
 */
export async function waitForHttp200(getUrl, { timeoutMs = 10_000, child } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no attempt made';
  while (Date.now() < deadline) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`${child.benchName} exited before answering 200\n${describeChildOutput(child)}`);
    }
    try {
      const { status } = await httpGet(getUrl(), 1000);
      if (status === 200) return;
      lastProblem = `status ${status}`;
    } catch (err) {
      lastProblem = err.message;
    }
    await sleep(100);
  }
  const output = child ? `\n${describeChildOutput(child)}` : '';
  throw new Error(`${getUrl()} did not answer 200 within ${timeoutMs} ms (last: ${lastProblem})${output}`);
}

/** A port that was free a moment ago (for servers that need one up front). */
export function getFreePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export const pinningTool = TASKSET;

/** Move an already-running process (all its threads) to one core. */
export function repinProcess(pid, core) {
  if (!TASKSET) return false;
  const result = spawnSync(TASKSET, ['-a', '-p', '-c', String(core), String(pid)], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`taskset -a -p failed: ${result.stderr}`);
  return true;
}
