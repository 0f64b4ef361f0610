// Tower dashboard: The flag screen (/flags/:id).

import { ACTIONS, circuitOf, h, icon, markReady, pct, reconcile, setTimeAgo, setTitle, timeAgo } from './dom.js';
import { api, freshReads } from './api.js';
import { actorText, badge, changeList, circuitBadge, confirmDialog, deferred, flagSwitch, loadError, notFoundCard, pageHeader, setBusy, toast, toastError } from './ui.js';
import { flagForm } from './forms.js';
import { healthPanel } from './charts.js';
import { navigate } from './main.js';
// ===== flag screen =====

export const SETTINGS = [
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

export function listValue(v, empty) {
  if (!v) return h('span', { class: 'muted' }, empty);
  return h('ul', { class: 'value-list' }, v.split(',').map((x) => h('li', null, x)));
}

export function flagScreen(main, [id], _url, ctx) {
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

export const JUST_DELETED = 'This flag was just deleted. Its log entries are still in the logs.';
export const NO_SUCH_FLAG = 'This flag does not exist, or it was deleted. Its log entries are still in the logs.';

/** Two lists of log entries as one, newest first, each entry once (entries never change). */
export function mergeLogs(a, b) {
  const byId = new Map([...a, ...b].map((l) => [l.log_id, l]));
  return [...byId.values()].sort((x, y) => y.log_id - x.log_id);
}

export function logItem(entry) {
  const a = ACTIONS[entry.action_type] ?? { label: entry.action_type, icon: 'edit', tone: 'neutral' };
  const li = h('li', { class: 'timeline-item', testid: 'log-entry', 'data-action': entry.action_type },
    h('span', { class: `timeline-icon tone-${a.tone}` }, icon(a.icon)),
    h('div', { class: 'timeline-text' },
      h('span', { class: 'timeline-title' }, entry.log_description || a.label),
      // Why, in numbers, when the entry says more than its action (the breaker's evidence).
      entry.detail ? h('span', { class: 'timeline-detail', testid: 'log-detail' }, entry.detail) : null,
      changeList(entry.changes),
      h('span', { class: 'timeline-meta' }, timeAgo(entry.created_at), actorText(entry) ? ' · ' : null, actorText(entry))));
  li.update = () => {}; // entries never change
  return li;
}
