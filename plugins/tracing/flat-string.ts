// Attribute strings handed to the SDK as one kind of V8 string (a speed trick). OpenTelemetry's
// protobuf serializer walks every attribute string twice (to size it, then to write it), reading
// `length` and characters on each. The proxy's strings come in many of V8's representations —
// sliced from a URL, concatenated, made by the HTTP parser — and past four kinds those reads turn
// megamorphic, the largest single cost of a sampled request in the profile (bench/README.md,
// "Tracing by instructions"). An ASCII string is copied here into a plain sequential one-byte
// string; anything else (rare in these attributes) is left as it is.

const scratch = Buffer.allocUnsafe(1024);

/** `text` as a sequential one-byte string when it is ASCII and fits the scratch buffer; else `text`. */
export function flatString(text: string): string {
  if (text.length > scratch.length) return text;
  const written = scratch.write(text, 0, 'utf8');
  return written === text.length ? scratch.toString('latin1', 0, written) : text;
}
