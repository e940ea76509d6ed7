// CPU accounting from /proc (Linux only).
//
// CPU time per request is the bench's stable figure: req/s on a shared
// machine swings with whatever else runs, but the CPU a process burns to
// serve N requests barely moves.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second used by /proc/<pid>/stat (almost always 100). */
export const CLK_TCK = readClockTicks();

function readClockTicks() {
  try {
    const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    if (Number.isFinite(value) && value > 0) return value;
  } catch {
    // fall through
  }
  return 100;
}

/**
 * Parse /proc/<pid>/stat. The command name (field 2) is in parentheses and may
 * contain spaces, so split after the last ')'. Field numbers follow proc(5).
 */
export function readStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // process exited meanwhile
  }
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const field = (n) => Number(rest[n - 3]); // rest[0] is field 3 (state)
  return { pid, ppid: field(4), minflt: field(10), utime: field(14), stime: field(15), cutime: field(16), cstime: field(17) };
}

function allPids() {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
}

/**
 * utime+stime (in clock ticks) of `rootPid` and all its live descendants.
 * Descendants matter for nginx, whose worker does the real work while the
 * master (the pid we spawned) idles; a process's stat already includes all
 * of its threads, so node's helper threads are covered too.
 */
export function processTreeTicks(rootPid) {
  const stats = allPids().map(readStat).filter(Boolean);
  const childrenOf = new Map();
  for (const s of stats) {
    if (!childrenOf.has(s.ppid)) childrenOf.set(s.ppid, []);
    childrenOf.get(s.ppid).push(s);
  }
  const root = stats.find((s) => s.pid === rootPid);
  if (!root) throw new Error(`process ${rootPid} is gone`);
  let ticks = 0;
  const queue = [root];
  while (queue.length) {
    const s = queue.pop();
    ticks += s.utime + s.stime;
    queue.push(...(childrenOf.get(s.pid) ?? []));
  }
  return ticks;
}

/**
 * CPU ticks of this runner plus its reaped children (cutime/cstime): across
 * a measured window that is the runner's own bookkeeping plus the wrk run
 * that just exited.
 */
export function runnerAndReapedChildrenTicks() {
  const s = readStat(process.pid);
  return s.utime + s.stime + s.cutime + s.cstime;
}

/**
 * Per-core jiffies from /proc/stat, keyed by core index:
 * busy (all non-idle), total, and task (user+nice+system: time charged to
 * processes, as opposed to irq/softirq/steal).
 */
export function readCoreTimes() {
  const cores = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    // user nice system idle iowait irq softirq steal (guest fields are already in user)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = m[2].split(/\s+/).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    cores[m[1]] = { busy, total: busy + idle + iowait, task: user + nice + system, steal };
  }
  return cores;
}

/** Busy percentage of each core between two readCoreTimes() snapshots. */
export function coreBusyPercent(before, after) {
  const result = {};
  for (const core of Object.keys(after)) {
    const total = after[core].total - before[core].total;
    result[core] = total > 0 ? (100 * (after[core].busy - before[core].busy)) / total : 0;
  }
  return result;
}

/**
 * Steal between two snapshots, % of all cores' time: how long the hypervisor ran someone else on
 * this VM's CPUs. On a shared host it is the sign that a window's figures carry the neighbours'
 * noise (req/s and CPU µs/req both; valgrind's instruction counts do not).
 */
export function stealPercent(before, after) {
  let steal = 0;
  let total = 0;
  for (const core of Object.keys(after)) {
    steal += after[core].steal - before[core].steal;
    total += after[core].total - before[core].total;
  }
  return total > 0 ? (100 * steal) / total : 0;
}

/** Sum over cores of the process-time (task) ticks between two snapshots. */
export function taskTicksDelta(before, after) {
  return Object.keys(after).reduce((sum, core) => sum + after[core].task - before[core].task, 0);
}

/** Microseconds of CPU per request, from a tick delta. */
export function cpuMicrosPerRequest(tickDelta, requests) {
  if (!requests) return null;
  return (tickDelta / CLK_TCK) * 1e6 / requests;
}
