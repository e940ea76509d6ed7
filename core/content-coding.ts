// Accept-Encoding read once for every plugin that chooses, decodes or stores by content coding
// (compression, cache): coding names canonical (RFC 9110 §8.4.1: lower case, x-gzip and
// x-compress are gzip and compress) with their q-values (§12.4.2).

/** A coding name as RFC 9110 compares it. */
export function canonicalCoding(name: string): string {
  const coding = name.trim().toLowerCase();
  return coding === 'x-gzip' || coding === 'x-compress' ? coding.slice(2) : coding;
}

/**
 * The codings an Accept-Encoding value names, with their q-values (1 when not given; 0 for a
 * q-value that is not a number from 0 to 1, read as a refusal rather than a wish). A name given
 * twice keeps its last weight. Undefined header: an empty map.
 */
export function acceptedCodings(header: string | string[] | undefined): ReadonlyMap<string, number> {
  const weights = new Map<string, number>();
  if (header === undefined) return weights;
  for (const part of String(header).split(',')) {
    const [token = '', ...params] = part.split(';');
    const coding = canonicalCoding(token);
    if (coding === '') continue;
    let q = 1;
    for (const param of params) {
      const [key = '', value = ''] = param.split('=');
      if (key.trim().toLowerCase() !== 'q') continue;
      const n = Number(value.trim());
      q = value.trim() !== '' && n >= 0 && n <= 1 ? n : 0;
    }
    weights.set(coding, q);
  }
  return weights;
}

/** Whether a client sending `header` reads `coding`: named, or `*`, with q > 0. No header: no. */
export function acceptsCoding(header: string | string[] | undefined, coding: string): boolean {
  const weights = acceptedCodings(header);
  return (weights.get(coding) ?? weights.get('*') ?? 0) > 0;
}
