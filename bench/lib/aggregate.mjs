// Combining the rounds of one scenario into the figures we report.
//
// Rounds are interleaved (direct, proxy A, proxy B, ..., then again), so slow
// drifts of the machine (noisy VM neighbours, thermal/frequency changes) hit
// every scenario alike instead of whichever one happened to run then. We
// report the median round and keep the min–max spread so the noise is visible.

export function median(values) {
  const sorted = values.filter((v) => v != null).sort((a, b) => a - b);
  if (!sorted.length) return null;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const range = (values) => ({ min: Math.min(...values), max: Math.max(...values) });

function sumSocketErrors(rounds) {
  const total = { connect: 0, read: 0, write: 0, timeout: 0 };
  for (const r of rounds) for (const key of Object.keys(total)) total[key] += r.socketErrors[key];
  return total;
}

function medianCoreBusy(rounds) {
  if (!rounds[0].coreBusyPercent) return null;
  return Object.fromEntries(
    Object.keys(rounds[0].coreBusyPercent).map((core) => [core, median(rounds.map((r) => r.coreBusyPercent[core]))]),
  );
}

/**
 * rounds: the per-round results of one scenario, each
 * { status: 'ok'|'skipped'|'failed', reason?, requestsPerSecond, ... }.
 */
export function aggregateRounds({ name, description, suites, bodyBytes }, rounds) {
  const notOk = rounds.find((r) => r.status !== 'ok');
  if (notOk) {
    const reason = rounds.length > 1 ? `round ${rounds.indexOf(notOk) + 1}: ${notOk.reason}` : notOk.reason;
    return { name, description, suites, status: notOk.status, reason, rounds };
  }
  const pick = (key) => rounds.map((r) => r[key]);
  const cpu = pick('cpuMicrosPerRequest');
  const rps = pick('requestsPerSecond');
  return {
    name,
    description,
    suites,
    status: 'ok',
    bodyBytes: bodyBytes ?? null,
    bodyBytesOnWire: rounds[0].bodyBytesOnWire ?? null,
    contentEncoding: rounds[0].contentEncoding ?? null,
    roundCount: rounds.length,
    requests: pick('requests').reduce((a, b) => a + b, 0),
    requestsPerSecond: median(rps),
    requestsPerSecondRange: range(rps),
    p50Ms: median(pick('p50Ms')),
    p99Ms: median(pick('p99Ms')),
    cpuMicrosPerRequest: median(cpu),
    cpuMicrosPerRequestRange: range(cpu),
    upstreamCpuMicrosPerRequest: median(pick('upstreamCpuMicrosPerRequest')),
    coreBusyPercent: medianCoreBusy(rounds),
    otherCpuPercentMax: Math.max(...pick('otherCpuPercent')),
    stealPercentMax: Math.max(...pick('stealPercent').map((v) => v ?? 0)),
    non2xx: pick('non2xx').reduce((a, b) => a + b, 0),
    socketErrors: sumSocketErrors(rounds),
    totalErrors: pick('totalErrors').reduce((a, b) => a + b, 0),
    rounds,
  };
}
