// Tower dashboard: DOM building, formatting, icons and list reconciliation: what every screen uses.
// ===== helpers =====

export const SVG_NS = 'http://www.w3.org/2000/svg';

/** Builds an element. Strings become text nodes (never parsed as HTML). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  append(el, children);
  setProps(el, props);
  return el;
}

/** Builds an SVG element; attributes are set verbatim. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v != null && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function setProps(el, props) {
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' || k === 'checked') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export let uidCounter = 0;
export const uid = (prefix) => `${prefix}-${++uidCounter}`;

export const numberFmt = new Intl.NumberFormat('en');
export const compactFmt = new Intl.NumberFormat('en', { notation: 'compact', maximumFractionDigits: 1 });
export const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
export const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
export const relFmt = new Intl.RelativeTimeFormat('en', { numeric: 'always' });

/** "just now", "3 minutes ago", "2 hours ago", "5 days ago". */
export function relativeTime(iso) {
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

export const absoluteTime = (iso) => (Number.isFinite(Date.parse(iso)) ? dateFmt.format(new Date(iso)) : '');

/** A <time> whose text ("updated 3 minutes ago") is refreshed every 30 s. */
export function timeAgo(iso, prefix = '') {
  const el = h('time', { class: 'ago' });
  el.dataset.prefix = prefix;
  setTimeAgo(el, iso);
  return el;
}

export function setTimeAgo(el, iso) {
  el.dateTime = iso ?? '';
  el.title = absoluteTime(iso);
  el.textContent = iso ? el.dataset.prefix + relativeTime(iso) : '';
}

setInterval(() => {
  for (const el of document.querySelectorAll('time.ago')) setTimeAgo(el, el.dateTime);
}, 30_000);

export const pct = (n) => `${n}%`;

/** Sorts by title, case-insensitively, numbers in titles in numeric order. */
export const byTitle = (a, b) =>
  a.title.localeCompare(b.title, undefined, { sensitivity: 'base', numeric: true }) || a.id - b.id;

export const matches = (title, query) => title.toLowerCase().includes(query.trim().toLowerCase());

/** Marks `tower:ready` (once per page load) when the first screen has rendered its data. */
export function markReady() {
  if (!performance.getEntriesByName('tower:ready').length) performance.mark('tower:ready');
}

export function setTitle(...parts) {
  document.title = [...parts.filter(Boolean), 'Tower'].join(' · ');
}

// Icons: 24×24 strokes, decorative (aria-hidden), so text always carries the meaning.
export const ICONS = {
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

export function icon(name, cls = 'icon') {
  return s('svg', { class: cls, viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    s('path', { d: ICONS[name] }));
}

/** Wire circuit states, with words and icons so colour is never the only signal. */
export const CIRCUIT = {
  close: { label: 'Closed', icon: 'closed', tone: 'ok' },
  open: { label: 'Open', icon: 'open', tone: 'bad' },
  recovery: { label: 'Recovering', icon: 'refresh', tone: 'warn' },
};
export const circuitOf = (flag) => CIRCUIT[flag.circuit_status] ?? CIRCUIT.open;

export const ACTIONS = {
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
export function reconcile(parent, items, keyOf, create, cache) {
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
export const focusLost = () => !document.activeElement || document.activeElement === document.body;
