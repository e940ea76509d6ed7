// A browser's API call, as the paired load and bench/perf/profile-pair.sh send it.
/**
 * What Chromium 156 sent for `fetch('https://api…/items')` from a page on another site: captured
 * from the browser on this machine (playwright-core, headless, 2026-12-06), names and values as
 * it sent them, but for Origin and Referer, which named the capture's own 127.0.0.1 page.
 */
export const CHROMIUM_FETCH = {
  'sec-ch-ua-platform': '"Linux"',
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36',
  'sec-ch-ua': '"Not:A-Brand";v="8", "Chromium";v="156"',
  'sec-ch-ua-mobile': '?0',
  accept: '*/*',
  origin: 'https://app.example.com',
  'sec-fetch-site': 'cross-site',
  'sec-fetch-mode': 'cors',
  'sec-fetch-dest': 'empty',
  referer: 'https://app.example.com/',
  'accept-encoding': 'gzip, deflate, br, zstd',
  'accept-language': 'en-US,en;q=0.9',
};
