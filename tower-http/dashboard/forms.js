// Tower dashboard: The app and flag forms.

import { h, uid } from './dom.js';
import { api } from './api.js';
import { openModal, setBusy } from './ui.js';
import { asNumber, fieldMessage } from './values.js';
// ===== app form =====

export function appFormDialog(app) {
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
        setSending(true);
        try {
          // The API checks the title and says what is wrong with it.
          const saved = isNew
            ? await api('POST', '/api/apps', { title: input.value })
            : await api('PATCH', `/api/apps/${app.id}`, { title: input.value });
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

export const FLAG_DEFAULTS = {
  title: '', description: '', rollout_percentage: 100, white_listed_users: '',
  error_threshold_percentage: 50, webhooks: '', is_recoverable: false,
  circuit_recovery_profile: 'linear', circuit_recovery_delay: 100, circuit_recovery_rate: 100,
  circuit_initial_recovery_percentage: 10, circuit_recovery_increment_percentage: 0.1,
};

/** The settings a person edits (circuit state and recovery percentage move by other means). */
export const FLAG_FIELDS = [
  { group: 'General', key: 'title', testid: 'flag-title', label: 'Title', kind: 'text', hint: 'Unique within the app, up to 255 characters.' },
  { group: 'General', key: 'description', testid: 'flag-description', label: 'Description', kind: 'textarea', hint: 'Optional, up to 10 000 characters.' },
  { group: 'Rollout', key: 'rollout_percentage', testid: 'flag-rollout', label: 'Rollout (%)', kind: 'number', hint: 'Share of users who get the flag: 0–100, one decimal.' },
  { group: 'Rollout', key: 'white_listed_users', testid: 'flag-whitelist', label: 'Whitelisted users', kind: 'list', hint: 'Comma-separated user ids that get the flag whatever the rollout.' },
  { group: 'Circuit breaker', key: 'error_threshold_percentage', testid: 'flag-threshold', label: 'Error threshold (%)', kind: 'number', hint: 'Error rate that trips the circuit: 0–100; 0 disables the breaker.' },
  { group: 'Circuit breaker', key: 'webhooks', testid: 'flag-webhooks', label: 'Webhooks', kind: 'list', hint: 'Comma-separated http:// or https:// URLs told about trips and recoveries.' },
  { group: 'Recovery', key: 'is_recoverable', testid: 'flag-recoverable', label: 'Recover automatically after a trip', kind: 'checkbox' },
  { group: 'Recovery', key: 'circuit_recovery_profile', testid: 'flag-profile', label: 'Recovery profile', kind: 'select', options: [['linear', 'Linear (+ increment per step)'], ['exponential', 'Exponential (× 1 + increment per step)']] },
  { group: 'Recovery', key: 'circuit_recovery_delay', testid: 'flag-delay', label: 'Recovery delay (ms)', kind: 'integer', hint: 'Wait after a trip before recovery starts: 100 to 2147483647.' },
  { group: 'Recovery', key: 'circuit_recovery_rate', testid: 'flag-rate', label: 'Step interval (ms)', kind: 'integer', hint: 'Time between recovery steps: 100 to 2147483647.' },
  { group: 'Recovery', key: 'circuit_initial_recovery_percentage', testid: 'flag-initial', label: 'Initial recovery (%)', kind: 'number', hint: 'First step of recovery: 0–100.' },
  { group: 'Recovery', key: 'circuit_recovery_increment_percentage', testid: 'flag-increment', label: 'Increment (%)', kind: 'number', hint: 'Size of each step: 0.1–100.' },
];

export function fieldControl(f, value) {
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
  const read = () => {
    if (f.kind === 'checkbox') return input.checked;
    if (f.kind === 'number' || f.kind === 'integer') return asNumber(input.value);
    return input.value;
  };
  const setError = (message) => {
    err.textContent = message ?? '';
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  };
  // An error stays until the field is edited: the next save asks the API again.
  input.addEventListener('input', () => { if (err.textContent) setError(''); });
  return { field: f, input, wrap, read, setError };
}

/**
 * A stored value as its form control gives it back: a textarea's value has its line breaks
 * normalized (CRLF and CR become LF), so a description with CRLF would otherwise always look
 * changed, and every save would rewrite it and log an update.
 */
export const asShown = (v) => (typeof v === 'string' ? v.replace(/\r\n?/g, '\n') : v);

/**
 * The flag form (create and edit). Sends the fields as the API reads them and shows the API's
 * message on the field it names; an edit sends only the fields that changed (PATCH is partial),
 * never read-only ones.
 */
export function flagForm({ flag, appId, onSaved, onCancel }) {
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
    const values = Object.fromEntries(controls.map((c) => [c.field.key, c.read()]));
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
