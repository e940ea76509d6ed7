// A caller's traceparent as the plugin reads it (plugins/tracing/traceparent.ts) against
// OpenTelemetry's parseTraceParent: the same span context, or null, for what real callers send
// and for every kind of value W3C trace context refuses.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseTraceParent } from '@opentelemetry/core';
import { readTraceparent } from '../../plugins/tracing/traceparent.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';
const CANONICAL = `00-${TRACE}-${SPAN}-01`;

function assertReadAsOpenTelemetry(value: string): void {
  assert.deepEqual(readTraceparent(value), parseTraceParent(value), JSON.stringify(value));
}

describe('tracing: a caller\'s traceparent', () => {
  test('what SDKs send: random ids, every flags byte, read as OpenTelemetry reads them', () => {
    for (let i = 0; i < 2000; i++) {
      const [trace, span, flags] = [randomBytes(16), randomBytes(8), randomBytes(1)].map((bytes) => bytes.toString('hex'));
      const value = `00-${trace}-${span}-${flags}`;
      assert.ok(readTraceparent(value), value);
      assertReadAsOpenTelemetry(value);
    }
    assert.deepEqual(readTraceparent(CANONICAL), { traceId: TRACE, spanId: SPAN, traceFlags: 1 });
  });

  test('values W3C refuses or reads another way: the same answer as OpenTelemetry\'s', () => {
    const values = [
      `00-${'0'.repeat(32)}-${SPAN}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00-${'0'.repeat(31)}1-${'0'.repeat(15)}1-00`, // one bit set in each
      CANONICAL.toUpperCase(), `00-${TRACE.toUpperCase()}-${SPAN}-01`, `00-${TRACE}-${SPAN}-0A`,
      `ff-${TRACE}-${SPAN}-01`, // the reserved version
      `01-${TRACE}-${SPAN}-01`, `01-${TRACE}-${SPAN}-01-more`, `cc-${TRACE}-${SPAN}-01-what-the-future-says`, // later versions
      `${CANONICAL}-more`, `${CANONICAL}-`, // version 00 with more
      ` ${CANONICAL}`, `${CANONICAL} `, `\t${CANONICAL}`, `\u00a0${CANONICAL}`, `  ${CANONICAL}`, `\ufeff${CANONICAL}`,
      CANONICAL.slice(0, 54), `${CANONICAL}1`, '', '00', '00-', `00-${TRACE}-${SPAN}`,
      `00_${TRACE}-${SPAN}-01`, `00-${TRACE}_${SPAN}-01`, `00-${TRACE}-${SPAN}_01`,
      `00-${TRACE.slice(0, 31)}g-${SPAN}-01`, `00-${TRACE}-${SPAN}-0g`, `00-${TRACE}-${SPAN.slice(0, 15)}é-01`,
    ];
    for (const value of values) assertReadAsOpenTelemetry(value);
  });

  test('each position of a canonical value changed to each kind of character: the same answer', () => {
    const replacements = ['0', '1', '9', 'a', 'f', 'g', 'A', 'F', '-', ' ', '\t', '/', ':', '`', '{', 'é', '日', '\u0000'];
    for (let at = 0; at < CANONICAL.length; at++) {
      for (const character of replacements) assertReadAsOpenTelemetry(CANONICAL.slice(0, at) + character + CANONICAL.slice(at + 1));
    }
  });
});
