// UTF-8 in, UTF-8 out, across chunk boundaries, without decoding to a string: what a UTF-8 page
// goes through before the tag scanner.
//
// Why: decoding each chunk to a string (StringDecoder) and encoding the rewritten text back was a
// fifth of the string rewriter's time on the bench's 2 MB page, and a page with one character
// beyond Latin-1 (`✓`) makes every string of it two bytes a character. Here a chunk is checked
// (buffer.isUtf8, Node's vectorised validator) and passed on as it is; only a chunk with invalid
// bytes is decoded and encoded, which replaces each invalid sequence by U+FFFD just as decoding
// did before. A character cut by the chunk boundary waits for the next chunk.
import { isUtf8 } from 'node:buffer';

/** How many bytes of `bytes` end on a character boundary (a cut character's bytes are left out). */
function completeLength(bytes: Buffer): number {
  const n = bytes.length;
  for (let back = 1; back <= 3 && back <= n; back++) {
    const c = bytes[n - back]!;
    if (c < 0x80) return n;
    if (c >= 0xc0) {
      const needed = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
      return needed > back ? n - back : n;
    }
    // a continuation byte: look further back for its lead byte
  }
  return n;
}

/** Valid UTF-8 as it came; invalid sequences as U+FFFD. */
function repaired(bytes: Buffer): Buffer {
  return isUtf8(bytes) ? bytes : Buffer.from(bytes.toString('utf8'), 'utf8');
}

export class Utf8Chunks {
  private held: Buffer | undefined;

  /** The chunk's complete characters (after what was held back). */
  write(chunk: Buffer): Buffer {
    const bytes = this.held ? Buffer.concat([this.held, chunk]) : chunk;
    const cut = completeLength(bytes);
    this.held = cut < bytes.length ? Buffer.from(bytes.subarray(cut)) : undefined;
    return repaired(cut < bytes.length ? bytes.subarray(0, cut) : bytes);
  }

  /** What was held back at the end: a cut character, as U+FFFD. */
  end(): Buffer {
    const rest = this.held ?? Buffer.alloc(0);
    this.held = undefined;
    return repaired(rest);
  }
}
