// Feeds PAGES copies of the webproxy suite's 2 MB page (or, with `mixed`, its mixed page) through
// the web proxy's HTML rewriter in 64 KiB chunks, one page after another, in this process. Under
// callgrind at two PAGES, the main thread's difference over the extra pages is the rewriter's
// instructions per page:
//   for n in 6 16; do valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/rw.%p \
//     node bench/callgrind/html-rewriter.mjs $n; done   # then the -01 files' totals
// (6 pages first, so that V8 has compiled the hot code before the pages that count.)
// usage: node html-rewriter.mjs PAGES [big|mixed]   (`npm run build` first)
import { htmlRewriter } from '../../dist/plugins/web-proxy/rewrite.js';
import { bigPage, mixedPage } from '../lib/web-proxy.mjs';

const page = process.argv[3] === 'mixed' ? mixedPage() : bigPage();
let bytesOut = 0;
for (let i = Number(process.argv[2]); i > 0; i--) {
  const rewriter = htmlRewriter(new URL('http://127.0.0.1:1/big.html'), '/proxy');
  await new Promise((resolve, reject) => {
    rewriter.on('data', (chunk) => (bytesOut += chunk.length));
    rewriter.on('end', resolve);
    rewriter.on('error', reject);
    for (let at = 0; at < page.length; at += 65536) rewriter.write(page.subarray(at, at + 65536));
    rewriter.end();
  });
}
console.log(`${bytesOut} bytes out`);
