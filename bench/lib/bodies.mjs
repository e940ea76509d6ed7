// Bodies the bench upstream serves, shared with the runner (which encodes the 64 KiB one as a
// yardstick for the compression targets).

/** A realistic-looking JSON list (TMDB-like records), exactly `size` bytes. */
export function makeCompressibleJson(size) {
  const results = [];
  let i = 0;
  let text = '';
  for (;;) {
    results.push({
      id: 1000 + i,
      title: `Movie number ${i}`,
      original_language: ['en', 'fr', 'ja', 'de'][i % 4],
      popularity: Math.round((i * 7.31) % 1000) / 10,
      vote_average: (i % 10) + 0.5,
      release_date: `20${10 + (i % 15)}-0${1 + (i % 9)}-1${i % 10}`,
      overview: `A story about ${['a ship', 'a city', 'two friends', 'the sea'][i % 4]} and what happened next.`,
    });
    i++;
    const next = JSON.stringify({ page: 1, results, pad: '' });
    if (next.length > size) break;
    text = next;
  }
  results.pop();
  const skeleton = JSON.stringify({ page: 1, results, pad: '' });
  text = JSON.stringify({ page: 1, results, pad: ' '.repeat(size - skeleton.length) });
  return Buffer.from(text);
}
