// Runs CALLS response-shaped chains (a one-chunk body, one transform, a writable that takes the
// bytes) one after another through Node's stream.pipeline() or core/pipe-chain.ts. Under callgrind
// at two CALLS (see the usage), the difference over the extra chains is the instructions per chain:
//   for w in pipeline chain; do for n in 2000 12000; do valgrind --tool=callgrind \
//     --callgrind-out-file=/dev/null node --single-threaded bench/callgrind/pipe-chain.mjs $n $w; done; done
// usage: node pipe-chain.mjs CALLS pipeline|chain   (`npm run build` first)
import { PassThrough, pipeline, Readable, Writable } from 'node:stream';
import { pipeChain } from '../../dist/core/pipe-chain.js';

const body = Buffer.alloc(1024, 'x');
const connect = process.argv[3] === 'chain' ? pipeChain : (streams, done) => pipeline(streams, done);

function one() {
  return new Promise((resolve, reject) => {
    const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
    connect([Readable.from([body]), new PassThrough(), sink], (err) => (err ? reject(err) : resolve()));
  });
}

for (let i = Number(process.argv[2]); i > 0; i--) await one();
