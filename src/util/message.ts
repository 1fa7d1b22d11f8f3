/** The most a condition message, Event message or logged error text may take, in UTF-8 bytes. */
export const MAX_MESSAGE_BYTES = 1024;

const ELLIPSIS = '…';

/**
 * `text` cut to at most `maxBytes` UTF-8 bytes, ending with "…" when cut. Cuts at a
 * code point boundary (never half a character, never half a surrogate pair), so the
 * result is valid UTF-8 that the API server accepts.
 */
export function capMessage(text: string, maxBytes = MAX_MESSAGE_BYTES): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength(ELLIPSIS, 'utf8');
  let used = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char, 'utf8');
    if (used + size > budget) break;
    used += size;
    end += char.length;
  }
  return text.slice(0, end) + ELLIPSIS;
}

/** `text` cut to at most `maxChars` characters, ending with "…" when cut: a name or input shown in a message. */
export function clip(text: string, maxChars: number): string {
  return text.length > maxChars ? `${text.slice(0, maxChars)}${ELLIPSIS}` : text;
}

/** `text` clipped and JSON-quoted, so that a message shows exactly where it starts and ends. */
export function quoted(text: string, maxChars = 80): string {
  return JSON.stringify(clip(text, maxChars));
}

/** The start and end of a long token (a 2 KB post-quantum recipient), for messages. */
export function abbreviate(text: string): string {
  return text.length > 40 ? `${text.slice(0, 20)}${ELLIPSIS}${text.slice(-8)}` : text;
}

/** An error for a log line: its name and message, capped at 1 KiB. */
export function describeError(error: unknown): string {
  return capMessage(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
}
