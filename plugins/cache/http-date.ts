// HTTP dates as RFC 9110 §5.6.7 defines them, and nothing else: IMF-fixdate, the obsolete rfc850
// form and asctime. Date.parse is far more forgiving (`… UTC`, no comma, dashes, one-digit hours)
// and reads two-digit years as 19xx; a date the cache misreads as far-future keeps a response
// fresh for years, so anything outside the three forms is invalid.

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = '(Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const LONG_DAYS = '(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})';

// Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(`^${DAYS}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`);
// Sunday, 06-Nov-94 08:49:37 GMT
const RFC850 = new RegExp(`^${LONG_DAYS}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`);
// Sun Nov  6 08:49:37 1994
const ASCTIME = new RegExp(`^${DAYS} ${MONTH} ((?:\\d| )\\d) ${TIME} (\\d{4})$`);

/** Epoch ms of an HTTP date, or undefined when `value` is not one. `now` places two-digit years. */
export function parseHttpDate(value: string, now = Date.now()): number | undefined {
  let m = IMF_FIXDATE.exec(value);
  if (m) return utc(Number(m[4]), m[3]!, Number(m[2]), m[5]!, m[6]!, m[7]!);
  m = RFC850.exec(value);
  if (m) return utc(fullYear(Number(m[4]), now), m[3]!, Number(m[2]), m[5]!, m[6]!, m[7]!);
  m = ASCTIME.exec(value);
  if (m) return utc(Number(m[7]), m[2]!, Number(m[3]!.trim()), m[4]!, m[5]!, m[6]!);
  return undefined;
}

/** The date of a header value, or undefined when it is absent, repeated or not an HTTP date. */
export function headerDate(value: string | string[] | number | undefined, now = Date.now()): number | undefined {
  if (typeof value !== 'string') return undefined;
  return parseHttpDate(value, now);
}

/**
 * RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is the most recent past
 * year with those digits.
 */
function fullYear(twoDigits: number, now: number): number {
  const thisYear = new Date(now).getUTCFullYear();
  let year = Math.floor(thisYear / 100) * 100 + twoDigits;
  if (year > thisYear + 50) year -= 100;
  return year;
}

function utc(year: number, month: string, day: number, hours: string, minutes: string, seconds: string): number | undefined {
  const h = Number(hours);
  const min = Number(minutes);
  // 60 is a leap second.
  const s = Number(seconds);
  if (h > 23 || min > 59 || s > 60 || day < 1) return undefined;
  const monthIndex = MONTHS.indexOf(month);
  const ms = Date.UTC(year, monthIndex, day, h, min, Math.min(s, 59));
  // Date.UTC rolls 31 Feb over into March: such a date is not one.
  if (new Date(ms).getUTCDate() !== day) return undefined;
  return ms;
}
