// downshiftarr dashboard. Plain JS, no framework, no build step: it polls the daemon's JSON
// endpoints (/api/dashboard/…) and renders them. Every string from the daemon goes into the
// page as a text node (h() below); nothing is ever parsed as HTML.
'use strict';
(() => {
  const POLL_MS = 3000;
  const DECISIONS_EVERY = 4; // summary polls between two reloads of the decision list
  const CHARTS_MS = 60000;
  const DOWNLOADS_MS = 30000;
  const SVGNS = 'http://www.w3.org/2000/svg';
  const KIND_COLORS = ['pass', 'rewrite', 'switch', 'refuse'];

  const $ = (id) => document.getElementById(id);

  // An element with attributes and children; strings become text nodes.
  function build(doc, tag, attrs, kids) {
    const e = doc(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  const h = (tag, attrs, ...kids) => build((t) => document.createElement(t), tag, attrs, kids);
  const s = (tag, attrs, ...kids) => build((t) => document.createElementNS(SVGNS, t), tag, attrs, kids);

  function fill(el, ...kids) {
    el.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  }

  // ---- talking to the daemon ----

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, method) {
    const post = method === 'POST';
    const res = await fetch(path, {
      method: method || 'GET',
      credentials: 'same-origin',
      cache: 'no-store',
      // The CSRF header: a POST authorized by the session cookie alone needs it.
      headers: post ? { Accept: 'application/json', 'X-Downshiftarr-Action': '1' } : { Accept: 'application/json' },
    });
    if (res.status === 401) {
      location.assign('/login');
      throw new ApiError(401, 'not signed in');
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!res.ok) {
      const msg = (body && (body.message || body.error)) || text.trim() || res.statusText;
      throw new ApiError(res.status, `${path}: ${res.status} ${msg}`);
    }
    return body;
  }

  // ---- words ----

  const PLAY = { direct_play: 'Direct play', direct_stream: 'Direct stream', transcode: 'Transcode' };
  const WHERE = { lan: 'Local', wan: 'Remote' };
  const VERDICT = {
    pass: 'Passed', rewrite: 'Rewritten to 1080p SDR', switch: 'Switched version',
    refuse: 'Refused', exempt: 'Exempt: left alone', none: 'No decision',
  };

  function capital(t) {
    return t ? t[0].toUpperCase() + t.slice(1) : t;
  }

  function num(n) {
    return typeof n === 'number' ? n.toLocaleString() : String(n ?? '—');
  }

  function ago(ms) {
    if (!ms) return '';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }

  function when(v) {
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) return String(v ?? '');
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function stateTag(state) {
    return h('span', { className: `state ${state || ''}` }, state || 'unknown');
  }

  function facts(pairs) {
    const rows = pairs.filter(([, v]) => v !== null && v !== undefined && v !== '');
    return rows.length ? h('dl', { className: 'facts' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])) : null;
  }

  // ---- now playing ----

  function verdict(d) {
    if (!d || !d.kind || d.kind === 'none') {
      return h('p', { className: 'verdict muted' }, 'No decision by downshiftarr for this session.');
    }
    const open = d.decision_id != null ? () => openDetail(d.decision_id) : null;
    return h('div', { className: `verdict kind-${d.kind}`, 'data-kind': d.kind },
      h('p', {}, h('strong', {}, capital(d.label || VERDICT[d.kind] || d.kind)),
        d.reason ? ` — ${d.reason}` : ''),
      d.kind === 'switch' && d.switch_to ? h('p', {}, 'Now playing from: ', h('strong', { className: 'switch-to' }, d.switch_to)) : null,
      d.message ? h('p', {}, 'Message shown to the viewer: ', h('span', { className: 'message' }, `“${d.message}”`)) : null,
      open ? h('button', { type: 'button', className: 'link', onclick: open }, 'Full record') : null);
  }

  function sessionCard(p) {
    const pct = Math.max(0, Math.min(100, Number(p.progress_pct) || 0));
    return h('article', { className: 'card session', 'data-session-key': p.session_key },
      h('div', { className: 'title' }, p.title || 'Untitled'),
      p.version ? h('div', { className: 'muted' }, p.version) : null,
      h('div', { className: 'who' }, [p.user || 'unknown viewer', p.client].filter(Boolean).join(' · ')),
      h('div', { className: 'tags' },
        h('span', { className: 'tag' }, PLAY[p.play] || p.play || 'unknown'),
        p.location ? h('span', { className: 'tag' }, WHERE[p.location] || p.location, p.address ? ` ${p.address}` : '') : null,
        p.state ? h('span', { className: 'tag' }, p.state) : null),
      verdict(p.decision),
      progress(pct));
  }

  // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
  function progress(pct) {
    const bar = h('span', {});
    bar.style.width = `${pct}%`;
    return h('div', { className: 'progress', title: `${pct.toFixed(0)} %` }, bar);
  }

  function renderSessions(list) {
    const el = $('sessions');
    if (!list || !list.length) return fill(el, h('p', { className: 'muted' }, 'Nobody is watching.'));
    fill(el, list.map(sessionCard));
  }

  // ---- jobs ----

  let lastJobs = [];

  function renderJobs(jobs) {
    lastJobs = jobs || [];
    fill($('job-list'), (jobs || []).map((j) => h('article', { className: 'card job', 'data-job': j.name },
      h('h3', {}, j.name, ' ', stateTag(j.state)),
      j.summary ? h('p', {}, j.summary) : null,
      j.last_error ? h('p', { className: 'error' }, 'Last error: ', j.last_error) : null,
      facts((j.facts || []).map((f) => [f.label, f.value])))));
  }

  function renderThrottle(t) {
    const el = $('throttle');
    if (!t || t.state === 'off') {
      return fill(el, h('h3', {}, 'Upload throttle ', stateTag('off')), h('p', { className: 'muted' }, 'The throttle job is not configured.'));
    }
    const head = t.state === 'throttled' ? 'Throttled' : t.state === 'idle' ? 'Not throttling' : t.state;
    fill(el, h('h3', {}, 'Upload throttle ', stateTag(t.state)),
      h('p', { 'data-throttle': t.state }, head, t.since_ms ? ` since ${ago(t.since_ms)}` : ''),
      facts([['Remote streams', num(t.remote_streams)], ['Limit in force', t.state === 'throttled' ? t.limit : null],
        ['Limit when streaming', t.state === 'throttled' ? null : t.limit]]));
  }

  function renderScrobble(sc) {
    const el = $('scrobble');
    if (!sc || sc.state === 'off') {
      return fill(el, h('h3', {}, 'Scrobbling ', stateTag('off')), h('p', { className: 'muted' }, 'The scrobble job is not configured.'));
    }
    const recent = sc.recent || [];
    fill(el, h('h3', {}, 'Scrobbling ', stateTag(sc.state)),
      facts([['Waiting to send', num(sc.outbox)]]),
      recent.length ? h('ul', { className: 'plain' }, recent.map((r) => h('li', {},
        h('strong', {}, r.title || '?'), ` · ${r.user || '?'} · ${r.action || ''}`,
        typeof r.progress === 'number' ? ` at ${r.progress.toFixed(0)} %` : '',
        h('span', { className: 'muted' }, ` · ${ago(r.at_ms)}`))))
        : h('p', { className: 'muted' }, 'No plays sent yet.'));
  }

  // ---- actions ----

  const ACTIONS = [
    { key: 'sync', label: 'Sync library now', path: '/api/sync', ask: 'Start a library index sync now?' },
    { key: 'scrobble_pause', label: 'Pause scrobbling', path: '/api/scrobble/stop', ask: 'Pause scrobbling? Plays are kept and sent after resuming.' },
    { key: 'scrobble_resume', label: 'Resume scrobbling', path: '/api/scrobble/start', ask: 'Resume scrobbling?' },
    { key: 'throttle_restore', label: 'Restore qBittorrent limits', path: '/api/throttle/restore', ask: "Give qBittorrent its own limits back now?" },
  ];
  const buttons = {};

  async function act(path, ask, button) {
    if (!window.confirm(ask)) return;
    const out = $('action-result');
    if (button) button.disabled = true;
    out.className = 'muted';
    out.textContent = 'Working…';
    try {
      const r = await api(path, 'POST');
      out.className = '';
      out.textContent = (r && (r.message || (r.paused === true ? 'Scrobbling paused.' : r.paused === false ? 'Scrobbling resumed.' : null)))
        || (r && r.queued != null ? `Re-evaluation queued (${r.queued}).` : 'Done.');
    } catch (e) {
      out.className = 'error';
      out.textContent = e.message;
    } finally {
      if (button) button.disabled = false;
      poll(true);
    }
  }

  function renderActions(a) {
    const box = $('action-buttons');
    for (const x of ACTIONS) {
      if (!buttons[x.key]) {
        const b = h('button', { type: 'button', 'data-action': x.key }, x.label);
        b.addEventListener('click', () => act(x.path, x.ask, b));
        buttons[x.key] = b;
        box.append(b);
      }
      const on = !!(a && a[x.key]);
      buttons[x.key].disabled = !on;
      buttons[x.key].title = on ? '' : 'Not available now';
    }
  }

  // ---- smart downloads ----

  async function loadDownloads() {
    const el = $('downloads');
    const off = (why) => fill(el, h('h3', {}, 'Smart downloads ', stateTag('off')), h('p', { className: 'muted' }, why));
    let r;
    try {
      r = await api('/api/downloads/decisions?since=7d&limit=20');
    } catch (e) {
      if (e.status === 404) return off('Smart downloads: off.');
      return fill(el, h('h3', {}, 'Smart downloads'), h('p', { className: 'error' }, e.message));
    }
    if (!r || r.enabled === false || r.state === 'off') return off('Smart downloads: off.');
    const list = r.decisions || [];
    if (!list.length) {
      // No decisions: the job is off unless the summary says it runs.
      const job = lastJobs.find((j) => j.name === 'downloads');
      if (!job || job.state === 'off') return off('Smart downloads: off.');
      return fill(el, h('h3', {}, 'Smart downloads ', stateTag(job.state)), h('p', { className: 'muted' }, 'No download decisions in the last 7 days.'));
    }
    fill(el, h('h3', {}, 'Smart downloads'), h('ul', { className: 'plain' }, list.map((d) => {
      const play = d.play || {};
      const v = d.verdict || {};
      const b = h('button', { type: 'button', className: 'link' }, 'Re-evaluate');
      b.addEventListener('click', () => act(`/api/downloads/reevaluate/${encodeURIComponent(d.id)}`,
        `Re-evaluate the download decision for ${play.title || d.id}?`, b));
      return h('li', { 'data-download': d.id },
        h('strong', {}, play.title || '?'), play.year ? ` (${play.year})` : '',
        ` · ${play.user || '?'} · tier `, h('strong', {}, v.tier ?? '?'),
        v.download === true ? ' · download' : v.download === false ? ' · no download' : '',
        d.status ? ` · ${d.status}` : '', d.detail ? ` (${d.detail})` : '',
        d.at_ms ? h('span', { className: 'muted' }, ` · ${ago(d.at_ms)}`) : '',
        (v.reasons || []).length ? h('div', { className: 'muted' }, v.reasons.join('; ')) : null,
        ' ', b);
    })));
  }

  // ---- decisions ----

  let olderLoaded = false;

  function setOptions(select, values) {
    const keep = select.value;
    fill(select, h('option', { value: '' }, 'all'), (values || []).map((v) => h('option', { value: v }, v)));
    select.value = (values || []).includes(keep) ? keep : '';
  }

  function decisionRow(d) {
    const tr = h('tr', { 'data-id': d.id, tabindex: 0, 'data-decision': d.decision },
      h('td', { className: 'when', title: d.at }, when(d.at)),
      h('td', {}, h('span', { className: `badge ${d.decision}` }, d.decision), ' ', h('span', { className: 'muted' }, d.origin)),
      h('td', {}, d.user || '—'),
      h('td', {}, d.reason || ''),
      h('td', { className: 'file' }, d.file || ''),
      h('td', {}, d.outcome || ''));
    tr.addEventListener('click', () => openDetail(d.id));
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') openDetail(d.id); });
    return tr;
  }

  async function loadDecisions(beforeId) {
    const q = new URLSearchParams({ limit: '50' });
    if ($('f-kind').value) q.set('kind', $('f-kind').value);
    if ($('f-user').value) q.set('user', $('f-user').value);
    if (beforeId) q.set('before_id', beforeId);
    const body = $('decision-rows');
    let r;
    try {
      r = await api(`/api/dashboard/decisions?${q}`);
    } catch (e) {
      if (!beforeId) fill(body, h('tr', {}, h('td', { colspan: 6, className: 'error' }, e.message)));
      return;
    }
    setOptions($('f-kind'), r.kinds);
    setOptions($('f-user'), r.users);
    const rows = (r.decisions || []).map(decisionRow);
    if (beforeId) body.append(...rows);
    else fill(body, rows.length ? rows : h('tr', {}, h('td', { colspan: 6, className: 'muted' }, 'No decisions recorded.')));
    const last = (r.decisions || []).at(-1);
    const more = $('more');
    more.hidden = (r.decisions || []).length < 50;
    more.dataset.before = last ? last.id : '';
  }

  function changeList(changes) {
    const at = (c) => ('at' in c ? c.at : c.after + 0.5);
    const sorted = [...changes].sort((a, b) => at(a) - at(b));
    return h('ul', { className: 'plain diff' }, sorted.map((c) => {
      if ('to' in c) return h('li', {}, `token ${c.at}: `, h('del', {}, c.from), ' → ', h('ins', {}, c.to));
      if ('insert' in c) return h('li', {}, `after token ${c.after}: `, h('ins', {}, (c.insert || []).join(' ')));
      return h('li', {}, `token ${c.at} removed: `, h('del', {}, c.from));
    }));
  }

  function streamTable(streams) {
    return h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Stream'), h('th', {}, 'Source'), h('th', {}, 'Plays from'), h('th', {}, 'Language'), h('th', {}, 'Codec'))),
      h('tbody', {}, streams.map((m) => h('tr', {},
        h('td', {}, m.kind ?? ''), h('td', {}, `#${m.from}`), h('td', {}, `#${m.to}`), h('td', {}, m.language || '—'),
        h('td', {}, [m.from_codec, m.to_codec].filter(Boolean).join(' → ') || '—')))));
  }

  async function openDetail(id) {
    const dlg = $('detail');
    const body = $('detail-body');
    fill(body, h('p', { className: 'muted' }, 'Loading…'));
    $('detail-title').textContent = `Decision ${id}`;
    if (!dlg.open) dlg.showModal();
    let r;
    try {
      r = await api(`/api/dashboard/decisions/${encodeURIComponent(id)}`);
    } catch (e) {
      return fill(body, h('p', { className: 'error' }, e.message));
    }
    const rec = r.record || {};
    const sw = rec.switched_to;
    fill(body,
      facts([['Decision', r.decision], ['Reason', r.reason], ['When', when(r.at)], ['From', r.origin],
        ['Viewer', r.user], ['File', r.file], ['Outcome', r.outcome], ['Session', r.session],
        ['Why no switch', rec.no_switch], ['Message shown', rec.message]]),
      sw ? [h('h3', {}, 'Switched to'),
        h('p', {}, h('code', {}, sw.file || ''), sw.height ? ` · ${sw.height}p` : '', sw.dynamic_range ? ` · ${sw.dynamic_range}` : '',
          sw.media_id ? ` · media ${sw.media_id}` : ''),
        (sw.streams || []).length ? h('div', { className: 'scroll' }, streamTable(sw.streams)) : null] : null,
      (rec.changes || []).length ? [h('h3', {}, 'Changed argv tokens'), changeList(rec.changes)] : null,
      (rec.notes || []).length ? [h('h3', {}, 'Notes'), h('ul', { className: 'plain' }, rec.notes.map((n) => h('li', {}, n)))] : null,
      h('details', {}, h('summary', {}, 'Full record'), h('pre', {}, JSON.stringify(rec, null, 2))));
  }

  // ---- charts ----

  function barChart(days, series, opts) {
    const W = opts.wide ? 900 : 300, H = 90, pad = 14;
    const n = days.length || 1;
    const bw = W / n;
    const totals = days.map((_, i) => series.reduce((a, x) => a + (Number(x.values[i]) || 0), 0));
    const max = Math.max(1, ...totals);
    const bars = [];
    days.forEach((day, i) => {
      let y = H - pad;
      for (const x of series) {
        const v = Number(x.values[i]) || 0;
        if (!v) continue;
        const bh = Math.max(1, (v / max) * (H - pad - 4));
        y -= bh;
        bars.push(s('rect', { x: (i * bw + 0.5).toFixed(1), y: y.toFixed(1), width: Math.max(1, bw - 1).toFixed(1), height: bh.toFixed(1), class: `fill-${x.color}` },
          s('title', {}, `${day}: ${num(v)} ${x.name}`)));
      }
    });
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title },
      s('line', { x1: 0, y1: H - pad + 0.5, x2: W, y2: H - pad + 0.5, class: 'axis' }),
      bars,
      s('text', { x: 0, y: H - 2, 'font-size': 9, fill: 'currentColor' }, days[0] || ''),
      s('text', { x: W, y: H - 2, 'font-size': 9, fill: 'currentColor', 'text-anchor': 'end' }, days.at(-1) || ''),
      s('text', { x: 0, y: 9, 'font-size': 9, fill: 'currentColor' }, `max ${num(max)}`));
    const total = totals.reduce((a, b) => a + b, 0);
    return h('figure', { className: `chart${opts.wide ? ' wide' : ''}`, 'data-chart': opts.key },
      h('h3', {}, opts.title), svg,
      series.length > 1 ? h('div', { className: 'legend' }, series.map((x) => h('span', {}, h('i', { className: `fill-${x.color}` }), x.name,
        ` ${num(x.values.reduce((a, b) => a + (Number(b) || 0), 0))}`))) : null,
      h('div', { className: 'total' }, `${num(Math.round(total * 10) / 10)} ${opts.unit} in ${days.length} days`));
  }

  async function loadCharts() {
    let c;
    try {
      c = await api('/api/dashboard/charts?days=30');
    } catch (e) {
      return fill($('chart-list'), h('p', { className: 'error' }, e.message));
    }
    const days = c.days || [];
    const kinds = Object.keys(c.decisions || {});
    const series = kinds.map((k, i) => ({ name: k, values: c.decisions[k] || [], color: KIND_COLORS.includes(k) ? k : KIND_COLORS[i % KIND_COLORS.length] }));
    const one = (key, title, unit) => barChart(days, [{ name: unit, values: c[key] || [], color: 'accent' }], { key, title, unit });
    fill($('chart-list'),
      barChart(days, series, { key: 'decisions', title: 'Decisions per day', unit: 'decisions', wide: true }),
      one('transcodes_prevented', 'Transcodes prevented', 'prevented'),
      one('throttled_hours', 'Upload throttled', 'hours'),
      one('scrobbles_sent', 'Scrobbles sent', 'sent'));
  }

  // ---- the loop ----

  let polls = 0;
  let timer = null;
  let failures = 0;

  function live(ok, text) {
    const el = $('live');
    el.className = `live ${ok ? 'ok' : 'bad'}`;
    el.textContent = text;
  }

  async function poll(now) {
    clearTimeout(timer);
    try {
      const sum = await api('/api/dashboard/summary');
      $('version').textContent = sum.version ? `v${sum.version}` : '';
      renderSessions(sum.now_playing);
      renderThrottle(sum.throttle);
      renderScrobble(sum.scrobble);
      renderJobs(sum.jobs);
      renderActions(sum.actions);
      $('problem').hidden = true;
      live(true, `live · ${new Date(sum.generated_at_ms || Date.now()).toLocaleTimeString()}`);
      failures = 0;
      if (!document.documentElement.dataset.rendered) {
        document.documentElement.dataset.rendered = '1';
        performance.mark('dashboard-rendered');
        loadDownloads(); // after the summary: it tells whether the job runs
      }
      if (!now && ++polls % DECISIONS_EVERY === 0 && !olderLoaded) loadDecisions();
    } catch (e) {
      failures += 1;
      live(false, 'offline');
      const p = $('problem');
      p.textContent = `The daemon did not answer: ${e.message}. Retrying…`;
      p.hidden = false;
    }
    timer = setTimeout(poll, Math.min(POLL_MS * (1 + failures), 15000));
  }

  function start() {
    renderActions(null);
    $('f-kind').addEventListener('change', () => { olderLoaded = false; loadDecisions(); });
    $('f-user').addEventListener('change', () => { olderLoaded = false; loadDecisions(); });
    $('more').addEventListener('click', () => { olderLoaded = true; loadDecisions($('more').dataset.before); });
    poll(true);
    loadDecisions();
    loadCharts();
    setInterval(loadCharts, CHARTS_MS);
    setInterval(loadDownloads, DOWNLOADS_MS);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
