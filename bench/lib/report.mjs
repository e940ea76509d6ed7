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

/**
 * One table: `results` in order, ratio columns against each name in
 * `baselines` (req/s: higher is better; CPU µs/req: lower is better). With
 * bodyBytes, a MB/s column (10^6 bytes of body per second); where the
 * response was encoded, the bytes one response took on the wire.
 */
export function markdownTable(results, baselines = [BASELINE, DIRECT]) {
  const find = (name) => results.find((r) => r.name === name && r.status === 'ok');
  const bases = baselines.map((name) => ({ name, r: find(name) }));
  const withBody = results.some((r) => r.bodyBytes);
  const encoded = results.some((r) => r.contentEncoding);
  const header = [
    'Scenario',
    'req/s',
    ...bases.map((b) => `req/s ÷ ${b.name}`),
    ...(withBody ? ['MB/s'] : []),
    ...(encoded ? ['body bytes on the wire (saved)'] : []),
    'p50 ms',
    'p99 ms',
    'CPU µs/req',
    ...bases.map((b) => `CPU ÷ ${b.name}`),
    'errors',
    'core busy % (0 / 1)',
    'other procs % (max)',
    'steal % (max)',
  ];
  const wire = (r) =>
    r.bodyBytesOnWire == null
      ? '—'
      : `${int(r.bodyBytesOnWire)}${r.contentEncoding ? ` ${r.contentEncoding}` : ''} (${Math.round(100 * (1 - r.bodyBytesOnWire / 65536))} %)`;
  const rows = results.map((r) =>
    r.status === 'ok'
      ? [
          r.name,
          withSpread(r.requestsPerSecond, r.requestsPerSecondRange, int),
          ...bases.map((b) => ratio(divide(r.requestsPerSecond, b.r?.requestsPerSecond))),
          ...(withBody ? [r.bodyBytes ? fixed(0)((r.requestsPerSecond * r.bodyBytes) / 1e6) : '—'] : []),
          ...(encoded ? [wire(r)] : []),
          fixed(2)(r.p50Ms),
          fixed(2)(r.p99Ms),
          withSpread(r.cpuMicrosPerRequest, r.cpuMicrosPerRequestRange, fixed(1)),
          ...bases.map((b) => ratio(divide(r.cpuMicrosPerRequest, b.r?.cpuMicrosPerRequest))),
          errorCell(r),
          busyCell(r),
          r.otherCpuPercentMax == null ? '—' : Math.round(r.otherCpuPercentMax),
          r.stealPercentMax == null ? '—' : fixed(1)(r.stealPercentMax),
        ]
      : [r.name, `_${r.status}_`, ...Array(header.length - 2).fill('—')],
  );
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

const line = (cells) => `| ${cells.join(' | ')} |`;

export function sseTable(sse) {
  const header = ['Path', 'events (expected)', 'p50 ms', 'p99 ms', 'max ms', 'added p50 ms', 'added p99 ms', 'errors', 'other procs % (max)'];
  const rows = sse.map((r) =>
    r.status === 'ok'
      ? [
          r.name,
          `${int(r.events)} (${int(r.expectedEvents)})`,
          fixed(3)(r.p50Ms),
          fixed(3)(r.p99Ms),
          fixed(2)(r.maxMs),
          r.name === 'direct' ? '—' : fixed(3)(r.addedP50Ms),
          r.name === 'direct' ? '—' : fixed(3)(r.addedP99Ms),
          r.errors.length ? `**${r.errors.length}** (${r.errors[0]})` : '0',
          Math.round(r.otherCpuPercentMax),
        ]
      : [r.name, `_${r.status}_: ${r.reason.split('\n')[0]}`, ...Array(header.length - 2).fill('—')],
  );
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function memoryTable(memory) {
  const rows = [];
  const b = memory.bigBody;
  if (b) {
    rows.push(
      b.status === 'ok'
        ? [`stream ${int(b.bytes / 2 ** 20)} MiB through switchyard`, `peak RSS (VmHWM) **${fixed(1)(b.peakRssMiB)} MiB**; RSS ${fixed(1)(b.rssBeforeMiB)} MiB before (peak so far ${fixed(1)(b.peakBeforeMiB)}), ${fixed(1)(b.rssAfterMiB)} after; ${fixed(1)(b.seconds)} s, ${fixed(0)(b.mbPerSecond)} MB/s`]
        : ['stream big body', `_failed_: ${b.reason.split('\n')[0]}`],
    );
  }
  const c = memory.idleConnections;
  if (c) {
    rows.push(
      c.status === 'ok'
        ? [
            `${int(c.attempted)} idle keep-alive connections${c.attempted < c.wanted ? ` (wanted ${int(c.wanted)}; open-files limit ${c.fdLimit})` : ''}`,
            `RSS **${fixed(1)(c.rssMiB)} MiB** (${fixed(1)(c.rssBeforeMiB)} before; peak ${fixed(1)(c.peakRssMiB)}); opened ${int(c.opened)}, refused ${c.refused}, other failures ${c.failed}${Object.keys(c.reasons).length ? ` ${JSON.stringify(c.reasons)}` : ''}; still open after 3 s idle: ${int(c.stillOpenAfter3s)}; opened in ${fixed(1)(c.openSeconds)} s`,
          ]
        : ['idle connections', `_failed_: ${c.reason.split('\n')[0]}`],
    );
  }
  return [line(['Scenario', 'Result']), line(['---', '---']), ...rows.map(line)].join('\n');
}

export function targetsTable(targets) {
  const rows = targets.map((t) => [t.target, t.figure, t.met == null ? 'not measured' : typeof t.met === 'string' ? t.met : t.met ? 'met' : '**missed**']);
  return [line(['Target', 'This run', 'Verdict']), line(['---', '---', '---']), ...rows.map(line)].join('\n');
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
/** Steal above this % of the VM's CPU time during a window: the host was busy with others. */
const STEAL_PERCENT = 2;

export function markdownReport({ meta, results, tables, sse, memory, targets }) {
  const saturated = loadSaturated(results, meta.loadCore);
  const disturbed = results.filter((r) => r.status === 'ok' && r.otherCpuPercentMax >= OTHER_LOAD_PERCENT);
  const stolen = results.filter((r) => r.status === 'ok' && r.stealPercentMax >= STEAL_PERCENT);
  const notes = results
    .filter((r) => r.status !== 'ok')
    .map((r) => `- **${r.name}** ${r.status}: ${r.reason.split('\n')[0]}`);
  const withErrors = results.filter((r) => r.status === 'ok' && r.totalErrors > 0);
  return [
    `# Switchyard benchmark — ${meta.date}`,
    '',
    `Command: \`${meta.command}\`; suites: ${meta.suites.join(', ')}.`,
    `wrk: ${meta.connections} connections, 1 thread; per scenario ${meta.rounds} interleaved round(s) of ` +
      `${meta.warmupSeconds} s warm-up + ${meta.durationSeconds} s measured; one shared local upstream.`,
    'Figures are the median round; (min–max over rounds) in brackets. p50/p99 are medians of the per-round percentiles.',
    `CPU µs/req: utime+stime of the process under test (and its children) during the measured window ÷ requests wrk completed.`,
    `Pinning: ${meta.pinning}`,
    '',
    ...(targets?.length ? ['## Targets', '', targetsTable(targets), ''] : []),
    // A table's `note` says what differs from the run-wide pinning line above (e.g. the workers suite's core split).
    ...tables.flatMap((t) => [`## ${t.title}`, '', ...(t.note ? [t.note, ''] : []), markdownTable(t.results, t.baselines), '']),
    ...(sse ? ['## SSE per-event latency', '', `${meta.sse}`, '', sseTable(sse), ''] : []),
    ...(memory ? ['## Memory', '', memoryTable(memory), ''] : []),
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
    ...(stolen.length
      ? [
          `The hypervisor took ≥ ${STEAL_PERCENT}% of this VM's CPU time (steal) during some rounds of ${stolen.map((r) => r.name).join(', ')} ` +
            '(column "steal %"): other guests were busy on the host, expect noise in req/s, CPU µs/req and latency alike.',
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
