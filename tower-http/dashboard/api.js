// Tower dashboard: The REST API: one fetch wrapper with its error type, and reads that stay fresh under live events.
// ===== api =====

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** Calls the REST API: JSON in, `payload` out; failures throw ApiError with the API's message. */
export async function api(method, path, body, signal) {
  // no-store: the API sends no Cache-Control, and a back/forward navigation would otherwise
  // answer GETs from the HTTP cache, showing what was true when the page was first loaded.
  const init = { method, headers: { Accept: 'application/json' }, signal, cache: 'no-store' };
  // Every change says it is JSON, with a body or without: the API refuses one that does not
  // (what a cross-site form would send).
  if (method !== 'GET' && method !== 'HEAD') init.headers['Content-Type'] = 'application/json';
  if (body !== undefined) init.body = JSON.stringify(body);
  let res, text;
  try {
    res = await fetch(path, init);
    text = await res.text();
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, 'network', 'Cannot reach the Tower server. Check that it is running.');
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): fall through to the status line.
  }
  if (!res.ok) {
    // No session (it expired, or the server's tokens changed): the dashboard shows its sign-in.
    if (res.status === 401 && path !== '/api/session') window.dispatchEvent(new Event('tower:unauthorized'));
    const err = data?.error;
    if (err && typeof err === 'object') {
      throw new ApiError(res.status, err.code, err.message || `HTTP ${res.status}`, err.field);
    }
    const message = typeof err === 'string' ? err : `HTTP ${res.status} ${res.statusText}`.trim();
    throw new ApiError(res.status, 'http', message);
  }
  return data && typeof data === 'object' && 'payload' in data ? data.payload : data;
}

export const isAbort = (e) => e?.name === 'AbortError';

/**
 * A screen's reads, kept from losing live events. An answer carries no revision, so a change
 * that arrives while a read is in flight may be newer or older than it: such changes (live
 * events, and the screen's own writes) are remembered (`saw`), replayed over the answer once it
 * is installed, and followed by one more read (however many arrived), so the screen always ends
 * at least as new as the newest change. Reads never overlap: `load()` during one asks for
 * another after it.
 *
 * `read()` fetches; `install(answer)` shows it, or returns false to drop an answer that no
 * longer applies (the page moved on meanwhile); `replay(change)` applies a remembered change
 * again; `failed(error)` reports a read that failed (not an abort: the screen went away).
 */
export function freshReads({ read, install, replay, failed }) {
  let running = null;
  let again = false;
  let seen = null; // the changes that arrived during the read in flight

  async function loop() {
    do {
      again = false;
      seen = [];
      let answer;
      try {
        answer = await read();
      } catch (e) {
        seen = null;
        if (isAbort(e)) return;
        if (!again) failed(e);
        continue;
      }
      const missed = seen;
      seen = null;
      if (install(answer) === false) continue;
      for (const change of missed) replay(change);
      if (missed.length) again = true;
    } while (again);
  }

  return {
    load() {
      if (running) {
        again = true;
      } else {
        running = loop().finally(() => { running = null; });
      }
      return running;
    },
    saw(change) {
      seen?.push(change);
    },
  };
}
