// A lean `stream.pipeline(streams, callback)` for the response paths: the same wiring (backpressure,
// every stream destroyed with the error when one fails or closes early, the callback once, when
// the last stream finished or with the first error) without what Node 20's pipeline() pays on
// every call that succeeds: an AbortController aborted at the end (a DOMException with its stack
// trace) and an ERR_STREAM_DESTROYED error built, stack and all, for each stream it was given.
// Profiled with gzip pass-through under wrk, those were 5.7 % of the proxy's CPU; here an error
// object exists only when something failed.
//
// Nor does it call Readable.pipe(), which builds eight closures for each pair of streams (ondata,
// onend, unpipe, cleanup…): each listener here is one module-level function that finds its chain
// in a symbol property of the stream it listens to, one for the chain that reads the stream and
// one for the chain that writes to it (a page's rewriter ends one chain and starts the next). A
// WeakMap instead cost three times as much (every entry is an ephemeron the garbage collector must
// trace). Figure, per chain of three streams (bench/callgrind/pipe-chain.mjs): pipeline() 238,820
// instructions, this module with pipe() 77,459, without 48,792.
import type { Readable, Writable } from 'node:stream';

type Stage = Readable | Writable;

const kReadBy = Symbol('switchyard.pipeChain.readBy');
const kWrittenBy = Symbol('switchyard.pipeChain.writtenBy');

interface Linked {
  [kReadBy]?: Chain;
  [kWrittenBy]?: Chain;
}

/** Pipes `streams` in order (a readable, transforms, a writable); `done` once, as pipeline's callback. */
export function pipeChain(streams: readonly Stage[], done: (err: Error | undefined) => void): void {
  const chain = new Chain(streams, done);
  const last = streams.length - 1;
  for (let i = 0; i < last; i++) {
    const stream = streams[i] as Readable & Linked;
    stream[kReadBy] = chain;
    // Kept for the stream's life: an error after the chain settled must not go unheard and throw.
    stream.on('error', onReadError).on('close', onReadClose).on('end', onEnd).on('data', onData);
  }
  for (let i = 1; i <= last; i++) {
    const stream = streams[i] as Writable & Linked;
    stream[kWrittenBy] = chain;
    stream.on('drain', onDrain);
  }
  (streams[last] as Writable).on('error', onLastError).on('close', onLastClose).on('finish', onFinish);
  // Already closed before the chain was built: its 'close' is gone, so nothing else would settle.
  if (streams.some((stream, i) => stream.destroyed && !(i === last ? (stream as Writable).writableFinished : (stream as Readable).readableEnded))) {
    queueMicrotask(() => chain.settle(prematureClose()));
  }
}

/**
 * Stops the chain that reads `stream` where it stands: nothing more is passed on, nothing is
 * destroyed for it and `done` is not called; the caller ends the streams itself (an event stream
 * wound down at shutdown: the upstream dropped, the client's answer ended after what it holds).
 */
export function detachChain(stream: Readable): void {
  (stream as Linked)[kReadBy]?.detach();
}

class Chain {
  private settled = false;

  constructor(private readonly streams: readonly Stage[], private readonly done: (err: Error | undefined) => void) {}

  next(stream: Stage): Writable {
    return this.streams[this.streams.indexOf(stream) + 1] as Writable;
  }

  previous(stream: Stage): Readable {
    return this.streams[this.streams.indexOf(stream) - 1] as Readable;
  }

  detach(): void {
    this.settled = true;
    for (const stream of this.streams) stream.removeListener('data', onData);
  }

  settle(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    if (err !== undefined) for (const stream of this.streams) if (!stream.destroyed) stream.destroy(err);
    this.done(err);
  }
}

function readBy(stream: Stage): Chain {
  return (stream as Linked)[kReadBy]!;
}

function writtenBy(stream: Stage): Chain {
  return (stream as Linked)[kWrittenBy]!;
}

function onData(this: Readable, chunk: unknown): void {
  // Backpressure: the next stream's buffer is full, so stop reading until it drains.
  if (!readBy(this).next(this).write(chunk)) this.pause();
}

function onDrain(this: Writable): void {
  const source = writtenBy(this).previous(this);
  if (source.isPaused() && !source.destroyed) source.resume();
}

function onEnd(this: Readable): void {
  readBy(this).next(this).end();
}

function onReadError(this: Readable, err: Error): void {
  readBy(this).settle(err);
}

function onReadClose(this: Readable): void {
  if (!this.readableEnded) readBy(this).settle(prematureClose());
}

function onFinish(this: Writable): void {
  writtenBy(this).settle(undefined);
}

function onLastError(this: Writable, err: Error): void {
  writtenBy(this).settle(err);
}

function onLastClose(this: Writable): void {
  if (!this.writableFinished) writtenBy(this).settle(prematureClose());
}

function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}
