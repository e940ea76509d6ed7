// Counts a results file the way cache-tests.fyi shows it (the suite's lib/display.mjs, which
// needs a browser): a test whose dependency did not pass is a dependency failure, a Setup error is
// a setup failure (or a retry), and otherwise the test's kind says what a failure means
// (required, optimal: optional, check: a yes/no). Prints one JSON object.
//
// usage: node summarise.mjs SUITE_DIR RESULTS.json [--list]
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const [suiteDir, resultsFile, list] = process.argv.slice(2);
const load = async (path) => (await import(pathToFileURL(join(suiteDir, path)).href)).default;
const suites = [...await load('tests/index.mjs'), await load('tests/surrogate-control.mjs')];
const results = JSON.parse(readFileSync(resultsFile, 'utf8'));

const tests = new Map();
for (const suite of suites) for (const test of suite.tests) if (test.browser_only !== true) tests.set(test.id, test);

const memo = new Map();
function classify(id) {
  if (memo.has(id)) return memo.get(id);
  const test = tests.get(id);
  const result = results[id];
  let verdict;
  if (result === undefined) verdict = 'untested';
  else if (test.depends_on?.some((dep) => !['pass', 'yes'].includes(classify(dep)))) verdict = 'dependency_fail';
  else if (Array.isArray(result) && result[0] === 'Setup') verdict = result[1] === 'retry' ? 'retry' : 'setup_fail';
  else if (test.kind === 'optimal') verdict = result === true ? 'pass' : 'optional_fail';
  else if (test.kind === 'check') verdict = result === true ? 'yes' : 'no';
  else verdict = result === true ? 'pass' : 'fail';
  memo.set(id, verdict);
  return verdict;
}

const counts = {};
const failures = {};
for (const id of tests.keys()) {
  const verdict = classify(id);
  counts[verdict] = (counts[verdict] ?? 0) + 1;
  if (verdict !== 'pass' && verdict !== 'yes' && verdict !== 'no') (failures[verdict] ??= []).push({ id, kind: tests.get(id).kind ?? 'required', result: results[id] });
}
console.log(JSON.stringify(list === '--list' ? { counts, failures } : counts, null, 2));
