// The access log's own serialiser writes, byte for byte, the line pino would write for the same
// fields; a logger that would change the line (mixin, redaction or a serializer on one of its keys)
// gets it through pino itself.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino, { type Logger, type LoggerOptions } from 'pino';
import { accessLogWriter, type AccessLevel, type AccessLine } from '../../core/access-log.js';
import { createLogger } from '../../core/index.js';

/** A destination that keeps each written line. */
function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { lines, stream };
}

/** The same options twice: one logger for the writer under test, one to ask pino itself. */
function twin(options: LoggerOptions): { ours: Logger; reference: Logger; ourLines: string[]; referenceLines: string[] } {
  const a = capture();
  const b = capture();
  // A fixed clock: the two lines are made at different moments.
  const fixed = { ...options, timestamp: () => ',"time":1700000000000' };
  return { ours: pino(fixed, a.stream), reference: pino(fixed, b.stream), ourLines: a.lines, referenceLines: b.lines };
}

const LINES: { level: AccessLevel; line: AccessLine; extra?: Record<string, unknown> }[] = [
  { level: 'info', line: { requestId: 'a1', method: 'GET', path: '/3/movie/550?api_key=***', route: 'tmdb-api', upstream: 'http://127.0.0.1:1', status: 200, ms: 1.25, bytes: 1234, attempts: 1, code: undefined } },
  { level: 'warn', line: { requestId: 'b2', method: 'POST', path: '/x', route: undefined, upstream: undefined, status: 502, ms: 0.5, bytes: 0, attempts: 2, code: 'SY_ERR_UPSTREAM_UNREACHABLE' } },
  // Characters JSON must escape, and some it need not: quotes, backslashes, control characters, non-ASCII.
  { level: 'info', line: { requestId: 'c3', method: 'GET', path: '/a"b\\c\u0001d\u00e9\u2028/\ud83d\ude00', route: 'r"1', upstream: 'u\n', status: 200, ms: Number.NaN, bytes: Infinity, attempts: 1, code: undefined } },
  // pino escapes strings of 42 characters and more with JSON.stringify, shorter ones itself.
  { level: 'warn', line: { requestId: 'e5', method: undefined, path: `/${'x'.repeat(60)}"q"\\`, route: 'r', upstream: 'u', status: 499, ms: -0, bytes: 0, attempts: 0, code: 'SY_ERR_CLIENT_ABORTED' } },
  // Who asked, from where, with what: a User-Agent may carry anything a client puts in it.
  { level: 'info', line: { requestId: 'f6', method: 'GET', path: '/v1', route: 'r', upstream: 'u', status: 200, ms: 2, bytes: 5, attempts: 1, code: undefined, consumer: 'alice', clientIp: '::ffff:127.0.0.1', userAgent: 'Mozilla/5.0 "quoted" \\ \u0007' } },
  { level: 'info', line: { requestId: 'd4', method: 'GET', path: '/', route: 'r', upstream: 'u', status: 200, ms: 3, bytes: 10, attempts: 1, code: undefined }, extra: { apiKey: 'team-a', user: undefined, admitted: true, weight: 2 } },
];

async function writeAll(write: (entry: (typeof LINES)[number]) => void): Promise<void> {
  for (const entry of LINES) write(entry);
  await new Promise<void>((resolve) => setImmediate(resolve));
}

test('the writer makes the line pino makes, for the server\'s own logger options and for a child with bindings', async () => {
  for (const options of [{}, { base: { pid: 7, hostname: 'h' }, redact: { paths: ['req.headers.authorization', 'headers.cookie', 'options.apiKey'], censor: '***' } }] as LoggerOptions[]) {
    const { ours, reference, ourLines, referenceLines } = twin(options);
    for (const [logger, other] of [[ours, reference], [ours.child({ plugin: 'x', route: 'y' }), reference.child({ plugin: 'x', route: 'y' })]] as const) {
      const writer = accessLogWriter(logger);
      assert.equal(writer.serializer, 'own');
      await writeAll(({ level, line, extra }) => writer(level, line, extra, 'request'));
      await writeAll(({ level, line, extra }) => other[level]({ ...line, ...extra }, 'request'));
    }
    assert.equal(ourLines.length, LINES.length * 2);
    assert.deepEqual(ourLines, referenceLines);
    for (const line of ourLines) JSON.parse(line);
  }
});

test('createLogger\'s logger takes the writer\'s own path, and its lines parse', async () => {
  const { lines, stream } = capture();
  const logger = createLogger({ LOG_LEVEL: 'info' }, stream);
  const writer = accessLogWriter(logger);
  assert.equal(writer.serializer, 'own');
  writer('info', LINES[0]!.line, { apiKey: 'team-a' }, 'request');
  await new Promise<void>((resolve) => setImmediate(resolve));
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  assert.equal(parsed.level, 30);
  assert.equal(parsed.msg, 'request');
  assert.equal(parsed.route, 'tmdb-api');
  assert.equal(parsed.apiKey, 'team-a');
  assert.equal(typeof parsed.time, 'number');
  assert.equal(parsed.pid, process.pid);
});

test('a logger that changes lines gets them through pino: mixin, redaction or a serializer of a line key', async () => {
  const cases: { options: LoggerOptions; check: (line: Record<string, unknown>) => void }[] = [
    { options: { mixin: () => ({ region: 'eu' }) }, check: (line) => assert.equal(line.region, 'eu') },
    { options: { redact: ['path'] }, check: (line) => assert.equal(line.path, '[Redacted]') },
    { options: { serializers: { route: (value: string) => value.toUpperCase() } }, check: (line) => assert.equal(line.route, 'TMDB-API') },
    { options: { formatters: { log: (object: Record<string, unknown>) => ({ ...object, formatted: true }) } }, check: (line) => assert.equal(line.formatted, true) },
  ];
  for (const { options, check } of cases) {
    const { lines, stream } = capture();
    const logger = pino(options, stream);
    const writer = accessLogWriter(logger);
    assert.equal(writer.serializer, 'pino', JSON.stringify(Object.keys(options)));
    writer('info', LINES[0]!.line, undefined, 'request');
    await new Promise<void>((resolve) => setImmediate(resolve));
    check(JSON.parse(lines[0]!) as Record<string, unknown>);
  }
});

test('extra fields pino writes differently go through pino: nested objects, bigints, a field of the line given again', async () => {
  const { ours, reference, ourLines, referenceLines } = twin({});
  const writer = accessLogWriter(ours);
  const line = LINES[0]!.line;
  for (const extra of [{ usage: { output: 2, input: 1 } }, { route: 'renamed' }, { big: 10n }]) {
    writer('info', line, extra, 'request');
    reference.info({ ...line, ...extra }, 'request');
  }
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.deepEqual(ourLines, referenceLines);
  assert.match(ourLines[0]!, /"usage":\{"output":2,"input":1\}/);
  assert.equal((JSON.parse(ourLines[1]!) as Record<string, unknown>).route, 'renamed');
});

test('a lone surrogate in a path is escaped, so the line stays valid UTF-8 JSON', async () => {
  const { lines, stream } = capture();
  const writer = accessLogWriter(pino({}, stream));
  writer('info', { ...LINES[0]!.line, path: '/a\ud800b' }, undefined, 'request');
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.match(lines[0]!, /"path":"\/a\\ud800b"/);
  assert.equal((JSON.parse(lines[0]!) as { path: string }).path, '/a\ud800b');
});
