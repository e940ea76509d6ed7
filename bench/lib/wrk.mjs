// Running wrk and parsing its `--latency` report.
import { spawnSync } from 'node:child_process';
import { findExecutable, spawnTracked, stopChild } from './processes.mjs';

export const WRK = findExecutable('wrk');

export const WRK_INSTALL_HINT = [
  'wrk is not installed, so the benchmark cannot run.',
  'Install it, then re-run `npm run bench`:',
  '  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk',
  '  macOS:         brew install wrk   (the CPU figures need Linux /proc, though)',
].join('\n');

export function wrkVersion() {
  if (!WRK) return null;
  // `wrk -v` prints its banner and exits non-zero; that's fine.
  const out = spawnSync(WRK, ['-v'], { encoding: 'utf8' });
  const banner = (out.stdout || out.stderr || '').split('\n')[0];
  return banner.replace(/^wrk\s+/, '').replace(/\s*Copyright.*$/, '').trim() || null; // "4.1.0 [epoll]"
}

/**
 * One bounded wrk run. wrk stops itself after `seconds`; a watchdog kills it
 * if it somehow doesn't, so a load loop can never run unbounded.
 */
export async function runWrk({ url, seconds, connections, core, headers = {}, script = null }) {
  const args = ['-t', '1', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '5s', '--latency'];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  if (script) args.push('-s', script);
  args.push(url);
  const child = spawnTracked('wrk', WRK, args, { core });
  child.stdin.end();
  let stdout = '';
  child.stdout.removeAllListeners('data'); // we want the raw report, not lines
  child.stdout.on('data', (chunk) => (stdout += chunk));

  const watchdog = setTimeout(() => stopChild(child, 1000), (seconds + 15) * 1000);
  // 'close', not 'exit': the process can be gone before its stdout was read to the end, and a
  // report read then is empty (seen with two wrk runs at once, as paired.mjs runs them).
  const code = await new Promise((resolve) => child.on('close', (c, signal) => resolve(signal ?? c)));
  clearTimeout(watchdog);
  if (code !== 0) throw new Error(`wrk failed (${code}):\n${stdout}\n${child.stderrTail}`);
  return parseWrkReport(stdout);
}

const UNIT_TO_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function toMs(value, unit) {
  return Number(value) * UNIT_TO_MS[unit];
}

/** Extract the numbers we report from wrk's human-readable output. */
export function parseWrkReport(text) {
  const requests = /(\d+) requests in ([\d.]+)(us|ms|s|m)\b/.exec(text);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  if (!requests || !rps) throw new Error(`cannot parse wrk output:\n${text}`);

  const percentile = (p) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(text);
    return m ? toMs(m[1], m[2]) : null;
  };
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const socketErrors = socket
    ? { connect: +socket[1], read: +socket[2], write: +socket[3], timeout: +socket[4] }
    : { connect: 0, read: 0, write: 0, timeout: 0 };

  return {
    requests: Number(requests[1]),
    durationMs: toMs(requests[2], requests[3]),
    requestsPerSecond: Number(rps[1]),
    p50Ms: percentile(50),
    p75Ms: percentile(75),
    p90Ms: percentile(90),
    p99Ms: percentile(99),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors,
    raw: text,
  };
}

export function totalErrors(result) {
  const s = result.socketErrors;
  return result.non2xx + s.connect + s.read + s.write + s.timeout;
}
