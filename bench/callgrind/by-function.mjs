// Where a callgrind run's instructions went, by function, with V8's JIT code named. callgrind
// knows JavaScript only as addresses (`0x00003a…`); node started with `--perf-basic-prof` writes
// /tmp/perf-<pid>.map, the address range of each compiled function and its name (`JS:*name
// file:line:col`, `*` optimised, `^` baseline). run.sh keeps both with
// `NODE_FLAGS=--perf-basic-prof KEEP=1`; the main thread's file is cg.<pid>.out.1-01.
//
// usage:
//   node by-function.mjs self CG MAP REQUESTS [TOP]                 self instructions per request
//   node by-function.mjs diff CG MAP REQUESTS CG2 MAP2 REQUESTS2 [TOP]   second run − first, per request
//   node by-function.mjs callers CG MAP REQUESTS NAME_PART [TOP]     who calls the functions named so,
//                                                                   calls and inclusive instructions per request
// Addresses outside every mapped range (V8's embedded builtins have names of their own) are
// printed as `unmapped 0x…`; two runs' JIT addresses differ, so such rows pair up as ± in a diff.
import { readFileSync } from 'node:fs';

/** The perf map's ranges, sorted by start, and a lookup of an address in them. */
function loadPerfMap(path) {
  const ranges = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const fields = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (fields) ranges.push({ start: Number.parseInt(fields[1], 16), size: Number.parseInt(fields[2], 16), name: fields[3] });
  }
  ranges.sort((a, b) => a.start - b.start);
  return (name) => {
    const hex = /^0x([0-9a-f]+)$/.exec(name);
    if (!hex) return name;
    const address = Number.parseInt(hex[1], 16);
    let low = 0;
    let high = ranges.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (ranges[middle].start <= address) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found >= 0 && address < ranges[found].start + ranges[found].size ? ranges[found].name : `unmapped ${name}`;
  };
}

/**
 * Walks a callgrind file (names compressed as `fn=(id) name` once, `fn=(id)` after): `onCost`
 * for each of a function's own cost lines, `onCall` for each call it makes (the line after
 * `calls=` is the call's inclusive cost, not the caller's own).
 */
function walk(path, nameOf, onCost, onCall) {
  const names = new Map();
  const named = (id, name) => {
    if (name !== undefined) names.set(id, nameOf(name));
    return names.get(id);
  };
  let fn = '?';
  let callee = '?';
  let calls = -1;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    let fields;
    if ((fields = /^fn=\((\d+)\)(?: (.*))?$/.exec(line))) fn = named(fields[1], fields[2]);
    else if ((fields = /^cfn=\((\d+)\)(?: (.*))?$/.exec(line))) callee = named(fields[1], fields[2]);
    else if ((fields = /^calls=(\d+)/.exec(line))) calls = Number(fields[1]);
    else if (/^([+-]?\d|\*|0x)/.test(line)) {
      const cost = Number(line.trim().split(/\s+/)[1] ?? 0);
      if (calls >= 0) onCall(fn, callee, calls, cost);
      else onCost(fn, cost);
      calls = -1;
    }
  }
}

function selfCosts(cg, map) {
  const costs = new Map();
  walk(cg, loadPerfMap(map), (fn, cost) => costs.set(fn, (costs.get(fn) ?? 0) + cost), () => {});
  return costs;
}

const per = (value, requests) => (value / requests).toFixed(0).padStart(9);
const [mode, ...args] = process.argv.slice(2);

if (mode === 'self') {
  const [cg, map, requests, top = 60] = args;
  const rows = [...selfCosts(cg, map)].sort((a, b) => b[1] - a[1]);
  console.log(`total ${per(rows.reduce((sum, [, cost]) => sum + cost, 0), requests)}`);
  for (const [fn, cost] of rows.slice(0, Number(top))) console.log(`${per(cost, requests)}  ${fn}`);
} else if (mode === 'diff') {
  const [cg, map, requests, cg2, map2, requests2, top = 60] = args;
  const first = selfCosts(cg, map);
  const second = selfCosts(cg2, map2);
  const rows = [...new Set([...first.keys(), ...second.keys()])].map((fn) => {
    const before = (first.get(fn) ?? 0) / requests;
    const after = (second.get(fn) ?? 0) / requests2;
    return { fn, before, after, change: after - before };
  });
  rows.sort((a, b) => Math.abs(b.change) - Math.abs(a.change));
  console.log(`change ${per(rows.reduce((sum, row) => sum + row.change, 0), 1)}      first    second`);
  for (const row of rows.slice(0, Number(top))) console.log(`${per(row.change, 1)} ${per(row.before, 1)} ${per(row.after, 1)}  ${row.fn}`);
} else if (mode === 'callers') {
  const [cg, map, requests, part, top = 40] = args;
  const byCaller = new Map();
  walk(cg, loadPerfMap(map), () => {}, (fn, callee, calls, cost) => {
    if (!callee.includes(part)) return;
    const key = `${fn}  ->  ${callee}`;
    const sum = byCaller.get(key) ?? { calls: 0, cost: 0 };
    sum.calls += calls;
    sum.cost += cost;
    byCaller.set(key, sum);
  });
  const rows = [...byCaller].sort((a, b) => b[1].cost - a[1].cost).slice(0, Number(top));
  for (const [key, { calls, cost }] of rows) console.log(`${(calls / requests).toFixed(3).padStart(9)} ${per(cost, requests)}  ${key}`);
} else {
  console.error('usage: node by-function.mjs self|diff|callers … (see the head of this file)');
  process.exit(2);
}
