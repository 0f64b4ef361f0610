// Tower dashboard: The apps screen (/).

import { byTitle, focusLost, h, icon, markReady, matches, reconcile, setTitle } from './dom.js';
import { api, freshReads } from './api.js';
import { confirmDialog, countFlags, loadError, pageHeader, searchBox, toast, toastError } from './ui.js';
import { appFormDialog } from './forms.js';
// ===== apps screen =====

export function appsScreen(main, _params, url, ctx) {
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
