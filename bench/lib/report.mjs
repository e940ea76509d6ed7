// Turning scenario results into the markdown table and JSON document.

const BASELINE = 'http-proxy-3';
const DIRECT = 'direct';

const int = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US'));
const fixed = (digits) => (n) => (n == null ? '—' : n.toFixed(digits));
const ratio = (n) => (n == null ? '—' : `${n.toFixed(2)}×`);
const divide = (a, b) => (a == null || !b ? null : a / b);

/** Adds the ratio columns (vs bare http-proxy-3 and vs direct) to each result. */
export function withRatios(results) {
  const find = (name) => results.find((r) => r.name === name && r.status === 'ok');
  const baseline = find(BASELINE);
  const direct = find(DIRECT);
  return results.map((r) => ({
    ...r,
    rpsVsBaseline: divide(r.requestsPerSecond, baseline?.requestsPerSecond),
    rpsVsDirect: divide(r.requestsPerSecond, direct?.requestsPerSecond),
    cpuVsBaseline: divide(r.cpuMicrosPerRequest, baseline?.cpuMicrosPerRequest),
    cpuVsDirect: divide(r.cpuMicrosPerRequest, direct?.cpuMicrosPerRequest),
  }));
}

function errorCell(r) {
  if (r.status !== 'ok') return '—';
  if (r.totalErrors === 0) return '0';
  const s = r.socketErrors;
  return `**${r.totalErrors}** (non-2xx ${r.non2xx}, connect ${s.connect}, read ${s.read}, write ${s.write}, timeout ${s.timeout})`;
}

/** Median with the min–max over rounds, e.g. "51.3 (47.9–60.2)". */
function withSpread(value, spread, format) {
  if (value == null) return '—';
  if (!spread || spread.min === spread.max) return format(value);
  return `${format(value)} (${format(spread.min)}–${format(spread.max)})`;
}

function busyCell(r) {
  if (r.status !== 'ok' || !r.coreBusyPercent) return '—';
  return Object.values(r.coreBusyPercent).map((p) => Math.round(p)).join(' / ');
}

export function markdownTable(results) {
  const header = [
    'Scenario',
    'req/s',
    'req/s ÷ http-proxy-3',
    'req/s ÷ direct',
    'p50 ms',
    'p99 ms',
    'CPU µs/req',
    'CPU ÷ http-proxy-3',
    'CPU ÷ direct',
    'errors',
    'core busy % (0 / 1)',
    'other procs % (max)',
  ];
  const rows = results.map((r) =>
    r.status === 'ok'
      ? [
          r.name,
          withSpread(r.requestsPerSecond, r.requestsPerSecondRange, int),
          ratio(r.rpsVsBaseline),
          ratio(r.rpsVsDirect),
          fixed(2)(r.p50Ms),
          fixed(2)(r.p99Ms),
          withSpread(r.cpuMicrosPerRequest, r.cpuMicrosPerRequestRange, fixed(1)),
          ratio(r.cpuVsBaseline),
          ratio(r.cpuVsDirect),
          errorCell(r),
          busyCell(r),
          r.otherCpuPercentMax == null ? '—' : Math.round(r.otherCpuPercentMax),
        ]
      : [r.name, `_${r.status}_`, ...Array(header.length - 2).fill('—')],
  );
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** Load-core busy % at or above which req/s says more about wrk+upstream than the target. */
const LOAD_SATURATED_PERCENT = 95;

/**
 * Scenarios whose load core (wrk + upstream) was saturated: their req/s is a
 * lower bound for the process under test; CPU µs/req is still valid.
 */
export function loadSaturated(results, loadCore) {
  if (loadCore == null) return [];
  return results.filter((r) => r.status === 'ok' && (r.coreBusyPercent?.[loadCore] ?? 0) >= LOAD_SATURATED_PERCENT);
}

/** Other processes above this % of a core during a window make that round suspect. */
const OTHER_LOAD_PERCENT = 10;

export function markdownReport({ meta, results }) {
  const saturated = loadSaturated(results, meta.loadCore);
  const disturbed = results.filter((r) => r.status === 'ok' && r.otherCpuPercentMax >= OTHER_LOAD_PERCENT);
  const notes = results
    .filter((r) => r.status !== 'ok')
    .map((r) => `- **${r.name}** ${r.status}: ${r.reason.split('\n')[0]}`);
  const withErrors = results.filter((r) => r.status === 'ok' && r.totalErrors > 0);
  return [
    `# Switchyard benchmark — ${meta.date}`,
    '',
    `wrk: ${meta.connections} connections, 1 thread; per scenario ${meta.rounds} interleaved round(s) of ` +
      `${meta.warmupSeconds} s warm-up + ${meta.durationSeconds} s measured; GET of a 1 KiB JSON body from one shared local upstream.`,
    'Figures are the median round; (min–max over rounds) in brackets. p50/p99 are medians of the per-round percentiles.',
    `CPU µs/req: utime+stime of the process under test (and its children) during the measured window ÷ requests wrk completed.`,
    `Pinning: ${meta.pinning}`,
    '',
    markdownTable(results),
    '',
    ...(withErrors.length
      ? [`**WARNING:** ${withErrors.map((r) => r.name).join(', ')} had errors; their numbers are not comparable.`, '']
      : []),
    ...(saturated.length
      ? [
          `Load core ${meta.loadCore} (wrk + upstream) was ≥ ${LOAD_SATURATED_PERCENT}% busy for ${saturated.map((r) => r.name).join(', ')}: ` +
            'req/s there is a lower bound set by the load side, not the process under test; compare CPU µs/req instead.',
          '',
        ]
      : []),
    ...(disturbed.length
      ? [
          `Other processes used ≥ ${OTHER_LOAD_PERCENT}% of a core during some rounds of ${disturbed.map((r) => r.name).join(', ')} ` +
            '(column "other procs %"): the machine was not quiet, expect noise in both req/s and CPU µs/req.',
          '',
        ]
      : []),
    ...(notes.length ? ['Not measured:', ...notes, ''] : []),
    'Environment:',
    '',
    `- node ${meta.node}, ${meta.os}, CPU: ${meta.cpuModel} (${meta.cpuCount} cores)`,
    `- wrk ${meta.wrk ?? '?'}; nginx ${meta.nginx ?? 'not installed'}; http-proxy-3 ${meta.versions['http-proxy-3']}; http-proxy ${meta.versions['http-proxy']}; undici ${meta.versions.undici ?? '?'}`,
    '',
  ].join('\n');
}
