// pipeChain() (core/pipe-chain.ts) stands in for stream.pipeline() on the response paths: the same
// outcome for each way a chain ends — finished, a stream failing, the last one closed early (a
// client gone), a stream already closed when the chain is built.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { test } from 'node:test';
import { detachChain, pipeChain } from '../../core/pipe-chain.js';

function sink(): Writable & { received: Buffer[] } {
  const received: Buffer[] = [];
  return Object.assign(new Writable({ write: (chunk: Buffer, _encoding, done) => (received.push(chunk), done()) }), { received });
}

function settled(streams: (Readable | Writable)[]): Promise<{ err: Error | undefined; calls: number }> {
  return new Promise((resolve) => {
    let calls = 0;
    pipeChain(streams, (err) => {
      calls++;
      // A second call would show up here before the test reads the count.
      setImmediate(() => resolve({ err, calls }));
    });
  });
}

test('a chain that finishes calls back once without an error, after the last stream took every byte', async () => {
  const out = sink();
  const result = await settled([Readable.from([Buffer.from('a'), Buffer.from('b')]), new PassThrough(), out]);
  assert.deepEqual(result, { err: undefined, calls: 1 });
  assert.equal(Buffer.concat(out.received).toString(), 'ab');
  assert.equal(out.writableFinished, true);
});

test('a transform that fails destroys every stream with its error and calls back once with it', async () => {
  const source = new PassThrough();
  const failing = new Transform({ transform: (_chunk, _encoding, done) => done(new Error('bad bytes')) });
  const out = sink();
  const done = settled([source, failing, out]);
  source.write('x');
  const result = await done;
  assert.equal(result.err?.message, 'bad bytes');
  assert.equal(result.calls, 1);
  assert.deepEqual([source.destroyed, failing.destroyed, out.destroyed], [true, true, true]);
});

test('the last stream closing before it finished (a client gone) destroys the source, with a premature-close error', async () => {
  const source = new PassThrough();
  const out = sink();
  const done = settled([source, new PassThrough(), out]);
  source.write('x');
  out.destroy();
  const result = await done;
  assert.equal((result.err as Error & { code?: string })?.code, 'ERR_STREAM_PREMATURE_CLOSE');
  assert.equal(source.destroyed, true);
});

test('a source that closed before the chain was built settles it with a premature close instead of hanging', async () => {
  const source = new PassThrough();
  source.destroy();
  await once(source, 'close');
  const out = sink();
  const result = await settled([source, out]);
  assert.equal((result.err as Error & { code?: string })?.code, 'ERR_STREAM_PREMATURE_CLOSE');
  assert.equal(out.destroyed, true);
});

test('a slow last stream pauses the source until it drains, and every chunk arrives in order', async () => {
  const source = new PassThrough();
  const received: string[] = [];
  const waiting: (() => void)[] = [];
  const slow = new Writable({ highWaterMark: 1, write: (chunk: Buffer, _encoding, done) => (received.push(chunk.toString()), waiting.push(done)) });
  const result = settled([source, slow]);
  for (const chunk of ['a', 'b', 'c', 'd']) source.write(chunk);
  source.end();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(received, ['a'], 'one write in flight');
  assert.equal(source.isPaused(), true, 'the source stops while the last stream is full');
  while (received.length < 4 || waiting.length > 0) {
    const next = waiting.shift();
    if (next === undefined) await new Promise((resolve) => setImmediate(resolve));
    else next();
  }
  assert.deepEqual(await result, { err: undefined, calls: 1 });
  assert.deepEqual(received, ['a', 'b', 'c', 'd']);
});

test('a detached chain passes nothing more on and destroys nothing when its source goes: the caller ends the last stream', async () => {
  const source = new PassThrough();
  const out = sink();
  let calls = 0;
  pipeChain([source, out], () => calls++);
  source.write('a');
  await new Promise((resolve) => setImmediate(resolve));
  detachChain(source);
  source.write('b');
  source.destroy();
  await once(source, 'close');
  assert.equal(out.destroyed, false, 'the last stream outlives the source');
  out.end('c');
  await once(out, 'finish');
  assert.equal(Buffer.concat(out.received).toString(), 'ac');
  assert.equal(calls, 0, 'done is not called for a detached chain');
});

test('a stream that ends one chain and starts the next carries every chunk through both under backpressure', async () => {
  const source = new PassThrough();
  const middle = new PassThrough({ highWaterMark: 1 });
  const received: string[] = [];
  const waiting: (() => void)[] = [];
  const slow = new Writable({ highWaterMark: 1, write: (chunk: Buffer, _encoding, done) => (received.push(chunk.toString()), waiting.push(done)) });
  const first = settled([source, middle]);
  const second = settled([middle, slow]);
  for (const chunk of ['a', 'b', 'c', 'd', 'e', 'f']) source.write(chunk);
  source.end();
  while (received.length < 6 || waiting.length > 0) {
    const next = waiting.shift();
    if (next === undefined) await new Promise((resolve) => setImmediate(resolve));
    else next();
  }
  assert.deepEqual(await first, { err: undefined, calls: 1 });
  assert.deepEqual(await second, { err: undefined, calls: 1 });
  assert.deepEqual(received, ['a', 'b', 'c', 'd', 'e', 'f']);
});
