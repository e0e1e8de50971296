// The console's administration pages, for admins and owners: the web chat widget's own words (the
// notice shown while nobody is online, and a greeting, in each language the widget speaks).
// The caller hands in what it shares: the HTTP helper, htm's html and the words (t).

import { useEffect, useState } from '/vendor/hooks.mjs';

// The languages the widget speaks (connectors/webchat/static/locales).
const WIDGET_LANGS = [['en', 'English'], ['zh-CN', '简体中文']];
const FIELDS = ['offline_message', 'welcome'];
const MAX_WORDS = 2000; // connectors/webchat/schemas.py MAX_WORDS

export const ADMIN_TABS = ['widget'];

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
      </section>
    </main>`;
}
