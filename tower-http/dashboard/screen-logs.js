// Tower dashboard: The logs screen (/logs).

import { ACTIONS, absoluteTime, h, icon, markReady, reconcile, setTitle, timeAgo, uid } from './dom.js';
import { api, freshReads } from './api.js';
import { changeList, deferred, loadError, pageHeader, toastError } from './ui.js';
import { navigate } from './main.js';
// ===== logs screen =====

export const PAGE_SIZE = 50;

export function readLogsQuery(url) {
  const action = url.searchParams.get('action');
  const before = url.searchParams.get('before');
  return {
    action: action && ACTIONS[action] ? action : '',
    before: before && /^\d+$/.test(before) ? Number(before) : null,
  };
}

export function logsScreen(main, _params, url, ctx) {
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
      h('th', { scope: 'col', role: 'columnheader' }, 'App'),
      h('th', { scope: 'col', role: 'columnheader' }, 'By'))),
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
        entry.detail ? h('div', { class: 'log-detail', testid: 'log-detail' }, entry.detail) : null,
        changeList(entry.changes)),
      flagCell,
      appTd,
      h('td', { role: 'cell', 'data-label': 'By', testid: 'log-by' }, entry.actor ?? h('span', { class: 'muted' }, '—')));
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
