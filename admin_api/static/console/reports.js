// The console's Reports page, for supervisors, admins and owners: how the agents and groups performed
// and what the customers asked for, over a period and filters. It reads the reports API (docs/reports.md,
// docs/api.md): GET /api/v1/reports/agents, /groups and /demand with the same query, and downloads each
// as .xlsx (format=xlsx). Every number shown is the API's, formatted (never recomputed here): the tiles
// are the totals, the tables its rows (by name), the charts its demand series and the status share.
// Charts are drawn by Chart.js (web/static/vendor/chart.umd.js, its UMD build, vendored from npm by
// refresh.sh), loaded on the first visit of the page only. Each figure also carries its raw value in a
// data-value attribute (and each chart its series in data-values), and the page the query it asked for
// (data-want) and the one it shows (data-query): what tests compare with the API.
// The caller hands in what it shares: the HTTP helper, a blob-URL fetcher for files that need the
// agent's token, htm's html, the words (t), the language, and the agents and groups (for the filters).

import { useEffect, useRef, useState } from '/vendor/hooks.mjs';

const CHANNELS = ['webchat', 'email', 'wechat', 'xmpp'];
const SHARE_STATUSES = ['new', 'open', 'pending', 'solved'];
const QUICK = [7, 30, 90];
const KINDS = ['agents', 'groups', 'demand'];
// Colours that stay apart for the common kinds of colour blindness (Okabe-Ito).
const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#f0e442', '#000000'];
const STATUS_COLOURS = { new: '#56b4e9', open: '#0072b2', pending: '#e69f00', solved: '#009e73' };
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif';

// ---- numbers as people read them ---------------------------------------------------------------------
// A duration in seconds as "45 s", "12 min", "1 h 05 min" or "2 d 03 h" (null: nothing to measure).
export function duration(seconds, t) {
  if (seconds == null) return '—';
  const s = Math.round(seconds);
  if (s < 60) return t('report.dur_s', { s });
  const m = Math.round(s / 60);
  if (m < 60) return t('report.dur_min', { m });
  const h = Math.floor(m / 60);
  if (h < 24) return t('report.dur_h_min', { h, m: String(m % 60).padStart(2, '0') });
  return t('report.dur_d_h', { d: Math.floor(h / 24), h: String(h % 24).padStart(2, '0') });
}

const count = (n, lang) => (n == null ? '—' : new Intl.NumberFormat(lang).format(n));
const share = (x, lang) => (x == null ? '—'
  : new Intl.NumberFormat(lang, { style: 'percent', maximumFractionDigits: 1 }).format(x));
const rating = (x, lang) => (x == null ? '—'
  : new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(x));

// ---- dates: whole days in the tenant's reporting time zone (the report says which) -------------------
function today(timezone) {
  // en-CA writes dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat('en-CA', { timeZone: timezone || 'UTC', year: 'numeric', month: '2-digit', day: '2-digit' })
    .format(new Date());
}

function minusDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() - n);
  return d.toISOString().slice(0, 10);
}

const dayLabel = (day, lang) => new Intl.DateTimeFormat(lang, { month: 'numeric', day: 'numeric', timeZone: 'UTC' })
  .format(new Date(`${day}T00:00:00Z`));
// Monday first, as the API's by_weekday: 2024-01-01 was a Monday.
const weekdays = (lang) => [0, 1, 2, 3, 4, 5, 6].map((i) => new Intl.DateTimeFormat(lang, { weekday: 'short', timeZone: 'UTC' })
  .format(new Date(Date.UTC(2024, 0, 1 + i))));

export function reportQuery(filters, format) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(filters)) if (value !== '' && value != null) q.set(key, String(value).trim());
  if (format) q.set('format', format);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---- the chart library, loaded once, when first needed ------------------------------------------------
let chartLib = null;
function loadCharts() {
  if (!chartLib) {
    // The UMD build, evaluated as a module, sets globalThis.Chart.
    chartLib = import('/vendor/chart.umd.js').then(() => {
      const { Chart } = globalThis;
      Chart.defaults.font.family = FONT;
      Chart.defaults.color = '#59636e';
      Chart.defaults.animation = false;
      return Chart;
    });
  }
  return chartLib;
}

// One chart: a canvas in a box the chart fills (it resizes with it); labels and values are the
// series; the chart is drawn anew when they or the language change.
function ChartBox({ html, t, id, title, type, labels, values, colours, horizontal = false, lang }) {
  const canvas = useRef(null);
  const [failed, setFailed] = useState(false);
  const key = JSON.stringify([type, labels, values, lang]);
  useEffect(() => {
    let chart = null;
    let gone = false;
    loadCharts().then((Chart) => {
      if (gone || !canvas.current) return;
      const round = type === 'doughnut';
      chart = new Chart(canvas.current, {
        type,
        data: { labels, datasets: [{ label: title, data: values, backgroundColor: colours || PALETTE[0],
          borderColor: round ? '#fff' : (colours || PALETTE[0]), borderWidth: round ? 2 : 1,
          tension: 0, pointRadius: type === 'line' ? 2 : 0, fill: false }] },
        options: {
          locale: lang,
          responsive: true,
          maintainAspectRatio: false,
          indexAxis: horizontal ? 'y' : 'x',
          plugins: {
            legend: { display: round, position: 'bottom' },
            tooltip: round ? { callbacks: { label: (c) => `${c.label}: ${share(c.parsed, lang)}` } } : {},
          },
          scales: round ? {} : {
            [horizontal ? 'x' : 'y']: { beginAtZero: true, ticks: { precision: 0 } },
            [horizontal ? 'y' : 'x']: { ticks: { autoSkip: true, autoSkipPadding: 12, maxRotation: 0 }, grid: { display: false } },
          },
        },
      });
    }).catch(() => { if (!gone) setFailed(true); });
    return () => { gone = true; if (chart) chart.destroy(); };
  }, [key]);
  return html`
    <figure class="report-chart" id=${id}>
      <figcaption>${title}</figcaption>
      <div class="chart-box">
        <canvas ref=${canvas} role="img" aria-label=${title} data-labels=${JSON.stringify(labels)}
          data-values=${JSON.stringify(values)}></canvas>
      </div>
      ${failed && html`<p class="error">${t('report.chart_failed')}</p>`}
    </figure>`;
}

// ---- the tables: one row per agent or group, the contract's metrics, by name ---------------------------
// [key, heading, value (raw, for data-value), text].
function columns(t, lang) {
  const counted = (key) => [key, t(`report.col_${key}`), (m) => m[key], (m) => count(m[key], lang)];
  const timed = (key, metric, field) => [key, t(`report.col_${key}`), (m) => m[metric][field],
    (m) => duration(m[metric][field], t)];
  return [
    counted('received'), counted('assigned'), counted('solved'), counted('transferred'),
    ['reopen_rate', t('report.col_reopen_rate'), (m) => m.reopen_rate, (m) => share(m.reopen_rate, lang)],
    timed('first_response', 'first_response', 'mean'),
    timed('first_response_business', 'first_response', 'mean_business'),
    timed('next_response', 'next_response', 'mean'),
    timed('resolution', 'resolution', 'mean'),
    timed('resolution_business', 'resolution', 'mean_business'),
    timed('handle', 'handle', 'mean'),
    ['csat', t('report.col_csat'), (m) => m.csat.mean, (m) => rating(m.csat.mean, lang)],
    ['sla_breaches', t('report.col_sla_breaches'), (m) => sum(m.sla_breaches), (m) => count(sum(m.sla_breaches), lang)],
  ];
}

const sum = (o) => (o ? Object.values(o).reduce((a, b) => a + b, 0) : 0);

function MetricsTable({ html, t, lang, id, heading, rows, totals }) {
  const cols = columns(t, lang);
  const cells = (m) => cols.map(([key, , value, text]) => html`<td key=${key} data-col=${key}
    data-value=${JSON.stringify(value(m) ?? null)}>${text(m)}</td>`);
  return html`
    <div class="table-scroll">
      <table id=${id} class="report-table">
        <thead><tr><th scope="col">${heading}</th>${cols.map(([key, label]) => html`<th key=${key} scope="col">${label}</th>`)}</tr></thead>
        <tbody>${rows.map((r) => html`<tr key=${r.name} data-row=${r.name}><th scope="row">${r.name}</th>${cells(r.metrics)}</tr>`)}</tbody>
        <tfoot><tr data-row="__total"><th scope="row">${t('report.total')}</th>${cells(totals)}</tr></tfoot>
      </table>
    </div>`;
}

// ---- the tiles: the period's totals ------------------------------------------------------------------
function Tiles({ html, t, lang, totals }) {
  const m = totals;
  const tiles = [
    ['received', m.received, count(m.received, lang), ''],
    ['solved', m.solved, count(m.solved, lang), ''],
    ['first_response', m.first_response.mean, duration(m.first_response.mean, t),
      t('report.n_tickets', { n: count(m.first_response.count, lang) })],
    ['first_response_business', m.first_response.mean_business, duration(m.first_response.mean_business, t),
      t('report.business_note')],
    ['resolution', m.resolution.mean, duration(m.resolution.mean, t),
      t('report.in_business', { d: duration(m.resolution.mean_business, t) })],
    ['reopen_rate', m.reopen_rate, share(m.reopen_rate, lang), t('report.n_reopened', { n: count(m.reopened, lang) })],
    ['csat', m.csat.mean, m.csat.mean == null ? '—' : t('report.of_five', { x: rating(m.csat.mean, lang) }),
      m.csat.count ? t('report.csat_note', { n: count(m.csat.count, lang), pct: share(m.csat.satisfied, lang) })
        : t('report.no_ratings')],
  ];
  return html`
    <div id="report-tiles" class="figures">
      ${tiles.map(([key, raw, text, note]) => html`
        <div class="figure" key=${key} data-tile=${key}>
          <span class="figure-label">${t(`report.tile_${key}`)}</span>
          <span class="figure-value" data-value=${JSON.stringify(raw ?? null)}>${text}</span>
          <span class="figure-note">${note}</span>
        </div>`)}
    </div>`;
}

// ---- the page ----------------------------------------------------------------------------------------
const NO_FILTERS = { from: '', to: '', channel: '', group_id: '', agent_id: '', tag: '' };

export function ReportsPage({ api, blobUrl, html, t, lang, agents, groups, onClose }) {
  const [filters, setFilters] = useState(NO_FILTERS);
  const [data, setData] = useState(null);     // {agents, groups, demand, query}: the three reports, and for what
  const [error, setError] = useState(null);   // {offline: bool, text}
  const [busy, setBusy] = useState(false);
  const [downloading, setDownloading] = useState('');
  // The tag as it is being typed; it filters once entered (Enter, or leaving the field).
  const [tag, setTag] = useState('');
  const query = reportQuery(filters);
  useEffect(() => {
    let stale = false;
    setBusy(true);
    Promise.all(KINDS.map((k) => api('GET', `/api/v1/reports/${k}${query}`)))
      .then((replies) => {
        if (stale) return;
        const [a, g, d] = replies.map((r) => r.report);
        setData({ agents: a, groups: g, demand: d, query });
        setError(null);
      })
      .catch((err) => {
        if (stale) return;
        setError({ offline: err.status === 503 || err.code === 'subsystem_offline', text: err.message });
      })
      .finally(() => { if (!stale) setBusy(false); });
    return () => { stale = true; };
  }, [query]);

  // Updates from the latest filters, not the ones of the last drawing (two changes in a row keep both).
  const set = (key) => (e) => { const { value } = e.target; setFilters((f) => ({ ...f, [key]: value })); };
  // Until a period is chosen, the form shows the one the server chose (its default, in the tenant's
  // time zone), without asking again.
  const period = data ? data.agents.period : { from: '', to: '', timezone: 'UTC' };
  const from = filters.from || period.from;
  const to = filters.to || period.to;
  const timezone = period.timezone;
  const quick = (n) => {
    const to = today(timezone);
    setFilters((f) => ({ ...f, from: minusDays(to, n - 1), to }));
  };
  async function download(kind) {
    setDownloading(kind);
    try {
      const url = await blobUrl(`/api/v1/reports/${kind}${reportQuery({ ...filters, from, to }, 'xlsx')}`);
      const a = document.createElement('a');
      a.href = url;
      a.download = `report-${kind}-${from}-${to}.xlsx`;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      setError({ offline: false, text: err.message });
    } finally {
      setDownloading('');
    }
  }

  const any = html`<option value="">${t('filters.any')}</option>`;
  const byName = (a, b) => String(a.name || '').localeCompare(String(b.name || ''), lang);
  const days = data ? data.demand.by_day : [];
  const share_ = data ? data.agents.totals.status_share : null;
  return html`
    <main id="reports-page" aria-label=${t('report.title')} aria-busy=${busy} data-want=${query}
      data-query=${data ? data.query : null}>
      <div class="admin-head">
        <button id="reports-close" type="button" class="back-always" onClick=${onClose}>‹ ${t('admin.back')}</button>
        <h2>${t('report.title')}</h2>
        ${data && html`<span id="report-period" class="hint">${t('report.period', {
          from: data.agents.period.from, to: data.agents.period.to, tz: data.agents.period.timezone })}</span>`}
      </div>
      <form id="report-filters" class="report-filters" onSubmit=${(e) => e.preventDefault()}>
        <label>${t('report.from')}<input id="report-from" type="date" value=${from} max=${to || undefined}
          onChange=${set('from')} /></label>
        <label>${t('report.to')}<input id="report-to" type="date" value=${to} min=${from || undefined}
          onChange=${set('to')} /></label>
        <div class="quick" role="group" aria-label=${t('report.quick')}>
          ${QUICK.map((n) => html`<button type="button" key=${n} data-days=${n} onClick=${() => quick(n)}>
            ${t('report.last_days', { n })}</button>`)}
        </div>
        <label>${t('filters.channel')}<select id="report-channel" value=${filters.channel} onChange=${set('channel')}>
          ${any}${CHANNELS.map((c) => html`<option key=${c} value=${c}>${t(`channel.${c}`)}</option>`)}</select></label>
        <label>${t('filters.group')}<select id="report-group" value=${filters.group_id} onChange=${set('group_id')}>
          ${any}${[...groups].sort(byName).map((g) => html`<option key=${g.id} value=${String(g.id)}>${g.name}</option>`)}</select></label>
        <label>${t('report.agent')}<select id="report-agent" value=${filters.agent_id} onChange=${set('agent_id')}>
          ${any}${[...agents].sort(byName).map((a) => html`<option key=${a.id} value=${String(a.id)}>${a.name || a.email}</option>`)}</select></label>
        <label>${t('filters.tag')}<input id="report-tag" list="report-tags" value=${tag} placeholder=${t('filters.any')}
          onInput=${(e) => setTag(e.target.value)} onChange=${set('tag')}
          onKeyDown=${(e) => { if (e.key === 'Enter') set('tag')(e); }} />
          <datalist id="report-tags">${(data ? data.demand.by_tag : []).map((x) => html`<option key=${x.tag} value=${x.tag} />`)}</datalist></label>
        <button id="report-clear" type="button" onClick=${() => { setTag(''); setFilters((f) => ({ ...NO_FILTERS, from: f.from, to: f.to })); }}>
          ${t('filters.clear')}</button>
      </form>
      ${error && error.offline && html`<p id="reports-offline" class="notice" role="alert">${t('report.offline')}</p>`}
      ${error && !error.offline && html`<p id="reports-error" class="error" role="alert">${error.text}</p>`}
      ${!data && !error && html`<p class="empty">${t('ticket.loading')}</p>`}
      ${data && !(error && error.offline) && html`
        <section class="report-body">
          <${Tiles} html=${html} t=${t} lang=${lang} totals=${data.agents.totals} />
          <div class="report-charts">
            <${ChartBox} html=${html} t=${t} lang=${lang} id="chart-by-day" type="line" title=${t('report.chart_by_day')}
              labels=${days.map((d) => dayLabel(d.date, lang))} values=${days.map((d) => d.received)} />
            <${ChartBox} html=${html} t=${t} lang=${lang} id="chart-by-hour" type="bar" title=${t('report.chart_by_hour')}
              labels=${data.demand.by_hour.map((_, h) => String(h))} values=${data.demand.by_hour} />
            <${ChartBox} html=${html} t=${t} lang=${lang} id="chart-by-weekday" type="bar" title=${t('report.chart_by_weekday')}
              labels=${weekdays(lang)} values=${data.demand.by_weekday} />
            <${ChartBox} html=${html} t=${t} lang=${lang} id="chart-by-channel" type="bar" horizontal=${true}
              title=${t('report.chart_by_channel')} colours=${PALETTE[1]}
              labels=${data.demand.by_channel.map((c) => (CHANNELS.includes(c.channel) || c.channel === 'manual' ? t(`channel.${c.channel}`) : c.channel))}
              values=${data.demand.by_channel.map((c) => c.received)} />
            <${ChartBox} html=${html} t=${t} lang=${lang} id="chart-status-share" type="doughnut" title=${t('report.chart_status_share')}
              labels=${SHARE_STATUSES.map((s) => t(`status.${s}`))} values=${SHARE_STATUSES.map((s) => share_[s])}
              colours=${SHARE_STATUSES.map((s) => STATUS_COLOURS[s])} />
          </div>
          <h3>${t('report.by_agent')}</h3>
          ${data.agents.rows.length ? html`<${MetricsTable} html=${html} t=${t} lang=${lang} id="report-agents"
            heading=${t('report.agent')} totals=${data.agents.totals}
            rows=${data.agents.rows.map((r) => ({ name: r.agent_name, metrics: r.metrics }))} />`
            : html`<p class="empty">${t('report.no_rows')}</p>`}
          <h3>${t('report.by_group')}</h3>
          ${data.groups.rows.length ? html`<${MetricsTable} html=${html} t=${t} lang=${lang} id="report-groups"
            heading=${t('filters.group')} totals=${data.groups.totals}
            rows=${data.groups.rows.map((r) => ({ name: r.group_name ?? t('report.no_group'), metrics: r.metrics }))} />`
            : html`<p class="empty">${t('report.no_rows')}</p>`}
          <h3>${t('report.downloads')}</h3>
          <div id="report-downloads" class="row">
            ${KINDS.map((k) => html`<button type="button" key=${k} data-download=${k} disabled=${downloading === k}
              onClick=${() => download(k)}>${t(`report.download_${k}`)}</button>`)}
          </div>
          <p class="hint">${t('report.explained')}</p>
        </section>`}
    </main>`;
}
