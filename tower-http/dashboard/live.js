// Tower dashboard: The live events hub: one stream per browser, shared by its tabs.

import { isAbort } from './api.js';
// ===== live events hub =====

/**
 * The live events hub. One browser tab, the leader (chosen with a Web Lock), holds the
 * EventSource on /api/stream and relays its events to the dashboard's other tabs over a
 * BroadcastChannel: browsers allow six connections per server over HTTP/1.1, and a stream per
 * tab would use them up from the seventh tab on. When the leader goes away another tab takes
 * the lock and opens the stream; its `hello` makes every tab re-read. Where Web Locks are
 * missing (plain http:// on another host is not a secure context), each tab has its own stream.
 *
 * Screens receive `ruleset`, `log` and `app` events; `hello` (each (re)connection) and `resync`
 * make the current screen refetch, since events may have been missed.
 */
export const live = {
  source: null,
  retryMs: 1000,
  handlers: new Set(),
  status: 'connecting',
  channel: null,
  leader: false,
  release: null,
  claim: null, // the AbortController of our request for the lock, queued or held

  start() {
    if (!navigator.locks || typeof BroadcastChannel !== 'function') {
      this.leader = true;
      this.connect();
      return;
    }
    if (!this.channel) {
      this.channel = new BroadcastChannel('tower-live');
      this.channel.onmessage = ({ data: m }) => {
        if (m.kind === 'ask') {
          if (this.leader) this.channel.postMessage({ kind: 'status', status: this.status });
        } else if (!this.leader) {
          if (m.kind === 'status') this.setStatus(m.status);
          else if (m.kind === 'event') this.dispatch(m.type, m.data);
        }
      };
    }
    this.setStatus('connecting');
    this.channel.postMessage({ kind: 'ask' });
    this.claimLead();
  },

  /**
   * Queues for the lock; holding it makes this tab the leader until stop(). One request at a
   * time (a second, once granted, would open a second stream from this tab), and stop()
   * withdraws one still queued, so a page in the back/forward cache never takes the lead.
   */
  claimLead() {
    if (this.claim) return;
    const claim = (this.claim = new AbortController());
    navigator.locks.request('tower-live', { signal: claim.signal }, () => {
      // Granted just as stop() ran: give it straight back.
      if (claim.signal.aborted) return undefined;
      return new Promise((resolve) => {
        this.release = resolve;
        this.leader = true;
        this.connect();
      });
    }).catch((e) => {
      if (!isAbort(e)) throw e;
    }).finally(() => {
      if (this.claim === claim) this.claim = null;
    });
  },

  connect() {
    this.setStatus('connecting');
    const es = new EventSource('/api/stream');
    this.source = es;
    es.addEventListener('open', () => {
      this.retryMs = 1000;
      this.setStatus('live');
    });
    es.addEventListener('error', () => {
      if (this.source !== es) return;
      this.setStatus('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (or is gone): EventSource gives up, so retry ourselves.
        setTimeout(() => { if (this.source === es) this.connect(); }, this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, 30_000);
      }
    });
    for (const type of ['hello', 'resync', 'ruleset', 'log', 'app']) {
      es.addEventListener(type, (e) => {
        let data = {};
        try {
          data = e.data ? JSON.parse(e.data) : {};
        } catch {
          return;
        }
        this.channel?.postMessage({ kind: 'event', type, data });
        this.dispatch(type, data);
      });
    }
  },

  dispatch(type, data) {
    if (type === 'hello') this.setStatus('live');
    for (const fn of this.handlers) fn(type, data);
  },

  /** Closes the stream and hands the lead to another tab (the page is going away). */
  stop() {
    this.claim?.abort();
    this.claim = null;
    this.source?.close();
    this.source = null;
    this.leader = false;
    this.release?.();
    this.release = null;
  },

  setStatus(status) {
    this.status = status;
    if (this.leader) this.channel?.postMessage({ kind: 'status', status });
    const el = document.querySelector('[data-testid="live-status"]');
    if (!el) return;
    const text = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…' }[status];
    el.dataset.state = status;
    el.querySelector('.live-text').textContent = text;
    el.title = status === 'live'
      ? 'Receiving changes as they happen'
      : 'Live updates are interrupted; the page catches up when the connection is back';
  },
};
