// What one chunk of a page becomes after the tag scanner: runs of the chunk's own bytes, with
// replacement text and inserted bytes between them, assembled into one buffer.
//
// Why this way (a speed trick): a 64 KiB chunk of the bench's page is about a thousand links, so
// a thousand unchanged runs of ~60 bytes, each followed by an inserted `/proxy/<origin>` prefix.
// Copying a run with `set` needs a Uint8Array view of it first, and that view — an object
// allocated, set up and collected for every run — was most of `take` and a quarter of the
// proxy's CPU profile; a byte loop and Buffer's copy() were slower still. Here the whole chunk is
// copied once to the end of the output buffer, and each run is then moved forward inside that
// buffer with copyWithin(), which takes offsets and allocates nothing. A run never moves backward
// past bytes still to be read: the chunk is placed at the largest distance any run has to move
// forward (`lead`), so every run's target lies before its source. A run that follows another
// and an insertion that follows a run share an entry, halving the entries. Micro loop (1,092
// 60-byte runs each with a 31-byte insertion, node --single-threaded under callgrind): 902,000
// instructions a chunk with views, 624,000 this way, and by CPU time 3.6 times faster (no
// garbage). The rewriter alone in 64 KiB chunks, main thread under callgrind
// (bench/callgrind/html-rewriter.mjs): the bench's 2 MB page 213–223 million instructions a page
// with views, 152–153 million this way; its mixed page 682 million and 484 million.

const NOTHING: Buffer = Buffer.alloc(0);

/** The length of `text` in UTF-8 (a lone surrogate counts as U+FFFD, as Buffer writes it). */
function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Ranges of a source chunk and added parts, in order; one buffer at the end (take()). */
export class SplicedChunk {
  // Entries are overwritten, never removed: the arrays keep their storage from chunk to chunk.
  /** Start and end of each entry's range of the source; added[k] goes after range k. */
  private readonly ranges: number[] = [];
  private readonly added: (string | Uint8Array)[] = [];
  /** UTF-8 length of added[k]; 0 when entry k has nothing added (yet). */
  private readonly addedBytes: number[] = [];
  private count = 0;
  private size = 0;
  /** The largest (output offset − source offset) of any range's start: where the source goes. */
  private lead = 0;
  private source = NOTHING;

  /** Starts on a new chunk. */
  reset(source: Buffer): void {
    this.source = source;
    this.count = 0;
    this.size = 0;
    this.lead = 0;
  }

  /** source[start, end), as it is. */
  bytes(start: number, end: number): void {
    if (end <= start) return;
    const last = this.count - 1;
    const lead = this.size - start;
    if (lead > this.lead) this.lead = lead;
    this.size += end - start;
    // Straight after the previous range, with nothing added between: the same run.
    if (last >= 0 && this.addedBytes[last] === 0 && this.ranges[2 * last + 1] === start) {
      this.ranges[2 * last + 1] = end;
      return;
    }
    this.push(start, end);
  }

  text(text: string | undefined): void {
    if (text) this.part(text, utf8Length(text));
  }

  insert(bytes: Uint8Array): void {
    if (bytes.length > 0) this.part(bytes, bytes.length);
  }

  private part(part: string | Uint8Array, length: number): void {
    let last = this.count - 1;
    // After a range with nothing added yet, the part goes in the range's entry.
    if (last < 0 || this.addedBytes[last] !== 0) {
      this.push(0, 0);
      last++;
    }
    this.added[last] = part;
    this.addedBytes[last] = length;
    this.size += length;
  }

  private push(start: number, end: number): void {
    const k = this.count++;
    this.ranges[2 * k] = start;
    this.ranges[2 * k + 1] = end;
    this.added[k] = '';
    this.addedBytes[k] = 0;
  }

  /** The chunk as changed; starts on nothing (reset() again for the next chunk). */
  take(): Buffer {
    const { source, ranges, added, addedBytes, count, size, lead } = this;
    this.reset(NOTHING);
    if (count === 0) return NOTHING;
    if (count === 1 && addedBytes[0] === 0 && ranges[0] === 0 && ranges[1] === source.length) return source;
    const room = Math.max(size, lead + source.length);
    const all = Buffer.allocUnsafe(room);
    all.set(source, lead);
    let at = 0;
    for (let k = 0; k < count; k++) {
      const start = ranges[2 * k]!;
      const end = ranges[2 * k + 1]!;
      if (end > start) {
        if (at !== lead + start) all.copyWithin(at, lead + start, lead + end);
        at += end - start;
      }
      const length = addedBytes[k]!;
      if (length === 0) continue;
      const part = added[k]!;
      if (typeof part !== 'string') all.set(part, at);
      else if (part.length === length) for (let i = 0; i < length; i++) all[at + i] = part.charCodeAt(i);
      else all.write(part, at);
      at += length;
    }
    return room === size ? all : all.subarray(0, size);
  }
}
