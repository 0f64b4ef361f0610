// Tower dashboard: The flag page's health panel and its SVG charts.

import { clockFmt, compactFmt, h, icon, numberFmt, pct, s, uid } from './dom.js';
import { api, isAbort } from './api.js';
// ===== health charts =====

export const WINDOWS = [
  { id: '30s', label: '30 s', range: 30_000, bucket: 1_000, unit: 's', ticks: ['30 s ago', '15 s ago', 'now'], per: 'per second' },
  { id: '10m', label: '10 min', range: 600_000, bucket: 10_000, unit: 'm', ticks: ['10 min ago', '5 min ago', 'now'], per: 'per 10 s' },
  { id: '1h', label: '1 h', range: 3_600_000, bucket: 60_000, unit: 'h', ticks: ['60 min ago', '30 min ago', 'now'], per: 'per minute' },
];

/**
 * Success/failure and error-rate charts of one flag, for a chosen window, refetched every bucket
 * width while live. Returns the window buttons and pause button (`controls`), the charts (`el`).
 */
export function healthPanel(flagId) {
  let win = WINDOWS[1];
  let livePolling = true;
  let threshold = null;
  let points = [];
  let timer = null;
  let inFlight = null;
  let started = false;
  let error = null;

  const buttons = WINDOWS.map((w) => h('button', {
    type: 'button', class: 'seg-btn', testid: `window-${w.id}`, 'aria-pressed': String(w === win),
    onclick: () => setWindow(w),
  }, w.label));
  const liveBtn = h('button', { type: 'button', class: 'btn small', testid: 'live-toggle', 'aria-pressed': 'false', onclick: () => setLive(!livePolling) });
  const controls = h('div', { class: 'health-controls' },
    h('div', { class: 'seg', role: 'group', 'aria-label': 'Time window' }, buttons), liveBtn);

  const summary = h('p', { class: 'health-summary' });
  const reqLegend = h('div', { class: 'legend' });
  const errLegend = h('div', { class: 'legend' });
  const reqChart = h('div', { class: 'chart' });
  const errChart = h('div', { class: 'chart' });
  const note = h('p', { class: 'chart-note', role: 'status' });
  const el = h('div', { class: 'health' },
    summary,
    h('div', { class: 'charts', testid: 'health-charts' },
      h('figure', { class: 'chart-fig' }, h('figcaption', null, h('span', { class: 'chart-title' }, 'Requests'), reqLegend), reqChart),
      h('figure', { class: 'chart-fig' }, h('figcaption', null, h('span', { class: 'chart-title' }, 'Error rate'), errLegend), errChart)),
    note);

  function setWindow(w) {
    win = w;
    for (const [i, b] of buttons.entries()) b.setAttribute('aria-pressed', String(WINDOWS[i] === w));
    points = [];
    draw();
    if (started) {
      fetchNow();
      schedule();
    }
  }

  function setLive(on) {
    livePolling = on;
    liveBtn.replaceChildren(icon(on ? 'pause' : 'play'), on ? 'Pause' : 'Resume');
    liveBtn.setAttribute('aria-pressed', String(!on));
    liveBtn.setAttribute('aria-label', on ? 'Pause live updates of the charts' : 'Resume live updates of the charts');
    if (started) {
      if (on) fetchNow();
      schedule();
    }
    drawNote();
  }

  const onVisible = () => { if (!document.hidden && started && livePolling) fetchNow(); };
  document.addEventListener('visibilitychange', onVisible);

  function schedule() {
    clearInterval(timer);
    timer = livePolling && started ? setInterval(() => { if (!document.hidden) fetchNow(); }, win.bucket) : null;
  }

  async function fetchNow() {
    if (inFlight) inFlight.abort();
    const ctl = (inFlight = new AbortController());
    const w = win;
    try {
      const data = await api('GET', `/api/flags/${flagId}/timeseries?timeRange=${w.range}&timeBucket=${w.bucket}`, undefined, ctl.signal);
      if (w !== win) return;
      points = data;
      error = null;
      draw();
    } catch (e) {
      if (isAbort(e)) return;
      error = e.message;
      drawNote();
    } finally {
      if (inFlight === ctl) inFlight = null;
    }
  }

  function drawNote() {
    note.textContent = error
      ? `Health data unavailable: ${error}`
      : livePolling ? `Live: refreshed every ${win.bucket / 1000} s.` : 'Paused.';
    note.classList.toggle('is-error', Boolean(error));
  }

  function draw() {
    const ok = points.reduce((n, p) => n + p.success, 0);
    const bad = points.reduce((n, p) => n + p.failure, 0);
    const rate = ok + bad ? (bad * 100) / (ok + bad) : null;
    summary.replaceChildren(
      h('span', { class: 'muted' }, `Last ${win.label}: `),
      h('span', { class: 'num' }, `${numberFmt.format(ok)} successful`), ' · ',
      h('span', { class: 'num' }, `${numberFmt.format(bad)} failed`), ' · ',
      h('span', { class: 'num' }, rate === null ? 'no traffic' : `${rate.toFixed(1)}% errors`));
    reqLegend.replaceChildren(
      h('span', { class: 'key key-success' }, 'Success'),
      h('span', { class: 'key key-failure' }, 'Failure'));
    errLegend.replaceChildren(
      h('span', { class: 'key key-rate' }, 'Error rate'),
      h('span', { class: 'key key-threshold' }, threshold ? `Threshold ${pct(threshold)}` : 'Threshold off'));
    reqChart.replaceChildren(requestsChart(points, win, ok, bad));
    errChart.replaceChildren(errorRateChart(points, win, threshold, rate));
    drawNote();
  }

  setLive(true);
  draw();
  return {
    el,
    controls,
    start() {
      started = true;
      fetchNow();
      schedule();
    },
    /** Re-reads the counts now (when live). */
    refresh() {
      if (started && livePolling) fetchNow();
    },
    setThreshold(t) {
      if (t === threshold) return;
      threshold = t;
      draw();
    },
    destroy() {
      started = false;
      clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisible);
      inFlight?.abort();
    },
  };
}

export const CHART = { w: 560, h: 190, left: 44, right: 10, top: 12, bottom: 26 };

export function niceMax(v) {
  if (v <= 2) return 2;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Axes, grid and labels shared by both charts; returns the SVG and a y→pixel mapper. */
export function chartFrame({ title, desc, yMax, yFormat, win }) {
  const { w, h: H, left, right, top, bottom } = CHART;
  const plotH = H - top - bottom;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const titleId = uid('chart-title');
  const descId = uid('chart-desc');
  const svg = s('svg', { viewBox: `0 0 ${w} ${H}`, class: 'chart-svg', role: 'img', 'aria-labelledby': `${titleId} ${descId}` },
    s('title', { id: titleId }, title),
    s('desc', { id: descId }, desc));
  const grid = s('g', { class: 'grid' });
  for (const t of [0, 0.5, 1]) {
    const v = yMax * t;
    grid.append(
      s('line', { x1: left, x2: w - right, y1: y(v), y2: y(v), class: t === 0 ? 'axis' : 'gridline' }),
      s('text', { x: left - 8, y: y(v) + 4, 'text-anchor': 'end', class: 'tick' }, yFormat(v)));
  }
  const xs = [left, left + (w - left - right) / 2, w - right];
  const anchors = ['start', 'middle', 'end'];
  win.ticks.forEach((label, i) => grid.append(s('text', { x: xs[i], y: H - 8, 'text-anchor': anchors[i], class: 'tick' }, label)));
  svg.append(grid);
  return { svg, y, plotW: w - left - right };
}

export function requestsChart(points, win, ok, bad) {
  const n = points.length || Math.ceil(win.range / win.bucket);
  const peak = points.reduce((m, p) => Math.max(m, p.success + p.failure), 0);
  const yMax = niceMax(peak);
  const { svg, y, plotW } = chartFrame({
    title: `Requests over the last ${win.label}, ${win.per}`,
    desc: `${numberFmt.format(ok)} successful and ${numberFmt.format(bad)} failed requests; peak ${numberFmt.format(peak)} ${win.per}.`,
    yMax, yFormat: (v) => compactFmt.format(v), win,
  });
  const bw = plotW / n;
  const barW = Math.max(1, bw * 0.72);
  const bars = s('g', { class: 'bars' });
  points.forEach((p, i) => {
    const x = CHART.left + i * bw + (bw - barW) / 2;
    const base = y(0);
    const ys = y(p.success);
    const yf = y(p.success + p.failure);
    const g = s('g', null, s('title', null, `${clockFmt.format(new Date(p.timestamp))}: ${p.success} successful, ${p.failure} failed`));
    if (p.success) g.append(s('rect', { x, y: ys, width: barW, height: base - ys, class: 'bar-success' }));
    if (p.failure) g.append(s('rect', { x, y: yf, width: barW, height: ys - yf, class: 'bar-failure' }));
    if (p.success || p.failure) bars.append(g);
  });
  svg.append(s('defs', null,
    s('pattern', { id: 'hatch-failure', width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      s('rect', { width: 6, height: 6, class: 'hatch-bg' }),
      s('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }))), bars);
  if (!peak) svg.append(s('text', { x: CHART.left + plotW / 2, y: CHART.top + 70, 'text-anchor': 'middle', class: 'empty-label' }, 'No requests reported'));
  return svg;
}

export function errorRateChart(points, win, threshold, rate) {
  const n = points.length || Math.ceil(win.range / win.bucket);
  const latest = [...points].reverse().find((p) => p.success + p.failure);
  const latestRate = latest ? (latest.failure * 100) / (latest.success + latest.failure) : null;
  const { svg, y, plotW } = chartFrame({
    title: `Error rate over the last ${win.label}`,
    desc: `${rate === null ? 'No traffic' : `${rate.toFixed(1)}% of requests failed`}${latestRate === null ? '' : `; latest ${latestRate.toFixed(1)}%`}; threshold ${threshold ? pct(threshold) : 'off'}.`,
    yMax: 100, yFormat: (v) => `${v}%`, win,
  });
  const bw = plotW / n;
  let d = '';
  let pen = false;
  const dots = s('g', { class: 'dots' });
  points.forEach((p, i) => {
    const total = p.success + p.failure;
    if (!total) {
      pen = false;
      return;
    }
    const r = (p.failure * 100) / total;
    const x = CHART.left + i * bw + bw / 2;
    d += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y(r).toFixed(1)}`;
    pen = true;
    dots.append(s('circle', { cx: x.toFixed(1), cy: y(r).toFixed(1), r: 2.5, class: 'dot' },
      s('title', null, `${clockFmt.format(new Date(p.timestamp))}: ${r.toFixed(1)}% errors (${p.failure} of ${total})`)));
  });
  if (threshold) {
    const ty = y(threshold);
    svg.append(
      s('line', { x1: CHART.left, x2: CHART.w - CHART.right, y1: ty, y2: ty, class: 'threshold' }),
      s('text', { x: CHART.w - CHART.right - 4, y: ty - 5, 'text-anchor': 'end', class: 'threshold-label' }, `threshold ${pct(threshold)}`));
  }
  svg.append(s('path', { d, class: 'rate-line' }), dots);
  if (rate === null) svg.append(s('text', { x: CHART.left + plotW / 2, y: CHART.top + 70, 'text-anchor': 'middle', class: 'empty-label' }, 'No requests reported'));
  return svg;
}
