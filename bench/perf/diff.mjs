// The two sides of bench/perf/profile-pair.sh, compared: each side's perf samples (cpu-clock, their
// period in ns) per symbol, as µs a request of its own load, summed by kind of code, then the
// symbols whose cost differs most. V8 inlines differently in two processes, so one function's
// rise is often another's fall: read the kinds first, and symbols in pairs.
//
// usage: node bench/perf/diff.mjs OUTDIR
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/perf/diff.mjs OUTDIR');
const SHOWN = 30;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** µs a request by symbol (`[k] name` for the kernel's, `[.] name` for the process's). */
function costs(side) {
  const requests = Number(readFileSync(path.join(dir, `${side}.requests`), 'utf8'));
  const bySymbol = new Map();
  for (const line of readFileSync(path.join(dir, `${side}.symbols`), 'utf8').split('\n')) {
    const match = /^\s+(\d+)\s+\[(.)\]\s+(.*?)\s*$/.exec(line);
    if (!match) continue;
    // JIT code is named with its address in perf's map; the same function keeps its name without it.
    const name = match[3].replace(/0x[0-9a-f]+/g, '').replace(/\s{2,}.*$/, '').trim();
    const symbol = `[${match[2]}] ${name.replaceAll(`${pathToFileURL(ROOT).href}/`, '').replaceAll(`${ROOT}/`, '')}`;
    bySymbol.set(symbol, (bySymbol.get(symbol) ?? 0) + Number(match[1]) / 1000 / requests);
  }
  return bySymbol;
}

function kindOf(symbol) {
  if (symbol.startsWith('[k]')) return 'kernel';
  const name = symbol.slice(4);
  if (name.startsWith('Builtins_')) return /IC(_|Trampoline|$)/.test(name) ? 'V8 builtins: inline caches' : 'V8 builtins: other';
  if (/v8::internal::(Scaveng|Heap|MarkCompact|Marking|ConcurrentMarking|Sweeper|MemoryAllocator|PagedSpace|Evacuat|RootScavenge|Mark)/.test(name)) return 'V8 garbage collection';
  if (name.startsWith('v8::') || name.startsWith('Runtime_')) return 'V8 runtime, other';
  if (name.startsWith('node::') || name.startsWith('uv_') || name.startsWith('llhttp')) return 'node and libuv, native';
  if (/^[*~^+]/.test(name) || / node:|file:\/\/|\.js:\d/.test(name)) return 'JavaScript (JIT code)';
  return 'other native (libc, …)';
}

const plain = costs('plain');
const tested = costs('tested');
const total = (side) => [...side.values()].reduce((a, b) => a + b, 0);
const byKind = (side) => {
  const kinds = new Map();
  for (const [symbol, micros] of side) {
    const kind = kindOf(symbol);
    kinds.set(kind, (kinds.get(kind) ?? 0) + micros);
  }
  return kinds;
};
const at = (map, key) => map.get(key) ?? 0;
const fixed = (n) => n.toFixed(2).padStart(7);
const signed = (n) => `${n >= 0 ? '+' : ''}${n.toFixed(2)}`.padStart(7);

console.log(`µs a request (cpu-clock samples): plain ${total(plain).toFixed(2)}, tested ${total(tested).toFixed(2)}, ${(total(tested) / total(plain)).toFixed(3)}×`);
const plainKinds = byKind(plain);
const testedKinds = byKind(tested);
const kinds = [...new Set([...plainKinds.keys(), ...testedKinds.keys()])].sort((a, b) => at(testedKinds, b) - at(plainKinds, b) - (at(testedKinds, a) - at(plainKinds, a)));
console.log('\n| kind of code | plain | tested | difference |\n| --- | --- | --- | --- |');
for (const kind of kinds) console.log(`| ${kind} | ${fixed(at(plainKinds, kind))} | ${fixed(at(testedKinds, kind))} | ${signed(at(testedKinds, kind) - at(plainKinds, kind))} |`);
const symbols = [...new Set([...plain.keys(), ...tested.keys()])].map((symbol) => ({ symbol, difference: at(tested, symbol) - at(plain, symbol) }));
symbols.sort((a, b) => b.difference - a.difference);
const row = ({ symbol, difference }) => `| ${signed(difference)} | ${fixed(at(plain, symbol))} | ${fixed(at(tested, symbol))} | \`${symbol.slice(0, 110)}\` |`;
console.log(`\nThe ${SHOWN} symbols that cost the tested side most over the plain route, then the ${SHOWN / 2} that cost it least:\n\n| difference | plain | tested | symbol |\n| --- | --- | --- | --- |`);
for (const entry of symbols.slice(0, SHOWN)) console.log(row(entry));
console.log('| … | | | |');
for (const entry of symbols.slice(-SHOWN / 2).reverse()) console.log(row(entry));
