// Tower dashboard: what the forms send. Each control's text becomes the JSON value the API
// reads; the API checks every value, and its message is shown on the field as it is sent. The
// dashboard keeps no copy of the API's rules, limits or messages.

/**
 * A number field's text as a JSON number when it is one (so `25` is sent as 25), otherwise as
 * the text itself, which the API refuses with a message saying what it expects.
 */
export function asNumber(raw) {
  const t = raw.trim();
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) {
    const n = Number(t);
    if (Number.isFinite(n)) return n;
  }
  return raw;
}

/** The API's message for one field, without the field's name in front (the field shows it). */
export function fieldMessage(e) {
  const prefix = `${e.field}: `;
  return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}
