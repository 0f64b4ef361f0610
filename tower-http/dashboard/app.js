// Tower dashboard: one ES module, no dependencies, no build step.
//
// Sections: helpers (DOM, formatting, icons) · api() · toasts and dialogs · validation (mirrors
// tower-core's model.rs / input.rs) · live events hub · shared components · screens (apps, app
// flags, flag, logs, SDK key, not found) · router · start.

// ===== page errors =====
// Uncaught errors, unhandled rejections and CSP violations are kept in window.__towerErrors for
// browser tests to read (failed API calls are handled and shown, so they are not errors).

const pageErrors = (window.__towerErrors = []);
window.addEventListener('error', (e) => pageErrors.push(`${e.message} (${e.filename}:${e.lineno})`));
window.addEventListener('unhandledrejection', (e) => pageErrors.push(`unhandled rejection: ${e.reason?.stack ?? e.reason}`));
document.addEventListener('securitypolicyviolation', (e) => pageErrors.push(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));

// ===== helpers =====

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Builds an element. Strings become text nodes (never parsed as HTML). */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  append(el, children);
  setProps(el, props);
  return el;
}

/** Builds an SVG element; attributes are set verbatim. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v != null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

let uidCounter = 0;
const uid = (prefix) => `${prefix}-${++uidCounter}`;

const numberFmt = new Intl.NumberFormat('en');
const compactFmt = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const relFmt = new Intl.RelativeTimeFormat('en', { numeric: 'always' });

/** "just now", "3 minutes ago", "2 hours ago", "5 days ago". */
function relativeTime(iso) {
  const secs = (Date.parse(iso) - Date.now()) / 1000;
  const abs = Math.abs(secs);
  if (!Number.isFinite(secs)) return '';
  if (abs < 45 || (secs > 0 && abs < 120)) return 'just now';
  if (abs < 45 * 60) return relFmt.format(Math.round(secs / 60), 'minute');
  if (abs < 22 * 3600) return relFmt.format(Math.round(secs / 3600), 'hour');
  if (abs < 26 * 86400) return relFmt.format(Math.round(secs / 86400), 'day');
  if (abs < 320 * 86400) return relFmt.format(Math.round(secs / (30 * 86400)), 'month');
  return relFmt.format(Math.round(secs / (365 * 86400)), 'year');
}

const absoluteTime = (iso) => (Number.isFinite(Date.parse(iso)) ? dateFmt.format(new Date(iso)) : '');

/** A <time> whose text ("updated 3 minutes ago") is refreshed every 30 s. */
function timeAgo(iso, prefix = '') {
  const el = h('time', { class: 'ago' });
  el.dataset.prefix = prefix;
  setTimeAgo(el, iso);
  return el;
}

function setTimeAgo(el, iso) {
  el.dateTime = iso ?? '';
  el.title = absoluteTime(iso);
  el.textContent = iso ? el.dataset.prefix + relativeTime(iso) : '';
}

setInterval(() => {
  for (const el of document.querySelectorAll('time.ago')) setTimeAgo(el, el.dateTime);
}, 30_000);

const pct = (n) => `${n}%`;

/** Sorts by title, case-insensitively, numbers in titles in numeric order. */
const byTitle = (a, b) =>
  a.title.localeCompare(b.title, undefined, { sensitivity: 'base', numeric: true }) || a.id - b.id;

const matches = (title, query) => title.toLowerCase().includes(query.trim().toLowerCase());

/** Marks `tower:ready` (once per page load) when the first screen has rendered its data. */
function markReady() {
  if (!performance.getEntriesByName('tower:ready').length) performance.mark('tower:ready');
}

function setTitle(...parts) {
  document.title = [...parts.filter(Boolean), 'Tower'].join(' · ');
}

// Icons: 24×24 strokes, decorative (aria-hidden), so text always carries the meaning.
const ICONS = {
  plus: 'M12 5v14M5 12h14',
  edit: 'M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4Z',
  trash: 'M3 6h18M8 6V4h8v2M19 6l-1 14H6L5 6M10 11v6M14 11v6',
  copy: 'M9 9h11v11H9zM5 15H4V4h11v1',
  refresh: 'M21 12a9 9 0 1 1-2.6-6.4L21 8M21 3v5h-5',
  closed: 'M22 12a10 10 0 1 1-20 0 10 10 0 0 1 20 0ZM8 12.5l2.7 2.7L16 9.5',
  open: 'M22 12a10 10 0 1 1-20 0 10 10 0 0 1 20 0ZM5 5l14 14',
  zap: 'M13 2 3 14h9l-1 8 10-12h-9l1-8Z',
  power: 'M12 2v10M18.4 6.6a9 9 0 1 1-12.8 0',
  search: 'M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14ZM21 21l-4.3-4.3',
  pause: 'M8 5v14M16 5v14',
  play: 'M7 4l13 8-13 8Z',
  alert: 'M12 9v4M12 17h.01M10.3 3.9 1.8 18a2 2 0 0 0 1.7 3h17a2 2 0 0 0 1.7-3L13.7 3.9a2 2 0 0 0-3.4 0Z',
  check: 'M20 6 9 17l-5-5',
  x: 'M18 6 6 18M6 6l12 12',
  key: 'M14.5 9.5a4 4 0 1 0-1.2 2.8L21 4.6M17 8.5l2.5 2.5',
  left: 'M15 18l-6-6 6-6',
  right: 'M9 18l6-6-6-6',
};

function icon(name, cls = 'icon') {
  return s('svg', { class: cls, viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    s('path', { d: ICONS[name] }));
}

/** Wire circuit states, with words and icons so colour is never the only signal. */
const CIRCUIT = {
  close: { label: 'Closed', icon: 'closed', tone: 'ok' },
  open: { label: 'Open', icon: 'open', tone: 'bad' },
  recovery: { label: 'Recovering', icon: 'refresh', tone: 'warn' },
};
const circuitOf = (flag) => CIRCUIT[flag.circuit_status] ?? CIRCUIT.open;

const ACTIONS = {
  create: { label: 'Created', icon: 'plus', tone: 'neutral' },
  update: { label: 'Updated', icon: 'edit', tone: 'neutral' },
  delete: { label: 'Deleted', icon: 'trash', tone: 'bad' },
  flag_on: { label: 'Turned on', icon: 'power', tone: 'ok' },
  flag_off: { label: 'Turned off', icon: 'power', tone: 'muted' },
  circuit_open: { label: 'Circuit opened', icon: 'open', tone: 'bad' },
  circuit_recovery: { label: 'Recovery started', icon: 'refresh', tone: 'warn' },
  circuit_close: { label: 'Circuit closed', icon: 'closed', tone: 'ok' },
};

/**
 * Keyed list update: reuses the element of each key (so focus stays where it is), removes the
 * rest, and moves nodes only when the order changed.
 */
function reconcile(parent, items, keyOf, create, cache) {
  // Moving a node (insertBefore) takes focus away from whatever inside it had it: put it back.
  const active = parent.contains(document.activeElement) ? document.activeElement : null;
  const keys = new Set(items.map(keyOf));
  for (const [k, node] of cache) {
    if (!keys.has(k)) {
      node.remove();
      cache.delete(k);
    }
  }
  let ref = parent.firstChild;
  for (const item of items) {
    const k = keyOf(item);
    let node = cache.get(k);
    if (node) node.update(item);
    else cache.set(k, (node = create(item)));
    if (node === ref) ref = ref.nextSibling;
    else parent.insertBefore(node, ref);
  }
  if (active?.isConnected && document.activeElement !== active) active.focus({ preventScroll: true });
}

/** True when nothing has focus (it fell back to <body>, e.g. its element went away). */
const focusLost = () => !document.activeElement || document.activeElement === document.body;

// ===== api =====

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** Calls the REST API: JSON in, `payload` out; failures throw ApiError with the API's message. */
async function api(method, path, body, signal) {
  // no-store: the API sends no Cache-Control, and a back/forward navigation would otherwise
  // answer GETs from the HTTP cache, showing what was true when the page was first loaded.
  const init = { method, headers: { Accept: 'application/json' }, signal, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
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
    const err = data?.error;
    if (err && typeof err === 'object') {
      throw new ApiError(res.status, err.code, err.message || `HTTP ${res.status}`, err.field);
    }
    const message = typeof err === 'string' ? err : `HTTP ${res.status} ${res.statusText}`.trim();
    throw new ApiError(res.status, 'http', message);
  }
  return data && typeof data === 'object' && 'payload' in data ? data.payload : data;
}

const isAbort = (e) => e?.name === 'AbortError';

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
function freshReads({ read, install, replay, failed }) {
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

// ===== toasts and dialogs =====

function toast(message, kind = 'success') {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' },
    icon(kind === 'error' ? 'alert' : 'check'),
    h('span', { class: 'toast-text' }, message),
    h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Dismiss', onclick: () => el.remove() }, icon('x')));
  box.prepend(el);
  while (box.children.length > 4) box.lastElementChild.remove();
  setTimeout(() => el.remove(), kind === 'error' ? 10_000 : 5_000);
}

const toastError = (e) => { if (!isAbort(e)) toast(e.message, 'error'); };

function restoreFocus(el) {
  if (el && el.isConnected && typeof el.focus === 'function') el.focus();
}

/**
 * A modal <dialog>, removed from the page when closed; resolves with what `done` is given.
 * While it is busy (aria-busy="true", a request running), Esc and the backdrop do not close it,
 * so the request's outcome still has a dialog to show in.
 */
function openModal(props, build) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    let result = null;
    const done = (value) => {
      result = value;
      dlg.close();
    };
    const dlg = h('dialog', { class: 'modal', ...props });
    const busy = () => dlg.getAttribute('aria-busy') === 'true';
    dlg.append(build(done, dlg));
    dlg.addEventListener('click', (e) => { if (e.target === dlg && !busy()) dlg.close(); });
    // Esc: a cancelled keydown makes no close request. `cancel` alone is not enough: the browser
    // lets a page refuse it only once per user activation. On the document, since focus may have
    // left the dialog (a disabled button loses it).
    const holdEsc = (e) => { if (e.key === 'Escape' && busy()) e.preventDefault(); };
    document.addEventListener('keydown', holdEsc);
    dlg.addEventListener('cancel', (e) => { if (busy()) e.preventDefault(); });
    dlg.addEventListener('close', () => {
      document.removeEventListener('keydown', holdEsc);
      dlg.remove();
      restoreFocus(opener);
      resolve(result);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

/** Asks before something destructive; resolves true when confirmed. */
async function confirmDialog({ title, message, confirmLabel, danger = true }) {
  const titleId = uid('dlg-title');
  const msgId = uid('dlg-msg');
  const result = await openModal(
    { testid: 'confirm-dialog', 'aria-labelledby': titleId, 'aria-describedby': msgId },
    (done) => h('div', { class: 'modal-body' },
      h('h2', { id: titleId }, title),
      h('div', { id: msgId, class: 'modal-text' }, message),
      h('div', { class: 'modal-actions' },
        h('button', { type: 'button', class: 'btn', testid: 'confirm-no', autofocus: true, onclick: () => done(false) }, 'Cancel'),
        h('button', { type: 'button', class: danger ? 'btn danger' : 'btn primary', testid: 'confirm-yes', onclick: () => done(true) }, confirmLabel))));
  return result === true;
}

/** A promise and the function that resolves it: screens' actions wait for the first load. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

/**
 * Disables a button while its action runs. Disabling a focused button drops focus to <body>,
 * so when the action is over focus comes back to it, unless it went somewhere else meanwhile.
 */
function setBusy(button, busy) {
  button.setAttribute('aria-busy', String(busy));
  if (busy) {
    button.hadFocus = document.activeElement === button;
    button.disabled = true;
    return;
  }
  button.disabled = false;
  if (button.hadFocus && button.isConnected && focusLost()) button.focus();
  button.hadFocus = false;
}

// ===== validation (as tower-core) =====
// Each check returns {value} (normalized, as the API stores it) or {error} with the API's message.

const MAX_TITLE = 255;
const MAX_DESCRIPTION = 10_000;
const MAX_LIST = 65_536;
const MIN_INTERVAL = 100;
const MAX_INTERVAL = 2_147_483_647;

const trimWs = (t) => t.replace(/^\p{White_Space}+|\p{White_Space}+$/gu, '');
const charCount = (t) => [...t].length;
const hasControl = (t) => /\p{Cc}/u.test(t);
const U32_MAX = 4_294_967_295n;
const U64_MAX = 18_446_744_073_709_551_615n;
const I64_MIN = -9_223_372_036_854_775_808n;

/**
 * The shortest digits that read back as `v` (Rust and JS pick the same ones) and the power of
 * ten of the first: 1234.5 → ['12345', 3].
 */
function decimalParts(v) {
  const [mantissa, exp] = Math.abs(v).toExponential().split('e');
  return [mantissa.replace('.', ''), Number(exp)];
}

/**
 * Rust's `{}` of an f64, as in the API's percentage messages: those digits, never an exponent
 * (1e23 → "100000000000000000000000", -1e-7 → "-0.0000001").
 */
function rustFloat(v) {
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
function jsonFloat(v) {
  const [, exp] = decimalParts(v);
  if (exp < -5 || exp > 15) return v.toExponential();
  const plain = rustFloat(v);
  return plain.includes('.') ? plain : `${plain}.0`;
}

function checkTitle(raw) {
  const t = trimWs(raw);
  if (!t) return { error: 'must not be empty' };
  const n = charCount(t);
  if (n > MAX_TITLE) return { error: `must be at most ${MAX_TITLE} characters (got ${n})` };
  if (hasControl(t)) return { error: 'must not contain control characters' };
  return { value: t };
}

function checkDescription(raw) {
  if (raw.includes('\0')) return { error: 'must not contain NUL characters' };
  const n = charCount(raw);
  if (n > MAX_DESCRIPTION) return { error: `must be at most ${MAX_DESCRIPTION} characters (got ${n})` };
  return { value: raw };
}

function parseNumber(raw) {
  const t = raw.trim();
  const v = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : null;
  // Too large for a double ("1e400"): JSON has no such number, the request could not carry it.
  return Number.isFinite(v) ? v : null;
}

function checkPercent(raw) {
  const v = parseNumber(raw);
  if (v === null) return { error: 'must be a number' };
  if (!(v >= 0 && v <= 100)) return { error: `must be a number from 0 to 100 (got ${rustFloat(v)})` };
  return { value: Math.round(v * 10) / 10 };
}

function checkIncrement(raw) {
  const r = checkPercent(raw);
  if (r.value === 0) return { error: 'must be from 0.1 to 100' };
  return r;
}

/**
 * An interval, as the API judges the number the form would send (JSON.stringify(v)): serde_json
 * reads digits alone as an integer when they fit in u64 (else in i64, else as a float), and the
 * API takes only a u64, clamped to u32 before the range check.
 */
function checkInterval(raw) {
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

function normalizeList(raw) {
  const n = charCount(raw);
  if (n > MAX_LIST) return { error: `must be at most ${MAX_LIST} characters (got ${n})` };
  return { value: raw.split(',').map(trimWs).filter(Boolean).join(',') };
}

function checkUserList(raw) {
  const r = normalizeList(raw);
  if (r.error) return r;
  if (hasControl(r.value)) return { error: 'user ids must not contain control characters' };
  return r;
}

function checkWebhooks(raw) {
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
function fieldMessage(e) {
  const prefix = `${e.field}: `;
  return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}

// ===== live events hub =====

/**
 * The live events hub. One browser tab, the leader (chosen with a Web Lock), holds the
 * EventSource on /api/stream and relays its events to the dashboard's other tabs over a
 * BroadcastChannel: browsers allow six connections per server over HTTP/1.1, and a stream per
 * tab would use them up from the seventh tab on. When the leader goes away another tab takes
 * the lock and opens the stream; its `hello` makes every tab re-read. Where Web Locks are
 * missing (plain http:// on another host is not a secure context), each tab has its own stream.
 *
 * Screens receive `ruleset`, `log` and `app` events; `hello` (each (re)connection) and `resync`
 * make the current screen refetch, since events may have been missed.
 */
const live = {
  source: null,
  retryMs: 1000,
  handlers: new Set(),
  status: 'connecting',
  channel: null,
  leader: false,
  release: null,
  claim: null, // the AbortController of our request for the lock, queued or held

  start() {
    if (!navigator.locks || typeof BroadcastChannel !== 'function') {
      this.leader = true;
      this.connect();
      return;
    }
    if (!this.channel) {
      this.channel = new BroadcastChannel('tower-live');
      this.channel.onmessage = ({ data: m }) => {
        if (m.kind === 'ask') {
          if (this.leader) this.channel.postMessage({ kind: 'status', status: this.status });
        } else if (!this.leader) {
          if (m.kind === 'status') this.setStatus(m.status);
          else if (m.kind === 'event') this.dispatch(m.type, m.data);
        }
      };
    }
    this.setStatus('connecting');
    this.channel.postMessage({ kind: 'ask' });
    this.claimLead();
  },

  /**
   * Queues for the lock; holding it makes this tab the leader until stop(). One request at a
   * time (a second, once granted, would open a second stream from this tab), and stop()
   * withdraws one still queued, so a page in the back/forward cache never takes the lead.
   */
  claimLead() {
    if (this.claim) return;
    const claim = (this.claim = new AbortController());
    navigator.locks.request('tower-live', { signal: claim.signal }, () => {
      // Granted just as stop() ran: give it straight back.
      if (claim.signal.aborted) return undefined;
      return new Promise((resolve) => {
        this.release = resolve;
        this.leader = true;
        this.connect();
      });
    }).catch((e) => {
      if (!isAbort(e)) throw e;
    }).finally(() => {
      if (this.claim === claim) this.claim = null;
    });
  },

  connect() {
    this.setStatus('connecting');
    const es = new EventSource('/api/stream');
    this.source = es;
    es.addEventListener('open', () => {
      this.retryMs = 1000;
      this.setStatus('live');
    });
    es.addEventListener('error', () => {
      if (this.source !== es) return;
      this.setStatus('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (or is gone): EventSource gives up, so retry ourselves.
        setTimeout(() => { if (this.source === es) this.connect(); }, this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 30_000);
      }
    });
    for (const type of ['hello', 'resync', 'ruleset', 'log', 'app']) {
      es.addEventListener(type, (e) => {
        let data = {};
        try {
          data = e.data ? JSON.parse(e.data) : {};
        } catch {
          return;
        }
        this.channel?.postMessage({ kind: 'event', type, data });
        this.dispatch(type, data);
      });
    }
  },

  dispatch(type, data) {
    if (type === 'hello') this.setStatus('live');
    for (const fn of this.handlers) fn(type, data);
  },

  /** Closes the stream and hands the lead to another tab (the page is going away). */
  stop() {
    this.claim?.abort();
    this.claim = null;
    this.source?.close();
    this.source = null;
    this.leader = false;
    this.release?.();
    this.release = null;
  },

  setStatus(status) {
    this.status = status;
    if (this.leader) this.channel?.postMessage({ kind: 'status', status });
    const el = document.querySelector('[data-testid="live-status"]');
    if (!el) return;
    const text = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…' }[status];
    el.dataset.state = status;
    el.querySelector('.live-text').textContent = text;
    el.title = status === 'live'
      ? 'Receiving changes as they happen'
      : 'Live updates are interrupted; the page catches up when the connection is back';
  },
};

// ===== shared components =====

function pageHeader(title, { crumbs = [], actions = [], testid, sub } = {}) {
  const h1 = h('h1', { tabindex: '-1', testid, id: uid('heading') }, title);
  return {
    h1,
    el: h('header', { class: 'page-head' },
      crumbs.length ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
        h('ol', null, crumbs.map((c) => h('li', null, c)))) : null,
      h('div', { class: 'page-head-row' },
        h('div', { class: 'page-head-title' }, h1, sub),
        actions.length ? h('div', { class: 'page-actions' }, actions) : null)),
  };
}

function searchBox({ testid, label, value, onInput }) {
  const id = uid('search');
  const input = h('input', { id, type: 'search', testid, value, placeholder: label, autocomplete: 'off', spellcheck: 'false', oninput: () => onInput(input.value) });
  return h('div', { class: 'search' }, h('label', { for: id, class: 'sr-only' }, label), icon('search'), input);
}

function notFoundCard(title, text, linkHref = '/', linkText = 'Back to apps') {
  markReady();
  return h('section', { class: 'card empty-state', testid: 'not-found' },
    h('div', { class: 'empty-icon' }, icon('alert')),
    h('h1', { tabindex: '-1' }, title),
    h('p', null, text),
    h('a', { href: linkHref, class: 'btn' }, linkText));
}

/** An error with a retry button, in place of content that failed to load. */
function loadError(e, retry) {
  return h('div', { class: 'load-error', role: 'alert' },
    icon('alert'), h('span', null, `Could not load: ${e.message}`),
    h('button', { type: 'button', class: 'btn small', onclick: retry }, 'Retry'));
}

/** A badge with an icon and a text; update() changes both in place (elements stay the same). */
function badge(testid) {
  const path = s('path');
  const text = h('span', { testid });
  const el = h('span', { class: 'badge' },
    s('svg', { class: 'icon', viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' }, path), text);
  el.set = (iconName, label, tone) => {
    el.className = `badge tone-${tone}`;
    path.setAttribute('d', ICONS[iconName]);
    text.textContent = label;
  };
  return el;
}

/** The circuit state as a badge; blank until a flag is given. */
function circuitBadge(flag) {
  const el = badge('flag-circuit');
  el.update = (f) => {
    const c = circuitOf(f);
    el.set(c.icon, c.label, c.tone);
  };
  if (flag) el.update(flag);
  return el;
}

/**
 * The on/off switch: a button with role="switch" and visible On/Off text. Its name is the
 * flag's title, read from `titleEl` (a row's link, the page's heading), followed by that
 * visible text, so what is seen is part of the name ("new-checkout On").
 */
function flagSwitch(flag, titleEl) {
  const text = h('span', { class: 'switch-text', id: uid('switch-text') });
  const btn = h('button', { type: 'button', role: 'switch', class: 'switch', testid: 'flag-toggle', 'aria-labelledby': `${titleEl.id} ${text.id}` },
    h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-thumb' })),
    text);
  let current = flag;
  let pending = false;
  btn.update = (f) => {
    current = f;
    btn.setAttribute('aria-checked', String(f.is_active));
    text.textContent = f.is_active ? 'On' : 'Off';
  };
  btn.addEventListener('click', async () => {
    if (pending) return;
    pending = true;
    btn.setAttribute('aria-busy', 'true');
    const target = !current.is_active;
    try {
      const updated = await api('PATCH', `/api/flags/${current.id}/toggle`, { is_active: target });
      btn.dispatchEvent(new CustomEvent('flagchange', { bubbles: true, detail: updated }));
      toast(`“${updated.title}” turned ${updated.is_active ? 'on' : 'off'}`);
    } catch (e) {
      toastError(e);
    } finally {
      pending = false;
      btn.setAttribute('aria-busy', 'false');
    }
  });
  btn.update(flag);
  return btn;
}

function countFlags(flags) {
  const c = { total: flags.length, active: 0, closed: 0, recovering: 0, open: 0 };
  for (const f of flags) {
    if (f.is_active) c.active++;
    if (f.circuit_status === 'close') c.closed++;
    else if (f.circuit_status === 'recovery') c.recovering++;
    else c.open++;
  }
  return c;
}

// ===== app form =====

function appFormDialog(app) {
  const isNew = !app;
  const titleId = uid('dlg-title');
  const inputId = uid('app-title');
  const errId = uid('form-error');
  return openModal({ 'aria-labelledby': titleId }, (done, dlg) => {
    const input = h('input', { id: inputId, type: 'text', testid: 'app-title', autocomplete: 'off', spellcheck: 'false', required: true, autofocus: true, 'aria-describedby': errId, value: app?.title ?? '' });
    const err = h('p', { id: errId, class: 'form-error', testid: 'form-error', role: 'alert' });
    const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'app-submit' }, isNew ? 'Create app' : 'Rename app');
    const cancel = h('button', { type: 'button', class: 'btn', onclick: () => done(null) }, 'Cancel');
    // While the request runs the dialog stays open (Esc, the backdrop and Cancel do nothing),
    // so its outcome, an error to show or the saved app, still has somewhere to go.
    const setSending = (sending) => {
      dlg.setAttribute('aria-busy', String(sending));
      cancel.disabled = sending;
      setBusy(submit, sending);
    };
    const showError = (message) => {
      err.textContent = message;
      input.setAttribute('aria-invalid', String(Boolean(message)));
    };
    input.addEventListener('input', () => { if (err.textContent) showError(''); });
    return h('form', {
      class: 'modal-body', novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const t = checkTitle(input.value);
        if (t.error) {
          showError(`title: ${t.error}`);
          input.focus();
          return;
        }
        setSending(true);
        try {
          const saved = isNew
            ? await api('POST', '/api/apps', { title: t.value })
            : await api('PATCH', `/api/apps/${app.id}`, { title: t.value });
          done(saved);
        } catch (e2) {
          showError(e2.message);
          input.focus();
        } finally {
          setSending(false);
        }
      },
    },
    h('h2', { id: titleId }, isNew ? 'New app' : 'Rename app'),
    h('div', { class: 'field' },
      h('label', { for: inputId }, 'Title'),
      input,
      h('p', { class: 'hint' }, 'Unique among apps, up to 255 characters.')),
    err,
    h('div', { class: 'modal-actions' }, cancel, submit));
  });
}

// ===== flag form =====

const FLAG_DEFAULTS = {
  title: '', description: '', rollout_percentage: 100, white_listed_users: '',
  error_threshold_percentage: 50, webhooks: '', is_recoverable: false,
  circuit_recovery_profile: 'linear', circuit_recovery_delay: 100, circuit_recovery_rate: 100,
  circuit_initial_recovery_percentage: 10, circuit_recovery_increment_percentage: 0.1,
};

/** The settings a person edits (circuit state and recovery percentage move by other means). */
const FLAG_FIELDS = [
  { group: 'General', key: 'title', testid: 'flag-title', label: 'Title', kind: 'text', check: checkTitle, hint: 'Unique within the app, up to 255 characters.' },
  { group: 'General', key: 'description', testid: 'flag-description', label: 'Description', kind: 'textarea', check: checkDescription, hint: 'Optional, up to 10 000 characters.' },
  { group: 'Rollout', key: 'rollout_percentage', testid: 'flag-rollout', label: 'Rollout (%)', kind: 'number', check: checkPercent, hint: 'Share of users who get the flag: 0–100, one decimal.' },
  { group: 'Rollout', key: 'white_listed_users', testid: 'flag-whitelist', label: 'Whitelisted users', kind: 'list', check: checkUserList, hint: 'Comma-separated user ids that get the flag whatever the rollout.' },
  { group: 'Circuit breaker', key: 'error_threshold_percentage', testid: 'flag-threshold', label: 'Error threshold (%)', kind: 'number', check: checkPercent, hint: 'Error rate that trips the circuit: 0–100; 0 disables the breaker.' },
  { group: 'Circuit breaker', key: 'webhooks', testid: 'flag-webhooks', label: 'Webhooks', kind: 'list', check: checkWebhooks, hint: 'Comma-separated http:// or https:// URLs told about trips and recoveries.' },
  { group: 'Recovery', key: 'is_recoverable', testid: 'flag-recoverable', label: 'Recover automatically after a trip', kind: 'checkbox' },
  { group: 'Recovery', key: 'circuit_recovery_profile', testid: 'flag-profile', label: 'Recovery profile', kind: 'select', options: [['linear', 'Linear (+ increment per step)'], ['exponential', 'Exponential (× 1 + increment per step)']] },
  { group: 'Recovery', key: 'circuit_recovery_delay', testid: 'flag-delay', label: 'Recovery delay (ms)', kind: 'integer', check: checkInterval, hint: 'Wait after a trip before recovery starts: 100 to 2147483647.' },
  { group: 'Recovery', key: 'circuit_recovery_rate', testid: 'flag-rate', label: 'Step interval (ms)', kind: 'integer', check: checkInterval, hint: 'Time between recovery steps: 100 to 2147483647.' },
  { group: 'Recovery', key: 'circuit_initial_recovery_percentage', testid: 'flag-initial', label: 'Initial recovery (%)', kind: 'number', check: checkPercent, hint: 'First step of recovery: 0–100.' },
  { group: 'Recovery', key: 'circuit_recovery_increment_percentage', testid: 'flag-increment', label: 'Increment (%)', kind: 'number', check: checkIncrement, hint: 'Size of each step: 0.1–100.' },
];

function fieldControl(f, value) {
  const id = uid(f.testid);
  const errId = `${id}-error`;
  const hintId = `${id}-hint`;
  const err = h('p', { id: errId, class: 'field-error', testid: 'field-error' });
  const hint = f.hint ? h('p', { id: hintId, class: 'hint' }, f.hint) : null;
  const describedBy = hint ? `${hintId} ${errId}` : errId;
  const common = { id, testid: f.testid, name: f.key, 'aria-describedby': describedBy };
  let input;
  let wrap;
  if (f.kind === 'checkbox') {
    input = h('input', { ...common, type: 'checkbox', checked: Boolean(value) });
    wrap = h('div', { class: 'field field-check' }, h('label', { for: id }, input, h('span', null, f.label)), err);
  } else {
    if (f.kind === 'select') {
      input = h('select', { ...common, value }, f.options.map(([v, text]) => h('option', { value: v }, text)));
    } else if (f.kind === 'textarea' || f.kind === 'list') {
      input = h('textarea', { ...common, rows: f.kind === 'textarea' ? 3 : 2, spellcheck: f.kind === 'textarea' ? 'true' : 'false', value });
    } else {
      const inputmode = f.kind === 'integer' ? 'numeric' : f.kind === 'number' ? 'decimal' : null;
      input = h('input', { ...common, type: 'text', inputmode, autocomplete: 'off', spellcheck: 'false', value: String(value) });
    }
    wrap = h('div', { class: `field field-${f.kind}` }, h('label', { for: id }, f.label), input, err, hint);
  }
  const read = () => (f.kind === 'checkbox' ? { value: input.checked } : f.check ? f.check(input.value) : { value: input.value });
  const setError = (message) => {
    err.textContent = message ?? '';
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };
  // Once a field shows an error, re-check it as it is edited.
  input.addEventListener('input', () => { if (err.textContent) setError(read().error); });
  return { field: f, input, wrap, read, setError };
}

/**
 * A stored value as its form control gives it back: a textarea's value has its line breaks
 * normalized (CRLF and CR become LF), so a description with CRLF would otherwise always look
 * changed, and every save would rewrite it and log an update.
 */
const asShown = (v) => (typeof v === 'string' ? v.replace(/\r\n?/g, '\n') : v);

/**
 * The flag form (create and edit). Checks every field with the API's rules and messages; an
 * edit sends only the fields that changed (PATCH is partial), never read-only ones.
 */
function flagForm({ flag, appId, onSaved, onCancel }) {
  const isNew = !flag;
  const base = isNew ? FLAG_DEFAULTS : flag;
  const controls = FLAG_FIELDS.map((f) => fieldControl(f, base[f.key] ?? FLAG_DEFAULTS[f.key]));
  const byKey = new Map(controls.map((c) => [c.field.key, c]));
  const formErrId = uid('form-error');
  const formError = h('p', { id: formErrId, class: 'form-error', testid: 'form-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'flag-submit' }, isNew ? 'Create flag' : 'Save changes');

  const groups = [];
  for (const c of controls) {
    let g = groups.find((x) => x.name === c.field.group);
    if (!g) groups.push((g = { name: c.field.group, items: [] }));
    g.items.push(c.wrap);
  }

  const clearErrors = () => {
    for (const c of controls) c.setError('');
    formError.textContent = '';
  };

  const form = h('form', { class: 'flag-form', novalidate: true, 'aria-label': isNew ? 'New flag' : 'Edit flag' },
    groups.map((g) => h('fieldset', { class: `fieldset fieldset-${g.name.toLowerCase().replace(/\s+/g, '-')}` },
      h('legend', null, g.name),
      g.name === 'Recovery' ? h('p', { class: 'hint' }, 'Used when the breaker trips the flag and recovery is on.') : null,
      h('div', { class: 'fields' }, g.items))),
    formError,
    h('div', { class: 'form-actions' },
      h('button', { type: 'button', class: 'btn', onclick: () => onCancel?.() }, 'Cancel'),
      submit));

  form.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      onCancel?.();
    }
  });

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const values = {};
    const errors = [];
    for (const c of controls) {
      const r = c.read();
      if (r.error) {
        c.setError(r.error);
        errors.push(`${c.field.key}: ${r.error}`);
      } else {
        values[c.field.key] = r.value;
      }
    }
    if (errors.length) {
      formError.textContent = errors.length === 1 ? errors[0] : `${errors[0]} (and ${errors.length - 1} more)`;
      controls.find((c) => c.input.getAttribute('aria-invalid'))?.input.focus();
      return;
    }
    const body = isNew ? values : Object.fromEntries(Object.entries(values).filter(([k, v]) => v !== asShown(flag[k])));
    if (!isNew && Object.keys(body).length === 0) {
      onSaved(flag, false);
      return;
    }
    setBusy(submit, true);
    try {
      const saved = isNew
        ? await api('POST', `/api/apps/${appId}/flags`, body)
        : await api('PATCH', `/api/flags/${flag.id}`, body);
      onSaved(saved, true);
    } catch (e2) {
      formError.textContent = e2.message;
      const c = byKey.get(e2.field ?? (e2.code === 'conflict' ? 'title' : ''));
      if (c) {
        c.setError(fieldMessage(e2));
        c.input.focus();
      } else {
        submit.focus();
      }
    } finally {
      setBusy(submit, false);
    }
  });

  return { el: form, focus: () => controls[0].input.focus() };
}

// ===== apps screen =====

function appsScreen(main, _params, url, ctx) {
  setTitle('Apps');
  const apps = new Map();
  const revisions = new Map(); // app id → the newest ruleset revision seen
  let query = url.searchParams.get('q') ?? '';
  let loaded = false;
  const rows = new Map();

  const newApp = async () => {
    const app = await appFormDialog(null);
    if (!app) return;
    change({ type: 'app', data: { app: { ...app, flag_counts: countFlags([]) }, deleted: false } });
    toast(`App “${app.title}” created`);
    rows.get(app.id)?.querySelector('a')?.focus();
  };

  const head = pageHeader('Apps', {
    actions: [h('button', { type: 'button', class: 'btn primary', testid: 'new-app', onclick: newApp }, icon('plus'), 'New app')],
    sub: h('p', { class: 'page-sub' }, 'Each app is a set of flags published together to its SDKs.'),
  });
  const search = searchBox({
    testid: 'app-search', label: 'Search apps', value: query,
    onInput: (q) => {
      query = q;
      const u = new URL(location.href);
      if (q) u.searchParams.set('q', q);
      else u.searchParams.delete('q');
      history.replaceState(history.state, '', u);
      render();
    },
  });
  const count = h('p', { class: 'muted toolbar-count', 'aria-live': 'polite' });
  const list = h('ul', { class: 'rows', 'aria-label': 'Apps' });
  const status = h('div', { class: 'list-status' }, h('p', { class: 'muted' }, 'Loading apps…'));
  main.append(head.el, h('div', { class: 'toolbar' }, search, count), h('section', { class: 'card list-card' }, list, status));

  function upsert(app) {
    const old = apps.get(app.id);
    apps.set(app.id, { ...old, ...app, flag_counts: app.flag_counts ?? old?.flag_counts ?? countFlags([]) });
    render();
  }

  function render() {
    if (!loaded) return;
    const all = [...apps.values()].sort(byTitle);
    const shown = all.filter((a) => matches(a.title, query));
    reconcile(list, shown, (a) => a.id, appRow, rows);
    count.textContent = query ? `${shown.length} of ${all.length} apps` : `${all.length} ${all.length === 1 ? 'app' : 'apps'}`;
    status.replaceChildren();
    if (!all.length) {
      status.append(h('div', { class: 'empty' }, h('p', null, 'No apps yet.'), h('p', { class: 'muted' }, 'Create an app, then add flags to it.')));
    } else if (!shown.length) {
      status.append(h('div', { class: 'empty' }, h('p', null, `No apps match “${query}”.`)));
    }
  }

  function appRow(app) {
    const link = h('a', { testid: 'app-link', class: 'row-title' });
    const counts = h('span', { testid: 'app-counts', class: 'row-sub' });
    const circuits = h('div', { class: 'circuit-counts' });
    const rename = h('button', { type: 'button', class: 'btn small ghost', testid: 'rename-app' }, icon('edit'), 'Rename');
    const del = h('button', { type: 'button', class: 'btn small ghost danger-text', testid: 'delete-app' }, icon('trash'), 'Delete');
    const li = h('li', { class: 'row app-row', testid: 'app-row' },
      h('div', { class: 'row-main' }, link, counts),
      circuits,
      h('div', { class: 'row-actions' }, rename, del));
    let current = app;
    rename.addEventListener('click', async () => {
      const saved = await appFormDialog(current);
      if (saved) {
        change({ type: 'app', data: { app: saved, deleted: false } });
        toast(`App renamed to “${saved.title}”`);
      }
    });
    del.addEventListener('click', () => deleteApp(current));
    li.update = (a) => {
      current = a;
      const c = a.flag_counts ?? countFlags([]);
      li.dataset.appId = a.id;
      link.href = `/apps/${a.id}`;
      link.textContent = a.title;
      counts.textContent = `${c.active}/${c.total} flags active`;
      circuits.replaceChildren(
        h('span', { class: 'count tone-ok', title: 'Circuits closed' }, icon('closed'), `${c.closed} closed`),
        h('span', { class: `count ${c.recovering ? 'tone-warn' : 'tone-muted'}`, title: 'Circuits recovering' }, icon('refresh'), `${c.recovering} recovering`),
        h('span', { class: `count ${c.open ? 'tone-bad' : 'tone-muted'}`, title: 'Circuits open (flag off)' }, icon('open'), `${c.open} open`));
      rename.setAttribute('aria-label', `Rename ${a.title}`);
      del.setAttribute('aria-label', `Delete ${a.title}`);
    };
    li.update(app);
    return li;
  }

  async function deleteApp(app) {
    const n = app.flag_counts?.total ?? 0;
    const ok = await confirmDialog({
      title: `Delete “${app.title}”?`,
      message: [
        h('p', null, n
          ? `Its flags go with it: ${n} ${n === 1 ? 'flag' : 'flags'} will be deleted, and SDKs of this app will receive an empty ruleset.`
          : 'Its flags go with it (it has none now), and SDKs of this app will receive an empty ruleset.'),
        h('p', { class: 'muted' }, 'Log entries are kept. This cannot be undone.'),
      ],
      confirmLabel: 'Delete app',
    });
    if (!ok) return;
    // Where the row is now: its place goes to the next row once it is gone (the stream may
    // remove it before the request returns).
    const row = rows.get(app.id);
    const place = [...list.children].indexOf(row);
    try {
      await api('DELETE', `/api/apps/${app.id}`);
      const hadFocus = focusLost() || row?.contains(document.activeElement);
      change({ type: 'app', data: { app, deleted: true } });
      if (hadFocus) focusAfterDelete(place);
      toast(`App “${app.title}” deleted${n ? ` with its ${n} ${n === 1 ? 'flag' : 'flags'}` : ''}`);
    } catch (e) {
      toastError(e);
    }
  }

  /** Focus for the row that was at `place`: the next row's link (or the last's), else search. */
  function focusAfterDelete(place) {
    const next = list.children[Math.min(place, list.children.length - 1)];
    (next?.querySelector('a') ?? search.querySelector('input')).focus();
  }

  const reads = freshReads({
    async read() {
      const all = await ctx.api('GET', '/api/apps?counts=true');
      // A server without ?counts=true: count from each app's flags.
      await Promise.all(all.filter((a) => !a.flag_counts).map(async (a) => {
        a.flag_counts = countFlags(await ctx.api('GET', `/api/apps/${a.id}/flags`));
      }));
      return all;
    },
    install(all) {
      apps.clear();
      for (const a of all) apps.set(a.id, a);
      loaded = true;
      render();
      markReady();
    },
    replay: apply,
    failed(e) {
      if (!loaded) status.replaceChildren(loadError(e, load));
      else toastError(e);
    },
  });
  const load = () => reads.load();

  /** A change to the list, from the stream or from this page: shown now, and after any read in flight. */
  function change(c) {
    apply(c);
    reads.saw(c);
  }

  function apply({ type, data }) {
    if (type === 'ruleset') {
      if (apps.has(data.app_id)) upsert({ id: data.app_id, flag_counts: countFlags(data.ruleset) });
    } else if (data.deleted) {
      apps.delete(data.app.id);
      render();
    } else {
      upsert(data.app);
    }
  }

  load();
  return {
    refresh: load,
    onEvent(type, data) {
      if (type === 'ruleset') {
        // An older or repeated revision than one already shown changes nothing.
        if (data.revision <= (revisions.get(data.app_id) ?? -1)) return;
        revisions.set(data.app_id, data.revision);
      } else if (type !== 'app' || !data.app) {
        return;
      }
      change({ type, data });
    },
  };
}

// ===== app flags screen =====

function appScreen(main, [id], url, ctx) {
  const appId = Number(id);
  let app = null;
  let flags = new Map();
  let revision = -1; // of the newest ruleset applied
  let query = url.searchParams.get('q') ?? '';
  let loaded = false;
  let form = null;
  let gone = false;
  const rows = new Map();
  setTitle('App');

  const appCrumb = h('span', { 'aria-current': 'page' }, '…');
  const newFlag = h('button', { type: 'button', class: 'btn primary', testid: 'new-flag', 'aria-expanded': 'false' }, icon('plus'), 'New flag');
  const head = pageHeader('Loading…', {
    crumbs: [h('a', { href: '/' }, 'Apps'), appCrumb],
    actions: [newFlag],
  });
  const formSlot = h('div', { class: 'form-slot' });
  const search = searchBox({
    testid: 'flag-search', label: 'Search flags', value: query,
    onInput: (q) => {
      query = q;
      const u = new URL(location.href);
      if (q) u.searchParams.set('q', q);
      else u.searchParams.delete('q');
      history.replaceState(history.state, '', u);
      render();
    },
  });
  const count = h('p', { class: 'muted toolbar-count', 'aria-live': 'polite' });
  const tbody = h('tbody', { role: 'rowgroup' });
  const table = h('table', { class: 'table flags-table', role: 'table' },
    h('caption', { class: 'sr-only' }, 'Flags'),
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' },
      h('th', { scope: 'col', class: 'col-state', role: 'columnheader' }, 'State'),
      h('th', { scope: 'col', role: 'columnheader' }, 'Flag'),
      h('th', { scope: 'col', class: 'num', role: 'columnheader' }, 'Rollout'),
      h('th', { scope: 'col', role: 'columnheader' }, 'Circuit'),
      h('th', { scope: 'col', role: 'columnheader' }, 'Last change'))),
    tbody);
  const status = h('div', { class: 'list-status' }, h('p', { class: 'muted' }, 'Loading flags…'));
  const body = h('div', { class: 'screen-body' },
    formSlot,
    h('div', { class: 'toolbar' }, search, count),
    h('section', { class: 'card list-card' }, h('div', { class: 'table-wrap' }, table), status));
  main.append(head.el, body);

  newFlag.addEventListener('click', () => (form ? form.focus() : openForm()));
  main.addEventListener('flagchange', (e) => change({ type: 'flag', data: e.detail }));

  function openForm() {
    form = flagForm({
      appId,
      onSaved: (flag) => {
        closeForm();
        change({ type: 'flag', data: flag });
        toast(`Flag “${flag.title}” created`);
        rows.get(flag.id)?.querySelector('a')?.focus();
      },
      onCancel: () => {
        closeForm();
        newFlag.focus();
      },
    });
    formSlot.replaceChildren(h('section', { class: 'card form-card', 'aria-labelledby': 'new-flag-heading' },
      h('h2', { id: 'new-flag-heading' }, 'New flag'), form.el));
    newFlag.setAttribute('aria-expanded', 'true');
    form.focus();
  }

  function closeForm() {
    form = null;
    formSlot.replaceChildren();
    newFlag.setAttribute('aria-expanded', 'false');
  }

  function showApp(a) {
    app = a;
    head.h1.textContent = a.title;
    appCrumb.textContent = a.title;
    setTitle(a.title);
  }

  function upsertFlag(flag) {
    if (flag.app_id !== appId) return;
    flags.set(flag.id, flag);
    render();
  }

  function render() {
    if (!loaded) return;
    const all = [...flags.values()].sort(byTitle);
    const shown = all.filter((f) => matches(f.title, query));
    reconcile(tbody, shown, (f) => f.id, flagRow, rows);
    const active = all.filter((f) => f.is_active).length;
    count.textContent = query
      ? `${shown.length} of ${all.length} flags`
      : `${active}/${all.length} flags active`;
    status.replaceChildren();
    table.hidden = !shown.length;
    if (!all.length) {
      status.append(h('div', { class: 'empty' }, h('p', null, 'No flags yet.'), h('p', { class: 'muted' }, 'Create a flag to start rolling out a feature.')));
    } else if (!shown.length) {
      status.append(h('div', { class: 'empty' }, h('p', null, `No flags match “${query}”.`)));
    }
  }

  function flagRow(flag) {
    const link = h('a', { testid: 'flag-link', class: 'row-title', id: uid('flag-title') });
    const toggle = flagSwitch(flag, link);
    const desc = h('span', { class: 'row-sub clamp' });
    const rollout = h('td', { class: 'num', role: 'cell', 'data-label': 'Rollout' });
    const circuit = circuitBadge(flag);
    const recovery = h('span', { class: 'muted small' });
    const updated = timeAgo(flag.updated_at, 'updated ');
    const tr = h('tr', { testid: 'flag-row', role: 'row' },
      h('td', { class: 'col-state', role: 'cell' }, toggle),
      h('td', { class: 'col-title', role: 'cell' }, link, desc),
      rollout,
      h('td', { role: 'cell', 'data-label': 'Circuit' }, h('span', { class: 'circuit-cell' }, circuit, recovery)),
      h('td', { class: 'muted', role: 'cell' }, updated));
    tr.update = (f) => {
      tr.dataset.flagId = f.id;
      toggle.update(f);
      link.href = `/flags/${f.id}`;
      link.textContent = f.title;
      desc.textContent = f.description;
      desc.hidden = !f.description;
      rollout.textContent = pct(f.rollout_percentage);
      circuit.update(f);
      recovery.textContent = f.circuit_status === 'recovery' ? `at ${pct(f.circuit_recovery_percentage)}` : '';
      setTimeAgo(updated, f.updated_at);
    };
    tr.update(flag);
    return tr;
  }

  function showGone(message) {
    loaded = false;
    gone = true;
    setTitle('App not found');
    main.replaceChildren(notFoundCard('App not found', message));
  }

  const reads = freshReads({
    read: () => Promise.all([
      ctx.api('GET', `/api/apps/${appId}`),
      ctx.api('GET', `/api/apps/${appId}/flags`),
    ]),
    install([a, list]) {
      if (gone) return false;
      showApp(a);
      flags = new Map(list.map((f) => [f.id, f]));
      loaded = true;
      render();
      markReady();
      return true;
    },
    replay: apply,
    failed(e) {
      if (e.status === 404 || e.status === 400) showGone('This app does not exist, or it was deleted.');
      else if (!loaded) status.replaceChildren(loadError(e, load));
      else toastError(e);
    },
  });
  const load = () => (gone ? Promise.resolve() : reads.load());

  /**
   * A change to the app or its flags, from the stream or from this page: shown now (a ruleset
   * even before the first read lands), and again over any read in flight, which may be older.
   */
  function change(c) {
    apply(c);
    reads.saw(c);
  }

  function apply({ type, data }) {
    if (gone) return;
    if (type === 'ruleset') {
      flags = new Map(data.ruleset.map((f) => [f.id, f]));
      render();
    } else if (type === 'flag') {
      upsertFlag(data);
    } else if (data.deleted) {
      showGone('This app was just deleted, with its flags.');
    } else {
      showApp(data.app);
    }
  }

  load();
  return {
    refresh: load,
    onEvent(type, data) {
      if (gone) return;
      if (type === 'ruleset' && data.app_id === appId) {
        if (data.revision <= revision) return;
        revision = data.revision;
      } else if (type !== 'app' || data.app?.id !== appId) {
        return;
      }
      change({ type, data });
    },
  };
}

// ===== flag screen =====

const SETTINGS = [
  ['title', 'Title', (v) => v],
  ['description', 'Description', (v) => v || h('span', { class: 'muted' }, 'None')],
  ['rollout_percentage', 'Rollout', pct],
  ['white_listed_users', 'Whitelisted users', (v) => listValue(v, 'None')],
  ['error_threshold_percentage', 'Error threshold', (v) => (v === 0 ? `${pct(v)} (breaker off)` : pct(v))],
  ['webhooks', 'Webhooks', (v) => listValue(v, 'None')],
  ['is_recoverable', 'Automatic recovery', (v) => (v ? 'On' : 'Off')],
  ['circuit_recovery_profile', 'Recovery profile', (v) => v],
  ['circuit_recovery_delay', 'Recovery delay', (v) => `${v} ms`],
  ['circuit_recovery_rate', 'Step interval', (v) => `${v} ms`],
  ['circuit_initial_recovery_percentage', 'Initial recovery', pct],
  ['circuit_recovery_increment_percentage', 'Increment', pct],
];

function listValue(v, empty) {
  if (!v) return h('span', { class: 'muted' }, empty);
  return h('ul', { class: 'value-list' }, v.split(',').map((x) => h('li', null, x)));
}

function flagScreen(main, [id], _url, ctx) {
  const flagId = Number(id);
  let flag = null;
  let appTitle = null;
  let logs = [];
  let revision = -1; // of the newest ruleset of the flag's app applied
  let appTitleHeard = false; // an app event named the app: newer than the title being read
  let missing = false; // the app's ruleset no longer has the flag: a read is making sure
  let editing = null;
  let loaded = false;
  let gone = false;
  // Buttons work from the start: a click before the flag is loaded waits for it.
  const ready = deferred();
  const whenReady = (fn) => async () => {
    await ready.promise;
    if (!gone) fn();
  };
  setTitle('Flag');

  // Header
  const appCrumb = h('a', { href: '/' }, '…');
  const flagCrumb = h('span', { 'aria-current': 'page' }, '…');
  const stateBadge = badge('flag-state');
  const circuit = circuitBadge(null);
  const updated = timeAgo(null, 'updated ');
  const toggleSlot = h('div', { class: 'toggle-slot' });
  const del = h('button', { type: 'button', class: 'btn danger-outline', testid: 'delete-flag' }, icon('trash'), 'Delete');
  const head = pageHeader('Loading…', {
    testid: 'flag-title-heading',
    crumbs: [h('a', { href: '/' }, 'Apps'), appCrumb, flagCrumb],
    actions: [toggleSlot, del],
    sub: h('div', { class: 'pills' }, stateBadge, h('span', { class: 'pill-label' }, 'Circuit'), circuit, updated),
  });
  let toggle = null;

  // Circuit and health
  const health = healthPanel(flagId);
  const trip = h('button', { type: 'button', class: 'btn danger-outline', testid: 'trip-circuit' }, icon('zap'), 'Trip circuit');
  const close = h('button', { type: 'button', class: 'btn', testid: 'close-circuit' }, icon('closed'), 'Close circuit');
  const recoveryFill = h('div', { class: 'bar-fill' });
  const recoveryText = h('span', { class: 'bar-value' }, '—');
  const recoveryBar = h('div', { class: 'bar', testid: 'recovery-bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-label': 'Recovery percentage' },
    h('div', { class: 'bar-track' }, recoveryFill), recoveryText);
  const recoveryNote = h('p', { class: 'hint recovery-note' });
  const thresholdText = h('span', { class: 'stat-value' }, '—');
  const circuitCard = h('section', { class: 'card health-card', 'aria-labelledby': 'health-heading' },
    h('div', { class: 'card-head' },
      h('h2', { id: 'health-heading' }, 'Circuit health'),
      health.controls),
    h('div', { class: 'circuit-row' },
      h('div', { class: 'stat recovery-stat' }, h('span', { class: 'stat-label' }, 'Recovery'), recoveryBar, recoveryNote),
      h('div', { class: 'stat' }, h('span', { class: 'stat-label' }, 'Error threshold'), thresholdText),
      h('div', { class: 'circuit-actions' }, trip, close)),
    health.el);

  // Settings and activity
  const edit = h('button', { type: 'button', class: 'btn small', testid: 'edit-flag', 'aria-expanded': 'false' }, icon('edit'), 'Edit');
  const settings = h('dl', { class: 'settings', testid: 'flag-settings' });
  const settingsBody = h('div', { class: 'settings-body' }, settings);
  const logList = h('ol', { class: 'timeline', testid: 'flag-logs' });
  const logItems = new Map();
  const logStatus = h('div', { class: 'list-status' });
  const grid = h('div', { class: 'grid-2' },
    h('section', { class: 'card', 'aria-labelledby': 'settings-heading' },
      h('div', { class: 'card-head' }, h('h2', { id: 'settings-heading' }, 'Settings'), edit),
      settingsBody),
    h('section', { class: 'card', 'aria-labelledby': 'activity-heading' },
      h('div', { class: 'card-head' }, h('h2', { id: 'activity-heading' }, 'Activity'), h('a', { href: '/logs', class: 'small' }, 'All logs')),
      logList, logStatus));
  const loading = h('div', { class: 'list-status' });
  main.append(head.el, loading, circuitCard, grid);
  main.addEventListener('flagchange', (e) => change({ type: 'flag', data: e.detail }));

  edit.addEventListener('click', whenReady(() => (editing ? editing.focus() : openEdit())));
  del.addEventListener('click', whenReady(deleteFlag));
  trip.addEventListener('click', whenReady(() => circuitAction('open')));
  close.addEventListener('click', whenReady(() => circuitAction('close')));

  function showFlag(f) {
    if (gone || f.id !== flagId) return;
    // The breaker moved the circuit (or an operator did): the counts that moved it are worth
    // seeing now, not at the next bucket.
    if (flag && flag.circuit_status !== f.circuit_status) health.refresh();
    flag = { ...flag, ...f };
    head.h1.textContent = f.title;
    flagCrumb.textContent = f.title;
    appCrumb.href = `/apps/${f.app_id}`;
    setTitle(f.title, appTitle);
    stateBadge.set('power', f.is_active ? 'On' : 'Off', f.is_active ? 'ok' : 'muted');
    circuit.update(f);
    setTimeAgo(updated, f.updated_at);
    if (!toggle) toggleSlot.append((toggle = flagSwitch(f, head.h1)));
    else toggle.update(f);

    const p = f.circuit_recovery_percentage;
    recoveryFill.style.width = `${p}%`;
    recoveryFill.dataset.tone = circuitOf(f).tone;
    recoveryText.textContent = pct(p);
    recoveryBar.setAttribute('aria-valuenow', String(p));
    recoveryBar.setAttribute('aria-valuetext', `${p}%`);
    recoveryNote.textContent = {
      close: 'Circuit closed: the whole rollout gets the flag.',
      recovery: `Recovering: ${pct(p)} of the rollout gets the flag, rising every ${f.circuit_recovery_rate} ms.`,
      open: 'Open: the flag is off for everyone.',
    }[f.circuit_status] ?? '';
    thresholdText.textContent = f.error_threshold_percentage === 0 ? '0% (breaker off)' : pct(f.error_threshold_percentage);
    health.setThreshold(f.error_threshold_percentage);
    if (!editing) renderSettings();
  }

  const dds = new Map(SETTINGS.map(([key, label]) => {
    const dd = h('dd', { 'data-field': key });
    settings.append(h('dt', null, label), dd);
    return [key, dd];
  }));

  function renderSettings() {
    for (const [key, , fmt] of SETTINGS) {
      const dd = dds.get(key);
      if (dd.shown === flag[key]) continue;
      dd.shown = flag[key];
      dd.replaceChildren(fmt(flag[key]));
    }
  }

  function openEdit() {
    editing = flagForm({
      flag,
      onSaved: (saved, changed) => {
        closeEdit();
        if (changed) {
          change({ type: 'flag', data: saved });
          toast(`Flag “${saved.title}” saved`);
        } else {
          toast('Nothing changed');
        }
        edit.focus();
      },
      onCancel: () => {
        closeEdit();
        edit.focus();
      },
    });
    settingsBody.replaceChildren(editing.el);
    edit.setAttribute('aria-expanded', 'true');
    editing.focus();
  }

  function closeEdit() {
    editing = null;
    edit.setAttribute('aria-expanded', 'false');
    settingsBody.replaceChildren(settings);
    renderSettings();
  }

  async function deleteFlag() {
    const ok = await confirmDialog({
      title: `Delete “${flag.title}”?`,
      message: [
        h('p', null, 'The flag is removed from its app’s ruleset at once; SDKs stop seeing it.'),
        h('p', { class: 'muted' }, 'Its log entries are kept. This cannot be undone.'),
      ],
      confirmLabel: 'Delete flag',
    });
    if (!ok) return;
    try {
      await api('DELETE', `/api/flags/${flagId}`);
      toast(`Flag “${flag.title}” deleted`);
      gone = true;
      navigate(`/apps/${flag.app_id}`);
    } catch (e) {
      toastError(e);
    }
  }

  async function circuitAction(which) {
    const btn = which === 'open' ? trip : close;
    setBusy(btn, true);
    try {
      await api('POST', `/api/flags/circuit/${flagId}/${which}`);
      toast(which === 'open' ? `Circuit of “${flag.title}” tripped open` : `Circuit of “${flag.title}” closed`);
      await load();
    } catch (e) {
      toastError(e);
    } finally {
      setBusy(btn, false);
    }
  }

  function renderLogs() {
    reconcile(logList, logs, (l) => l.log_id, logItem, logItems);
    logStatus.replaceChildren(...(logs.length ? [] : [h('p', { class: 'muted empty' }, 'No activity yet.')]));
  }

  function addLog(entry) {
    if (logs.some((l) => l.log_id === entry.log_id)) return;
    logs = mergeLogs(logs, [entry]);
    renderLogs();
  }

  function showGone(text) {
    gone = true;
    health.destroy();
    setTitle('Flag not found');
    main.replaceChildren(notFoundCard('Flag not found', text, flag ? `/apps/${flag.app_id}` : '/', flag ? 'Back to the app' : 'Back to apps'));
  }

  function showAppTitle(title) {
    appTitle = title;
    appCrumb.textContent = title;
    if (flag) setTitle(flag.title, appTitle);
  }

  async function loadAppTitle(appId) {
    try {
      const a = await ctx.api('GET', `/api/apps/${appId}`);
      if (!appTitleHeard) showAppTitle(a.title);
    } catch {
      // The breadcrumb keeps its placeholder; the page works without it.
    }
  }

  const reads = freshReads({
    read: () => ctx.api('GET', `/api/flags/${flagId}`),
    install({ logs: l = [], ...f }) {
      if (gone) return false;
      missing = false;
      flag = null;
      showFlag(f);
      // Log entries never change: the ones heard while reading stay, whatever the read saw.
      logs = mergeLogs(logs, l);
      renderLogs();
      loading.remove();
      ready.resolve();
      markReady();
      if (!loaded) {
        loaded = true;
        loadAppTitle(f.app_id);
        health.start();
      }
      return true;
    },
    replay: apply,
    failed(e) {
      if (gone) return;
      if (e.status === 404 || e.status === 400) showGone(missing ? JUST_DELETED : NO_SUCH_FLAG);
      else if (!loaded) loading.replaceChildren(loadError(e, load));
      else toastError(e);
    },
  });
  const load = () => (gone ? Promise.resolve() : reads.load());

  /**
   * A change to the flag, its log or its app, from the stream or from this page: shown now,
   * and again over any read in flight, which may be older.
   */
  function change(c) {
    apply(c);
    reads.saw(c);
  }

  function apply({ type, data }) {
    if (gone) return;
    if (type === 'ruleset') {
      const f = data.ruleset.find((x) => x.id === flagId);
      if (f) showFlag(f);
      else if (flag && !missing) {
        // Deleted, most likely; a read says for sure (a late ruleset from before the flag
        // existed looks the same).
        missing = true;
        load();
      }
    } else if (type === 'flag') {
      showFlag(data);
    } else if (type === 'log') {
      addLog(data);
    } else if (data.deleted) {
      showGone('This flag’s app was just deleted, and the flag with it.');
    } else {
      appTitleHeard = true;
      showAppTitle(data.app.title);
    }
  }

  load();
  return {
    refresh: load,
    destroy: () => health.destroy(),
    onEvent(type, data) {
      if (gone) return;
      if (type === 'ruleset') {
        // Until the flag is read its app is unknown: a ruleset that has the flag is its app's.
        const ours = flag ? data.app_id === flag.app_id : data.ruleset.some((x) => x.id === flagId);
        if (!ours || data.revision <= revision) return;
        revision = data.revision;
      } else if (type === 'log') {
        if (data.flag_id !== flagId) return;
      } else if (type !== 'app' || !flag || data.app?.id !== flag.app_id) {
        return;
      }
      change({ type, data });
    },
  };
}

const JUST_DELETED = 'This flag was just deleted. Its log entries are still in the logs.';
const NO_SUCH_FLAG = 'This flag does not exist, or it was deleted. Its log entries are still in the logs.';

/** Two lists of log entries as one, newest first, each entry once (entries never change). */
function mergeLogs(a, b) {
  const byId = new Map([...a, ...b].map((l) => [l.log_id, l]));
  return [...byId.values()].sort((x, y) => y.log_id - x.log_id);
}

function logItem(entry) {
  const a = ACTIONS[entry.action_type] ?? { label: entry.action_type, icon: 'edit', tone: 'neutral' };
  const li = h('li', { class: 'timeline-item', testid: 'log-entry', 'data-action': entry.action_type },
    h('span', { class: `timeline-icon tone-${a.tone}` }, icon(a.icon)),
    h('div', { class: 'timeline-text' },
      h('span', { class: 'timeline-title' }, entry.log_description || a.label),
      // Why, in numbers, when the entry says more than its action (the breaker's evidence).
      entry.detail ? h('span', { class: 'timeline-detail', testid: 'log-detail' }, entry.detail) : null,
      timeAgo(entry.created_at)));
  li.update = () => {}; // entries never change
  return li;
}

// ===== health charts =====

const WINDOWS = [
  { id: '30s', label: '30 s', range: 30_000, bucket: 1_000, unit: 's', ticks: ['30 s ago', '15 s ago', 'now'], per: 'per second' },
  { id: '10m', label: '10 min', range: 600_000, bucket: 10_000, unit: 'm', ticks: ['10 min ago', '5 min ago', 'now'], per: 'per 10 s' },
  { id: '1h', label: '1 h', range: 3_600_000, bucket: 60_000, unit: 'h', ticks: ['60 min ago', '30 min ago', 'now'], per: 'per minute' },
];

/**
 * Success/failure and error-rate charts of one flag, for a chosen window, refetched every bucket
 * width while live. Returns the window buttons and pause button (`controls`), the charts (`el`).
 */
function healthPanel(flagId) {
  let win = WINDOWS[1];
  let livePolling = true;
  let threshold = null;
  let points = [];
  let timer = null;
  let inFlight = null;
  let started = false;
  let error = null;

  const buttons = WINDOWS.map((w) => h('button', {
    type: 'button', class: 'seg-btn', testid: `window-${w.id}`, 'aria-pressed': String(w === win),
    onclick: () => setWindow(w),
  }, w.label));
  const liveBtn = h('button', { type: 'button', class: 'btn small', testid: 'live-toggle', 'aria-pressed': 'false', onclick: () => setLive(!livePolling) });
  const controls = h('div', { class: 'health-controls' },
    h('div', { class: 'seg', role: 'group', 'aria-label': 'Time window' }, buttons), liveBtn);

  const summary = h('p', { class: 'health-summary' });
  const reqLegend = h('div', { class: 'legend' });
  const errLegend = h('div', { class: 'legend' });
  const reqChart = h('div', { class: 'chart' });
  const errChart = h('div', { class: 'chart' });
  const note = h('p', { class: 'chart-note', role: 'status' });
  const el = h('div', { class: 'health' },
    summary,
    h('div', { class: 'charts', testid: 'health-charts' },
      h('figure', { class: 'chart-fig' }, h('figcaption', null, h('span', { class: 'chart-title' }, 'Requests'), reqLegend), reqChart),
      h('figure', { class: 'chart-fig' }, h('figcaption', null, h('span', { class: 'chart-title' }, 'Error rate'), errLegend), errChart)),
    note);

  function setWindow(w) {
    win = w;
    for (const [i, b] of buttons.entries()) b.setAttribute('aria-pressed', String(WINDOWS[i] === w));
    points = [];
    draw();
    if (started) {
      fetchNow();
      schedule();
    }
  }

  function setLive(on) {
    livePolling = on;
    liveBtn.replaceChildren(icon(on ? 'pause' : 'play'), on ? 'Pause' : 'Resume');
    liveBtn.setAttribute('aria-pressed', String(!on));
    liveBtn.setAttribute('aria-label', on ? 'Pause live updates of the charts' : 'Resume live updates of the charts');
    if (started) {
      if (on) fetchNow();
      schedule();
    }
    drawNote();
  }

  const onVisible = () => { if (!document.hidden && started && livePolling) fetchNow(); };
  document.addEventListener('visibilitychange', onVisible);

  function schedule() {
    clearInterval(timer);
    timer = livePolling && started ? setInterval(() => { if (!document.hidden) fetchNow(); }, win.bucket) : null;
  }

  async function fetchNow() {
    if (inFlight) inFlight.abort();
    const ctl = (inFlight = new AbortController());
    const w = win;
    try {
      const data = await api('GET', `/api/flags/${flagId}/timeseries?timeRange=${w.range}&timeBucket=${w.bucket}`, undefined, ctl.signal);
      if (w !== win) return;
      points = data;
      error = null;
      draw();
    } catch (e) {
      if (isAbort(e)) return;
      error = e.message;
      drawNote();
    } finally {
      if (inFlight === ctl) inFlight = null;
    }
  }

  function drawNote() {
    note.textContent = error
      ? `Health data unavailable: ${error}`
      : livePolling ? `Live: refreshed every ${win.bucket / 1000} s.` : 'Paused.';
    note.classList.toggle('is-error', Boolean(error));
  }

  function draw() {
    const ok = points.reduce((n, p) => n + p.success, 0);
    const bad = points.reduce((n, p) => n + p.failure, 0);
    const rate = ok + bad ? (bad * 100) / (ok + bad) : null;
    summary.replaceChildren(
      h('span', { class: 'muted' }, `Last ${win.label}: `),
      h('span', { class: 'num' }, `${numberFmt.format(ok)} successful`), ' · ',
      h('span', { class: 'num' }, `${numberFmt.format(bad)} failed`), ' · ',
      h('span', { class: 'num' }, rate === null ? 'no traffic' : `${rate.toFixed(1)}% errors`));
    reqLegend.replaceChildren(
      h('span', { class: 'key key-success' }, 'Success'),
      h('span', { class: 'key key-failure' }, 'Failure'));
    errLegend.replaceChildren(
      h('span', { class: 'key key-rate' }, 'Error rate'),
      h('span', { class: 'key key-threshold' }, threshold ? `Threshold ${pct(threshold)}` : 'Threshold off'));
    reqChart.replaceChildren(requestsChart(points, win, ok, bad));
    errChart.replaceChildren(errorRateChart(points, win, threshold, rate));
    drawNote();
  }

  setLive(true);
  draw();
  return {
    el,
    controls,
    start() {
      started = true;
      fetchNow();
      schedule();
    },
    /** Re-reads the counts now (when live). */
    refresh() {
      if (started && livePolling) fetchNow();
    },
    setThreshold(t) {
      if (t === threshold) return;
      threshold = t;
      draw();
    },
    destroy() {
      started = false;
      clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
      inFlight?.abort();
    },
  };
}

const CHART = { w: 560, h: 190, left: 44, right: 10, top: 12, bottom: 26 };

function niceMax(v) {
  if (v <= 2) return 2;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Axes, grid and labels shared by both charts; returns the SVG and a y→pixel mapper. */
function chartFrame({ title, desc, yMax, yFormat, win }) {
  const { w, h: H, left, right, top, bottom } = CHART;
  const plotH = H - top - bottom;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const titleId = uid('chart-title');
  const descId = uid('chart-desc');
  const svg = s('svg', { viewBox: `0 0 ${w} ${H}`, class: 'chart-svg', role: 'img', 'aria-labelledby': `${titleId} ${descId}` },
    s('title', { id: titleId }, title),
    s('desc', { id: descId }, desc));
  const grid = s('g', { class: 'grid' });
  for (const t of [0, 0.5, 1]) {
    const v = yMax * t;
    grid.append(
      s('line', { x1: left, x2: w - right, y1: y(v), y2: y(v), class: t === 0 ? 'axis' : 'gridline' }),
      s('text', { x: left - 8, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, yFormat(v)));
  }
  const xs = [left, left + (w - left - right) / 2, w - right];
  const anchors = ['start', 'middle', 'end'];
  win.ticks.forEach((label, i) => grid.append(s('text', { x: xs[i], y: H - 8, 'text-anchor': anchors[i], class: 'tick' }, label)));
  svg.append(grid);
  return { svg, y, plotW: w - left - right };
}

function requestsChart(points, win, ok, bad) {
  const n = points.length || Math.ceil(win.range / win.bucket);
  const peak = points.reduce((m, p) => Math.max(m, p.success + p.failure), 0);
  const yMax = niceMax(peak);
  const { svg, y, plotW } = chartFrame({
    title: `Requests over the last ${win.label}, ${win.per}`,
    desc: `${numberFmt.format(ok)} successful and ${numberFmt.format(bad)} failed requests; peak ${numberFmt.format(peak)} ${win.per}.`,
    yMax, yFormat: (v) => compactFmt.format(v), win,
  });
  const bw = plotW / n;
  const barW = Math.max(1, bw * 0.72);
  const bars = s('g', { class: 'bars' });
  points.forEach((p, i) => {
    const x = CHART.left + i * bw + (bw - barW) / 2;
    const base = y(0);
    const ys = y(p.success);
    const yf = y(p.success + p.failure);
    const g = s('g', null, s('title', null, `${clockFmt.format(new Date(p.timestamp))}: ${p.success} successful, ${p.failure} failed`));
    if (p.success) g.append(s('rect', { x, y: ys, width: barW, height: base - ys, class: 'bar-success' }));
    if (p.failure) g.append(s('rect', { x, y: yf, width: barW, height: ys - yf, class: 'bar-failure' }));
    if (p.success || p.failure) bars.append(g);
  });
  svg.append(s('defs', null,
    s('pattern', { id: 'hatch-failure', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('rect', { width: 6, height: 6, class: 'hatch-bg' }),
      s('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }))), bars);
  if (!peak) svg.append(s('text', { x: CHART.left + plotW / 2, y: CHART.top + 70, 'text-anchor': 'middle', class: 'empty-label' }, 'No requests reported'));
  return svg;
}

function errorRateChart(points, win, threshold, rate) {
  const n = points.length || Math.ceil(win.range / win.bucket);
  const latest = [...points].reverse().find((p) => p.success + p.failure);
  const latestRate = latest ? (latest.failure * 100) / (latest.success + latest.failure) : null;
  const { svg, y, plotW } = chartFrame({
    title: `Error rate over the last ${win.label}`,
    desc: `${rate === null ? 'No traffic' : `${rate.toFixed(1)}% of requests failed`}${latestRate === null ? '' : `; latest ${latestRate.toFixed(1)}%`}; threshold ${threshold ? pct(threshold) : 'off'}.`,
    yMax: 100, yFormat: (v) => `${v}%`, win,
  });
  const bw = plotW / n;
  let d = '';
  let pen = false;
  const dots = s('g', { class: 'dots' });
  points.forEach((p, i) => {
    const total = p.success + p.failure;
    if (!total) {
      pen = false;
      return;
    }
    const r = (p.failure * 100) / total;
    const x = CHART.left + i * bw + bw / 2;
    d += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y(r).toFixed(1)}`;
    pen = true;
    dots.append(s('circle', { cx: x.toFixed(1), cy: y(r).toFixed(1), r: 2.5, class: 'dot' },
      s('title', null, `${clockFmt.format(new Date(p.timestamp))}: ${r.toFixed(1)}% errors (${p.failure} of ${total})`)));
  });
  if (threshold) {
    const ty = y(threshold);
    svg.append(
      s('line', { x1: CHART.left, x2: CHART.w - CHART.right, y1: ty, y2: ty, class: 'threshold' }),
      s('text', { x: CHART.w - CHART.right - 4, y: ty - 5, 'text-anchor': 'end', class: 'threshold-label' }, `threshold ${pct(threshold)}`));
  }
  svg.append(s('path', { d, class: 'rate-line' }), dots);
  if (rate === null) svg.append(s('text', { x: CHART.left + plotW / 2, y: CHART.top + 70, 'text-anchor': 'middle', class: 'empty-label' }, 'No requests reported'));
  return svg;
}

// ===== logs screen =====

const PAGE_SIZE = 50;

function readLogsQuery(url) {
  const action = url.searchParams.get('action');
  const before = url.searchParams.get('before');
  return {
    action: action && ACTIONS[action] ? action : '',
    before: before && /^\d+$/.test(before) ? Number(before) : null,
  };
}

function logsScreen(main, _params, url, ctx) {
  setTitle('Logs');
  let q = readLogsQuery(url);
  let shown = q; // the query of the entries on screen (q moves on first, while its page loads)
  let stack = history.state?.logStack ?? [];
  let entries = [];
  let hasOlder = false;
  let loaded = false;
  const apps = new Map();
  const rows = new Map();

  const filterId = uid('log-filter');
  const filter = h('select', { id: filterId, testid: 'log-filter', value: q.action },
    h('option', { value: '' }, 'All actions'),
    Object.entries(ACTIONS).map(([k, a]) => h('option', { value: k }, `${a.label} (${k})`)));
  filter.value = q.action;
  filter.addEventListener('change', () => go({ action: filter.value, before: null }, []));

  let ready = deferred();
  const older = h('button', { type: 'button', class: 'btn small', testid: 'logs-older' }, 'Older', icon('right'));
  const newer = h('button', { type: 'button', class: 'btn small', testid: 'logs-newer', disabled: !q.before }, icon('left'), 'Newer');
  older.addEventListener('click', async () => {
    await ready.promise;
    const last = entries.at(-1);
    if (hasOlder && last) go({ action: q.action, before: last.log_id }, [...stack, q.before]);
  });
  newer.addEventListener('click', async () => {
    await ready.promise;
    if (stack.length) {
      go({ action: q.action, before: stack.at(-1) }, stack.slice(0, -1));
      return;
    }
    // Reached by a link, with no pages behind us: the newer page is the PAGE_SIZE entries just
    // after this page's newest, i.e. everything before (its newest + 1).
    const first = entries[0];
    let before = null;
    if (first) {
      try {
        const p = new URLSearchParams({ after: String(first.log_id), limit: String(PAGE_SIZE + 1) });
        if (q.action) p.set('action', q.action);
        const after = await api('GET', `/api/logs?${p}`);
        // More than a page newer: a page ends at the PAGE_SIZE-th; otherwise the newest page.
        if (after.length > PAGE_SIZE) before = after[after.length - PAGE_SIZE].log_id + 1;
      } catch (e) {
        toastError(e);
        return;
      }
    }
    go({ action: q.action, before }, []);
  });

  // Focusable, to take focus from a pager button that the page it led to disables.
  const pageInfo = h('p', { class: 'muted toolbar-count', 'aria-live': 'polite', tabindex: '-1' });
  const tbody = h('tbody', { role: 'rowgroup' });
  const table = h('table', { class: 'table logs-table', role: 'table' },
    h('caption', { class: 'sr-only' }, 'Log entries, newest first'),
    h('thead', { role: 'rowgroup' }, h('tr', { role: 'row' },
      h('th', { scope: 'col', role: 'columnheader' }, 'When'),
      h('th', { scope: 'col', role: 'columnheader' }, 'Action'),
      h('th', { scope: 'col', role: 'columnheader' }, 'Flag'),
      h('th', { scope: 'col', role: 'columnheader' }, 'App'))),
    tbody);
  const status = h('div', { class: 'list-status' }, h('p', { class: 'muted' }, 'Loading logs…'));
  const head = pageHeader('Logs', { sub: h('p', { class: 'page-sub' }, 'Every change to every flag, newest first. Entries outlive their flags and apps.') });
  main.append(head.el,
    h('div', { class: 'toolbar' },
      h('div', { class: 'filter' }, h('label', { for: filterId }, 'Action'), filter),
      pageInfo,
      h('div', { class: 'pager' }, newer, older)),
    h('section', { class: 'card list-card' }, h('div', { class: 'table-wrap' }, table), status));

  function go(next, nextStack) {
    const p = new URLSearchParams();
    if (next.action) p.set('action', next.action);
    if (next.before) p.set('before', String(next.before));
    const qs = p.toString();
    navigate(`/logs${qs ? `?${qs}` : ''}`, { state: { logStack: nextStack } });
  }

  function render() {
    reconcile(tbody, entries, (e) => e.log_id, logRow, rows);
    table.hidden = !entries.length;
    status.replaceChildren();
    if (!entries.length) {
      const what = shown.action ? `No “${ACTIONS[shown.action].label.toLowerCase()}” entries` : 'No log entries';
      status.append(h('div', { class: 'empty' }, h('p', null, shown.before ? `${what} older than this.` : `${what} yet.`)));
    }
    pageInfo.textContent = entries.length
      ? `${shown.before ? 'Older entries' : 'Latest entries'}: ${entries.length}${hasOlder ? '+' : ''} shown`
      : '';
    enable(older, hasOlder);
    enable(newer, Boolean(shown.before));
  }

  /**
   * Enables or disables a pager button. Disabling the focused one (Older on reaching the last
   * page) would drop focus to <body>: it goes to the page info, which says where the list is.
   */
  function enable(button, on) {
    const focused = document.activeElement === button;
    button.disabled = !on;
    if (focused && !on) pageInfo.focus();
  }

  function appCell(e) {
    if (e.app_id == null) return h('span', { class: 'muted' }, '—');
    const a = apps.get(e.app_id);
    if (!a) return h('span', { class: 'muted' }, apps.size ? `App ${e.app_id} (deleted)` : `App ${e.app_id}`);
    return h('a', { href: `/apps/${a.id}` }, a.title);
  }

  function logRow(entry) {
    const a = ACTIONS[entry.action_type] ?? { label: entry.action_type, icon: 'edit', tone: 'neutral' };
    const flagCell = h('td', { role: 'cell', 'data-label': 'Flag' });
    const appTd = h('td', { role: 'cell', 'data-label': 'App' });
    const tr = h('tr', { testid: 'log-row', 'data-action': entry.action_type, role: 'row' },
      h('td', { class: 'nowrap', role: 'cell' }, h('span', { class: 'when' }, timeAgo(entry.created_at)), h('span', { class: 'abs' }, absoluteTime(entry.created_at))),
      h('td', { role: 'cell' }, h('span', { class: `badge tone-${a.tone}` }, icon(a.icon), h('span', null, entry.log_description || a.label)),
        entry.detail ? h('div', { class: 'log-detail', testid: 'log-detail' }, entry.detail) : null),
      flagCell,
      appTd);
    let shown = '';
    tr.update = (e) => {
      const app = apps.get(e.app_id);
      const key = `${e.flag_deleted}|${apps.size > 0}|${app?.title ?? ''}`;
      if (key === shown) return;
      shown = key;
      flagCell.replaceChildren(e.flag_deleted
        ? h('span', { testid: 'log-flag-deleted', class: 'deleted' }, h('span', null, e.flag_title), ' ', h('span', { class: 'tag' }, 'deleted'))
        : h('a', { testid: 'log-flag-link', href: `/flags/${e.flag_id}` }, e.flag_title));
      appTd.replaceChildren(appCell(e));
    };
    tr.update(entry);
    return tr;
  }

  // App names: a nicety (rows still show the app id), kept current like the entries.
  const appReads = freshReads({
    read: () => ctx.api('GET', '/api/apps'),
    install(list) {
      apps.clear();
      for (const a of list) apps.set(a.id, a);
      if (loaded) render();
    },
    replay: applyApp,
    failed() {},
  });

  const reads = freshReads({
    async read() {
      const asked = q;
      const p = new URLSearchParams({ limit: String(PAGE_SIZE + 1) });
      if (asked.before) p.set('before', String(asked.before));
      if (asked.action) p.set('action', asked.action);
      return { asked, list: await ctx.api('GET', `/api/logs?${p}`) };
    },
    install({ asked, list }) {
      // Another page was asked for meanwhile: its read comes next.
      if (asked !== q) return false;
      // The same rules again, so a server that ignores the parameters still pages correctly.
      const page = list
        .filter((e) => (!asked.before || e.log_id < asked.before) && (!asked.action || e.action_type === asked.action))
        .sort((a, b) => b.log_id - a.log_id);
      shown = asked;
      hasOlder = page.length > PAGE_SIZE;
      entries = page.slice(0, PAGE_SIZE);
      loaded = true;
      render();
      ready.resolve();
      markReady();
      return true;
    },
    replay: applyLog,
    failed: (e) => status.replaceChildren(loadError(e, load)),
  });
  const load = () => reads.load();

  /** A new log entry: on top of the first page (if it passes the filter); a deletion marks its flag's rows. */
  function applyLog(data) {
    let changed = false;
    if (data.action_type === 'delete') {
      for (const e of entries) {
        if (e.flag_id === data.flag_id && !e.flag_deleted) {
          e.flag_deleted = true;
          changed = true;
        }
      }
    }
    if (!shown.before && (!shown.action || data.action_type === shown.action) && !entries.some((e) => e.log_id === data.log_id)) {
      entries.unshift(data);
      entries.sort((a, b) => b.log_id - a.log_id);
      if (entries.length > PAGE_SIZE) {
        entries.length = PAGE_SIZE;
        hasOlder = true;
      }
      changed = true;
    }
    if (changed) {
      for (const e of entries) rows.get(e.log_id)?.update(e);
      render();
    }
  }

  function applyApp(data) {
    if (data.deleted) apps.delete(data.app.id);
    else apps.set(data.app.id, data.app);
    if (loaded) for (const e of entries) rows.get(e.log_id)?.update(e);
  }

  appReads.load();
  load();
  return {
    refresh: () => {
      appReads.load();
      return load();
    },
    update(u) {
      ready = deferred();
      q = readLogsQuery(u);
      stack = history.state?.logStack ?? [];
      filter.value = q.action;
      load();
    },
    onEvent(type, data) {
      // Both are applied now (entries once the first page is in) and again over a read in flight.
      if (type === 'log') {
        if (loaded) applyLog(data);
        reads.saw(data);
      } else if (type === 'app' && data.app) {
        applyApp(data);
        appReads.saw(data);
      }
    },
  };
}

// ===== SDK key screen =====

function sdkKeyScreen(main, _params, _url, ctx) {
  setTitle('SDK key');
  let key = null;
  let generation = 0; // bumped by Regenerate: a read started before it is older than its key
  const value = h('code', { class: 'key-value', testid: 'sdk-key-value' }, 'Loading…');
  const created = h('p', { class: 'muted small' });
  const ready = deferred();
  const copy = h('button', { type: 'button', class: 'btn', testid: 'copy-key' }, icon('copy'), 'Copy');
  const regen = h('button', { type: 'button', class: 'btn danger-outline', testid: 'regenerate-key' }, icon('refresh'), 'Regenerate…');
  const head = pageHeader('SDK key', { sub: h('p', { class: 'page-sub' }, 'Services use this key to read their app’s flags.') });
  const status = h('div');
  main.append(head.el, h('section', { class: 'card key-card', 'aria-labelledby': 'key-heading' },
    h('h2', { id: 'key-heading' }, 'Current key'),
    h('div', { class: 'key-row' }, value, copy),
    created,
    status,
    h('div', { class: 'key-regen' },
      h('p', { class: 'hint' }, 'Regenerating replaces the key at once: every service using the old key must be given the new one.'),
      regen)));

  function show(k) {
    key = k;
    value.textContent = k.id;
    created.replaceChildren('Created ', timeAgo(k.created_at), ` (${absoluteTime(k.created_at)})`);
    ready.resolve();
    markReady();
  }

  copy.addEventListener('click', async () => {
    await ready.promise;
    if (await copyText(key.id)) toast('SDK key copied to the clipboard');
    else {
      getSelection().selectAllChildren(value);
      toast('Could not copy: the key is selected, press Ctrl+C (⌘C) to copy it', 'error');
    }
  });

  regen.addEventListener('click', async () => {
    await ready.promise;
    const ok = await confirmDialog({
      title: 'Regenerate the SDK key?',
      message: h('p', null, 'The current key stops working at once. Services that use it must be updated with the new key.'),
      confirmLabel: 'Regenerate key',
    });
    if (!ok) return;
    setBusy(regen, true);
    try {
      const k = await api('POST', '/api/keys');
      generation++;
      show(k);
      toast('A new SDK key was generated');
    } catch (e) {
      toastError(e);
    } finally {
      setBusy(regen, false);
    }
  });

  async function load() {
    const asked = generation;
    try {
      const k = await ctx.api('GET', '/api/keys');
      if (asked === generation) show(k);
      status.replaceChildren();
    } catch (e) {
      if (!isAbort(e)) status.replaceChildren(loadError(e, load));
    }
  }

  load();
  return { refresh: load };
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'sr-only', readonly: true, 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

// ===== not found screen =====

function notFoundScreen(main) {
  setTitle('Not found');
  main.append(notFoundCard('Page not found', 'There is nothing at this address. It may have moved, or the link is wrong.'));
}

// ===== router =====

const ROUTES = [
  { re: /^\/$/, screen: appsScreen, nav: 'apps' },
  { re: /^\/apps\/(\d+)$/, screen: appScreen, nav: 'apps' },
  { re: /^\/flags\/(\d+)$/, screen: flagScreen, nav: 'apps' },
  { re: /^\/logs$/, screen: logsScreen, nav: 'logs' },
  { re: /^\/sdk-key$/, screen: sdkKeyScreen, nav: 'sdk-key' },
];

/** What a screen gets besides its element: api() bound to its lifetime. */
class ScreenContext {
  constructor() {
    this.controller = new AbortController();
    this.inflight = 0;
    this.waiters = [];
  }

  async api(method, path, body) {
    this.inflight++;
    try {
      return await api(method, path, body, this.controller.signal);
    } finally {
      // After a task, so the caller's code after `await` (its render) runs first.
      if (--this.inflight === 0) for (const resolve of this.waiters.splice(0)) setTimeout(resolve);
    }
  }

  /** Resolves once none of the screen's requests is in flight. */
  idle() {
    return this.inflight ? new Promise((resolve) => this.waiters.push(resolve)) : Promise.resolve();
  }

  dispose() {
    this.controller.abort();
  }
}

let current = null;

function matchRoute(pathname) {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  for (const route of ROUTES) {
    const m = route.re.exec(path);
    if (m) return { route, params: m.slice(1) };
  }
  return { route: null, params: [] };
}

function render({ focus = false } = {}) {
  const url = new URL(location.href);
  const { route, params } = matchRoute(url.pathname);
  if (current && route && current.route === route && current.key === params.join('/') && current.screen.update) {
    current.screen.update(url);
    return;
  }
  if (current) {
    current.ctx.dispose();
    current.screen.destroy?.();
  }
  for (const dlg of document.querySelectorAll('dialog[open]')) dlg.close();
  // Each screen renders into its own element, so its listeners go away with it.
  const main = document.getElementById('main');
  const root = h('div', { class: 'screen' });
  main.replaceChildren(root);
  const ctx = new ScreenContext();
  const screen = (route ? route.screen : notFoundScreen)(root, params, url, ctx) ?? {};
  current = { route, key: params.join('/'), screen, ctx };
  for (const a of document.querySelectorAll('.nav-links a')) {
    if (a.dataset.nav === route?.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  window.scrollTo(0, 0);
  if (focus) main.querySelector('h1')?.focus({ preventScroll: true });
}

function navigate(href, { replace = false, state = null } = {}) {
  const url = new URL(href, location.href);
  if (url.href === location.href && !state) return;
  history[replace ? 'replaceState' : 'pushState'](state, '', url);
  render({ focus: true });
}

/** Same-origin link clicks become client-side navigations. */
function interceptLinks(e) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest?.('a[href]');
  if (!a || (a.target && a.target !== '_self') || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/') || url.pathname.startsWith('/assets/')) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  e.preventDefault();
  navigate(url.href);
}

// ===== start =====

function start() {
  history.scrollRestoration = 'manual';
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', () => render({ focus: true }));
  live.handlers.add((type, data) => {
    if (type === 'hello' || type === 'resync') refreshScreen();
    else current?.screen.onEvent?.(type, data);
  });
  render();
  live.start();
  // Give the stream's connection (and the lead) back when the page goes away: an abandoned
  // stream would hold one of the browser's six connections to the server. A page restored from
  // the back/forward cache starts again, and re-reads what it shows: it heard nothing while away.
  window.addEventListener('pagehide', () => live.stop());
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted) return;
    live.start();
    refreshScreen();
  });
}

/** Changes may have been missed: re-read, after what is loading now (not alongside it). */
function refreshScreen() {
  const screen = current;
  screen?.ctx.idle().then(() => { if (current === screen) screen.screen.refresh?.(); });
}

start();
