// Tower dashboard: The flag form's checks, as the API makes them, with the API's messages.
// ===== validation (as tower-core) =====
// Each check returns {value} (normalized, as the API stores it) or {error} with the API's message.

export const MAX_TITLE = 255;
export const MAX_DESCRIPTION = 10_000;
export const MAX_LIST = 65_536;
export const MIN_INTERVAL = 100;
export const MAX_INTERVAL = 2_147_483_647;

export const trimWs = (t) => t.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
export const charCount = (t) => [...t].length;
export const hasControl = (t) => /\p{Cc}/u.test(t);
export const U32_MAX = 4_294_967_295n;
export const U64_MAX = 18_446_744_073_709_551_615n;
export const I64_MIN = -9_223_372_036_854_775_808n;

/**
 * The shortest digits that read back as `v` (Rust and JS pick the same ones) and the power of
 * ten of the first: 1234.5 → ['12345', 3].
 */
export function decimalParts(v) {
  const [mantissa, exp] = Math.abs(v).toExponential().split('e');
  return [mantissa.replace('.', ''), Number(exp)];
}

/**
 * Rust's `{}` of an f64, as in the API's percentage messages: those digits, never an exponent
 * (1e23 → "100000000000000000000000", -1e-7 → "-0.0000001").
 */
export function rustFloat(v) {
  const sign = v < 0 || Object.is(v, -0) ? '-' : '';
  const [digits, exp] = decimalParts(v);
  if (exp >= digits.length - 1) return sign + digits + '0'.repeat(exp - digits.length + 1);
  if (exp >= 0) return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
}

/**
 * How the API's JSON parser (serde_json) prints a number it read as a float: plain from 1e-5 to
 * below 1e16, with ".0" when whole ("100.0"), else with an exponent ("1e+23", "1.5e-7").
 */
export function jsonFloat(v) {
  const [, exp] = decimalParts(v);
  if (exp < -5 || exp > 15) return v.toExponential();
  const plain = rustFloat(v);
  return plain.includes('.') ? plain : `${plain}.0`;
}

export function checkTitle(raw) {
  const t = trimWs(raw);
  if (!t) return { error: 'must not be empty' };
  const n = charCount(t);
  if (n > MAX_TITLE) return { error: `must be at most ${MAX_TITLE} characters (got ${n})` };
  if (hasControl(t)) return { error: 'must not contain control characters' };
  return { value: t };
}

export function checkDescription(raw) {
  if (raw.includes('\0')) return { error: 'must not contain NUL characters' };
  const n = charCount(raw);
  if (n > MAX_DESCRIPTION) return { error: `must be at most ${MAX_DESCRIPTION} characters (got ${n})` };
  return { value: raw };
}

export function parseNumber(raw) {
  const t = raw.trim();
  const v = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : null;
  // Too large for a double ("1e400"): JSON has no such number, the request could not carry it.
  return Number.isFinite(v) ? v : null;
}

export function checkPercent(raw) {
  const v = parseNumber(raw);
  if (v === null) return { error: 'must be a number' };
  if (!(v >= 0 && v <= 100)) return { error: `must be a number from 0 to 100 (got ${rustFloat(v)})` };
  return { value: Math.round(v * 10) / 10 };
}

export function checkIncrement(raw) {
  const r = checkPercent(raw);
  if (r.value === 0) return { error: 'must be from 0.1 to 100' };
  return r;
}

/**
 * An interval, as the API judges the number the form would send (JSON.stringify(v)): serde_json
 * reads digits alone as an integer when they fit in u64 (else in i64, else as a float), and the
 * API takes only a u64, clamped to u32 before the range check.
 */
export function checkInterval(raw) {
  const v = parseNumber(raw);
  if (v === null) return { error: 'must be a number' };
  const sent = JSON.stringify(v);
  const n = /^-?\d+$/.test(sent) ? BigInt(sent) : null;
  if (n === null || n < 0n || n > U64_MAX) {
    const negInt = n !== null && n < 0n && n >= I64_MIN;
    return { error: `must be a whole number of milliseconds (got ${negInt ? sent : jsonFloat(v)})` };
  }
  if (v < MIN_INTERVAL || v > MAX_INTERVAL) {
    const got = n > U32_MAX ? U32_MAX : n;
    return { error: `must be an integer number of milliseconds from ${MIN_INTERVAL} to ${MAX_INTERVAL} (got ${got})` };
  }
  return { value: v };
}

export function normalizeList(raw) {
  const n = charCount(raw);
  if (n > MAX_LIST) return { error: `must be at most ${MAX_LIST} characters (got ${n})` };
  return { value: raw.split(',').map(trimWs).filter(Boolean).join(',') };
}

export function checkUserList(raw) {
  const r = normalizeList(raw);
  if (r.error) return r;
  if (hasControl(r.value)) return { error: 'user ids must not contain control characters' };
  return r;
}

export function checkWebhooks(raw) {
  const r = normalizeList(raw);
  if (r.error) return r;
  for (const url of r.value.split(',').filter(Boolean)) {
    const lower = url.toLowerCase();
    const rest = lower.startsWith('https://') ? url.slice(8) : lower.startsWith('http://') ? url.slice(7) : null;
    if (rest === null) return { error: `\`${url}\` is not an http:// or https:// URL` };
    const host = rest.split(/[/?#]/)[0];
    if (!host || /[\p{White_Space}\p{Cc}]/u.test(url)) return { error: `\`${url}\` is not a valid URL` };
  }
  return r;
}

/** The message of an API error without its "field: " prefix (shown next to that field). */
export function fieldMessage(e) {
  const prefix = `${e.field}: `;
  return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}
