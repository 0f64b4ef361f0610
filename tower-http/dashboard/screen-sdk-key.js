// Tower dashboard: The SDK key screen (/sdk-key).

import { absoluteTime, h, icon, markReady, setTitle, timeAgo } from './dom.js';
import { api, isAbort } from './api.js';
import { confirmDialog, deferred, loadError, pageHeader, setBusy, toast, toastError } from './ui.js';
// ===== SDK key screen =====

export function sdkKeyScreen(main, _params, _url, ctx) {
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

export async function copyText(text) {
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
