// Text as the server reads it.

/** A UTF-16 surrogate with no partner: a high one not followed by a low one, or a low one alone. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * `text` with every lone UTF-16 surrogate replaced by U+FFFD, as `String.prototype.toWellFormed`
 * does (ES2024). A string cut in the middle of an emoji (`"😀".slice(0, 1)`) holds one; the server
 * reads only well-formed text and would refuse the message (`invalid_json`), while a browser
 * shows the lone surrogate as "�" anyway. Repaired before the optimistic copy is shown, so the
 * list shows what is stored.
 */
export function wellFormed(text: string): string {
  return text.replace(LONE_SURROGATE, "\uFFFD");
}
