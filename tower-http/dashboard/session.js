// Tower dashboard: signing in and out, on a Tower with admin tokens.

import { h, markReady, setTitle, uid } from './dom.js';
import { api } from './api.js';
import { setBusy, toastError } from './ui.js';
// ===== session =====

/**
 * Shows who is signed in, with a Sign out button, in the top bar; nothing when the server has
 * no admin tokens (everyone is `anonymous` there and there is nothing to sign out of).
 */
export function showUser(who, onSignOut) {
  document.querySelector('[data-testid="session"]')?.remove();
  document.body.dataset.session = who ? 'signed-in' : 'signed-out';
  if (!who?.authentication) return;
  const out = h('button', { type: 'button', class: 'btn small', testid: 'sign-out' }, 'Sign out');
  out.addEventListener('click', async () => {
    setBusy(out, true);
    try {
      await api('DELETE', '/api/session');
      onSignOut();
    } catch (e) {
      toastError(e);
      setBusy(out, false);
    }
  });
  document.querySelector('.topbar-inner').append(h('div', { class: 'session', testid: 'session' },
    h('span', { class: 'session-name', title: `Signed in as ${who.name}` },
      h('span', { class: 'session-label' }, 'Signed in as '),
      h('strong', { testid: 'signed-in-as' }, who.name)),
    out));
}

/** The sign-in screen: an admin token in, a session cookie out; `onSignedIn(who)` after. */
export function signInScreen(main, { expired, onSignedIn }) {
  setTitle('Sign in');
  const headingId = uid('heading');
  const inputId = uid('token');
  const errId = uid('form-error');
  const input = h('input', {
    id: inputId, type: 'password', name: 'token', testid: 'token-input', autocomplete: 'current-password',
    spellcheck: 'false', required: true, autofocus: true, 'aria-describedby': errId,
  });
  const err = h('p', { id: errId, class: 'form-error', testid: 'sign-in-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'btn primary', testid: 'sign-in' }, 'Sign in');
  const showError = (message) => {
    err.textContent = message;
    input.setAttribute('aria-invalid', String(Boolean(message)));
  };
  input.addEventListener('input', () => { if (err.textContent) showError(''); });
  const form = h('form', {
    class: 'signin-form', novalidate: true,
    onsubmit: async (e) => {
      e.preventDefault();
      setBusy(submit, true);
      try {
        const who = await api('POST', '/api/session', { token: input.value });
        input.value = '';
        onSignedIn(who);
      } catch (e2) {
        showError(e2.message);
        input.focus();
      } finally {
        setBusy(submit, false);
      }
    },
  },
  h('div', { class: 'field' },
    h('label', { for: inputId }, 'Admin token'),
    input,
    h('p', { class: 'hint' }, 'The secret of one of the server’s TOWER_ADMIN_TOKENS.')),
  err,
  submit);
  main.replaceChildren(h('div', { class: 'screen' },
    h('section', { class: 'card signin-card', 'aria-labelledby': headingId, testid: 'sign-in-screen' },
      h('h1', { id: headingId, tabindex: '-1' }, 'Sign in to Tower'),
      h('p', { class: 'page-sub' }, expired
        ? 'Your session has ended. Sign in again to go on.'
        : 'This Tower needs an admin token.'),
      form)));
  input.focus();
  markReady();
}
