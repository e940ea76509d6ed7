// Case-insensitive lookup of a few ASCII names (tag and attribute names) in a byte range, without
// making a string of the bytes first.
//
// Why: the tag scanner meets about 75,000 attribute names and 38,000 tag names in the bench's 2 MB
// page and needs only a handful of them. Slicing and lower-casing each one into a string was a
// string allocation and a native call per name; comparing bytes with the few names of the same
// length costs neither (part of the scanner's figure in tag-scanner.ts).

export class NameTable {
  /** The names, lower case, by length. */
  private readonly byLength: (string[] | undefined)[] = [];

  constructor(names: Iterable<string>) {
    for (const name of names) {
      const lower = name.toLowerCase();
      if (!/^[\x21-\x7e]+$/.test(lower)) throw new Error(`NameTable: "${name}" is not a printable ASCII name`);
      const list = (this.byLength[lower.length] ??= []);
      if (!list.includes(lower)) list.push(lower);
    }
  }

  /** The table's name equal to bytes[start, end) with ASCII letters in any case; else undefined. */
  find(bytes: Uint8Array, start: number, end: number): string | undefined {
    const candidates = this.byLength[end - start];
    if (candidates === undefined) return undefined;
    for (const name of candidates) {
      let i = 0;
      for (; i < name.length; i++) {
        let c = bytes[start + i]!;
        if (c >= 0x41 && c <= 0x5a) c |= 0x20;
        if (c !== name.charCodeAt(i)) break;
      }
      if (i === name.length) return name;
    }
    return undefined;
  }
}
