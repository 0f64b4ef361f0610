// Tower dashboard: Toasts, dialogs and the shared components (page header, search box, badges, switches).

import { ICONS, circuitOf, focusLost, h, icon, markReady, numberFmt, s, uid } from './dom.js';
import { api, isAbort } from './api.js';
// ===== toasts and dialogs =====

export function toast(message, kind = 'success') {
  const box = document.getElementById('toasts');
  const el = h('div', { class: `toast toast-${kind}`, testid: 'toast', role: kind === 'error' ? 'alert' : 'status' },
    icon(kind === 'error' ? 'alert' : 'check'),
    h('span', { class: 'toast-text' }, message),
    h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Dismiss', onclick: () => el.remove() }, icon('x')));
  box.prepend(el);
  while (box.children.length > 4) box.lastElementChild.remove();
  setTimeout(() => el.remove(), kind === 'error' ? 10_000 : 5_000);
}

export const toastError = (e) => { if (!isAbort(e)) toast(e.message, 'error'); };

export function restoreFocus(el) {
  if (el && el.isConnected && typeof el.focus === 'function') el.focus();
}

/**
 * A modal <dialog>, removed from the page when closed; resolves with what `done` is given.
 * While it is busy (aria-busy="true", a request running), Esc and the backdrop do not close it,
 * so the request's outcome still has a dialog to show in.
 */
export function openModal(props, build) {
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
export async function confirmDialog({ title, message, confirmLabel, danger = true }) {
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
export function deferred() {
  let resolve;
  const promise = new Promise((r) => { resolve = r; });
  return { promise, resolve };
}

/**
 * Disables a button while its action runs. Disabling a focused button drops focus to <body>,
 * so when the action is over focus comes back to it, unless it went somewhere else meanwhile.
 */
export function setBusy(button, busy) {
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

// ===== shared components =====

export function pageHeader(title, { crumbs = [], actions = [], testid, sub } = {}) {
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

/**
 * A search field whose text is also kept in the address (`?q=`, replaced, not pushed), so a
 * reload or a shared link shows the same filter; `onInput(text)` after each change.
 */
export function searchBox({ testid, label, value, onInput }) {
  const id = uid('search');
  const changed = () => {
    const u = new URL(location.href);
    if (input.value) u.searchParams.set('q', input.value);
    else u.searchParams.delete('q');
    history.replaceState(history.state, '', u);
    onInput(input.value);
  };
  const input = h('input', { id, type: 'search', testid, value, placeholder: label, autocomplete: 'off', spellcheck: 'false', oninput: changed });
  return h('div', { class: 'search' }, h('label', { for: id, class: 'sr-only' }, label), icon('search'), input);
}

export function notFoundCard(title, text, linkHref = '/', linkText = 'Back to apps') {
  markReady();
  return h('section', { class: 'card empty-state', testid: 'not-found' },
    h('div', { class: 'empty-icon' }, icon('alert')),
    h('h1', { tabindex: '-1' }, title),
    h('p', null, text),
    h('a', { href: linkHref, class: 'btn' }, linkText));
}

/** An error with a retry button, in place of content that failed to load. */
export function loadError(e, retry) {
  return h('div', { class: 'load-error', role: 'alert' },
    icon('alert'), h('span', null, `Could not load: ${e.message}`),
    h('button', { type: 'button', class: 'btn small', onclick: retry }, 'Retry'));
}

/** A badge with an icon and a text; update() changes both in place (elements stay the same). */
export function badge(testid) {
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
export function circuitBadge(flag) {
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
export function flagSwitch(flag, titleEl) {
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

export function countFlags(flags) {
  const c = { total: flags.length, active: 0, closed: 0, recovering: 0, open: 0 };
  for (const f of flags) {
    if (f.is_active) c.active++;
    if (f.circuit_status === 'close') c.closed++;
    else if (f.circuit_status === 'recovery') c.recovering++;
    else c.open++;
  }
  return c;
}

// ===== audit =====

/** How the timeline and the log page name a flag's fields, and the unit after their values. */
const FIELD_NAMES = {
  title: ['title'],
  description: ['description'],
  is_active: ['state', '', (v) => (v ? 'on' : 'off')],
  rollout_percentage: ['rollout', ' %'],
  white_listed_users: ['whitelist'],
  error_threshold_percentage: ['error threshold', ' %'],
  webhooks: ['webhooks'],
  circuit_status: ['circuit', '', (v) => ({ open: 'open', close: 'closed' }[v] ?? String(v))],
  is_recoverable: ['automatic recovery'],
  circuit_recovery_percentage: ['recovery', ' %'],
  circuit_recovery_profile: ['recovery profile', '', String],
  circuit_recovery_delay: ['recovery delay', ' ms'],
  circuit_recovery_rate: ['step interval', ' ms'],
  circuit_initial_recovery_percentage: ['initial recovery', ' %'],
  circuit_recovery_increment_percentage: ['increment', ' %'],
};

function changeValue(value, unit = '') {
  if (value === true) return 'yes';
  if (value === false) return 'no';
  if (typeof value === 'number') return `${numberFmt.format(value)}${unit}`;
  if (value == null || value === '') return '(none)';
  const text = String(value);
  return text.length > 60 ? `“${text.slice(0, 59)}…”` : `“${text}”`;
}

/** What an edit changed ("rollout 25 % → 50 %"), one line per field; null when nothing is known. */
export function changeList(changes) {
  if (!changes || typeof changes !== 'object') return null;
  const items = Object.entries(changes).map(([field, [was, now]]) => {
    const [name, unit, plain] = FIELD_NAMES[field] ?? [field.replaceAll('_', ' ')];
    const show = plain ?? ((v) => changeValue(v, unit));
    return h('li', null, `${name} ${show(was)} → ${show(now)}`);
  });
  return items.length ? h('ul', { class: 'changes', testid: 'log-changes' }, items) : null;
}

/** Who made a change ("by alice"); null for entries from before Tower recorded it. */
export function actorText(entry) {
  return entry.actor ? h('span', { class: 'actor', testid: 'log-actor' }, `by ${entry.actor}`) : null;
}
