// Tower dashboard: The app flags screen (/apps/:id).

import { byTitle, h, icon, markReady, matches, pct, reconcile, setTimeAgo, setTitle, timeAgo, uid } from './dom.js';
import { freshReads } from './api.js';
import { circuitBadge, flagSwitch, loadError, notFoundCard, pageHeader, searchBox, toast, toastError } from './ui.js';
import { flagForm } from './forms.js';
// ===== app flags screen =====

export function appScreen(main, [id], url, ctx) {
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
