// Tower dashboard: The entry point: page error capture, the router, the not-found screen and start-up.

import { h, setTitle } from './dom.js';
import { api } from './api.js';
import { notFoundCard } from './ui.js';
import { live } from './live.js';
import { appsScreen } from './screen-apps.js';
import { appScreen } from './screen-app.js';
import { flagScreen } from './screen-flag.js';
import { logsScreen } from './screen-logs.js';
import { sdkKeyScreen } from './screen-sdk-key.js';
import { showUser, signInScreen } from './session.js';
// ===== page errors =====
// Uncaught errors, unhandled rejections and CSP violations are kept in window.__towerErrors for
// browser tests to read (failed API calls are handled and shown, so they are not errors).

export const pageErrors = (window.__towerErrors = []);
window.addEventListener('error', (e) => pageErrors.push(`${e.message} (${e.filename}:${e.lineno})`));
window.addEventListener('unhandledrejection', (e) => pageErrors.push(`unhandled rejection: ${e.reason?.stack ?? e.reason}`));
document.addEventListener('securitypolicyviolation', (e) => pageErrors.push(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));

// ===== not found screen =====

export function notFoundScreen(main) {
  setTitle('Not found');
  main.append(notFoundCard('Page not found', 'There is nothing at this address. It may have moved, or the link is wrong.'));
}

// ===== router =====

export const ROUTES = [
  { re: /^\/$/, screen: appsScreen, nav: 'apps' },
  { re: /^\/apps\/(\d+)$/, screen: appScreen, nav: 'apps' },
  { re: /^\/flags\/(\d+)$/, screen: flagScreen, nav: 'apps' },
  { re: /^\/logs$/, screen: logsScreen, nav: 'logs' },
  { re: /^\/sdk-key$/, screen: sdkKeyScreen, nav: 'sdk-key' },
];

/** What a screen gets besides its element: api() bound to its lifetime. */
export class ScreenContext {
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

export let current = null;

export function matchRoute(pathname) {
  const path = pathname.length > 1 ? pathname.replace(/\/+$/, '') : pathname;
  for (const route of ROUTES) {
    const m = route.re.exec(path);
    if (m) return { route, params: m.slice(1) };
  }
  return { route: null, params: [] };
}

export function render({ focus = false } = {}) {
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

export function navigate(href, { replace = false, state = null } = {}) {
  const url = new URL(href, location.href);
  if (url.href === location.href && !state) return;
  history[replace ? 'replaceState' : 'pushState'](state, '', url);
  if (!signedOut) render({ focus: true });
}

/** Same-origin link clicks become client-side navigations. */
export function interceptLinks(e) {
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

export async function start() {
  history.scrollRestoration = 'manual';
  document.addEventListener('click', interceptLinks);
  window.addEventListener('popstate', () => { if (!signedOut) render({ focus: true }); });
  live.handlers.add((type, data) => {
    if (type === 'hello' || type === 'resync') refreshScreen();
    else current?.screen.onEvent?.(type, data);
  });
  // A request refused for want of a session (it expired, or the tokens changed): sign in again.
  window.addEventListener('tower:unauthorized', () => { if (!signedOut) signIn({ expired: true }); });
  // Give the stream's connection (and the lead) back when the page goes away: an abandoned
  // stream would hold one of the browser's six connections to the server. A page restored from
  // the back/forward cache starts again, and re-reads what it shows: it heard nothing while away.
  window.addEventListener('pagehide', () => live.stop());
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted || signedOut) return;
    live.start();
    refreshScreen();
  });
  let who = { authentication: false };
  try {
    who = await api('GET', '/api/session');
  } catch (e) {
    if (e.status === 401) {
      signIn({ expired: false });
      return;
    }
    // Unreachable or failing: the screen says so when its own reads fail.
  }
  enter(who, { focus: false });
}

// ===== signing in =====

let signedOut = false;

/** Shows the signed-in name and starts the dashboard. */
function enter(who, { focus = true } = {}) {
  signedOut = false;
  showUser(who, () => signIn({ expired: false }));
  render({ focus });
  live.start();
}

/** Stops everything that needs a session and shows the sign-in screen. */
function signIn({ expired }) {
  signedOut = true;
  live.stop();
  if (current) {
    current.ctx.dispose();
    current.screen.destroy?.();
    current = null;
  }
  for (const dlg of document.querySelectorAll('dialog[open]')) dlg.close();
  showUser(null);
  signInScreen(document.getElementById('main'), { expired, onSignedIn: enter });
}

/** Changes may have been missed: re-read, after what is loading now (not alongside it). */
export function refreshScreen() {
  const screen = current;
  screen?.ctx.idle().then(() => { if (current === screen) screen.screen.refresh?.(); });
}

start();
