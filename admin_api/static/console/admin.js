// The console's administration pages, for admins and owners: the web chat widget's own words (the
// notice shown while nobody is online, and a greeting, in each language the widget speaks), and the
// monthly availability report (GET /api/v1/availability: the figures, a bar a day, the incidents),
// and Excel exports (POST /api/v1/exports with filters, their progress, the signed download link).
// The caller hands in what it shares: the HTTP helper, htm's html and the words (t).

import { useEffect, useState } from '/vendor/hooks.mjs';
import { channelName } from './i18n.js';

// The languages the widget speaks (connectors/webchat/static/locales).
const WIDGET_LANGS = [['en', 'English'], ['zh-CN', '简体中文']];
const FIELDS = ['offline_message', 'welcome'];
const MAX_WORDS = 2000; // connectors/webchat/schemas.py MAX_WORDS

export const ADMIN_TABS = ['widget', 'availability', 'exports'];

export function WidgetWords({ api, html, t }) {
  const [words, setWords] = useState(null);   // {offline_message: {lang: text}, welcome: {...}}
  const [status, setStatus] = useState({ kind: '', text: '' });
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api('GET', '/api/v1/webchat/settings')
      .then((w) => setWords({ offline_message: { ...w.offline_message }, welcome: { ...w.welcome } }))
      .catch((err) => setStatus({ kind: 'error', text: err.message }));
  }, []);
  if (!words) return html`<p class="empty">${status.text || t('ticket.loading')}</p>`;
  const edit = (field, code) => (e) => {
    setWords({ ...words, [field]: { ...words[field], [code]: e.target.value } });
    setStatus({ kind: '', text: '' });
  };
  async function save(e) {
    e.preventDefault();
    setBusy(true);
    // Each field is sent whole; an empty text is left out, so the widget's own words show for it.
    const body = {};
    for (const field of FIELDS) {
      body[field] = Object.fromEntries(Object.entries(words[field]).map(([k, v]) => [k, v.trim()]).filter(([, v]) => v));
    }
    try {
      const saved = await api('PUT', '/api/v1/webchat/settings', body);
      setWords({ offline_message: { ...saved.offline_message }, welcome: { ...saved.welcome } });
      setStatus({ kind: 'ok', text: t('admin.saved') });
    } catch (err) {
      setStatus({ kind: 'error', text: err.message });
    } finally {
      setBusy(false);
    }
  }
  return html`
    <form id="widget-words" class="admin-form" onSubmit=${save}>
      <p class="hint">${t('admin.widget_hint')}</p>
      ${WIDGET_LANGS.map(([code, name]) => html`
        <fieldset key=${code} data-lang=${code}>
          <legend>${name}</legend>
          <label>${t('admin.offline_message')}
            <textarea id=${`offline-${code}`} maxlength=${MAX_WORDS} rows="3" value=${words.offline_message[code] || ''}
              placeholder=${t('admin.default_words')} onInput=${edit('offline_message', code)}></textarea></label>
          <label>${t('admin.welcome')}
            <textarea id=${`welcome-${code}`} maxlength=${MAX_WORDS} rows="2" value=${words.welcome[code] || ''}
              placeholder=${t('admin.default_words')} onInput=${edit('welcome', code)}></textarea></label>
        </fieldset>`)}
      <div class="row">
        <button id="widget-words-save" class="primary" type="submit" disabled=${busy}>${t('admin.save')}</button>
        <span id="widget-words-status" role="status" class=${status.kind === 'error' ? 'error' : 'saved'}>${status.text}</span>
      </div>
    </form>`;
}

export function AdminPage({ api, html, t, tab, onTab, onClose }) {
  return html`
    <main id="admin-page" aria-label=${t('admin.title')}>
      <div class="admin-head">
        <button id="admin-close" type="button" class="back-always" onClick=${onClose}>‹ ${t('admin.back')}</button>
        <h2>${t('admin.title')}</h2>
        <div id="admin-tabs" role="tablist">
          ${ADMIN_TABS.map((x) => html`<button type="button" role="tab" class="view" data-tab=${x}
            aria-selected=${tab === x} onClick=${() => onTab(x)}>${t(`admin.tab_${x}`)}</button>`)}
        </div>
      </div>
      <section class="admin-body">
        ${tab === 'widget' && html`<h3>${t('admin.tab_widget')}</h3><${WidgetWords} api=${api} html=${html} t=${t} />`}
        ${tab === 'availability' && html`<${Availability} api=${api} html=${html} t=${t} />`}
        ${tab === 'exports' && html`<${Exports} api=${api} html=${html} t=${t} />`}
      </section>
    </main>`;
}

// ---- availability: the promise (99.9% a month, on a 43,200-minute basis) as the probers saw it -------
const thisMonth = () => new Date().toISOString().slice(0, 7); // UTC, as the report's months are
const pct = (x) => (x == null ? null : `${x.toFixed(3)}%`);
const mins = (x) => (Math.round(x * 10) / 10).toString();

function stamp(iso, lang) {
  return new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }).format(new Date(iso));
}

// One bar a day, as status pages draw them, its colour saying how the day went: up, short outages
// only (under 5 minutes: not counted), downtime counted, or no probe data (grey, never "up").
function DayChart({ days, incidents, html, t }) {
  const width = 16;
  const gap = 4;
  const height = 60;
  const blips = new Set(incidents.filter((x) => x.counted_minutes === 0).map((x) => x.start.slice(0, 10)));
  const kind = (d) => (d.downtime_minutes > 0 ? 'down' : d.measured_minutes === 0 ? 'unknown'
    : blips.has(d.date) ? 'dip' : d.unknown_minutes > 0 ? 'partial' : 'up');
  return html`
    <svg id="availability-chart" class="day-chart" role="img" aria-label=${t('availability.chart')}
      viewBox=${`0 0 ${days.length * (width + gap)} ${height + 18}`} preserveAspectRatio="xMinYMin meet">
      ${days.map((d, i) => {
        const label = [d.date, d.availability == null ? t('availability.unknown') : pct(d.availability),
          t('availability.day_down', { n: mins(d.downtime_minutes) }),
          d.unknown_minutes > 0 ? t('availability.day_unknown', { n: mins(d.unknown_minutes) }) : ''].filter(Boolean).join(' · ');
        return html`<g key=${d.date} class=${`day day-${kind(d)}`} data-date=${d.date}>
          <title>${label}</title>
          <rect x=${i * (width + gap)} y="0" width=${width} height=${height} rx="2" />
          ${(i === 0 || (i + 1) % 5 === 0) && html`<text x=${i * (width + gap) + width / 2} y=${height + 14}
            text-anchor="middle">${Number(d.date.slice(8))}</text>`}
        </g>`;
      })}
    </svg>`;
}

export function Availability({ api, html, t }) {
  const [month, setMonth] = useState(thisMonth());
  const [report, setReport] = useState(null);
  const [error, setError] = useState('');
  const lang = document.documentElement.lang || 'en';
  useEffect(() => {
    setReport(null);
    setError('');
    api('GET', `/api/v1/availability?month=${encodeURIComponent(month)}`)
      .then((r) => setReport(r.availability))
      .catch((err) => setError(err.message));
  }, [month]);
  const r = report;
  const headline = r && (r.availability != null ? pct(r.availability)
    : r.measured_availability != null ? t('availability.measured_only', { pct: pct(r.measured_availability) })
      : t('availability.unknown'));
  const verdict = r && (r.meets_target == null ? 'unknown' : r.meets_target ? 'met' : 'missed');
  return html`
    <div id="availability">
      <div class="row availability-head">
        <h3>${t('admin.tab_availability')}</h3>
        <label>${t('availability.month')}
          <input id="availability-month" type="month" value=${month} max=${thisMonth()}
            onChange=${(e) => { if (e.target.value) setMonth(e.target.value); }} /></label>
      </div>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${!r && !error && html`<p class="empty">${t('ticket.loading')}</p>`}
      ${r && html`
        <div class="figures">
          <div class="figure"><span class="figure-label">${t('availability.figure')}</span>
            <span id="availability-figure" class=${`figure-value verdict-${verdict}`}>${headline}</span>
            <span class="figure-note">${t('availability.target', { pct: pct(r.target) })} · ${t(`availability.verdict_${verdict}`)}</span></div>
          <div class="figure"><span class="figure-label">${t('availability.downtime')}</span>
            <span id="availability-downtime" class="figure-value">${mins(r.downtime_minutes)}</span>
            <span class="figure-note">${t('availability.minutes_of', { n: r.basis_minutes })}</span></div>
          <div class="figure"><span class="figure-label">${t('availability.unknown_minutes')}</span>
            <span id="availability-unknown" class="figure-value">${mins(r.unknown_minutes)}</span>
            <span class="figure-note">${r.complete ? t('availability.complete') : t('availability.as_of', { when: stamp(r.as_of, lang) })}</span></div>
        </div>
        ${r.closed && html`<p id="availability-closed" class="hint">${t(`availability.closed_${r.closed.compensation}`,
          { n: r.closed.compensated_minutes })}</p>`}
        <${DayChart} days=${r.days} incidents=${r.incidents} html=${html} t=${t} />
        <p class="legend">
          <span class="key day-up"></span>${t('availability.key_up')} <span class="key day-dip"></span>${t('availability.key_dip')}
          <span class="key day-down"></span>${t('availability.key_down')} <span class="key day-unknown"></span>${t('availability.key_unknown')}</p>
        <h4>${t('availability.incidents')}</h4>
        ${!r.incidents.length ? html`<p class="empty">${t('availability.no_incidents')}</p>` : html`
          <table id="availability-incidents" class="incidents">
            <thead><tr><th>${t('availability.start')}</th><th>${t('availability.end')}</th><th>${t('availability.length')}</th>
              <th>${t('availability.cause')}</th><th>${t('availability.counted')}</th></tr></thead>
            <tbody>${r.incidents.map((x) => html`<tr key=${x.start} class=${x.counted_minutes > 0 ? 'counted' : ''}>
              <td>${stamp(x.start, lang)}</td>
              <td>${x.ended_by === 'open' ? t('availability.ongoing') : stamp(x.end, lang)}</td>
              <td>${t('availability.n_minutes', { n: mins(x.minutes) })}</td>
              <td class="cause">${x.cause}</td>
              <td>${x.counted_minutes > 0 ? t('availability.n_minutes', { n: mins(x.counted_minutes) })
                : x.maintenance_minutes > 0 ? t('availability.in_maintenance') : t('availability.under_five')}</td>
            </tr>`)}</tbody>
          </table>`}
        ${r.maintenance.length > 0 && html`
          <h4>${t('availability.maintenance')}</h4>
          <ul class="plain">${r.maintenance.map((w) => html`<li key=${w.id}>${stamp(w.start, lang)} – ${stamp(w.end, lang)} · ${w.reason}</li>`)}</ul>`}
        <p class="hint">${t('availability.explained')}</p>`}
    </div>`;
}

// ---- exports: start one with filters, watch its progress, download it by its signed link -------------
const EXPORT_STATUSES = ['new', 'open', 'pending', 'solved', 'closed'];
const EXPORT_CHANNELS = ['webchat', 'email', 'wechat', 'xmpp'];

export function Exports({ api, html, t }) {
  const [list, setList] = useState(null);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [form, setForm] = useState({ from: '', to: '', statuses: [], channels: [], include_messages: false });
  const load = () => api('GET', '/api/v1/exports').then((r) => setList(r.exports)).catch((err) => setError(err.message));
  useEffect(() => { load(); }, []);
  // While one is being built, its progress is read again each second.
  const working = (list || []).some((x) => x.state === 'queued' || x.state === 'running');
  useEffect(() => {
    if (!working) return undefined;
    const timer = setInterval(load, 1000);
    return () => clearInterval(timer);
  }, [working]);
  const toggle = (field, value) => () => {
    const have = form[field].includes(value);
    setForm({ ...form, [field]: have ? form[field].filter((x) => x !== value) : [...form[field], value] });
  };
  async function start(e) {
    e.preventDefault();
    setBusy(true);
    setError('');
    const body = { statuses: form.statuses, channels: form.channels, include_messages: form.include_messages };
    if (form.from) body.from = form.from;
    if (form.to) body.to = form.to;
    try {
      await api('POST', '/api/v1/exports', body);
      await load();
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  }
  return html`
    <div id="exports">
      <h3>${t('admin.tab_exports')}</h3>
      <form id="export-form" class="admin-form" onSubmit=${start}>
        <p class="hint">${t('export.hint')}</p>
        <div class="row">
          <label>${t('export.from')} <input id="export-from" type="date" value=${form.from}
            onInput=${(e) => setForm({ ...form, from: e.target.value })} /></label>
          <label>${t('export.to')} <input id="export-to" type="date" value=${form.to}
            onInput=${(e) => setForm({ ...form, to: e.target.value })} /></label>
        </div>
        <fieldset><legend>${t('export.statuses')}</legend>
          ${EXPORT_STATUSES.map((s) => html`<label key=${s} class="check"><input type="checkbox" data-status=${s}
            checked=${form.statuses.includes(s)} onChange=${toggle('statuses', s)} /> ${t(`status.${s}`)}</label>`)}
        </fieldset>
        <fieldset><legend>${t('export.channels')}</legend>
          ${EXPORT_CHANNELS.map((c) => html`<label key=${c} class="check"><input type="checkbox" data-channel=${c}
            checked=${form.channels.includes(c)} onChange=${toggle('channels', c)} /> ${channelName(c)}</label>`)}
        </fieldset>
        <label class="check"><input id="export-messages" type="checkbox" checked=${form.include_messages}
          onChange=${() => setForm({ ...form, include_messages: !form.include_messages })} /> ${t('export.include_messages')}</label>
        <div class="row">
          <button id="export-start" class="primary" type="submit" disabled=${busy}>${t('export.start')}</button>
          <span id="export-status" role="status" class="error">${error}</span>
        </div>
      </form>
      ${list === null ? html`<p class="empty">${t('ticket.loading')}</p>`
        : list.length === 0 ? html`<p class="empty">${t('export.none')}</p>`
          : html`<ul id="export-list" class="export-list">
            ${list.map((x) => html`<li key=${x.id} data-export=${x.id} data-state=${x.state}>
              <span>#${x.id}</span>
              <span>${x.customer_id ? t('export.customer', { id: x.customer_id }) : t('export.tenant')}</span>
              <span class="export-state">${t(`export.state_${x.state}`)}</span>
              ${(x.state === 'running' || x.state === 'queued') && html`<progress max="1" value=${x.progress}></progress>
                <span>${t('export.rows', { done: x.rows_done, total: x.rows_total ?? '…' })}</span>`}
              ${x.state === 'done' && x.download_url && html`<a class="export-download" href=${x.download_url}
                download>${t('export.download')}</a>
                <span>${t('export.rows', { done: x.rows_done, total: x.rows_total })}</span>`}
              ${x.error && html`<span class="error">${x.error}</span>`}
            </li>`)}
          </ul>`}
    </div>`;
}
